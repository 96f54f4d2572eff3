"""Block sparsity of the normal matrix JᵀJ of a pose graph, analyzed once per problem.

A pose graph's Jacobian has one row block per edge touching two poses (``ia``, ``ib``; -1 = fixed pose).
Its normal matrix has a p x p block on the diagonal of every free pose and one off-diagonal block per
connected pair. :class:`BlockPattern` computes that pattern (lower triangle, block CSR with the diagonal
block last in each row: the layout the IC(0) kernel takes), the scatter positions of every edge's
contributions, and the positions of every block entry in a full symmetric scipy CSC matrix for the direct
solver. All of it once (the "analyze" step); per linearization only the numeric values are recomputed, by the
one-pass kernels of :mod:`mixslam.kernels.assemble` (:meth:`BlockPattern.assemble_csc` goes from the Jacobian
straight to the damped CSC matrix without forming the blocks).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..kernels.assemble import assemble_blocks_nb, assemble_csc_nb, blocks_to_csc_nb, warm_assemble
from .ordering import minimum_degree_order, sorted_unique

_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def _operand(X: np.ndarray) -> np.ndarray:
    """A Jacobian block array as the kernels take it: C-contiguous float64 or float32 (others widened)."""
    X = np.asarray(X)
    return np.ascontiguousarray(X if X.dtype in _FLOATS else X.astype(np.float64))


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
        keys = sorted_unique(rows * nv + cols)
        for _ in range(min(self.fill_level, nv)):
            # One level of fill: (i, j) joins the pattern if i and j share an earlier neighbour k < j <= i.
            S = sp.csr_matrix((np.ones(keys.size), (keys // nv, keys % nv)), shape=(nv, nv))
            strict = sp.tril(S, k=-1).tocsr()
            F = sp.tril(strict @ strict.T).tocoo()
            grown = sorted_unique(np.concatenate([keys, F.row.astype(np.int64) * nv + F.col]))
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
        self._csc_cache: tuple[sp.csc_matrix, np.ndarray, np.ndarray] | None = None

    # -- numeric assembly --------------------------------------------------------------------------------
    def _check_jacobian(self, A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        A, B = _operand(A), _operand(B)
        m = self.pos_aa.shape[0]
        if A.ndim != 3 or A.shape[0] != m or A.shape[2] != self.p or B.shape != A.shape:
            raise ValueError(
                f"A and B must both have shape ({m}, k, {self.p}) for this pattern, got {A.shape} and {B.shape}"
            )
        if B.dtype != A.dtype:  # one specialization per dtype: mixed inputs are widened
            A, B = A.astype(np.float64), B.astype(np.float64)
        return A, B

    def assemble(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Blocks (nnzb, p, p) of JᵀJ in fp64 from the Jacobian blocks A (m,k,p), B (m,k,p) (any float dtype;
        the products and sums are fp64), one pass over the rows."""
        A, B = self._check_jacobian(A, B)
        p = self.p
        out = np.empty((self.nnzb, p, p))
        assemble_blocks_nb(
            A, B, self.pos_aa, self.pos_bb, self.pos_ab, self.ab_is_upper, out, (0,) * A.shape[1], (0,) * p
        )
        return out

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
    def _build_csc(self) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
        """(template, off, offt): the full symmetric CSC holds entry (i, j) of stored block b at ``data[off[b, j]
        + i]`` (a block's p rows are contiguous in each of its columns) and, for an off-diagonal block, its
        mirror in the upper triangle at ``data[offt[b, i] + j]`` (offt = -1 for diagonal blocks). The
        template's values are 1 + the flat index (b*p*p + i*p + j) of the block entry each position holds.

        Built at the block level: the full block pattern (each stored block and the mirror of each
        off-diagonal one) sorted by (block column, block row) gives every block's rank k in its block column
        J; scalar column J*p + c of the CSC then starts at p*p*bptr[J] + c*p*cnt[J] and holds that block's
        rows from p*(k - bptr[J]) on. O(nnz) numpy, no scalar-level sort."""
        p, nnzb, nv = self.p, self.nnzb, self.nv
        br, bc = self.block_rows, self.indices  # stored lower blocks: br >= bc, unique
        off_diag = np.nonzero(br != bc)[0]
        fr = np.concatenate([br, bc[off_diag]])  # full block pattern: stored, then mirrors
        fc = np.concatenate([bc, br[off_diag]])
        rank = np.argsort(fc * nv + fr, kind="stable")  # rank[k] = the full entry in sorted position k
        where = np.empty(rank.size, dtype=np.int64)
        where[rank] = np.arange(rank.size)
        cnt = np.bincount(fc, minlength=nv).astype(np.int64)
        bptr = np.zeros(nv + 1, dtype=np.int64)
        np.cumsum(cnt, out=bptr[1:])
        c = np.arange(p)
        # first CSC position of each (full entry, scalar column c of its block column)
        start = p * p * bptr[fc][:, None] + c[None, :] * p * cnt[fc][:, None] + p * (where - bptr[fc])[:, None]
        off_b = np.ascontiguousarray(start[:nnzb])
        offt_b = np.full((nnzb, p), -1, dtype=np.int64)
        offt_b[off_diag] = start[nnzb:]
        n = nv * p
        indptr = np.zeros(n + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(np.repeat(p * cnt, p))
        # rows: scalar column J*p + c lists the sorted entries bptr[J] .. bptr[J+1] of block column J, p rows each
        sorted_rows = fr[rank]
        seg_start, seg_len = np.repeat(bptr[:-1], p), np.repeat(cnt, p)
        seg_off = np.zeros(seg_len.size, dtype=np.int64)
        np.cumsum(seg_len[:-1], out=seg_off[1:])
        ent = np.repeat(seg_start - seg_off, seg_len) + np.arange(int(seg_len.sum()), dtype=np.int64)
        indices = (sorted_rows[ent][:, None] * p + c[None, :]).ravel()
        # values: 1 + flat block-entry index; stored block b entry (i, j) at off[b, j] + i, mirror at offt[b, i] + j
        data = np.empty(indices.size, dtype=np.float64)
        flat = np.arange(nnzb * p * p, dtype=np.float64).reshape(nnzb, p, p) + 1.0
        data[(off_b[:, None, :] + c[None, :, None]).ravel()] = flat.ravel()
        od = offt_b[off_diag]
        data[(od[:, :, None] + c[None, None, :]).ravel()] = flat[off_diag].ravel()
        M = sp.csc_matrix((data, indices, indptr), shape=(n, n))
        M.has_sorted_indices = True
        return M, off_b, offt_b

    def _csc(self) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
        """(template, off, offt) of the full symmetric CSC (:meth:`_build_csc`), built on the first call."""
        if self._csc_cache is None:
            self._csc_cache = self._build_csc()
        return self._csc_cache

    def _diag_add(self, diag_add: np.ndarray | None) -> np.ndarray:
        if diag_add is None:
            return np.empty(0)
        d = np.ascontiguousarray(diag_add, dtype=np.float64).reshape(-1)
        if d.size != self.nv * self.p:
            raise ValueError(f"diag_add must have {self.nv * self.p} entries, got {d.size}")
        return d

    @staticmethod
    def _with_data(template: sp.csc_matrix, data: np.ndarray) -> sp.csc_matrix:
        """A new CSC matrix on (copies of) the template's indices with ``data`` as its values (not copied)."""
        M = sp.csc_matrix((data, template.indices.copy(), template.indptr.copy()), shape=template.shape, copy=False)
        M.has_sorted_indices = True
        return M

    def to_csc(self, blocks: np.ndarray, diag_add: np.ndarray | None = None) -> sp.csc_matrix:
        """Full symmetric CSC of the blocks, plus ``diag_add`` (n,) on the scalar diagonal, same pattern every call."""
        template, off, offt = self._csc()
        blocks = np.ascontiguousarray(blocks, dtype=np.float64)
        if blocks.size != self.nnzb * self.p * self.p:
            raise ValueError(f"blocks must have shape {(self.nnzb, self.p, self.p)}, got {blocks.shape}")
        blocks = blocks.reshape(self.nnzb, self.p, self.p)
        data = np.empty(template.nnz)
        blocks_to_csc_nb(blocks, off, offt, self.diag_pos, self._diag_add(diag_add), data, (0,) * self.p)
        return self._with_data(template, data)

    def assemble_csc(self, A: np.ndarray, B: np.ndarray, diag_add: np.ndarray | None = None) -> sp.csc_matrix:
        """``to_csc(assemble(A, B), diag_add)`` in one pass over the rows, without the block array."""
        template, off, offt = self._csc()
        A, B = self._check_jacobian(A, B)
        data = np.empty(template.nnz)
        assemble_csc_nb(
            A,
            B,
            self.pos_aa,
            self.pos_bb,
            self.pos_ab,
            self.ab_is_upper,
            off,
            offt,
            self.diag_pos,
            self._diag_add(diag_add),
            data,
            (0,) * A.shape[1],
            (0,) * self.p,
        )
        return self._with_data(template, data)

    def fill_flops_above(self, factor_flops: float | None, limit: float) -> bool:
        """Whether a sparse factor of ``factor_flops`` (None: unknown, never) costs more than ``limit`` flops per
        stored entry (nnzb p²) of this pattern's matrix: the one test of a factor filled by long-range edges
        (GNC's CG fallback, the robust start's chordal candidate)."""
        return factor_flops is not None and factor_flops > limit * self.nnzb * self.p * self.p

    def csc_pattern(self) -> sp.csc_matrix:
        """The full symmetric CSC pattern :meth:`to_csc` fills (its values: 1 + the flat block entry index)."""
        return self._csc()[0]

    def warm(self, k: int | None = None) -> float:
        """Compile (or load from numba's cache) the assembly kernels for (k x p) Jacobian blocks (k = p when
        None, the pose graphs' case), fp64 and fp32; returns the seconds it took."""
        return warm_assemble(self.p if k is None else int(k), self.p)
