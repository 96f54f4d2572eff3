"""Tests of mixslam.init.chordal_initialization."""
from __future__ import annotations

import numpy as np
import pytest

from mixslam.errors import GaugeError
from mixslam.init import chordal_initialization
from mixslam.lie import so2, so3
from mixslam.sim import simulate_pose_graph


def _angle_errors(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    D = np.swapaxes(Ra, 1, 2) @ Rb
    if Ra.shape[-1] == 2:
        return np.abs(so2.log(D))
    return np.linalg.norm(so3.log(D), axis=1)


def _assert_rotations(R: np.ndarray, tol: float = 1e-9) -> None:
    d = R.shape[-1]
    assert np.all(np.isfinite(R))
    assert np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(d)).max() < tol
    assert np.abs(np.linalg.det(R) - 1.0).max() < tol


def _scramble(graph, rng):
    """Replace the non-fixed poses' guess by garbage (chordal must not depend on it)."""
    g = graph.copy()
    free = ~g.fixed
    d = g.dim
    if d == 3:
        g.rotations[free] = so3.exp(rng.normal(size=(free.sum(), 3)) * 2.0)
    else:
        g.rotations[free] = so2.exp(rng.uniform(-np.pi, np.pi, free.sum()))
    g.translations[free] = rng.normal(size=(free.sum(), d)) * 100.0
    return g


CASES = [("manhattan", 2), ("circle", 2), ("manhattan", 3), ("grid3d", 3), ("sphere", 3), ("circle", 3)]


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("kind,dim", CASES)
def test_noise_free_recovers_truth(kind, dim, weighted):
    graph, R, t = simulate_pose_graph(kind, 300, seed=3, dim=dim, translation_sigma=0.0, rotation_sigma=0.0)
    g = _scramble(graph, np.random.default_rng(0))
    out = chordal_initialization(g, weighted=weighted)
    assert np.abs(out.rotations - R).max() < 1e-9
    assert np.abs(out.translations - t).max() < 1e-9
    _assert_rotations(out.rotations)


@pytest.mark.parametrize("kind,dim", CASES)
def test_noisy_close_to_truth_and_better_than_odometry(kind, dim):
    graph, R, t = simulate_pose_graph(kind, 1500, seed=8, dim=dim, translation_sigma=0.05, rotation_sigma=0.02)
    out = chordal_initialization(graph)
    _assert_rotations(out.rotations)
    err_chordal = _angle_errors(out.rotations, R)
    err_odo = _angle_errors(graph.rotations, R)
    assert err_chordal.max() < 0.15
    assert err_chordal.mean() < 0.5 * err_odo.mean()
    terr_chordal = np.linalg.norm(out.translations - t, axis=1)
    terr_odo = np.linalg.norm(graph.translations - t, axis=1)
    assert terr_chordal.mean() < 0.5 * terr_odo.mean()


def test_fixed_poses_unchanged_and_input_untouched():
    graph, R, t = simulate_pose_graph("sphere", 400, seed=1)
    g = graph.copy()
    g.fixed[[0, 57, 311]] = True
    # fixed poses keep whatever values they have, even ones off the truth
    g.rotations[57] = so3.exp(np.array([0.1, -0.2, 0.3])) @ g.rotations[57]
    g.translations[311] += [1.0, 2.0, 3.0]
    before = g.copy()
    out = chordal_initialization(g)
    for k in (0, 57, 311):
        assert np.array_equal(out.rotations[k], before.rotations[k])
        assert np.array_equal(out.translations[k], before.translations[k])
    assert np.array_equal(g.rotations, before.rotations) and np.array_equal(g.translations, before.translations)
    assert out is not g and np.array_equal(out.fixed, g.fixed)
    assert np.array_equal(out.meas_rotations, g.meas_rotations)


@pytest.mark.parametrize("dim", [2, 3])
def test_several_fixed_poses_at_truth_noise_free(dim):
    graph, R, t = simulate_pose_graph("circle", 200, seed=5, dim=dim, translation_sigma=0.0, rotation_sigma=0.0)
    g = _scramble(graph, np.random.default_rng(1))
    idx = [0, 33, 150]
    g.fixed[idx] = True
    g.rotations[idx], g.translations[idx] = R[idx], t[idx]
    out = chordal_initialization(g)
    assert np.abs(out.rotations - R).max() < 1e-9
    assert np.abs(out.translations - t).max() < 1e-9


