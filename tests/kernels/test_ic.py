"""Block IC(0) and its triangular solves against numpy/scipy twins, in every storage format."""
from __future__ import annotations

import numpy as np
import pytest

from mixslam.kernels.ic import (
    check_lower_bcsr,
    ic0_factor,
    ic0_factor_ref,
    ic_solve,
    ic_solve_ref,
    lower_bcsr_from_dense,
    lower_bcsr_to_dense,
    two_block_normal_lower,
)
from mixslam.precision import Precision
from mixslam.storage import quantize

P = 3
FORMATS = {  # factor storage, vector dtype, acc16
    "fp64": (Precision.FP64, np.float64, False),
    "fp32": (Precision.FP32, np.float32, False),
    "mixed": (Precision.FP16, np.float32, False),
    "fp16": (Precision.FP16, np.float32, True),
}


def _graph_system(n, extra, seed, diag=0.05):
    """SPD lower block-CSR: JᵀJ of random two-block rows on a chain + random extra edges, + diag I."""
    rng = np.random.default_rng(seed)
    ia = np.arange(n - 1)
    ib = np.arange(1, n)
    lc = rng.integers(0, n, (2 * extra, 2))
    lc = lc[lc[:, 0] != lc[:, 1]][:extra]
    ia = np.concatenate([ia, lc[:, 0]])
    ib = np.concatenate([ib, lc[:, 1]])
    R = ia.size
    A = rng.standard_normal((R, P, P))
    B = -np.eye(P) + 0.3 * rng.standard_normal((R, P, P))
    return (A, ia, B, ib), two_block_normal_lower(A, ia, B, ib, n, diag=diag)


@pytest.fixture(scope="module")
def system():
    return _graph_system(40, 25, seed=0)


def _dense_L(indptr, indices, L):
    """Assembled lower factor (diagonal blocks = inverse of the stored L_kk^-1) from stored values."""
    Lv = (L.view(np.float16) if L.dtype == np.uint16 else L).astype(np.float64)
    d = indptr[1:] - 1
    Lv[d] = np.tril(np.linalg.inv(np.tril(Lv[d])))
    return lower_bcsr_to_dense(indptr, indices, Lv, symmetric=False)


def test_two_block_normal_lower_is_JtJ(system):
    (A, ia, B, ib), (indptr, indices, blocks) = system
    n = indptr.size - 1
    check_lower_bcsr(indptr, indices, blocks)
    J = np.zeros((P * ia.size, P * n))
    for e in range(ia.size):
        J[P * e:P * e + P, P * ia[e]:P * ia[e] + P] += A[e]
        J[P * e:P * e + P, P * ib[e]:P * ib[e] + P] += B[e]
    M = lower_bcsr_to_dense(indptr, indices, blocks)
    np.testing.assert_allclose(M, J.T @ J + 0.05 * np.eye(P * n), rtol=0, atol=1e-12 * np.abs(M).max())


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_ic0_matches_reference(system, shift):
    _, (indptr, indices, blocks) = system
    L, ok, bad = ic0_factor(indptr, indices, blocks, shift)
    Lr, okr, badr = ic0_factor_ref(indptr, indices, blocks, shift)
    assert ok and okr and bad == badr == -1
    scale = np.abs(Lr).max(axis=(1, 2), keepdims=True)
    assert np.all(np.abs(L - Lr) <= 1e3 * Precision.FP64.unit_roundoff * scale)
    d = indptr[1:] - 1
    assert np.all(np.triu(L[d], 1) == 0)  # the stored inverse pivots are lower triangular


def test_shift_scales_the_diagonal_of_the_diagonal_blocks(system):
    _, (indptr, indices, blocks) = system
    b2 = blocks.copy()
    d = indptr[1:] - 1
    i = np.arange(P)
    b2[d[:, None], i, i] *= 1.7
    L1, _, _ = ic0_factor(indptr, indices, blocks, 0.7)
    L2, _, _ = ic0_factor(indptr, indices, b2, 0.0)
    np.testing.assert_allclose(L1, L2, rtol=1e-13, atol=1e-14)


def test_ic0_is_exact_cholesky_on_fill_closed_pattern():
    """Block tridiagonal (chain) pattern: no fill, so IC(0) is the exact block Cholesky factor."""
    n = 30
    (_, _, _, _), (indptr, indices, blocks) = _graph_system(n, 0, seed=4)
    assert np.all(np.diff(indptr) <= 2)
    L, ok, _ = ic0_factor(indptr, indices, blocks)
    assert ok
    M = lower_bcsr_to_dense(indptr, indices, blocks)
    C = np.linalg.cholesky(M)
    Ld = _dense_L(indptr, indices, L)
    np.testing.assert_allclose(Ld, C, rtol=0, atol=1e3 * Precision.FP64.unit_roundoff * np.abs(C).max())
    b = np.random.default_rng(1).standard_normal((n, P))
    x = np.empty_like(b)
    ic_solve(indptr, indices, L, b, x)
    xs = np.linalg.solve(M, b.reshape(-1)).reshape(n, P)
    cond = np.linalg.cond(M)
    assert np.linalg.norm(x - xs) <= 10 * n * P * Precision.FP64.unit_roundoff * cond * np.linalg.norm(xs)


