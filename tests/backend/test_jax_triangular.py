"""The level-scheduled device triangular solves (backend/jax_triangular.py) against
``SupernodalCholesky.solve`` on generated 2-D and 3-D pose graphs, for fp64, fp32 and fp16 (``store16``)
panels with fp64 or fp32 vectors, and the schedule's dependencies.

Both sides read the same stored panel values widened exactly and accumulate in the same dtype, so they differ
by the order of the sums only: the tolerance is twice the componentwise forward-error bound of the two
substitutions in that dtype's unit roundoff (:func:`_check`), measured against the dense factor.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sl
import scipy.sparse as sp

pytest.importorskip("jax")

from mixslam.backend.jax_triangular import DeviceTriangular, level_schedule  # noqa: E402
from mixslam.linear.base import Damping  # noqa: E402
from mixslam.linear.supernodal import SupernodalCholesky  # noqa: E402
from mixslam.pgo import PoseGraphProblem  # noqa: E402
from mixslam.precision import PrecisionPolicy  # noqa: E402
from mixslam.sim.generate import generate_pose_graph  # noqa: E402

GRAPHS = {"grid2d": ("grid2d", 300), "grid3d": ("grid3d", 200)}


@pytest.fixture(scope="module")
def systems():
    """{kind: (H's lower triangle, SupernodalCholesky analysed on it)}: the damped Gauss-Newton matrix of a
    generated pose graph at its odometry initial guess (as benchmarks/factor16.py assembles it)."""
    out = {}
    for key, (kind, poses) in GRAPHS.items():
        g = generate_pose_graph(kind, poses, seed=3).initial
        prob = PoseGraphProblem(g, PrecisionPolicy.preset("fp64", "pgo"))
        lin = prob.linearize(prob.initial_state)
        H = prob.pattern.assemble_csc(lin.A, lin.B, Damping(1e-4).diagonal(lin.column_sq_norms()))
        H = sp.csc_matrix(H)
        Lo = sp.tril(H).tocsc()
        Lo.sort_indices()
        S = SupernodalCholesky(H.shape[0], Lo.indptr, Lo.indices)
        out[key] = (Lo, S)
    return out


def _u(dtype) -> float:
    return float(np.finfo(dtype).eps) / 2


@pytest.mark.parametrize("kind", list(GRAPHS))
def test_schedule_respects_dependencies(systems, kind):
    _, S = systems[kind]
    sch = level_schedule(S)
    seen = np.concatenate([g.supers for lv in sch.levels for g in lv])
    assert np.array_equal(np.sort(seen), np.arange(S.nsuper))  # every supernode once
    has = sch.parent >= 0
    assert np.all(sch.level[has] < sch.level[sch.parent[has]])  # a child below its parent
    for lv, groups in enumerate(sch.levels):
        for g in groups:
            assert np.all(sch.level[g.supers] == lv)
            # every row a supernode updates belongs to a supernode of a higher level
            rows = g.below[g.below < S.n]
            assert np.all(sch.level[S.col2super[rows]] > lv)
            assert g.padded_entries <= sch.max_waste * g.real_entries or g.supers.size == 1
    assert sch.waste >= 1.0
    # one group per level when padding is free to waste
    assert level_schedule(S, max_waste=np.inf).ngroups == sch.nlevels


# every panel format x vector dtype once over the two graphs (each case compiles one function: ~2 s cold on a
# CPU); grid3d with a single right-hand side (n,), grid2d with two (n, 2)
CASES = [
    ("grid2d", "fp64", np.float64),
    ("grid2d", "fp16", np.float64),
    ("grid2d", "fp32", np.float32),
    ("grid3d", "fp32", np.float64),
    ("grid3d", "fp16", np.float32),
]


def _factor(Lo, S, panels, shift=0.0):
    S.factorize(
        Lo.data + shift * (Lo.indices == np.repeat(np.arange(S.n), np.diff(Lo.indptr))),
        np.float32 if panels != "fp64" else np.float64,
    )
    if panels == "fp16":
        S.store16()


def _check(S, dev, b, vec):
    """The device solve against ``S.solve`` in the same vector dtype: both are substitutions with the same
    stored factor L (widened exactly), so each one's forward error is bounded componentwise by
    γ_m (|L⁻ᵀ||Lᵀ||x| + |L⁻ᵀ||L⁻¹||L||y|) (y = L⁻¹ b, γ_m = m u / (1 - m u), m the longest supernode: the
    longest dot product), and their difference by twice that."""
    ref = S.solve(b, dtype=vec)
    x = np.asarray(dev.solve(b))
    assert x.dtype == np.dtype(vec) and x.shape == b.shape
    L = S.dense_factor()
    Li = sl.solve_triangular(L, np.eye(S.n), lower=True)
    bp = b.reshape(S.n, -1)[S.perm].astype(np.float64)
    y = Li @ bp
    xp = Li.T @ y
    aL, aLi = np.abs(L), np.abs(Li)
    bound = aLi.T @ (aL.T @ np.abs(xp)) + aLi.T @ (aLi @ (aL @ np.abs(y)))
    mu = int(np.max(np.diff(S.sptr))) * _u(vec)
    tol = 2 * mu / (1 - mu) * np.max(bound)
    err = np.max(np.abs(x - ref))
    assert err <= tol, (err, tol)
    return err / np.max(np.abs(ref)), tol / np.max(np.abs(ref))


@pytest.mark.parametrize("kind,panels,vec", CASES)
def test_device_solve_matches_cpu(systems, kind, panels, vec):
    Lo, S = systems[kind]
    _factor(Lo, S, panels)
    rng = np.random.default_rng(0)
    b = rng.standard_normal((S.n, 2) if kind == "grid2d" else S.n)
    dev = DeviceTriangular(S, dtype=vec, device="cpu")
    assert dev.storage == panels
    _check(S, dev, b, vec)
    # a new factor (same analysis) loaded into the same device solver: the compiled function is reused
    _factor(Lo, S, panels, shift=1.0)
    dev.load()
    _check(S, dev, b, vec)
    assert dev._fn._cache_size() == 1
