"""Block sparsity of the normal matrix JᵀJ of a pose graph, analyzed once per problem.

A pose graph's Jacobian has one row block per edge touching two poses (``ia``, ``ib``; -1 = fixed pose).
Its normal matrix has a p x p block on the diagonal of every free pose and one off-diagonal block per
connected pair. :class:`BlockPattern` computes that pattern (lower triangle, block CSR with the diagonal
block last in each row: the layout the IC(0) kernel takes), the scatter positions of every edge's
contributions, and the permutation to a full symmetric scipy CSC matrix for the direct solver. All of it
once (the "analyze" step); per linearization only the numeric values are recomputed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .ordering import minimum_degree_order


class BlockPattern:
    """Lower-triangular block pattern of JᵀJ over ``nv`` variables of size ``p``.

    ``order`` (optional) is an elimination order: ``order[k]`` = the variable in position k. The pattern,
    its blocks and a factor built on it are then those of P H Pᵀ; :meth:`to_pattern_order` and
    :meth:`from_pattern_order` move a stacked vector between the variables' order and the pattern's.
    Without it the variables keep their own order (the identity).
    """

    def __init__(
        self, ia: np.ndarray, ib: np.ndarray, nv: int, p: int, fill_level: int = 0, order: np.ndarray | None = None
    ):
        ia = np.asarray(ia, dtype=np.int64)
        ib = np.asarray(ib, dtype=np.int64)
        self.nv, self.p = int(nv), int(p)
        self.ia, self.ib = ia, ib
        if isinstance(fill_level, bool) or int(fill_level) != fill_level or fill_level < 0:
            raise ValueError(f"fill_level must be a non-negative integer, got {fill_level!r}")
        self.fill_level = int(fill_level)
        self.order = None
        if order is not None:
            order = np.asarray(order, dtype=np.int64)
            if order.shape != (self.nv,) or not np.array_equal(np.sort(order), np.arange(self.nv)):
                raise ValueError(f"order must be a permutation of the {self.nv} variables")
            if not np.array_equal(order, np.arange(self.nv)):
                self.order = order
                position = np.empty(self.nv, dtype=np.int64)
                position[order] = np.arange(self.nv)
                ia = np.where(ia >= 0, position[np.maximum(ia, 0)], -1)
                ib = np.where(ib >= 0, position[np.maximum(ib, 0)], -1)
        both = (ia >= 0) & (ib >= 0)
        row_off = np.maximum(ia[both], ib[both])
        col_off = np.minimum(ia[both], ib[both])
        free = np.arange(nv)
        rows = np.concatenate([free, row_off])
        cols = np.concatenate([free, col_off])
        keys = np.unique(rows * nv + cols)
        for _ in range(min(self.fill_level, nv)):
            # One level of fill: (i, j) joins the pattern if i and j share an earlier neighbour k < j <= i.
            S = sp.csr_matrix((np.ones(keys.size), (keys // nv, keys % nv)), shape=(nv, nv))
            strict = sp.tril(S, k=-1).tocsr()
            F = sp.tril(strict @ strict.T).tocoo()
            grown = np.unique(np.concatenate([keys, F.row.astype(np.int64) * nv + F.col]))
            if grown.size == keys.size:
                break  # the fixpoint: the complete Cholesky pattern (any further level adds nothing)
            keys = grown
        brow, bcol = keys // nv, keys % nv  # row-major, so within a row columns ascend: diagonal is last
        self.indptr = np.zeros(nv + 1, dtype=np.int64)
        np.add.at(self.indptr, brow + 1, 1)
        self.indptr = np.cumsum(self.indptr)
        self.indices = bcol.astype(np.int64)
        self.block_rows = brow.astype(np.int64)
        self.nnzb = int(keys.size)
        self.diag_pos = self.indptr[1:] - 1
        # Scatter positions of each edge's contributions.
        self.pos_aa = np.where(ia >= 0, self.diag_pos[np.maximum(ia, 0)], -1)
        self.pos_bb = np.where(ib >= 0, self.diag_pos[np.maximum(ib, 0)], -1)
        off_keys = np.maximum(ia, ib) * nv + np.minimum(ia, ib)
        self.pos_ab = np.where(both, np.searchsorted(keys, off_keys), -1)
        # Block at (max, min): AᵀB when ia > ib, else BᵀA.
        self.ab_is_upper = ia < ib
        self._csc_perm: np.ndarray | None = None
        self._csc_template: sp.csc_matrix | None = None

    # -- numeric assembly --------------------------------------------------------------------------------
    def assemble(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Blocks (nnzb, p, p) of JᵀJ in fp64 from the Jacobian blocks A (m,k,p), B (m,k,p)."""
        p = self.p
        A = np.asarray(A, dtype=np.float64)
        B = np.asarray(B, dtype=np.float64)
        AtA = np.einsum("mki,mkj->mij", A, A)
        BtB = np.einsum("mki,mkj->mij", B, B)
        AtB = np.einsum("mki,mkj->mij", A, B)
        AtB = np.where(self.ab_is_upper[:, None, None], np.swapaxes(AtB, 1, 2), AtB)
        pos = np.concatenate([self.pos_aa, self.pos_bb, self.pos_ab])
        vals = np.concatenate([AtA, BtB, AtB]).reshape(-1, p * p)
        keep = pos >= 0
        pos, vals = pos[keep], vals[keep]
        out = np.empty((self.nnzb, p * p))
        for c in range(p * p):
            out[:, c] = np.bincount(pos, weights=vals[:, c], minlength=self.nnzb)
        return out.reshape(self.nnzb, p, p)

    def with_fill(self, level: int) -> BlockPattern:
        """The same Jacobian structure with ``level`` levels of fill (the pattern of an IC(level) factor)."""
        if level == self.fill_level:
            return self
        return BlockPattern(self.ia, self.ib, self.nv, self.p, level, self.order)

    def with_order(self, order: np.ndarray | None) -> BlockPattern:
        """The same Jacobian structure and fill level in another elimination order (None: the variables')."""
        return BlockPattern(self.ia, self.ib, self.nv, self.p, self.fill_level, order)

    def with_min_degree_order(self) -> BlockPattern:
        """The same structure and fill level in the minimum-degree order of its own graph."""
        return self.with_order(minimum_degree_order(self.block_rows, self.indices, self.nv))

    @property
    def is_complete(self) -> bool:
        """True when the fill level reaches the complete Cholesky pattern (``fill_level >= nv``)."""
        return self.fill_level >= self.nv

    def to_pattern_order(self, v: np.ndarray) -> np.ndarray:
        """A stacked vector (nv*p,) or per-variable array (nv, ...) in the pattern's order."""
        if self.order is None:
            return v
        return v.reshape(self.nv, -1)[self.order].reshape(v.shape)

    def from_pattern_order(self, v: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_pattern_order`."""
        if self.order is None:
            return v
        out = np.empty_like(v.reshape(self.nv, -1))
        out[self.order] = v.reshape(self.nv, -1)
        return out.reshape(v.shape)

    # -- scipy CSC (full symmetric) for the direct solver ------------------------------------------------
    def _build_csc(self) -> tuple[np.ndarray, sp.csc_matrix]:
        p, nnzb = self.p, self.nnzb
        r = self.block_rows[:, None, None] * p + np.arange(p)[None, :, None]
        c = self.indices[:, None, None] * p + np.arange(p)[None, None, :]
        r = np.broadcast_to(r, (nnzb, p, p)).ravel()
        c = np.broadcast_to(c, (nnzb, p, p)).ravel()
        src = np.arange(nnzb * p * p)
        off = np.repeat(self.block_rows != self.indices, p * p)
        rows = np.concatenate([r, c[off]])
        cols = np.concatenate([c, r[off]])
        srcs = np.concatenate([src, src[off]])
        n = self.nv * p
        M = sp.csc_matrix((srcs.astype(np.float64) + 1.0, (rows, cols)), shape=(n, n))
        M.sort_indices()
        return M.data.astype(np.int64) - 1, M

    def _csc(self) -> tuple[np.ndarray, sp.csc_matrix]:
        """(data permutation, template) of the full symmetric CSC, built on the first call."""
        if self._csc_perm is None or self._csc_template is None:
            self._csc_perm, self._csc_template = self._build_csc()
        return self._csc_perm, self._csc_template

    def to_csc(self, blocks: np.ndarray, diag_add: np.ndarray | None = None) -> sp.csc_matrix:
        """Full symmetric CSC of the blocks, plus ``diag_add`` (n,) on the scalar diagonal, same pattern every call."""
        perm, template = self._csc()
        b = blocks
        if diag_add is not None:
            b = blocks.copy()
            idx = np.arange(self.p)
            b[self.diag_pos[:, None], idx[None, :], idx[None, :]] += diag_add.reshape(self.nv, self.p)
        M = template.copy()
        M.data = b.ravel()[perm]
        return M

    def csc_pattern(self) -> sp.csc_matrix:
        return self._csc()[1]