def test_ic0_reports_the_first_bad_pivot_and_shift_repairs_it(system):
    _, (indptr, indices, blocks) = system
    n = indptr.size - 1
    j = 17
    # make pivot j indefinite: its diagonal block minus the Schur complement from earlier rows
    L, _, _ = ic0_factor(indptr, indices, blocks)
    S = sum(L[q] @ L[q].T for q in range(indptr[j], indptr[j + 1] - 1))
    bad_blocks = blocks.copy()
    bad_blocks[indptr[j + 1] - 1] = 0.5 * S
    _, ok, bad = ic0_factor(indptr, indices, bad_blocks)
    _, okr, badr = ic0_factor_ref(indptr, indices, bad_blocks)
    assert not ok and bad == j and not okr and badr == j
    shifts = [10.0**e for e in range(-3, 4)]
    oks = [ic0_factor(indptr, indices, bad_blocks, s)[1] for s in shifts]
    assert any(oks)
    nan_blocks = blocks.copy()
    nan_blocks[indptr[5 + 1] - 1, 0, 0] = np.nan
    _, ok, bad = ic0_factor(indptr, indices, nan_blocks)
    assert not ok and bad == 5
    assert n > j


def test_pattern_validation():
    M = np.eye(6)
    mask = np.array([[1, 0], [1, 1]], bool)
    indptr, indices, blocks = lower_bcsr_from_dense(M, 3, mask)
    assert check_lower_bcsr(indptr, indices, blocks) == 2
    with pytest.raises(ValueError, match="diagonal"):
        check_lower_bcsr(indptr, indices[::-1].copy(), blocks)
    with pytest.raises(ValueError, match="diagonal"):
        ic0_factor(np.array([0, 1, 2]), np.array([0, 0]), np.zeros((2, 3, 3)))


def _store(L, prec):
    q, _ = quantize(L, prec)
    return q.view(np.uint16) if prec is Precision.FP16 else np.ascontiguousarray(q)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_ic_solve(system, fmt):
    _, (indptr, indices, blocks) = system
    n = indptr.size - 1
    prec, vd, acc16 = FORMATS[fmt]
    L, ok, _ = ic0_factor(indptr, indices, blocks)
    assert ok
    Ls = _store(L, prec)
    b = np.random.default_rng(3).standard_normal((n, P)).astype(vd)
    x = np.full((n, P), np.nan, vd)
    ic_solve(indptr, indices, Ls, b, x, acc16)
    if acc16:
        want = ic_solve_ref(indptr, indices, Ls, b, acc16=True)
        assert np.array_equal(x, want)
    else:
        want = ic_solve_ref(indptr, indices, Ls, b)
        Ld = _dense_L(indptr, indices, Ls)
        # backward-stable triangular solves: relative error <~ (row length) * u * cond(L) in practice
        u = Precision.FP64.unit_roundoff if vd == np.float64 else Precision.FP32.unit_roundoff
        row = P * int(np.diff(indptr).max())
        cond = np.linalg.cond(Ld)  # observed errors are ~1e3 below this
        err = np.linalg.norm(x - want) / np.linalg.norm(want)
        assert err <= 4 * row * u * cond, (err, cond)
        # and it is a solve: L Lᵀ x ≈ b
        r = Ld @ (Ld.T @ x.astype(np.float64).reshape(-1)) - b.reshape(-1)
        assert np.linalg.norm(r) <= 4 * row * u * cond * np.linalg.norm(b)
    # in place (x is b) gives the same bits
    xb = b.copy()
    ic_solve(indptr, indices, Ls, xb, xb, acc16)
    assert np.array_equal(xb, x)


def test_ic_preconditions_the_system(system):
    """The IC(0) solve is a good approximate inverse: ||M z - b|| well below ||b||."""
    _, (indptr, indices, blocks) = system
    n = indptr.size - 1
    L, _, _ = ic0_factor(indptr, indices, blocks)
    M = lower_bcsr_to_dense(indptr, indices, blocks)
    b = np.random.default_rng(9).standard_normal((n, P))
    z = ic_solve(indptr, indices, L, b, np.empty_like(b))
    assert np.linalg.norm(M @ z.reshape(-1) - b.reshape(-1)) < 0.9 * np.linalg.norm(b)
    Lq = _store(L, Precision.FP16)
    z16 = ic_solve(indptr, indices, Lq, b.astype(np.float32), np.empty((n, P), np.float32))
    assert np.linalg.norm(z16 - z) <= 50 * Precision.FP16.unit_roundoff * np.linalg.norm(z)
