"""Tests of mixslam.sim.simulate_pose_graph."""
from __future__ import annotations

import numpy as np
import pytest

from mixslam.lie import se2, se3, so2, so3
from mixslam.problem.pose_graph import PoseGraph
from mixslam.sim import KINDS, simulate_pose_graph

CASES = [("manhattan", 2), ("manhattan", 3), ("grid3d", 3), ("sphere", 3), ("circle", 2), ("circle", 3)]
ARRAYS = ("rotations", "translations", "edge_i", "edge_j", "meas_rotations", "meas_translations",
          "information", "fixed", "ids")


def _g2o_errors(graph: PoseGraph, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(m, k) g2o errors of the edges at poses (R, t)."""
    between = se3.between if graph.dim == 3 else se2.between
    Rij, tij = between(R[graph.edge_i], t[graph.edge_i], R[graph.edge_j], t[graph.edge_j])
    DR, Dt = between(graph.meas_rotations, graph.meas_translations, Rij, tij)
    if graph.dim == 3:
        rot = so3.to_quaternion(DR)[:, :3]
    else:
        rot = so2.wrap(so2.log(DR))[:, None]
    return np.concatenate([Dt, rot], axis=1)


def _assert_rotations(R: np.ndarray, tol: float = 1e-9) -> None:
    d = R.shape[-1]
    assert np.all(np.isfinite(R))
    assert np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(d)).max() < tol
    assert np.abs(np.linalg.det(R) - 1.0).max() < tol


@pytest.mark.parametrize("kind,dim", CASES)
def test_shapes_and_validity(kind, dim):
    n = 300
    graph, R, t = simulate_pose_graph(kind, n, seed=4, dim=dim)
    k = 6 if dim == 3 else 3
    m = graph.num_edges
    assert graph.dim == dim and graph.num_poses == n
    assert R.shape == (n, dim, dim) and t.shape == (n, dim)
    assert graph.rotations.shape == (n, dim, dim) and graph.translations.shape == (n, dim)
    assert graph.meas_rotations.shape == (m, dim, dim) and graph.meas_translations.shape == (m, dim)
    assert graph.information.shape == (m, k, k)
    assert graph.edge_i.dtype == np.int64 and graph.edge_j.dtype == np.int64
    assert np.array_equal(graph.ids, np.arange(n))
    assert graph.fixed.dtype == bool and graph.fixed[0] and graph.fixed.sum() == 1
    assert m > n - 1, "expected some loop closures"
    # odometry chain first, then loop closures between distinct poses
    assert np.array_equal(graph.edge_i[: n - 1], np.arange(n - 1))
    assert np.array_equal(graph.edge_j[: n - 1], np.arange(1, n))
    assert np.all(graph.edge_i != graph.edge_j)
    assert np.all((graph.edge_i >= 0) & (graph.edge_i < n) & (graph.edge_j >= 0) & (graph.edge_j < n))
    for rots in (R, graph.rotations, graph.meas_rotations):
        _assert_rotations(rots)
    # every pose connected to the fixed one, information symmetric positive definite
    graph.validate()
    # the guess starts at the true first pose and drifts
    assert np.allclose(graph.rotations[0], R[0]) and np.allclose(graph.translations[0], t[0])
    assert np.abs(graph.translations - t).max() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_per_seed(kind):
    a = simulate_pose_graph(kind, 200, seed=11)
    b = simulate_pose_graph(kind, 200, seed=11)
    for name in ARRAYS:
        assert np.array_equal(getattr(a.graph, name), getattr(b.graph, name)), name
    assert np.array_equal(a.truth_rotations, b.truth_rotations)
    assert np.array_equal(a.truth_translations, b.truth_translations)
    c = simulate_pose_graph(kind, 200, seed=12)
    assert not np.array_equal(a.graph.meas_translations[: 199], c.graph.meas_translations[: 199])
    assert not np.array_equal(a.graph.translations, c.graph.translations)


def test_unpacks_as_tuple_and_named_fields():
    res = simulate_pose_graph("circle", 40, seed=0)
    graph, R, t = res
    assert graph is res.graph and R is res.truth_rotations and t is res.truth_translations


@pytest.mark.parametrize("kind,dim", CASES)
def test_noise_free_measurements_reproduce_truth(kind, dim):
    graph, R, t = simulate_pose_graph(kind, 250, seed=2, dim=dim, translation_sigma=0.0, rotation_sigma=0.0)
    between = se3.between if dim == 3 else se2.between
    Rij, tij = between(R[graph.edge_i], t[graph.edge_i], R[graph.edge_j], t[graph.edge_j])
    assert np.abs(graph.meas_rotations - Rij).max() < 1e-12
    assert np.abs(graph.meas_translations - tij).max() < 1e-12
    assert np.abs(_g2o_errors(graph, R, t)).max() < 1e-12
    # composing exact odometry reproduces the true trajectory
    assert np.abs(graph.rotations - R).max() < 1e-9
    assert np.abs(graph.translations - t).max() < 1e-9
    # finite (unit) information stands in for zero noise
    assert np.all(np.isfinite(graph.information))
    graph.validate()


@pytest.mark.parametrize("kind,dim", [("sphere", 3), ("manhattan", 2), ("circle", 3)])
def test_noise_statistics_match_information(kind, dim):
    st, sr = 0.1, 0.02
    graph, R, t = simulate_pose_graph(kind, 4000, seed=7, dim=dim, translation_sigma=st, rotation_sigma=sr)
    k = 6 if dim == 3 else 3
    diag = np.diagonal(graph.information, axis1=1, axis2=2)
    expected = [1 / st**2] * dim + ([4 / sr**2] * 3 if dim == 3 else [1 / sr**2])
    assert np.allclose(diag, expected)
    e = _g2o_errors(graph, R, t)
    m = e.shape[0]
    assert np.all(np.abs(e.mean(axis=0)) < 5 * e.std(axis=0) / np.sqrt(m))  # zero mean
    # translation error components have std sigma_t; rotation errors ~ theta/2 (3D) or theta (2D)
    assert np.std(e[:, :dim]) == pytest.approx(st, rel=0.05)
    assert np.std(e[:, dim:]) == pytest.approx(sr / 2 if dim == 3 else sr, rel=0.05)
    chi2 = np.einsum("ma,mab,mb->m", e, graph.information, e)
    assert chi2.mean() == pytest.approx(k, rel=0.05)


def test_loop_closure_probability():
    g0, _, _ = simulate_pose_graph("circle", 200, seed=1, loop_closure_prob=0.0)
    assert g0.num_edges == 199
    g1, _, _ = simulate_pose_graph("sphere", 400, seed=1, loop_closure_prob=1.0)
    assert g1.num_edges == 399 + (400 - 20)  # 20 poses per ring, one closure to the ring below
    assert np.all(g1.edge_j[399:] - g1.edge_i[399:] == 20)
    gh, _, _ = simulate_pose_graph("manhattan", 2000, seed=1, loop_closure_prob=0.5)
    gf, _, _ = simulate_pose_graph("manhattan", 2000, seed=1, loop_closure_prob=1.0)
    assert 399 < gh.num_edges - 1999 < gf.num_edges - 1999
    loops = gf.edge_j[1999:] - gf.edge_i[1999:]
    assert loops.min() >= 10
    assert np.bincount(gf.edge_j[1999:]).max() <= 2


def test_loop_closures_join_nearby_poses():
    graph, R, t = simulate_pose_graph("grid3d", 1500, seed=5, translation_sigma=0.0, rotation_sigma=0.0)
    loops = slice(1499, None)
    dist = np.linalg.norm(t[graph.edge_j[loops]] - t[graph.edge_i[loops]], axis=1)
    assert dist.size > 100 and dist.max() <= 1.0 + 1e-9


@pytest.mark.parametrize("kwargs", [
    dict(kind="nope", num_poses=10), dict(kind="sphere", num_poses=10, dim=2),
    dict(kind="grid3d", num_poses=10, dim=2), dict(kind="circle", num_poses=1),
    dict(kind="circle", num_poses=10, translation_sigma=-1.0),
    dict(kind="circle", num_poses=10, rotation_sigma=float("nan")),
    dict(kind="circle", num_poses=10, loop_closure_prob=1.5)])
def test_bad_arguments(kwargs):
    kind = kwargs.pop("kind")
    n = kwargs.pop("num_poses")
    with pytest.raises(ValueError):
        simulate_pose_graph(kind, n, seed=0, **kwargs)


def test_ten_thousand_poses():
    # Speed is measured in benchmarks, not asserted here; this checks that large graphs come out whole.
    for kind in KINDS:
        graph, _, _ = simulate_pose_graph(kind, 10_000, seed=0)
        assert graph.num_poses == 10_000
        graph.validate()
