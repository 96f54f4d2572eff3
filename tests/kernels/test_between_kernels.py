"""The compiled between-factor kernels (mixslam.kernels.between) against the numpy reference
(mixslam.problem.between.linearize), per dtype and pose dimension, within a few unit roundoffs."""

import numpy as np
import pytest

from mixslam.lie import so2, so3
from mixslam.problem import between as Bt
from mixslam.problem.pose_graph import PoseGraph

from ..helpers import unit_roundoff


def _graph(dim, rng, n=40, m=120, turn=1.0, far=1.0):
    """Random poses and measurements; ``turn`` scales the rotations (large turns reach every branch of
    Shepperd's quaternion), ``far`` the distance of the map from the origin."""
    if dim == 3:
        R, Rz = so3.exp(turn * rng.normal(size=(n, 3))), so3.exp(turn * rng.normal(size=(m, 3)))
    else:
        R, Rz = so2.exp(turn * rng.normal(size=n)), so2.exp(turn * rng.normal(size=m))
    ei = rng.integers(0, n, m)
    ej = (ei + rng.integers(1, n, m)) % n
    k = 3 if dim == 2 else 6
    L = rng.normal(size=(m, k, k)) * 0.3 + np.eye(k) * 2.0
    info = L @ np.swapaxes(L, 1, 2)  # dense positive-definite information: every whitening entry counts
    fixed = np.zeros(n, bool)
    fixed[0] = True
    t = far + rng.normal(size=(n, dim))
    return PoseGraph(dim, np.arange(n), R, t, ei, ej, Rz, rng.normal(size=(m, dim)), info, fixed)


def _close(got, ref, dt, what, c=30.0):
    """|got - ref| within c unit roundoffs of the reference's scale (fp64 arithmetic: 1e-16-ish)."""
    u = unit_roundoff("fp32" if dt == np.float32 else "fp64")
    scale = max(float(np.abs(ref).max()), 1.0)
    err = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
    assert err <= c * u * scale, f"{what}: {err:.3g} > {c} u x {scale:.3g}"


@pytest.mark.parametrize("dt", [np.float64, np.float32])
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("turn", [0.3, 3.0])
def test_errors_and_whitened_jacobians_match_the_reference(dim, dt, turn):
    g = _graph(dim, np.random.default_rng(dim * 10 + int(turn)), turn=turn)
    W = Bt.sqrt_information(g.information)
    e0, Ji, Jj = Bt.linearize(g, dtype=dt)
    Wd = W.astype(dt)
    e1 = Bt.edge_errors(g, dtype=dt)
    r1, A1, B1 = Bt.whitened(g, g.rotations, g.translations, W, dtype=dt)
    assert e1.dtype == r1.dtype == A1.dtype == B1.dtype == np.dtype(dt)
    assert A1.shape == B1.shape == (g.num_edges, g.tangent_dim, g.tangent_dim)
    _close(e1, e0, dt, "errors")
    # the reference whitening in fp64 from the reference's own dt values: the kernel rounds once more per entry
    _close(r1, np.einsum("mij,mj->mi", Wd.astype(np.float64), e0.astype(np.float64)), dt, "r")
    _close(A1, Wd.astype(np.float64) @ Ji.astype(np.float64), dt, "A")
    _close(B1, Wd.astype(np.float64) @ Jj.astype(np.float64), dt, "B")


def test_every_quaternion_branch_is_taken_and_matches():
    """Shepperd's method picks the largest of trace and the three diagonal entries: rotations of pi about
    each axis force each branch; the kernel's quaternion error must match the reference's (w >= 0)."""
    n = 5
    R = np.stack([np.eye(3)] + [so3.exp(np.pi * np.eye(3)[a] * 0.999) for a in range(3)] + [np.eye(3)])
    m = 4
    ei = np.zeros(m, np.int64)
    ej = np.arange(1, m + 1)
    fixed = np.zeros(n, bool)
    fixed[0] = True
    g = PoseGraph(
        3,
        np.arange(n),
        R,
        np.zeros((n, 3)),
        ei,
        ej,
        np.tile(np.eye(3), (m, 1, 1)),
        np.zeros((m, 3)),
        np.tile(np.eye(6), (m, 1, 1)),
        fixed,
    )
    np.testing.assert_allclose(Bt.edge_errors(g), Bt.linearize(g, jacobians=False)[0], rtol=0, atol=1e-15)
    assert np.all(np.abs(Bt.edge_errors(g)[:3, 3:]).max(axis=1) > 0.99)  # x, y, z branches: |q_axis| ~ 1


def test_position_difference_is_narrowed_after_the_fp64_subtraction():
    """Far from the origin (1e6 m) fp32 positions would lose the edge length; the kernel, like the reference,
    subtracts in fp64 first, so fp32 errors stay within fp32 roundoff of the fp64 ones."""
    g = _graph(2, np.random.default_rng(5), far=1e6)
    e64 = Bt.edge_errors(g, dtype=np.float64)
    e32 = Bt.edge_errors(g, dtype=np.float32)
    _close(e32, e64, np.float32, "far-from-origin errors", c=50.0)


@pytest.mark.parametrize("dim", [2, 3])
def test_cost_and_quadratic_forms(dim):
    g = _graph(dim, np.random.default_rng(7))
    e = Bt.linearize(g, jacobians=False)[0]
    q = np.einsum("mi,mij,mj->m", e, g.information, e)
    np.testing.assert_allclose(Bt.quadratic_forms(e, g.information), q, rtol=1e-13)
    assert Bt.cost(g) == pytest.approx(0.5 * q.sum(), rel=1e-13)


def test_nan_poses_propagate():
    g = _graph(2, np.random.default_rng(9))
    t = g.translations.copy()
    t[3] = np.nan
    e = Bt.edge_errors(g, g.rotations, t)
    touched = (g.edge_i == 3) | (g.edge_j == 3)
    assert np.isnan(e[touched, :2]).all() and np.isfinite(e[~touched]).all()


def test_other_dtypes_use_the_reference():
    g = _graph(2, np.random.default_rng(11))
    e = Bt.edge_errors(g, dtype=np.float16)
    assert e.dtype == np.float16
    np.testing.assert_array_equal(e, Bt.linearize(g, dtype=np.float16, jacobians=False)[0])
