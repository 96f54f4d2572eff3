"""The Schur complement kernels (pairs, point blocks, reduction, solves) and the SIMD micro-kernel, against
numpy, in fp64 and fp32 (tolerances from the unit roundoff of the format under test)."""

import numpy as np
import pytest
from numba import njit

from mixslam.kernels.products import static_size
from mixslam.kernels.schur import (
    camera_pairs,
    padded_width,
    schur_back,
    schur_point_blocks,
    schur_reduce,
    schur_rhs,
)
from mixslam.kernels.simd import rank3_update, rank3_update_ref

DTYPES = [np.float64, np.float32]


def _u(dt):
    return float(np.finfo(dt).eps) / 2


@njit
def _rank3(acc, Z, e, f, PC, W):
    rank3_update(acc, Z, e, f, PC, W)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("pc", [9, 6])
def test_rank3_update_matches_numpy(dt, pc):
    rng = np.random.default_rng(0)
    w = padded_width(pc)
    Z = rng.normal(size=(5, 3, w)).astype(dt)
    acc = rng.normal(size=(pc, w)).astype(dt)
    ref = acc.astype(np.float64).copy()
    rank3_update_ref(ref, Z.astype(np.float64), 1, 3, pc)
    _rank3(acc, Z, 1, 3, static_size(pc), static_size(w))
    scale = np.abs(acc).max() + 3 * np.abs(Z).max() ** 2
    np.testing.assert_allclose(acc, ref, rtol=0, atol=8 * _u(dt) * scale)
    assert acc.dtype == dt


def _problem(seed=0, nc=4, npts=7, pc=9):
    """Observations with a fixed camera (-1), a fixed point, and one point seen twice by one camera."""
    rng = np.random.default_rng(seed)
    ia, ib = [], []
    for j in range(npts):
        for c in rng.choice(nc, size=rng.integers(1, nc + 1), replace=False):
            ia.append(c)
            ib.append(j)
    ia += [2, -1, 1]
    ib += [0, 1, -1]
    ia, ib = np.array(ia, np.int64), np.array(ib, np.int64)
    m = ia.size
    A = rng.normal(size=(m, 2, pc))
    B = rng.normal(size=(m, 2, 3))
    dc = rng.uniform(0.5, 2.0, size=(nc, pc))
    dp = rng.uniform(0.5, 2.0, size=(npts, 3))
    return A, B, ia, ib, dc, dp


def _dense_H(A, B, ia, ib, dc, dp):
    nc, pc = dc.shape
    npts = dp.shape[0]
    n = nc * pc + npts * 3
    J = np.zeros((2 * A.shape[0], n))
    for e in range(A.shape[0]):
        if ia[e] >= 0:
            J[2 * e : 2 * e + 2, ia[e] * pc : (ia[e] + 1) * pc] = A[e]
        if ib[e] >= 0:
            o = nc * pc + ib[e] * 3
            J[2 * e : 2 * e + 2, o : o + 3] = B[e]
    return J.T @ J + np.diag(np.concatenate([dc.ravel(), dp.ravel()]))


@pytest.mark.parametrize("dt", DTYPES)
def test_reduced_camera_system_and_solve_match_dense(dt):
    A, B, ia, ib, dc, dp = _problem()
    nc, pc = dc.shape
    npts = dp.shape[0]
    H = _dense_H(A, B, ia, ib, dc, dp)
    nC = nc * pc
    S_ref = H[:nC, :nC] - H[:nC, nC:] @ np.linalg.solve(H[nC:, nC:], H[nC:, :nC])
    w = padded_width(pc)
    pe, pf, bptr, bkey = camera_pairs(ia, ib, nc, npts)
    # every unordered pair of observations of one point, distinct cameras once, same camera both ways
    assert np.all(ia[pe] <= ia[pf]) and np.all(np.diff(bkey) > 0)
    Z = np.empty((A.shape[0], 3, w), dt)
    U, Linv, npd = schur_point_blocks(
        A.astype(dt), ia, B.astype(dt), ib, dc.astype(dt), dp.astype(dt), Z, static_size(pc), static_size(w)
    )
    assert npd == 0 and np.all(Z[:, :, pc:] == 0)
    S = schur_reduce(U, Z, pe, pf, bptr, bkey, static_size(pc), static_size(w))
    assert S.dtype == dt
    tol = 200 * _u(dt) * np.abs(H).max()
    np.testing.assert_allclose(S, S_ref, rtol=0, atol=tol)
    # a solve with H through the Schur kernels
    rng = np.random.default_rng(1)
    r = rng.normal(size=H.shape[0])
    rc, rp = r[:nC].reshape(nc, pc).astype(dt), r[nC:].reshape(npts, 3).astype(dt)
    bc, t, dpt = np.empty((nc, pc), dt), np.empty((npts, 3), dt), np.empty((npts, 3), dt)
    schur_rhs(Z, Linv, ia, ib, rc, rp, bc, t)
    xc = np.linalg.solve(S.astype(np.float64), bc.ravel().astype(np.float64)).astype(dt)
    schur_back(Z, Linv, ia, ib, t, xc.reshape(nc, pc), dpt)
    x = np.concatenate([xc, dpt.ravel()]).astype(np.float64)
    expect = np.linalg.solve(H, r)
    kappa = np.linalg.cond(H)
    err = np.linalg.norm(x - expect) / np.linalg.norm(expect)
    assert err < 100 * _u(dt) * kappa


