"""Supernodal sparse Cholesky in fp64 or fp32, in the core install (numba kernels + BLAS).

:class:`SupernodalCholesky` analyzes a symmetric pattern once and then factors matrices with that pattern in
the precision it is asked for:

Analysis (once per problem)
    1. Blocks: consecutive columns with identical patterns (a pose's 3 or 6 columns, a camera's 9) are
       found and kept together; every graph algorithm below runs on this compressed graph.
    2. Fill-reducing ordering of the compressed graph (:func:`~mixslam.linear.ordering.fill_reducing_order`):
       by default the cheaper, in estimated flops, of minimum degree and METIS (when installed).
    3. Elimination tree, postorder, column counts in O(nnz(L)) without forming L's pattern.
    4. Supernodes: fundamental ones, then CHOLMOD's relaxed amalgamation (a few explicit zeros buy panels
       wide enough for vectorized loops and BLAS).
    5. Each supernode's row structure, the panel layout and, for every entry of the matrix's lower
       triangle, the position it is loaded into.

Numeric factorization (per matrix)
    Left-looking supernodal Cholesky (:func:`mixslam.kernels.supernodal.factor`) on dense column-major panels
    in fp64 or fp32. In fp32 the matrix is rounded to fp32 and every product accumulates in fp32, as
    LAPACK's ``spotrf`` and BLAS's ``sgemm`` do: half the bytes of fp64 and twice the SIMD lanes.

Solve
    Forward and back substitution reading the panels in their dtype, accumulating in fp64 (or fp32). On
    factors of at least :data:`~mixslam.kernels.supernodal.LANE_MIN_ENTRIES` panel entries the elimination
    tree is split once (at analysis) into two independent lanes of whole subtrees that run on two threads;
    the split, not the thread count, fixes the arithmetic, so one thread gives the same bits.

The fp64 factor is the core install's direct solver (backend ``"mixslam"`` of
:class:`~mixslam.linear.direct.SparseCholesky`); the fp32 one is the mixed-precision direct solver's
(:mod:`mixslam.linear.mixed_direct`), which recovers fp64 accuracy by iterative refinement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import supernodal as K
from ..precision import Precision, QuantizationStats
from ..storage import store_filled
from .ordering import ORDERINGS, available_orderings, compressed_graph, fill_reducing_order

__all__ = ["SupernodalCholesky", "Relaxation", "NotPositiveDefinite", "AUTO_ORDERING_MIN_FLOPS"]

#: ``ordering="auto"`` stops after the first ordering (MMD) when its factorization needs fewer estimated
#: multiply-adds than this. Another ordering costs its own computation and symbolic analysis, 3-4 ms on a
#: 1,700-pose graph (intel.g2o: MMD 2.9 ms, METIS 3.2 ms, each analysis about 1 ms more), while a 1e7-flop
#: factorization takes about 2 ms here: even a much better ordering could not repay that within the ten or
#: so factorizations of a solve. The small shared graphs (CSAIL, MIT, intel, ais2klinik: 2e5-5e6 flops)
#: stop at MMD; the larger ones (city10000 9e7, the 3-D files, generated grids) still compare.
AUTO_ORDERING_MIN_FLOPS = 1e7


class NotPositiveDefinite(Exception):
    """A non-positive (or NaN) pivot; ``column`` is the original column index."""

    def __init__(self, column: int):
        super().__init__(column)
        self.column = column


@dataclass(frozen=True)
class Relaxation:
    """Relaxed supernode amalgamation thresholds (CHOLMOD's defaults and rule).

    A supernode absorbs its child just before it when the merged supernode has at most ``nrelax[0]``
    scalar columns, or at most ``nrelax[1]`` with a fraction of explicit zeros below ``zrelax[0]``, or at
    most ``nrelax[2]`` and below ``zrelax[1]``, or more and below ``zrelax[2]``."""

    nrelax: tuple[int, int, int] = (4, 16, 48)
    """Column-count thresholds (scalar columns)."""
    zrelax: tuple[float, float, float] = (0.8, 0.1, 0.05)
    """Fractions of explicit zeros allowed at each threshold."""

    def __post_init__(self):
        if len(self.nrelax) != 3 or any(int(v) != v or v < 0 for v in self.nrelax):
            raise ValueError(f"nrelax must be three non-negative integers, got {self.nrelax!r}")
        if len(self.zrelax) != 3 or any(not (0.0 <= float(v) <= 1.0) for v in self.zrelax):
            raise ValueError(f"zrelax must be three fractions in [0, 1], got {self.zrelax!r}")


class SupernodalCholesky:
    """Supernodal Cholesky of SPD matrices sharing the lower CSC pattern ``(indptr, indices)`` of n x n
    (sorted rows, diagonal present in every column).

    ``factorize(data, dtype)`` takes the values of that pattern (same order) and factors in ``dtype``
    (float64 or float32); ``solve(b)`` returns x with A x = b for the last factorized A (fp64 vectors).
    ``ordering`` is ``"auto"`` (the default: every ordering of :func:`~mixslam.linear.ordering.
    available_orderings` is analyzed and the one with the fewest estimated multiply-adds kept, except that
    a first ordering whose factor needs fewer than :data:`AUTO_ORDERING_MIN_FLOPS` is kept without
    computing the others; its name in ``self.ordering``, the estimates in ``self.ordering_flops``) or one of
    :data:`~mixslam.linear.ordering.ORDERINGS` (:func:`~mixslam.linear.ordering.fill_reducing_order`).
    """

    def __init__(
        self,
        n: int,
        indptr: np.ndarray,
        indices: np.ndarray,
        ordering: str = "auto",
        relaxation: Relaxation | None = None,
    ):
        relax = relaxation or Relaxation()
        self.n = n = int(n)
        indptr = np.asarray(indptr, dtype=np.int64)
        indices = np.asarray(indices, dtype=np.int64)
        starts, sizes, gptr, gidx, group = compressed_graph(n, indptr, indices)
        ng = starts.size
        if ordering == "auto":
            names = available_orderings()
        elif ordering in ORDERINGS:
            names = [ordering]
        else:
            raise ValueError(f"unknown ordering {ordering!r}; expected 'auto' or one of {ORDERINGS}")
        best = None
        self.ordering_flops: dict[str, float] = {}
        for name in names:
            sym = _symbolic(gptr, gidx, sizes, fill_reducing_order(gptr, gidx, ng, name))
            self.ordering_flops[name] = sym[-1]
            if best is None or sym[-1] < best[-1]:
                best, self.ordering = sym, name
            if ordering == "auto" and sym[-1] < AUTO_ORDERING_MIN_FLOPS:
                break  # a factor this cheap cannot repay another ordering's analysis
        assert best is not None
        order, ptr2, idx2, parent, bsize, count, scount, _ = best
        sfirst = K.supernodes(parent, count, scount, bsize, *relax.nrelax, *relax.zrelax)
        nsuper = sfirst.size - 1
        is_last = np.zeros(ng, dtype=np.bool_)
        is_last[sfirst[1:] - 1] = True
        lptr, lrows = K.last_column_structure(ng, ptr2, idx2, parent, is_last, count)
        # scalar layout: block i (new order) occupies scalar columns boff[i] .. boff[i+1]
        boff = np.zeros(ng + 1, dtype=np.int64)
        np.cumsum(bsize, out=boff[1:])
        self.perm = np.repeat(starts[order] - boff[:-1], bsize) + np.arange(n)  # perm[new] = original column
        self.iperm = np.empty(n, dtype=np.int64)
        self.iperm[self.perm] = np.arange(n)
        # block rows of each supernode: its own block columns, then the rows below its last column
        first, last = sfirst[:-1], sfirst[1:] - 1
        nown = last - first + 1
        nbelow = lptr[last + 1] - lptr[last]
        brow_ptr = np.zeros(nsuper + 1, dtype=np.int64)
        np.cumsum(nown + nbelow, out=brow_ptr[1:])
        own = np.repeat(first - brow_ptr[:-1], nown + nbelow) + np.arange(brow_ptr[-1])  # valid for own rows
        sup_of_row = np.repeat(np.arange(nsuper), nown + nbelow)
        k_in = np.arange(brow_ptr[-1]) - brow_ptr[sup_of_row]
        is_own = k_in < nown[sup_of_row]
        brows = np.where(is_own, own, 0)
        below_src = lptr[last[sup_of_row]] + (k_in - nown[sup_of_row])
        brows[~is_own] = lrows[below_src[~is_own]]
        # expand to scalar rows
        bw = bsize[brows]
        srow_cnt = np.bincount(sup_of_row, weights=bw, minlength=nsuper).astype(np.int64)
        self.sptr = np.zeros(nsuper + 1, dtype=np.int64)
        np.cumsum(srow_cnt, out=self.sptr[1:])
        self.srows = np.repeat(boff[brows] - np.concatenate([[0], np.cumsum(bw)[:-1]]), bw) + np.arange(self.sptr[-1])
        self.scol0 = boff[first]
        self.sncol = boff[last + 1] - boff[first]
        self.col2super = np.repeat(np.arange(nsuper), self.sncol)
        self.poff = np.zeros(nsuper + 1, dtype=np.int64)
        np.cumsum(srow_cnt * self.sncol, out=self.poff[1:])
        # where each lower-triangle entry goes: (row, col) -> permuted (R >= C) -> panel position
        self.dst = K.panel_positions(
            indptr,
            indices,
            self.iperm,
            self.col2super,
            self.sptr,
            self.srows,
            self.scol0,
            self.poff,
            np.empty(n, dtype=np.int64),
        )
        self.nsuper = nsuper
        self.nnz_factor = int(np.sum(srow_cnt * self.sncol - self.sncol * (self.sncol - 1) // 2))
        self.flops = float(np.sum(_column_flops(srow_cnt, self.sncol)))
        self._ws = (
            np.empty(n, dtype=np.int64),
            np.empty(nsuper, dtype=np.int64),
            np.empty(nsuper, dtype=np.int64),
            np.empty(nsuper, dtype=np.int64),
        )
        self.parent = K.supernode_parents(self.sptr, self.srows, self.sncol, self.col2super)
        """The supernodal elimination tree (:func:`mixslam.kernels.supernodal.supernode_parents`)."""
        self.lanes = K.lane_split(self.parent, self.sptr, self.sncol, K.LANE_MIN_ENTRIES)
        """Two independent lanes of the triangular solves (:func:`mixslam.kernels.supernodal.lane_split`;
        None for small factors): they run on two threads when two are available, with the same result."""
        self._ones = np.ones(nsuper)
        self.L: np.ndarray | None = None
        """The panels in fp64 or fp32 (None while they are stored in fp16: :meth:`store16`)."""
        self.L16: np.ndarray | None = None
        """The panels as fp16 bits, each panel scaled by ``1 / pscale[t]`` (after :meth:`store16`)."""
        self.pscale: np.ndarray | None = None
        """Per supernode: the power of two the fp16 panel values are multiplied by to give the factor."""

    @property
    def nbytes(self) -> int:
        """Bytes of the numeric factor's panels (0 before the first factorization), fp16 scales included."""
        if self.L16 is not None and self.pscale is not None:
            return int(self.L16.nbytes + self.pscale.nbytes)
        return 0 if self.L is None else int(self.L.nbytes)

    def store16(self, fallback: bool = True) -> QuantizationStats:
        """Store the factor's panels in fp16 with one power-of-two scale per supernode (the panel's largest
        entry lands in [2^14, 2^15): entries down to 2^-28 of it stay normal, to 2^-38 subnormal), and drop the
        fp32/fp64 panels: half the bytes of fp32 for every later :meth:`solve`, which is memory-bound on
        large factors. Returns the rounding's statistics (:func:`mixslam.storage.store`); on an overflow
        (impossible after the scaling unless the factor holds non-finite values) with ``fallback`` the
        panels stay as they are."""
        assert self.L is not None and self.factorized
        L = self.L
        pscale = np.empty(self.nsuper)

        def fill(prec: Precision):
            if prec is not Precision.FP16:  # the fallback: keep the panels as they are
                return L, QuantizationStats(count=int(L.size))
            bits = np.empty(L.size, np.uint16)
            stats = QuantizationStats(count=int(L.size))
            st = K.panels_to_fp16(L, self.poff, bits, pscale)
            (stats.nonfinite_inputs, stats.max_abs, stats.overflows, stats.underflows, stats.subnormals) = st
            return bits, stats

        # the solves widen the panels and accumulate in their vectors' dtype (fp64 by default, as with fp32 panels)
        values, used, _, stats = store_filled(fill, Precision.FP16, Precision.FP64, fallback)
        if used is Precision.FP16:
            self.L16, self.pscale, self.L = values, pscale, None
        return stats

    def factorize(self, data: np.ndarray, dtype=np.float64, blas_min: int = K.BLAS_MIN_FLOPS) -> None:
        """Numeric factorization in ``dtype`` of the matrix whose lower-pattern values are ``data``.
        Raises :class:`NotPositiveDefinite` (original column) on a non-positive or NaN pivot."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float64, np.float32):
            raise ValueError(f"factor dtype must be float64 or float32, got {dtype}")
        self.L16 = self.pscale = None
        if self.L is None or self.L.dtype != dtype:
            self.L = np.zeros(int(self.poff[-1]), dtype=dtype)
        else:
            self.L[:] = 0
        self.L[self.dst] = data
        Map, pos, head, nxt = self._ws
        bad = K.factor(
            self.sptr,
            self.srows,
            self.scol0,
            self.sncol,
            self.poff,
            self.col2super,
            self.L,
            Map,
            pos,
            head,
            nxt,
            int(blas_min),
        )
        if bad >= 0:
            self.factorized = False
            raise NotPositiveDefinite(int(self.perm[bad]))
        self.factorized = True

    def solve(self, b: np.ndarray, dtype=np.float64) -> np.ndarray:
        """x with A x = b (b of shape (n,) or (n, k)) from the last factor, accumulated in ``dtype``."""
        x = np.ascontiguousarray(b.reshape(self.n, -1)[self.perm], dtype=dtype)
        if self.L16 is not None:
            L, pscale = self.L16, self.pscale
        else:
            assert self.L is not None
            L, pscale = self.L, self._ones
        K.solve(self.sptr, self.srows, self.scol0, self.sncol, self.poff, L, pscale, x, self.lanes)
        out = np.empty_like(x)
        out[self.perm] = x
        return out.reshape(b.shape)

    def dense_factor(self) -> np.ndarray:
        """The factor as a dense lower-triangular fp64 matrix in the permuted order (``L Lᵀ = P A Pᵀ`` with
        ``P A Pᵀ = A[perm][:, perm]``); for tests and small problems."""
        if self.L16 is not None and self.pscale is not None:
            L = self.L16.view(np.float16).astype(np.float64) * np.repeat(self.pscale, np.diff(self.poff))
        else:
            assert self.L is not None
            L = self.L
        out = np.zeros((self.n, self.n))
        for t in range(self.nsuper):
            m, k = int(self.sptr[t + 1] - self.sptr[t]), int(self.sncol[t])
            P = L[self.poff[t] : self.poff[t] + m * k].reshape(k, m).astype(np.float64)
            rows = self.srows[self.sptr[t] : self.sptr[t + 1]]
            c0 = int(self.scol0[t])
            out[np.ix_(rows, np.arange(c0, c0 + k))] = P.T
        return np.tril(out)


def _symbolic(gptr, gidx, sizes, order):
    """The block graph relabelled by ``order`` then by its etree postorder: (order, adjacency, parent, block
    sizes, block and scalar column counts, an estimate of the factorization's multiply-adds)."""
    ng = order.size
    pos = np.empty(ng, dtype=np.int64)
    pos[order] = np.arange(ng)
    ptr1, idx1 = K.relabel(gptr, gidx, pos)
    post = K.postorder(K.etree(ng, ptr1, idx1))
    order = order[post]
    pos[order] = np.arange(ng)
    ptr2, idx2 = K.relabel(gptr, gidx, pos)
    parent = K.etree(ng, ptr2, idx2)
    bsize = sizes[order]
    count, scount = K.column_counts(ng, ptr2, idx2, parent, bsize)
    flops = float(np.sum(bsize * scount.astype(np.float64) ** 2))
    return order, ptr2, idx2, parent, bsize, count, scount, flops


def _column_flops(m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Multiply-adds of the factorization per supernode (Σ over its columns of (rows below)²)."""

    # column j (0-based within the supernode) has m - j rows from the diagonal down; its updates cost (m-j-1)^2
    # summed over j: Σ_{i=m-k}^{m-1} i^2
    def s2(x):
        return x * (x + 1) * (2 * x + 1) / 6.0

    return s2((m - 1).astype(np.float64)) - s2((m - k - 1).astype(np.float64))
