"""Block incomplete Cholesky IC(0) and its triangular solves.

Matrix format (lower block-CSR)
    A symmetric positive-definite block-sparse matrix of ``n`` blocks of size ``p x p`` is given by its LOWER
    triangle: ``indptr`` (n+1,), ``indices`` (nnzb,) the column block of each stored block, strictly ascending
    within a row with the diagonal block LAST, and ``blocks`` (nnzb, p, p) float64.

Factor format
    ``L`` has the same pattern (no fill-in). Off-diagonal positions hold ``L_ik``; each DIAGONAL position holds the
    inverse ``L_kk^-1`` of the lower-triangular Cholesky factor of the pivot block (itself lower triangular), so
    the solves only multiply. ``L`` may be stored as float64, float32 or uint16 fp16 bits
    (``quantize(L, FP16)[0].view(np.uint16)``); the solves read it through :func:`mixslam.kernels.fp16.load`.

IC(0)
    Left-looking, row by row, in float64: for row ``i`` and each stored ``k < i`` (ascending)
    ``L_ik = (A_ik - Σ_m L_im L_kmᵀ) L_kk^-T`` where ``m`` runs over the columns stored in both rows ``i`` and
    ``k`` (found through a dense column -> position workspace of row ``i``); then
    ``L_ii = chol(A_ii (1+shift on its diagonal) - Σ_k L_ik L_ikᵀ)``. A non-positive (or NaN) pivot stops the
    factorization with ``ok = False`` and the block row; the caller retries with a larger shift.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fp16 import arith_in, arith_rnd, arith_tag, arith_zero, load, round16_ref

__all__ = [
    "ic0_factor",
    "ic_solve",
    "ic0_factor_nb",
    "ic_solve_nb",
    "ic0_factor_ref",
    "ic_solve_ref",
    "check_lower_bcsr",
    "lower_bcsr_to_dense",
    "lower_bcsr_from_dense",
    "two_block_normal_lower",
]


# ---------------------------------------------------------------------------------------------------------
# Factorization
# ---------------------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def ic0_factor_nb(indptr, indices, blocks, shift, L, pos, P):
    """Compiled IC(0) into the preallocated ``L`` (nnzb, p, p) float64; ``pos`` is an int64 (n,) workspace
    filled with -1; ``P`` a tuple of length p (compile-time block size). Returns the first failing block row,
    or -1 on success."""
    n = indptr.shape[0] - 1
    p = len(P)
    S = np.empty((p, p))
    C = np.empty((p, p))
    for i in range(n):
        r0 = indptr[i]
        d = indptr[i + 1] - 1
        for q in range(r0, d):
            pos[indices[q]] = q
        # off-diagonal blocks of row i, ascending column k
        for q in range(r0, d):
            k = indices[q]
            for a in range(p):
                for b in range(p):
                    S[a, b] = blocks[q, a, b]
            for qk in range(indptr[k], indptr[k + 1] - 1):
                qi = pos[indices[qk]]
                if qi >= 0:  # column m is in both rows (and m < k, so L[qi] is already final)
                    for a in range(p):
                        for b in range(p):
                            s = 0.0
                            for c in range(p):
                                s += L[qi, a, c] * L[qk, b, c]
                            S[a, b] -= s
            dk = indptr[k + 1] - 1  # L_kk^-1, lower triangular
            for a in range(p):
                for b in range(p):
                    s = 0.0
                    for c in range(b + 1):
                        s += S[a, c] * L[dk, b, c]
                    L[q, a, b] = s
        # pivot block
        for a in range(p):
            for b in range(p):
                S[a, b] = blocks[d, a, b]
            S[a, a] *= 1.0 + shift
        for q in range(r0, d):
            for a in range(p):
                for b in range(a + 1):
                    s = 0.0
                    for c in range(p):
                        s += L[q, a, c] * L[q, b, c]
                    S[a, b] -= s
        for q in range(r0, d):
            pos[indices[q]] = -1
        # dense Cholesky of the pivot (lower part of S) into C
        for j in range(p):
            s = S[j, j]
            for m in range(j):
                s -= C[j, m] * C[j, m]
            if not (s > 0.0):
                return i
            cjj = np.sqrt(s)
            C[j, j] = cjj
            for a in range(j + 1, p):
                s = S[a, j]
                for m in range(j):
                    s -= C[a, m] * C[j, m]
                C[a, j] = s / cjj
        # inverse of the lower-triangular C, stored in the diagonal position
        for a in range(p):
            for b in range(p):
                L[d, a, b] = 0.0
        for j in range(p):
            L[d, j, j] = 1.0 / C[j, j]
            for a in range(j + 1, p):
                s = 0.0
                for m in range(j, a):
                    s += C[a, m] * L[d, m, j]
                L[d, a, j] = -s / C[a, a]
    return -1


def check_lower_bcsr(indptr, indices, blocks=None) -> int:
    """Validate a lower block-CSR pattern (diagonal last, strictly ascending columns); returns n."""
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    if (
        indptr.ndim != 1
        or indptr.size < 1
        or not np.issubdtype(indptr.dtype, np.integer)
        or not np.issubdtype(indices.dtype, np.integer)
    ):
        raise ValueError("indptr and indices must be 1-D integer arrays")
    n = indptr.size - 1
    if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 1):
        raise ValueError("indptr must start at 0, end at nnzb and give every row at least its diagonal block")
    last = indptr[1:] - 1
    if n and not np.array_equal(indices[last], np.arange(n)):
        bad = int(np.flatnonzero(indices[last] != np.arange(n))[0])
        raise ValueError(
            f"block row {bad}: the last stored block must be the diagonal one (column {bad}), "
            f"got column {int(indices[last[bad]])}"
        )
    rows = np.repeat(np.arange(n), np.diff(indptr))
    inc = np.diff(indices)
    same_row = rows[1:] == rows[:-1]
    if np.any(same_row & (inc <= 0)):
        bad = int(rows[1:][same_row & (inc <= 0)][0])
        raise ValueError(f"block row {bad}: columns must be strictly ascending")
    if blocks is not None:
        b = np.asarray(blocks)
        if b.ndim != 3 or b.shape[0] != indices.size or b.shape[1] != b.shape[2]:
            raise ValueError(f"blocks must have shape (nnzb={indices.size}, p, p), got {b.shape}")
    return n


def ic0_factor(indptr, indices, blocks, shift=0.0):
    """IC(0) of the lower block-CSR matrix with diagonal blocks' diagonals scaled by ``1 + shift``.

    Returns ``(L, ok, bad_row)``: ``L`` (nnzb, p, p) float64 in the factor format (inverse Cholesky factor of
    the pivot in each diagonal position), ``ok`` False on a non-positive pivot in block row ``bad_row``
    (``-1`` when ok; ``L`` is then only partially filled).
    """
    n = check_lower_bcsr(indptr, indices, blocks)
    blocks = np.ascontiguousarray(blocks, dtype=np.float64)
    L = np.zeros_like(blocks)
    pos = np.full(n, -1, np.int64)
    bad = int(ic0_factor_nb(indptr, indices, blocks, float(shift), L, pos, (0,) * blocks.shape[1]))
    return L, bad < 0, bad


# ---------------------------------------------------------------------------------------------------------
# Triangular solves
# ---------------------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def ic_solve_nb(indptr, indices, L, b, x, w, tag, P):
    """(L Lᵀ) x = b in the arithmetic of ``tag``; ``w`` is a (p,) work vector in that arithmetic's dtype and
    ``P`` a tuple of length p (compile-time block size).

    ``x`` may be ``b`` (in place). Order of operations (reproduced by :func:`ic_solve_ref` for fp16):
    forward, row i: ``w = b_i; for each stored k < i (ascending): w[a] -= Σ_c L_ik[a,c] x_k[c] (c ascending);
    x_i[a] = Σ_{c<=a} Linv[a,c] w[c]``; backward, i = n-1..0: ``w = x_i; x_i[a] = Σ_{c>=a} Linv[c,a] w[c];
    for each stored k < i (ascending): x_k[c] -= Σ_a L_ik[a,c] x_i[a] (a ascending)``.
    """
    n = indptr.shape[0] - 1
    p = len(P)
    for i in range(n):
        d = indptr[i + 1] - 1
        for a in range(p):
            w[a] = arith_in(b[i, a], tag)
        for q in range(indptr[i], d):
            k = indices[q]
            for a in range(p):
                s = w[a]
                for c in range(p):
                    s = arith_rnd(s - arith_rnd(arith_in(load(L, (q, a, c)), tag) * arith_in(x[k, c], tag), tag), tag)
                w[a] = s
        for a in range(p):
            s = arith_zero(tag)
            for c in range(a + 1):
                s = arith_rnd(s + arith_rnd(arith_in(load(L, (d, a, c)), tag) * w[c], tag), tag)
            x[i, a] = s
    for i in range(n - 1, -1, -1):
        d = indptr[i + 1] - 1
        for a in range(p):
            w[a] = arith_in(x[i, a], tag)
        for a in range(p):
            s = arith_zero(tag)
            for c in range(a, p):
                s = arith_rnd(s + arith_rnd(arith_in(load(L, (d, c, a)), tag) * w[c], tag), tag)
            x[i, a] = s
        for q in range(indptr[i], d):
            k = indices[q]
            for c in range(p):
                s = arith_in(x[k, c], tag)
                for a in range(p):
                    s = arith_rnd(s - arith_rnd(arith_in(load(L, (q, a, c)), tag) * arith_in(x[i, a], tag), tag), tag)
                x[k, c] = s


def ic_solve(indptr, indices, L, b, x, acc16=False):
    """Solve (L Lᵀ) x = b with an IC factor (see module doc); writes ``x`` (n, p) and returns it.

    ``L``: float64, float32 or uint16 (fp16 bits). ``b``, ``x``: float64 or float32 (n, p); ``x`` may be ``b``.
    Arithmetic in ``x``'s dtype, or emulated fp16 when ``acc16``. The pattern is assumed valid (see
    :func:`check_lower_bcsr`; call it once per pattern, it is not re-checked here).
    """
    if not (
        isinstance(indptr, np.ndarray)
        and isinstance(indices, np.ndarray)
        and np.issubdtype(indptr.dtype, np.integer)
        and np.issubdtype(indices.dtype, np.integer)
    ):
        raise TypeError("indptr and indices must be integer numpy arrays")
    L = np.asarray(L)
    if L.ndim != 3 or L.shape[1] != L.shape[2] or L.shape[0] != indices.shape[0]:
        raise ValueError(f"L must have shape (nnzb={indices.shape[0]}, p, p), got {L.shape}")
    if L.dtype not in (np.float64, np.float32, np.uint16):
        raise TypeError(f"L has dtype {L.dtype}; expected float64, float32 or uint16 (fp16 bits)")
    if not L.flags.c_contiguous:
        raise ValueError("L must be C-contiguous")
    n, p = indptr.shape[0] - 1, L.shape[1]
    for name, v in (("b", b), ("x", x)):
        if not isinstance(v, np.ndarray) or v.shape != (n, p) or v.dtype not in (np.float64, np.float32):
            raise ValueError(
                f"{name} must be a float32/float64 array of shape ({n}, {p}), "
                f"got {getattr(v, 'dtype', None)} {getattr(v, 'shape', type(v))}"
            )
    tag = arith_tag(x.dtype, acc16)
    w = np.empty(p, np.float32 if acc16 else x.dtype)
    ic_solve_nb(indptr, indices, L, b, x, w, tag, (0,) * p)
    return x


# ---------------------------------------------------------------------------------------------------------
# numpy references and helpers
# ---------------------------------------------------------------------------------------------------------
def _stored(L, dtype=np.float64):
    L = np.asarray(L)
    if L.dtype == np.uint16:
        L = L.view(np.float16)
    return L.astype(dtype)


def lower_bcsr_to_dense(indptr, indices, blocks, symmetric=True) -> np.ndarray:
    """Dense matrix from a lower block-CSR (the full symmetric matrix if ``symmetric``, else the lower part)."""
    n = indptr.size - 1
    p = blocks.shape[1]
    M = np.zeros((n * p, n * p), np.float64)
    for i in range(n):
        for q in range(indptr[i], indptr[i + 1]):
            k = indices[q]
            M[i * p : (i + 1) * p, k * p : (k + 1) * p] = blocks[q]
            if symmetric and k != i:
                M[k * p : (k + 1) * p, i * p : (i + 1) * p] = blocks[q].T
    return M


def lower_bcsr_from_dense(M, p, mask):
    """Lower block-CSR of a dense symmetric ``M`` on the block pattern ``mask`` (n x n bool; its lower triangle
    and the diagonal are used). Returns (indptr, indices, blocks)."""
    n = M.shape[0] // p
    mask = np.tril(np.asarray(mask, bool)) | np.eye(n, dtype=bool)
    indptr = np.zeros(n + 1, np.int64)
    indices, blocks = [], []
    for i in range(n):
        cols = np.flatnonzero(mask[i, : i + 1])
        indices.extend(cols)
        blocks.extend(M[i * p : (i + 1) * p, c * p : (c + 1) * p] for c in cols)
        indptr[i + 1] = len(indices)
    return indptr, np.asarray(indices, np.int64), np.ascontiguousarray(np.array(blocks, np.float64))


def two_block_normal_lower(A, ia, B, ib, n, diag=0.0):
    """Lower block-CSR of JᵀJ (+ ``diag`` I) for a two-block Jacobian acting on ONE variable set (pose graphs:
    ``ia``/``ib`` index the same ``n`` poses, ``pa == pb``). Vectorized numpy; used by tests and benchmarks."""
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    p = A.shape[2]
    both = (ia >= 0) & (ib >= 0) & (ia != ib)
    r = np.maximum(ia[both], ib[both])
    c = np.minimum(ia[both], ib[both])
    keys = np.unique(np.concatenate([r * n + c, np.arange(n) * (n + 1)]))
    rows, cols = keys // n, keys % n
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, rows + 1, 1)
    indptr = np.cumsum(indptr)
    blocks = np.zeros((keys.size, p, p))
    AtA = np.einsum("eka,ekb->eab", A, A)
    BtB = np.einsum("eka,ekb->eab", B, B)
    ma, mb = ia >= 0, ib >= 0
    np.add.at(blocks, np.searchsorted(keys, ia[ma] * (n + 1)), AtA[ma])
    np.add.at(blocks, np.searchsorted(keys, ib[mb] * (n + 1)), BtB[mb])
    self_loop = (ia >= 0) & (ia == ib)
    if self_loop.any():
        AtB = np.einsum("eka,ekb->eab", A[self_loop], B[self_loop])
        np.add.at(blocks, np.searchsorted(keys, ia[self_loop] * (n + 1)), AtB + AtB.transpose(0, 2, 1))
    ia2, ib2 = ia[both], ib[both]
    AtB = np.einsum("eka,ekb->eab", A[both], B[both])  # block (ia, ib) of JᵀJ
    qpos = np.searchsorted(keys, r * n + c)
    np.add.at(blocks, qpos, np.where((ia2 > ib2)[:, None, None], AtB, AtB.transpose(0, 2, 1)))
    blocks[indptr[1:] - 1] += diag * np.eye(p)
    return indptr, cols.astype(np.int64), blocks


def ic0_factor_ref(indptr, indices, blocks, shift=0.0):
    """numpy twin of :func:`ic0_factor` (right-looking, on a dict of blocks; a different algorithm)."""
    n = indptr.size - 1
    p = blocks.shape[1]
    W = {}
    colrows = [[] for _ in range(n)]
    for i in range(n):
        for q in range(indptr[i], indptr[i + 1]):
            k = int(indices[q])
            W[(i, k)] = np.array(blocks[q], np.float64)
            if k < i:
                colrows[k].append(i)
        W[(i, i)][np.diag_indices(p)] *= 1.0 + shift
    Linv = {}
    for k in range(n):
        D = W[(k, k)]
        try:
            Lkk = np.linalg.cholesky(np.tril(D) + np.tril(D, -1).T)
        except np.linalg.LinAlgError:
            return None, False, k
        Linv[k] = np.linalg.inv(Lkk)
        for i in colrows[k]:
            W[(i, k)] = W[(i, k)] @ Linv[k].T
        for i in colrows[k]:
            for j in colrows[k]:
                if j <= i and (i, j) in W:
                    W[(i, j)] = W[(i, j)] - W[(i, k)] @ W[(j, k)].T
    L = np.empty((indices.size, p, p))
    for i in range(n):
        for q in range(indptr[i], indptr[i + 1]):
            k = int(indices[q])
            L[q] = np.tril(Linv[i]) if k == i else W[(i, k)]
    return L, True, -1


def _ic_solve16_ref(indptr, indices, L, b):
    """Emulated fp16 triangular solves in the kernel's order (vectorized over the independent index)."""
    r16 = round16_ref
    n = indptr.size - 1
    Lf = r16(_stored(L, np.float32))
    x = r16(np.asarray(b, np.float32)).copy()
    p = Lf.shape[1]
    for i in range(n):
        d = indptr[i + 1] - 1
        w = x[i].copy()
        for q in range(indptr[i], d):
            k = indices[q]
            for c in range(p):
                w = r16(w - r16(Lf[q, :, c] * x[k, c]))
        s = np.zeros(p, np.float32)
        for c in range(p):
            s = np.where(np.arange(p) >= c, r16(s + r16(Lf[d, :, c] * w[c])), s)
        x[i] = s
    for i in range(n - 1, -1, -1):
        d = indptr[i + 1] - 1
        w = x[i].copy()
        s = np.zeros(p, np.float32)
        for c in range(p):
            s = np.where(np.arange(p) <= c, r16(s + r16(Lf[d, c, :] * w[c])), s)
        x[i] = s
        for q in range(indptr[i], d):
            k = indices[q]
            s = x[k].copy()
            for a in range(p):
                s = r16(s - r16(Lf[q, a, :] * x[i, a]))
            x[k] = s
    return x


def ic_solve_ref(indptr, indices, L, b, acc16=False):
    """numpy/scipy twin of :func:`ic_solve`; returns x.

    Non-fp16 arithmetic: assembles the lower factor (diagonal blocks = inverse of the stored L_kk^-1, all from the
    stored values widened to float64) and runs ``scipy.sparse.linalg.spsolve_triangular`` twice, in float64.
    ``acc16``: the kernel's order of operations in emulated fp16 (bit-exact twin).
    """
    if acc16:
        return _ic_solve16_ref(indptr, indices, L, b)
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve_triangular

    Ls = _stored(L, np.float64).copy()
    diag = indptr[1:] - 1
    Ls[diag] = np.tril(np.linalg.inv(np.tril(Ls[diag])))  # inv may leave ~1e-16 above the diagonal
    n, p = indptr.size - 1, Ls.shape[1]
    Lm = sp.bsr_matrix((Ls, indices, indptr), shape=(n * p, n * p)).tocsr()
    Lm.eliminate_zeros()
    bb = np.asarray(b, np.float64).reshape(-1)
    y = spsolve_triangular(Lm, bb, lower=True)
    x = spsolve_triangular(Lm.T.tocsr(), y, lower=False)
    return x.reshape(n, p)