@pytest.mark.parametrize("storage,dt", [(np.float64, np.float64), (np.float32, np.float32), (np.float16, np.float32)])
def test_implicit_schur_product_rhs_and_back_substitution_match_dense(storage, dt):
    from mixslam.kernels.schur import implicit_back, implicit_point_blocks, implicit_rhs, implicit_schur_matvec

    A, B, ia, ib, dc, dp = _problem(seed=3)
    A, B = A.astype(storage).astype(np.float64), B.astype(storage).astype(np.float64)  # the stored values
    nc, pc = dc.shape
    npts = dp.shape[0]
    H = _dense_H(A, B, ia, ib, dc, dp)
    nC = nc * pc
    S_ref = H[:nC, :nC] - H[:nC, nC:] @ np.linalg.solve(H[nC:, nC:], H[nC:, :nC])
    As, Bs = A.astype(storage), B.astype(storage)
    if storage == np.float16:
        As, Bs = As.view(np.uint16), Bs.view(np.uint16)
    Linv, M = np.empty((npts, 3, 3), dt), np.empty((nc, pc, pc), dt)
    assert implicit_point_blocks(As, ia, Bs, ib, dc.astype(dt), dp.astype(dt), Linv, M) == 0
    u = _u(dt)
    # Schur-Jacobi blocks: the diagonal blocks of S, per observation (exact for a camera that sees each of its
    # points once; _problem's camera 2 sees point 0 twice, where the block leaves out the cross terms)
    for c in (0, 1, 3):
        blk = S_ref[c * pc : (c + 1) * pc, c * pc : (c + 1) * pc]
        np.testing.assert_allclose(M[c], blk, rtol=0, atol=300 * u * np.abs(H).max())
    x = np.random.default_rng(4).normal(size=(nc, pc))
    out = np.empty((nc, pc), dt)
    implicit_schur_matvec(
        As, ia, Bs, ib, Linv, dc.astype(dt), x.astype(dt), out, np.empty((A.shape[0], 2), dt), np.empty((npts, 3), dt)
    )
    expect = S_ref @ x.ravel()
    assert np.linalg.norm(out.ravel() - expect) <= 300 * u * np.linalg.cond(H) ** 0.5 * np.abs(
        H
    ).max() * np.linalg.norm(x)
    # right-hand side and back-substitution (fp64 only: they use the unquantized Jacobian in the solver)
    if dt == np.float64 and storage == np.float64:
        r = np.random.default_rng(5).normal(size=H.shape[0])
        rc, rp = r[:nC].reshape(nc, pc), r[nC:].reshape(npts, 3)
        bc, t, xp = np.empty((nc, pc)), np.empty((npts, 3)), np.empty((npts, 3))
        implicit_rhs(As, ia, Bs, ib, Linv, rc, rp, bc, t)
        xc = np.linalg.solve(S_ref, bc.ravel()).reshape(nc, pc)
        implicit_back(As, ia, Bs, ib, Linv, rp, xc, xp, t)
        np.testing.assert_allclose(
            np.concatenate([xc.ravel(), xp.ravel()]), np.linalg.solve(H, r), rtol=1e-8, atol=1e-10
        )


@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_chunked_elimination_does_not_depend_on_threads(dt):
    """Enough observations for several chunks: U, Linv, Z, S and the reduced right-hand side and
    back-substitution are the same bits on one thread and on two, and U matches the one-pass sums to roundoff
    (the chunks add their partial sums in chunk order)."""
    from mixslam.kernels.threads import OBSERVATION_ROWS, chunk_count

    rng = np.random.default_rng(3)
    nc, npts, pc = 6, 9000, 9
    ib = np.repeat(np.arange(npts), 4)
    ia = np.concatenate([rng.choice(nc, size=4, replace=False) for _ in range(npts)])
    ia[::97] = -1  # some observations of a fixed camera
    m = ia.size
    assert chunk_count(m, OBSERVATION_ROWS) >= 3
    A = rng.normal(size=(m, 2, pc)).astype(dt)
    B = rng.normal(size=(m, 2, 3)).astype(dt)
    dc = rng.uniform(0.5, 2.0, size=(nc, pc)).astype(dt)
    dp = rng.uniform(0.5, 2.0, size=(npts, 3)).astype(dt)
    w = padded_width(pc)
    pairs = camera_pairs(ia, ib, nc, npts)
    out = {}
    for threads in (1, 2):
        Z = np.empty((m, 3, w), dt)
        U, Linv, npd = schur_point_blocks(A, ia, B, ib, dc, dp, Z, static_size(pc), static_size(w), threads=threads)
        S = schur_reduce(U, Z, *pairs, static_size(pc), static_size(w), threads=threads)
        rc, rp = dc * 3, dp * 5  # any right-hand side
        bc, t, dpt = np.empty_like(rc), np.empty_like(rp), np.empty_like(rp)
        schur_rhs(Z, Linv, ia, ib, rc, rp, bc, t, threads=threads)
        schur_back(Z, Linv, ia, ib, t.copy(), bc, dpt, threads=threads)
        out[threads] = (U, Linv, Z, S, bc, t, dpt)
        assert npd == 0
    for a, b in zip(out[1], out[2]):
        assert np.array_equal(a, b)
    U = out[1][0]
    U_ref = np.zeros((nc, pc, pc))
    keep = ia >= 0
    np.add.at(U_ref, ia[keep], np.einsum("eri,erj->eij", A[keep].astype(np.float64), A[keep].astype(np.float64)))
    U_ref[:, np.arange(pc), np.arange(pc)] += dc
    np.testing.assert_allclose(U, U_ref, rtol=0, atol=50 * _u(dt) * np.abs(U_ref).max() * m**0.5)
