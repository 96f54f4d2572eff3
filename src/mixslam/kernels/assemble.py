"""Numeric assembly of a pose graph's normal matrix JᵀJ in one pass over the Jacobian's row blocks.

Layout (see :class:`mixslam.linear.block_pattern.BlockPattern`)
    Row block ``e`` holds ``A[e]`` and ``B[e]`` (k x p, float64 or float32) acting on variables ``ia[e]`` and
    ``ib[e]``. Its contributions to JᵀJ, computed in fp64, are ``A[e]ᵀA[e]`` to the diagonal block at slot
    ``pos_aa[e]``, ``B[e]ᵀB[e]`` to the diagonal block at ``pos_bb[e]`` and the off-diagonal block at
    ``pos_ab[e]`` (the lower block (max, min)): ``A[e]ᵀB[e]``, or its transpose where ``ab_upper[e]``. A slot of
    -1 marks a contribution that does not exist (fixed pose). A self-loop (``ia[e] == ib[e]``, so ``pos_ab[e] ==
    pos_aa[e]``) adds ``A[e]ᵀB[e] + B[e]ᵀA[e]`` to its diagonal block: with ``(A + B)ᵀ(A + B)`` in all.

Blocks
    :func:`assemble_blocks_nb` writes the (nnzb, p, p) block values.

CSC
    The full symmetric scalar CSC matrix keeps each block's p rows contiguous in every column, so entry (i, j)
    of the stored (lower) block ``b`` lies at ``data[off[b, j] + i]`` and, for an off-diagonal block, its mirror
    in the upper triangle at ``data[offt[b, i] + j]`` (``offt`` is -1 for diagonal blocks).
    :func:`blocks_to_csc_nb` scatters blocks there; :func:`assemble_csc_nb` assembles straight into the CSC
    ``data`` (no block array), both adding a diagonal ``diag_add`` (by pattern variable) when given.

The block sizes are passed as tuples ``(0,) * k`` and ``(0,) * p`` (a tuple's length is part of its numba type:
each shape gets its own specialization with compile-time trip counts, as in :mod:`mixslam.kernels.products`).
Indices are not range-checked: the pattern computes them once, at analysis.

Arithmetic: fp64, with reassociation and contraction allowed (``fastmath`` without the no-NaN/no-inf
assumptions, so NaN and inf in the Jacobian still propagate into the matrix). The results differ from a
fixed-order fp64 sum by rounding only (~1e-16 relative); each diagonal block is exactly symmetric.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

__all__ = ["assemble_blocks_nb", "assemble_csc_nb", "blocks_to_csc_nb", "warm_assemble"]

_FAST = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, fastmath=_FAST)
def _load(X, e, x, K, P):
    """x[r, c] = float64(X[e, r, c])."""
    for r in range(len(K)):
        for c in range(len(P)):
            x[r, c] = np.float64(X[e, r, c])


@njit(cache=True, fastmath=_FAST)
def _gram(x, y, out, K, P):
    """out = xᵀ y (p x p) in fp64."""
    for i in range(len(P)):
        for j in range(len(P)):
            s = 0.0
            for r in range(len(K)):
                s += x[r, i] * y[r, j]
            out[i, j] = s


@njit(cache=True, fastmath=_FAST)
def _sym_gram(x, out, K, P):
    """out = xᵀ x (p x p) in fp64, exactly symmetric (upper triangle computed, mirrored)."""
    for i in range(len(P)):
        for j in range(i, len(P)):
            s = 0.0
            for r in range(len(K)):
                s += x[r, i] * x[r, j]
            out[i, j] = s
            out[j, i] = s


@njit(cache=True, fastmath=_FAST)
def assemble_blocks_nb(A, B, pos_aa, pos_bb, pos_ab, ab_upper, out, K, P):
    """out (nnzb, p, p) fp64 = the blocks of JᵀJ (zeroed here), one pass over the rows."""
    p = len(P)
    k = len(K)
    out[:] = 0.0
    xa = np.empty((k, p))
    xb = np.empty((k, p))
    g = np.empty((p, p))
    for e in range(A.shape[0]):
        s = pos_aa[e]
        t = pos_bb[e]
        u = pos_ab[e]
        if s >= 0:
            _load(A, e, xa, K, P)
            _sym_gram(xa, g, K, P)
            for i in range(p):
                for j in range(p):
                    out[s, i, j] += g[i, j]
        if t >= 0:
            _load(B, e, xb, K, P)
            _sym_gram(xb, g, K, P)
            for i in range(p):
                for j in range(p):
                    out[t, i, j] += g[i, j]
        if u >= 0:
            _gram(xa, xb, g, K, P)  # u >= 0 only where both s, t >= 0: xa, xb are loaded
            if u == s:  # a self-loop (ia == ib): AᵀB + BᵀA on the diagonal block
                for i in range(p):
                    for j in range(p):
                        out[u, i, j] += g[i, j] + g[j, i]
            elif ab_upper[e]:
                for i in range(p):
                    for j in range(p):
                        out[u, j, i] += g[i, j]
            else:
                for i in range(p):
                    for j in range(p):
                        out[u, i, j] += g[i, j]


@njit(cache=True)
def _add_diag(data, off, diag_pos, diag_add, P):
    p = len(P)
    for v in range(diag_pos.shape[0]):
        b = diag_pos[v]
        for c in range(p):
            data[off[b, c] + c] += diag_add[v * p + c]


@njit(cache=True)
def blocks_to_csc_nb(blocks, off, offt, diag_pos, diag_add, data, P):
    """data = the full symmetric CSC values of ``blocks`` (+ ``diag_add`` (nv*p,) on the diagonal if non-empty)."""
    p = len(P)
    for b in range(blocks.shape[0]):
        if offt[b, 0] < 0:  # diagonal block: stored whole, once
            for j in range(p):
                q = off[b, j]
                for i in range(p):
                    data[q + i] = blocks[b, i, j]
        else:
            for j in range(p):
                q = off[b, j]
                for i in range(p):
                    data[q + i] = blocks[b, i, j]
            for i in range(p):
                q = offt[b, i]
                for j in range(p):
                    data[q + j] = blocks[b, i, j]
    if diag_add.shape[0]:
        _add_diag(data, off, diag_pos, diag_add, P)


@njit(cache=True, fastmath=_FAST)
def _scatter_diag(data, off, b, g, P):
    for j in range(len(P)):
        q = off[b, j]
        for i in range(len(P)):
            data[q + i] += g[i, j]


@njit(cache=True, fastmath=_FAST)
def assemble_csc_nb(A, B, pos_aa, pos_bb, pos_ab, ab_upper, off, offt, diag_pos, diag_add, data, K, P):
    """data = the full symmetric CSC values of JᵀJ (+ ``diag_add`` if non-empty), one pass over the rows.

    ``data`` is zeroed here (entries of fill blocks no row touches stay 0)."""
    p = len(P)
    k = len(K)
    data[:] = 0.0
    xa = np.empty((k, p))
    xb = np.empty((k, p))
    g = np.empty((p, p))
    for e in range(A.shape[0]):
        s = pos_aa[e]
        t = pos_bb[e]
        u = pos_ab[e]
        if s >= 0:
            _load(A, e, xa, K, P)
            _sym_gram(xa, g, K, P)
            _scatter_diag(data, off, s, g, P)
        if t >= 0:
            _load(B, e, xb, K, P)
            _sym_gram(xb, g, K, P)
            _scatter_diag(data, off, t, g, P)
        if u == s and u >= 0:  # a self-loop (ia == ib): AᵀB + BᵀA on the diagonal block
            _gram(xa, xb, g, K, P)
            for j in range(p):
                q = off[u, j]
                for i in range(p):
                    data[q + i] += g[i, j] + g[j, i]
        elif u >= 0:
            if ab_upper[e]:
                _gram(xb, xa, g, K, P)  # the stored (lower) block is BᵀA
            else:
                _gram(xa, xb, g, K, P)
            for j in range(p):  # lower copy: column j of the block
                q = off[u, j]
                for i in range(p):
                    data[q + i] += g[i, j]
            for i in range(p):  # upper copy: row i of the block is column i of its transpose
                q = offt[u, i]
                for j in range(p):
                    data[q + j] += g[i, j]
    if diag_add.shape[0]:
        _add_diag(data, off, diag_pos, diag_add, P)


def warm_assemble(k: int, p: int, dtypes=(np.float64, np.float32)) -> float:
    """Compile (or load from numba's cache) the three kernels for k x p blocks in ``dtypes``; returns seconds."""
    t0 = time.perf_counter()
    K, P = (0,) * k, (0,) * p
    one = np.zeros(1, np.int64)
    none = np.full(1, -1, np.int64)
    off = np.zeros((1, p), np.int64)
    offt = np.full((1, p), -1, np.int64)
    for dt in dtypes:
        A = np.zeros((1, k, p), dt)
        blocks = np.empty((1, p, p))
        assemble_blocks_nb(A, A, one * 0, none, none, np.zeros(1, np.bool_), blocks, K, P)
        data = np.empty(p * p)
        assemble_csc_nb(A, A, one * 0, none, none, np.zeros(1, np.bool_), off, offt, one * 0, np.empty(0), data, K, P)
    blocks_to_csc_nb(np.zeros((1, p, p)), off, offt, one * 0, np.empty(0), np.empty(p * p), P)
    return time.perf_counter() - t0
