"""SupernodalCholesky (fp64 and fp32) against dense numpy references, with tolerances from unit roundoff."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mixslam.kernels import fpenv
from mixslam.linear.ordering import ORDERINGS, compressed_graph
from mixslam.linear.supernodal import NotPositiveDefinite, Relaxation, SupernodalCholesky

from .test_direct import block_spd

DTYPES = [np.float64, np.float32]


def lower(H):
    L = sp.tril(sp.csc_matrix(H)).tocsc()
    L.sort_indices()
    return L


def mixed_blocks(seed=0, ncam=6, npt=40):
    """A BA-shaped SPD matrix: 9-wide camera blocks and 3-wide point blocks, each point seen by 2-3 cameras."""
    rng = np.random.default_rng(seed)
    sizes = [9] * ncam + [3] * npt
    off = np.concatenate([[0], np.cumsum(sizes)])
    n = off[-1]
    rows = []
    for pnt in range(npt):
        for cam in rng.choice(ncam, size=int(rng.integers(2, 4)), replace=False):
            r = np.zeros((2, n))
            r[:, off[cam] : off[cam + 1]] = rng.standard_normal((2, 9))
            r[:, off[ncam + pnt] : off[ncam + pnt + 1]] = rng.standard_normal((2, 3))
            rows.append(r)
    J = np.vstack(rows)
    return sp.csc_matrix(J.T @ J + 1e-2 * np.eye(n)), sizes


def unit_roundoff(dtype):
    return float(np.finfo(dtype).eps) / 2


def check_backward_error(S, H, dtype):
    """‖L Lᵀ - P H Pᵀ‖ / ‖H‖ within a modest multiple of the factor's unit roundoff (Cholesky is backward
    stable: |ΔH| ≤ γ_{c+1} |L||Lᵀ|, c the largest column count)."""
    Ld = S.dense_factor()
    A = H.toarray()[np.ix_(S.perm, S.perm)]
    err = np.linalg.norm(Ld @ Ld.T - A) / np.linalg.norm(A)
    cmax = int(np.max(np.diff(S.sptr)))
    assert err < 4 * (cmax + 1) * unit_roundoff(dtype), err
    return err


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [3, 6])
def test_factor_and_solve_match_dense(dtype, d):
    H = block_spd(nv=90 if d == 3 else 50, d=d, seed=d, shift=1.0)
    L = lower(H)
    S = SupernodalCholesky(H.shape[0], L.indptr, L.indices)
    S.factorize(L.data, dtype)
    assert S.L.dtype == dtype
    check_backward_error(S, H, dtype)
    b = np.random.default_rng(0).standard_normal((H.shape[0], 2))
    x = S.solve(b)
    ref = np.linalg.solve(H.toarray(), b)
    kappa = np.linalg.cond(H.toarray())
    bound = 50 * H.shape[0] ** 0.5 * unit_roundoff(dtype) * kappa
    assert np.linalg.norm(x - ref) / np.linalg.norm(ref) < bound
    np.testing.assert_allclose(S.solve(b[:, 0]), x[:, 0], rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mixed_block_sizes(dtype):
    H, sizes = mixed_blocks()
    L = lower(H)
    starts, bsz, *_ = compressed_graph(H.shape[0], L.indptr, L.indices)
    assert {3, 9} <= set(bsz.tolist()) and all(s % 3 == 0 for s in bsz)  # cameras and points found as blocks
    S = SupernodalCholesky(H.shape[0], L.indptr, L.indices)
    S.factorize(L.data, dtype)
    check_backward_error(S, H, dtype)


@pytest.mark.parametrize("ordering", [o for o in ORDERINGS if o != "amd"] + ["amd"])
@pytest.mark.parametrize(
    "relax", [Relaxation(), Relaxation((0, 0, 0), (0.0, 0.0, 0.0)), Relaxation((64, 128, 256), (1.0, 1.0, 1.0))]
)
def test_orderings_and_amalgamation_agree(ordering, relax):
    if ordering == "amd":
        pytest.importorskip("cvxopt")
    if ordering == "metis":
        pytest.importorskip("pymetis")
    H = block_spd(nv=120, d=3, seed=5, shift=0.5)
    L = lower(H)
    S = SupernodalCholesky(H.shape[0], L.indptr, L.indices, ordering=ordering, relaxation=relax)
    S.factorize(L.data)
    check_backward_error(S, H, np.float64)
    b = np.arange(H.shape[0], dtype=float)
    assert np.linalg.norm(H @ S.solve(b) - b) / np.linalg.norm(b) < 1e-10


def test_relaxation_trades_zeros_for_fewer_supernodes():
    H = block_spd(nv=200, d=3, seed=2)
    L = lower(H)
    tight = SupernodalCholesky(H.shape[0], L.indptr, L.indices, relaxation=Relaxation((0, 0, 0), (0.0, 0.0, 0.0)))
    loose = SupernodalCholesky(H.shape[0], L.indptr, L.indices, relaxation=Relaxation((64, 128, 256), (1.0, 1.0, 1.0)))
    assert loose.nsuper < tight.nsuper
    assert loose.poff[-1] >= tight.poff[-1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_blas_and_loop_paths_agree(dtype):
    H = block_spd(nv=300, d=6, loops=600, seed=3, shift=1.0)  # dense enough for large supernodes
    L = lower(H)
    S = SupernodalCholesky(H.shape[0], L.indptr, L.indices)
    assert int(np.max(S.sncol)) > 128  # the blocked BLAS panel is exercised
    S.factorize(L.data, dtype, blas_min=10**15)
    loops = S.dense_factor()
    S.factorize(L.data, dtype, blas_min=0)
    blas = S.dense_factor()
    scale = np.abs(loops).max()
    assert np.abs(loops - blas).max() / scale < 64 * unit_roundoff(dtype) * np.sqrt(H.shape[0])
    check_backward_error(S, H, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_not_positive_definite_names_original_column(dtype):
    H = block_spd(nv=40, d=3, seed=1, shift=1.0).tolil()
    H[70, 70] = -5.0
    H = H.tocsc()
    L = lower(H)
    S = SupernodalCholesky(H.shape[0], L.indptr, L.indices)
    with pytest.raises(NotPositiveDefinite) as e:
        S.factorize(L.data, dtype)
    # the pivot that broke is 70 or one eliminated after it that depends on it
    assert 0 <= e.value.column < H.shape[0]
    assert not S.factorized
    data = L.data.copy()
    data[0] = np.nan
    with pytest.raises(NotPositiveDefinite):
        S.factorize(data, dtype)


def test_tiny_and_diagonal():
    for n in (1, 2, 5):
        H = sp.diags(np.arange(1.0, n + 1)).tocsc()
        L = lower(H)
        S = SupernodalCholesky(n, L.indptr, L.indices)
        S.factorize(L.data)
        np.testing.assert_allclose(S.solve(np.ones(n)), 1.0 / np.arange(1.0, n + 1), rtol=1e-15)


def test_bad_dtype_and_relaxation():
    H = block_spd(nv=5)
    L = lower(H)
    S = SupernodalCholesky(H.shape[0], L.indptr, L.indices)
    with pytest.raises(ValueError, match="float64 or float32"):
        S.factorize(L.data, np.float16)
    with pytest.raises(ValueError, match="zrelax"):
        Relaxation(zrelax=(0.1, 2.0, 0.1))
    with pytest.raises(ValueError, match="ordering"):
        SupernodalCholesky(H.shape[0], L.indptr, L.indices, ordering="colamd")


@pytest.mark.skipif(not fpenv.FTZ_SUPPORTED, reason="flush-to-zero control is x86-64 only")
def test_fp32_factor_flushes_subnormals_and_restores_the_mode():
    before = fpenv.ftz_on()
    fpenv.ftz_restore(before)
    # a chain whose fill decays below fp32's normal range
    n = 60
    H = sp.diags([np.full(n - 1, -1e-3), np.ones(n), np.full(n - 1, -1e-3)], [-1, 0, 1]).tocsc()
    H = H + sp.csc_matrix((np.full(n, 1e-3**2), (np.zeros(n, int), np.arange(n))), shape=(n, n)).T @ sp.eye(n)
    L = lower(sp.csc_matrix(H))
    S = SupernodalCholesky(n, L.indptr, L.indices)
    S.factorize(L.data, np.float32)
    a = np.abs(S.L)
    assert not np.any((a > 0) & (a < np.finfo(np.float32).tiny))
    after = fpenv.ftz_on()
    fpenv.ftz_restore(after)
    assert after == before  # the caller's floating-point mode is back


def test_auto_ordering_keeps_the_cheapest_available():
    from mixslam.linear.ordering import available_orderings
    from mixslam.linear.supernodal import AUTO_ORDERING_MIN_FLOPS

    H = block_spd(nv=300, d=6, loops=600, seed=7)  # about 1e8 flops in MMD order: worth comparing orderings
    L = lower(H)
    S = SupernodalCholesky(H.shape[0], L.indptr, L.indices)  # ordering="auto"
    assert S.ordering_flops["mmd"] >= AUTO_ORDERING_MIN_FLOPS
    assert set(S.ordering_flops) == set(available_orderings()) and "mmd" in S.ordering_flops
    assert S.ordering == min(S.ordering_flops, key=S.ordering_flops.get)
    for name, flops in S.ordering_flops.items():  # the estimate is the one of that ordering's own analysis
        assert SupernodalCholesky(H.shape[0], L.indptr, L.indices, ordering=name).ordering_flops[name] == flops
    S.factorize(L.data)
    check_backward_error(S, H, np.float64)


def test_auto_ordering_stops_at_a_cheap_first_ordering():
    """A factor cheaper than AUTO_ORDERING_MIN_FLOPS in MMD order is kept without analyzing the others."""
    from mixslam.linear.supernodal import AUTO_ORDERING_MIN_FLOPS

    H = block_spd(nv=300, d=3, loops=300, seed=7)  # about 4e6 flops
    L = lower(H)
    S = SupernodalCholesky(H.shape[0], L.indptr, L.indices)
    assert S.ordering == "mmd" and list(S.ordering_flops) == ["mmd"]
    assert S.ordering_flops["mmd"] < AUTO_ORDERING_MIN_FLOPS
    S.factorize(L.data)
    check_backward_error(S, H, np.float64)


@pytest.mark.parametrize("d", [3, 6])
def test_fp16_panels_are_the_rounded_fp32_factor(d):
    """store16: the fp32 factor rounded once to fp16 per panel (power-of-two panel scale, exact), so the
    backward error is fp16's; solves read the fp16 panels and equal solves with the dequantized factor."""
    H = block_spd(nv=90 if d == 3 else 50, d=d, seed=d, shift=1.0)
    L = lower(H)
    S = SupernodalCholesky(H.shape[0], L.indptr, L.indices)
    S.factorize(L.data, np.float32)
    L32 = S.L.copy()
    nbytes32 = S.nbytes
    st = S.store16()
    assert S.L is None and S.L16.dtype == np.uint16 and st.overflows == 0 and st.count == L32.size
    assert S.nbytes < 0.6 * nbytes32
    # each panel's largest entry sits in [2^14, 2^15) before the scale: fp16's precision, not its range
    deq = S.L16.view(np.float16).astype(np.float64)
    big = np.maximum.reduceat(np.abs(deq), S.poff[:-1])
    assert np.all((big >= 2.0**14) & (big < 2.0**15))
    # the stored values are fp32's rounded once to fp16 (relative error <= u16 on normal values)
    full = deq * np.repeat(S.pscale, np.diff(S.poff))
    nz = L32 != 0
    assert np.max(np.abs(full[nz] - L32[nz]) / np.abs(L32[nz])) <= unit_roundoff(np.float16) * (1 + 1e-6)
    check_backward_error(S, H, np.float16)
    b = np.random.default_rng(1).standard_normal((H.shape[0], 2))
    x = S.solve(b)
    ref = np.linalg.solve(H.toarray(), b)
    kappa = np.linalg.cond(H.toarray())
    assert np.linalg.norm(x - ref) / np.linalg.norm(ref) < 50 * H.shape[0] ** 0.5 * unit_roundoff(np.float16) * kappa
    # the same solve as with the dequantized panels in fp64 (only the summation order differs)
    S2 = SupernodalCholesky(H.shape[0], L.indptr, L.indices)
    S2.factorize(L.data, np.float64)
    S2.L[:] = full
    np.testing.assert_allclose(x, S2.solve(b), rtol=1e-10, atol=1e-12)
    S.factorize(L.data, np.float32)  # a new factorization starts from fp32 panels again
    assert S.L16 is None and S.L is not None