def _random_spd(rng, m, k):
    A = rng.normal(size=(m, k, k))
    return A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(k)


@pytest.mark.parametrize("dim", [2, 3])
def test_matches_dense_least_squares(dim):
    """Both steps equal a dense reference solve, with anisotropic information and two fixed poses."""
    rng = np.random.default_rng(2)
    graph, _, _ = simulate_pose_graph("circle", 24, seed=2, dim=dim, translation_sigma=0.1, rotation_sigma=0.1)
    k = 6 if dim == 3 else 3
    graph.information = _random_spd(rng, graph.num_edges, k)
    graph.fixed[[0, 5]] = True
    out = chordal_initialization(graph)
    d = dim
    free = np.where(~graph.fixed)[0]
    col = {p: c for c, p in enumerate(free)}
    rb = slice(2, 3) if d == 2 else slice(3, 6)
    tb = slice(0, d)

    # rotations: sum kappa ||R_j - R_i Z||_F^2 over row-major vec(R), kappa = d_R / trace(Omega_RR^-1)
    rows, rhs = [], []
    for e in range(graph.num_edges):
        i, j, Z = graph.edge_i[e], graph.edge_j[e], graph.meas_rotations[e]
        orr = graph.information[e][rb, rb]
        w = np.sqrt(orr.shape[0] / np.trace(np.linalg.inv(orr)))
        A = np.zeros((d * d, d * d * free.size))
        b = np.zeros(d * d)
        for p, blk in ((j, np.eye(d * d)), (i, -np.kron(np.eye(d), Z.T))):
            if graph.fixed[p]:
                b -= blk @ graph.rotations[p].ravel()
            else:
                A[:, d * d * col[p]: d * d * (col[p] + 1)] += blk
        rows.append(w * A)
        rhs.append(w * b)
    x = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
    M = x.reshape(-1, d, d)
    Rref = graph.rotations.copy()
    Rref[free] = (so3.project if d == 3 else so2.project)(M)
    assert np.abs(out.rotations - Rref).max() < 1e-9

    # translations: g2o error e_t = Z_R^T R_i^T (t_j - t_i - R_i z), whitened by chol(Omega_tt)
    rows, rhs = [], []
    for e in range(graph.num_edges):
        i, j = graph.edge_i[e], graph.edge_j[e]
        L = np.linalg.cholesky(graph.information[e][tb, tb])
        Bm = L.T @ graph.meas_rotations[e].T @ Rref[i].T
        A = np.zeros((d, d * free.size))
        b = Bm @ (Rref[i] @ graph.meas_translations[e])
        for p, s in ((j, 1.0), (i, -1.0)):
            if graph.fixed[p]:
                b -= s * Bm @ graph.translations[p]
            else:
                A[:, d * col[p]: d * (col[p] + 1)] += s * Bm
        rows.append(A)
        rhs.append(b)
    y = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
    tref = graph.translations.copy()
    tref[free] = y.reshape(-1, d)
    assert np.abs(out.translations - tref).max() < 1e-8


def test_gauge_errors():
    graph, _, _ = simulate_pose_graph("circle", 30, seed=0)
    g = graph.copy()
    g.fixed[:] = False
    with pytest.raises(GaugeError):
        chordal_initialization(g)
    # drop every edge touching pose 29: it is no longer tied to the fixed pose
    g = graph.copy()
    keep = (g.edge_i != 29) & (g.edge_j != 29)
    for name in ("edge_i", "edge_j", "meas_rotations", "meas_translations", "information"):
        setattr(g, name, getattr(g, name)[keep])
    with pytest.raises(GaugeError) as exc:
        chordal_initialization(g)
    assert 29 in exc.value.unconstrained


# -- benchmark files (skipped when the data folder is absent) --------------------------------------------
@pytest.mark.data
@pytest.mark.parametrize("name", ["torus3D.g2o", "sphere2500.g2o"])
def test_benchmark_files_finite_valid(name, data_dir):
    path = data_dir / "pgo" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    try:
        from mixslam.io import read_pose_graph
    except ImportError:
        pytest.skip("mixslam.io.read_pose_graph not available yet")
    graph = read_pose_graph(path)
    out = chordal_initialization(graph)
    assert out.num_poses == graph.num_poses
    assert np.all(np.isfinite(out.translations))
    _assert_rotations(out.rotations)
    assert np.array_equal(out.rotations[graph.fixed], graph.rotations[graph.fixed])
