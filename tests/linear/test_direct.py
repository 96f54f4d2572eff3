"""SparseCholesky: every installed backend on random SPD block-sparse (pose-graph shaped) systems."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mixslam.errors import SolverError
from mixslam.linear.direct import AUTO_ORDER, SparseCholesky, available_backends

BACKENDS = available_backends()


def block_spd(nv=120, d=3, loops=60, seed=0, shift=0.1):
    """H = JᵀJ + shift·I with the block pattern of a chain of nv poses plus random loop closures (pose 0 fixed)."""
    rng = np.random.default_rng(seed)
    a = np.concatenate([np.arange(-1, nv - 1), rng.integers(0, nv, loops)])
    b = np.concatenate([np.arange(0, nv), rng.integers(0, nv, loops)])
    keep = a != b
    a, b = a[keep], b[keep]
    m = a.size
    rows, cols, vals = [], [], []
    r0 = np.arange(m)[:, None, None] * d + np.arange(d)[None, :, None]
    for v in (a, b):
        k = v >= 0
        c0 = v[k][:, None, None] * d + np.arange(d)[None, None, :]
        rr = np.broadcast_to(r0[k], (int(k.sum()), d, d))
        rows.append(rr.ravel())
        cols.append(np.broadcast_to(c0, rr.shape).ravel())
        vals.append(rng.standard_normal(rr.size))
    J = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m * d, nv * d))
    H = (J.T @ J + shift * sp.identity(nv * d)).tocsc()
    H.sort_indices()
    return H


def relres(H, x, b):
    return np.linalg.norm(H @ x - b) / np.linalg.norm(b)


def with_values(H, data):
    return sp.csc_matrix((data, H.indices.copy(), H.indptr.copy()), shape=H.shape)


def set_diag(H, i, value):
    M = H.tolil()
    M[i, i] = value
    return M.tocsc()


def test_scipy_always_available_and_auto_is_first():
    assert "scipy" in BACKENDS
    assert BACKENDS == [b for b in AUTO_ORDER if b in BACKENDS]
    H = block_spd(nv=10)
    assert SparseCholesky(H).backend == BACKENDS[0]
    assert SparseCholesky.available_backends() == BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("d", [3, 6])
def test_solves_vector_and_matrix_rhs(backend, d):
    H = block_spd(nv=150 if d == 3 else 80, d=d, seed=d)
    n = H.shape[0]
    ch = SparseCholesky(H, backend=backend)
    assert ch.backend == backend
    ch.factorize(H)
    rng = np.random.default_rng(1)
    b = rng.standard_normal(n)
    x = ch.solve(b)
    assert x.shape == (n,) and x.dtype == np.float64
    assert relres(H, x, b) < 1e-10
    B = rng.standard_normal((n, 4))
    X = ch.solve(B)
    assert X.shape == (n, 4)
    assert relres(H, X, B) < 1e-10
    np.testing.assert_allclose(X[:, 0], ch.solve(B[:, 0]), rtol=1e-12, atol=1e-14)
    Bf = np.asfortranarray(rng.standard_normal((n, 3)).astype(np.float32))  # other dtype / layout
    assert relres(H, ch.solve(Bf), Bf.astype(np.float64)) < 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_factorize_same_pattern(backend):
    H = block_spd(nv=100, d=3, seed=3)
    n = H.shape[0]
    ch = SparseCholesky(sp.tril(H).tocsc(), backend=backend)  # pattern given as the lower triangle
    rng = np.random.default_rng(2)
    b = rng.standard_normal(n)
    for it in range(4):
        # LM-like: same pattern, new values (scaled, damped differently); full symmetric H each time
        lam = 10.0 ** (-it)
        Hi = with_values(H, H.data * (1 + 0.1 * it)) + lam * sp.diags(H.diagonal())
        Hi = with_values(H, _same_pattern_data(H, Hi))  # identical CSC arrays: the fast path
        ch.factorize(Hi)
        assert relres(Hi, ch.solve(b), b) < 1e-10
    # other formats and triangles of the same pattern go through the slow path and give the same answer
    x = ch.solve(b)
    for M in (Hi.tocsr(), Hi.tocoo(), sp.tril(Hi), sp.triu(Hi).tocsr()):
        ch.factorize(M)
        np.testing.assert_allclose(ch.solve(b), x, rtol=1e-9, atol=1e-12)


def _same_pattern_data(H, M):
    """Values of M at H's pattern positions, in H's CSC order."""
    M = M.tocsc()
    M.sort_indices()
    rows = H.indices
    cols = np.repeat(np.arange(H.shape[1]), np.diff(H.indptr))
    return np.asarray(M[rows, cols]).ravel()


@pytest.mark.parametrize("backend", BACKENDS)
def test_indefinite_raises_and_names_the_column(backend):
    H = block_spd(nv=100, d=3, seed=4)
    ch = SparseCholesky(H, backend=backend)
    ch.factorize(H)
    bad = 137
    Hb = with_values(H, _same_pattern_data(H, set_diag(H, bad, -1e3)))
    with pytest.raises(SolverError, match="not positive definite") as ei:
        ch.factorize(Hb)
    assert ei.value.column in (None, bad)
    if backend != "scipy" or ei.value.column is not None:
        assert ei.value.column == bad
    with pytest.raises(SolverError, match="without a successful factorize"):
        ch.solve(np.ones(H.shape[0]))
    # and it recovers with a good matrix of the same pattern
    ch.factorize(H)
    b = np.ones(H.shape[0])
    assert relres(H, ch.solve(b), b) < 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_singular_raises(backend):
    H = block_spd(nv=60, d=3, seed=5)
    n = H.shape[0]
    ch = SparseCholesky(H, backend=backend)
    with pytest.raises(SolverError):
        ch.factorize(with_values(H, np.zeros(H.nnz)))
    # a pose whose block is all zero (disconnected, no damping): exactly singular
    M = H.tolil()
    M[30:33, :] = 0
    M[:, 30:33] = 0
    with pytest.raises(SolverError):
        ch.factorize(with_values(H, _same_pattern_data(H, M.tocsc())))
    # still usable afterwards
    ch.factorize(H)
    b = np.ones(n)
    assert relres(H, ch.solve(b), b) < 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_and_bad_input(backend):
    H = block_spd(nv=40, d=6, seed=7)
    ch = SparseCholesky(H, backend=backend)
    data = H.data.copy()
    data[5] = np.nan
    with pytest.raises(SolverError, match="non-finite"):
        ch.factorize(with_values(H, data))
    with pytest.raises(SolverError, match="outside the pattern"):
        ch.factorize(H + sp.csc_matrix(([1.0, 1.0], ([0, H.shape[0] - 1], [H.shape[0] - 1, 0])), shape=H.shape))
    with pytest.raises(SolverError, match="shape"):
        ch.factorize(sp.identity(3, format="csc"))
    ch.factorize(H)
    with pytest.raises(SolverError, match="right-hand side"):
        ch.solve(np.ones(H.shape[0] + 1))


def test_unknown_backend_and_bad_pattern():
    with pytest.raises(SolverError, match="unknown"):
        SparseCholesky(block_spd(nv=5), backend="magma")
    with pytest.raises(SolverError, match="square"):
        SparseCholesky(sp.csc_matrix((3, 4)))
    with pytest.raises(SolverError, match="scipy.sparse"):
        SparseCholesky(np.eye(3))
    missing = [b for b in AUTO_ORDER if b not in BACKENDS]
    for b in missing:
        with pytest.raises(SolverError, match="not installed"):
            SparseCholesky(block_spd(nv=5), backend=b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pattern_without_diagonal_and_upper_input(backend):
    # pattern lacking some diagonal entries: the diagonal is added; H given as the upper triangle
    n = 30
    rng = np.random.default_rng(8)
    A = sp.random(n, n, density=0.1, random_state=rng)
    S = (A + A.T).tocsc()
    S.setdiag(0)
    S.eliminate_zeros()
    ch = SparseCholesky(sp.triu(S).tocsc(), backend=backend)
    H = S + sp.diags(np.abs(S).sum(axis=1).A1 + 1.0)  # diagonally dominant: SPD
    ch.factorize(sp.triu(H).tocsc())
    b = rng.standard_normal(n)
    assert relres(H, ch.solve(b), b) < 1e-10