def grid_spd(side=24, d=3, seed=0):
    """H = JᵀJ + I with the block pattern of a side x side grid of poses (a balanced elimination tree)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(side * side).reshape(side, side)
    a = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    b = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    n = side * side * d
    rows, cols, vals = [], [], []
    for e, (i, j) in enumerate(zip(a, b)):
        for v in (i, j):
            rr, cc = np.meshgrid(e * d + np.arange(d), v * d + np.arange(d), indexing="ij")
            rows.append(rr.ravel())
            cols.append(cc.ravel())
            vals.append(rng.standard_normal(d * d))
    J = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(a.size * d, n))
    H = (J.T @ J + sp.identity(n)).tocsc()
    H.sort_indices()
    return H


def _ancestors_stay_in_lane(S, lo, hi, top):
    """Every row a supernode of [lo, hi) updates belongs to a column of [lo, hi) or of the top (>= top)."""
    col2super = np.repeat(np.arange(S.nsuper), S.sncol)
    for t in range(lo, hi):
        below = S.srows[S.sptr[t] + S.sncol[t] : S.sptr[t + 1]]
        owner = col2super[below]
        assert np.all(((owner >= lo) & (owner < hi)) | (owner >= top)), t


@pytest.mark.parametrize("store", ["fp64", "fp32", "fp16"])
@pytest.mark.parametrize("forest", [False, True])
def test_two_lane_solves_match_one_lane_and_do_not_depend_on_threads(store, forest):
    """The lane split of the triangular solves: lanes are unions of whole subtrees (their updates meet only in
    the top), the two-lane solve equals the single-lane one to roundoff and the dense solve to the factor's
    accuracy, and one thread gives bit for bit what two give."""
    from mixslam.kernels import supernodal as K

    H = sp.block_diag([grid_spd(16), grid_spd(15, seed=1)]).tocsc() if forest else grid_spd()  # forest: two trees
    L = lower(H)
    S = SupernodalCholesky(H.shape[0], L.indptr, L.indices, ordering="mmd")
    assert S.lanes is None  # below LANE_MIN_ENTRIES: one lane
    S.factorize(L.data, np.float64 if store == "fp64" else np.float32)
    if store == "fp16":
        S.store16()
    lanes = K.lane_split(S.parent, S.sptr, S.sncol)
    assert lanes is not None
    s0, sm, u = lanes
    assert 0 <= s0 < sm < u <= S.nsuper
    assert (u == S.nsuper) == forest  # two trees: the lanes are the trees, no top
    _ancestors_stay_in_lane(S, s0, sm, u)
    _ancestors_stay_in_lane(S, sm, u, u)
    b = np.random.default_rng(2).standard_normal((H.shape[0], 2))
    one = S.solve(b)
    S.lanes = lanes
    x = {}
    for threads in (1, 2):
        xp = np.ascontiguousarray(b[S.perm])
        Lp, ps = (S.L16, S.pscale) if store == "fp16" else (S.L, np.ones(S.nsuper))
        K.solve(S.sptr, S.srows, S.scol0, S.sncol, S.poff, Lp, ps, xp, lanes, threads)
        x[threads] = np.empty_like(xp)
        x[threads][S.perm] = xp
    assert np.array_equal(x[1], x[2])
    np.testing.assert_allclose(x[1], one, rtol=1e-12 * np.linalg.cond(H.toarray()), atol=1e-14)
    np.testing.assert_array_equal(S.solve(b), x[1])  # SupernodalCholesky.solve runs its lanes
    ref = np.linalg.solve(H.toarray(), b)
    u_f = unit_roundoff({"fp64": np.float64, "fp32": np.float32, "fp16": np.float16}[store])
    bound = 50 * H.shape[0] ** 0.5 * u_f * np.linalg.cond(H.toarray())
    assert np.linalg.norm(x[1] - ref) / np.linalg.norm(ref) < bound


def test_lane_split_refuses_small_factors_and_chains():
    from mixslam.kernels import supernodal as K

    H = grid_spd(side=8)
    L = lower(H)
    S = SupernodalCholesky(H.shape[0], L.indptr, L.indices)
    assert K.lane_split(S.parent, S.sptr, S.sncol, min_entries=10**9) is None
    chain = block_spd(nv=60, loops=0)  # a path: every supernode has one child, nothing runs side by side
    Lc = lower(chain)
    Sc = SupernodalCholesky(chain.shape[0], Lc.indptr, Lc.indices, ordering="natural")
    assert K.lane_split(Sc.parent, Sc.sptr, Sc.sncol) is None
