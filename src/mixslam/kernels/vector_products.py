"""Vectorized, chunked two-block Jacobian products (the fp32 / fp64 arithmetic of :mod:`.products`).

Each row block is one call of an explicit-SIMD intrinsic (:mod:`.simd`): its rows and the two variable
blocks it touches are loaded as whole vectors (masked to the block width; fp16 storage converted a row at a
time), the dot products are summed lane-wise and then by a fixed tree, and Jᵀ·t is accumulated into
*padded* rows (:func:`~.simd.lanes` wide) with whole-vector loads and stores, so the next row block that
touches the same variable reads the sum straight from the store buffer.

Accumulation
    Into padded copies of the outputs (``lanes(p)`` columns: 16 for a 9-wide camera, 4 for a 3-wide point),
    added to ``ga`` / ``gb`` at the end. The ``a`` side (cameras in bundle adjustment; both sides of a pose
    graph, where ``ga`` is ``gb``) has one padded copy per chunk. The ``b`` side of a two-set problem (points)
    has one copy shared by all chunks when the chunks' points occupy disjoint ranges (observations sorted by
    point, as BAL files are), else one per chunk.

Chunks and threads (:mod:`.threads`)
    The rows are split into :func:`~.threads.chunk_count` chunks (a function of the size only). Partial
    results are added in chunk order, so the result is the same on any number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .simd import lanes, obs_matvec, obs_normal, obs_rmatvec
from .threads import bounds, chunk_count, run_chunks

__all__ = ["ProductPlan", "normal_vec", "matvec_vec", "rmatvec_vec", "supported"]


def supported(pa: int, pb: int) -> bool:
    """Blocks the vector kernels take (a row of each block fits one 16-lane vector)."""
    return max(pa, pb) <= 16


@njit(cache=True, nogil=True, error_model="numpy")
def normal_chunk_nb(A, ia, B, ib, xa, xb, GA, GB, e0, e1, K, PA, PB):
    """Rows [e0, e1) of the fused JᵀJ p into the padded accumulators ``GA`` (na+1, wa) and ``GB``
    (nb+1, wb) (the last row takes absent blocks; ``GB`` may be ``GA``). Returns Σ ||t_e||² in the
    arithmetic dtype."""
    na = GA.shape[0] - 1
    nb = GB.shape[0] - 1
    s = np.zeros(1, GA.dtype)
    for e in range(np.uint64(e0), np.uint64(e1)):  # unsigned: no negative-index wraparound code
        ja = ia[e]
        jb = ib[e]
        ra = ja if ja >= 0 else na
        rb = jb if jb >= 0 else nb
        s[0] += obs_normal(A, B, e, ja, jb, xa, xb, GA, ra, GB, rb, K, PA, PB)
    return s[0]


@njit(cache=True, nogil=True, error_model="numpy")
def rmatvec_chunk_nb(A, ia, B, ib, y, GA, GB, e0, e1, K, PA, PB):
    """Rows [e0, e1) of Jᵀ y, accumulated as in :func:`normal_chunk_nb`."""
    na = GA.shape[0] - 1
    nb = GB.shape[0] - 1
    for e in range(np.uint64(e0), np.uint64(e1)):  # unsigned: no negative-index wraparound code
        ja = ia[e]
        jb = ib[e]
        ra = ja if ja >= 0 else na
        rb = jb if jb >= 0 else nb
        obs_rmatvec(A, B, e, ja, jb, y, GA, ra, GB, rb, K, PA, PB)


@njit(cache=True, nogil=True, error_model="numpy")
def matvec_chunk_nb(A, ia, B, ib, xa, xb, y, e0, e1, K, PA, PB):
    """Rows [e0, e1) of y = J x."""
    for e in range(np.uint64(e0), np.uint64(e1)):
        obs_matvec(A, B, e, ia[e], ib[e], xa, xb, y, K, PA, PB)


@njit(cache=True, nogil=True)
def _fold(G, g):
    """g += G[:rows, :p] (the columns of the padded accumulator that hold values)."""
    for i in range(g.shape[0]):
        for c in range(g.shape[1]):
            g[i, c] += G[i, c]


def _ranges_disjoint(ib: np.ndarray, spans: list[tuple[int, int]]) -> bool:
    """Whether the chunks' ``b`` variables (ignoring -1) occupy disjoint, increasing ranges."""
    last = -1
    for e0, e1 in spans:
        part = ib[e0:e1]
        part = part[part >= 0]
        if part.size == 0:
            continue
        if part.min() <= last:
            return False
        last = int(part.max())
    return True


ALIASED_CHUNKS = 2
"""Most chunks of an aliased product (see :class:`ProductPlan`)."""


def _align_to_runs(ib: np.ndarray, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Move each inner chunk edge forward to where ``ib`` changes, so that a run of row blocks on one ``b``
    variable (a point's observations, when sorted by point) is never split between two chunks (rows without a
    ``b`` block, -1, do not count)."""
    edges = [spans[0][0]] + [e1 for _, e1 in spans]
    R = edges[-1]
    for i in range(1, len(edges) - 1):
        e = max(edges[i], edges[i - 1])
        before = ib[:e][ib[:e] >= 0]
        if 0 < e < R and before.size:  # skip rows on the last b variable before the edge (or on none)
            tail = ib[e:]
            change = np.flatnonzero((tail >= 0) & (tail != before[-1]))
            e = e + int(change[0]) if change.size else R
        edges[i] = e
    return list(zip(edges[:-1], edges[1:]))


class ProductPlan:
    """How the products of one Jacobian structure run: the chunks, whether the chunks share the padded ``b``
    accumulator, and the accumulators themselves (kept between calls, zeroed by each call).

    Built once per structure (an O(R) pass over ``ib``) and reused by every product with it. One plan must not
    serve two products at the same time (its accumulators are shared).
    """

    def __init__(self, ia: np.ndarray, ib: np.ndarray, aliased: bool, chunks: int | None = None):
        R = int(ia.shape[0])
        self.rows = R
        if chunks is None:
            # aliased (pose graphs): each chunk zeroes and folds a padded copy of the whole output, so more than
            # two cost more than they save (measured: 8 chunks made a 200k-pose SE(3) product 2x slower)
            chunks = min(chunk_count(R), ALIASED_CHUNKS) if aliased else chunk_count(R)
        self.chunks = max(1, min(int(chunks), max(R, 1)))
        self.spans = bounds(R, self.chunks) if aliased else _align_to_runs(ib, bounds(R, self.chunks))
        self.aliased = aliased
        self.shared_b = not aliased and _ranges_disjoint(ib, self.spans)
        self._pads: dict = {}

    def matches(self, ia: np.ndarray, aliased: bool) -> bool:
        return self.rows == ia.shape[0] and self.aliased == aliased

    def pads(self, na: int, nb: int, wa: int, wb: int, dtype) -> list[tuple[np.ndarray, np.ndarray]]:
        """Zeroed (GA, GB) per chunk; GB is GA (aliased) or one array shared by all chunks (``shared_b``)."""
        key = (na, nb, wa, wb, np.dtype(dtype))
        pads = self._pads.get(key)
        if pads is None:
            shared = np.zeros((nb + 1, wb), dtype) if self.shared_b else None
            pads = []
            for _ in range(self.chunks):
                GA = np.zeros((na + 1, wa), dtype)
                GB = GA if self.aliased else (shared if shared is not None else np.zeros((nb + 1, wb), dtype))
                pads.append((GA, GB))
            self._pads = {key: pads}  # one format at a time
            return pads
        seen = set()
        for GA, GB in pads:
            for G in (GA, GB):
                if id(G) not in seen:
                    seen.add(id(G))
                    G.fill(0.0)
        return pads

    def combine(self, pads, ga: np.ndarray, gb: np.ndarray) -> None:
        """ga, gb = the sums of the chunks' accumulators, in chunk order."""
        ga[:] = 0.0
        if gb is not ga:
            gb[:] = 0.0
        for c, (GA, GB) in enumerate(pads):
            _fold(GA, ga)
            if not self.aliased and (not self.shared_b or c == 0):
                _fold(GB, gb)


def _widths(sizes):
    _, PA, PB = sizes
    return lanes(len(PA)), lanes(len(PB))


def normal_vec(A, ia, B, ib, xa, xb, ga, gb, sizes, plan: ProductPlan, threads=None) -> float:
    """Fused JᵀJ p with the vector kernels (``ga``, ``gb`` overwritten; one array when the plan is aliased).
    ``xa``/``xb`` in the dtype of ``ga``. Returns ||J p||² summed per chunk, chunks in order."""
    wa, wb = _widths(sizes)
    pads = plan.pads(ga.shape[0], gb.shape[0], wa, wb, ga.dtype)

    def chunk(c):
        GA, GB = pads[c]
        e0, e1 = plan.spans[c]
        return normal_chunk_nb(A, ia, B, ib, xa, xb, GA, GB, e0, e1, *sizes)

    parts = run_chunks(chunk, plan.chunks, threads)
    plan.combine(pads, ga, gb)
    total = ga.dtype.type(0)
    for s in parts:
        total = ga.dtype.type(total + s)
    return float(total)


def rmatvec_vec(A, ia, B, ib, y, ga, gb, sizes, plan: ProductPlan, threads=None) -> None:
    """ga, gb = Jᵀ y with the vector kernels (overwritten; ``y`` in the dtype of ``ga``)."""
    wa, wb = _widths(sizes)
    pads = plan.pads(ga.shape[0], gb.shape[0], wa, wb, ga.dtype)

    def chunk(c):
        GA, GB = pads[c]
        e0, e1 = plan.spans[c]
        rmatvec_chunk_nb(A, ia, B, ib, y, GA, GB, e0, e1, *sizes)

    run_chunks(chunk, plan.chunks, threads)
    plan.combine(pads, ga, gb)


def matvec_vec(A, ia, B, ib, xa, xb, y, sizes, plan: ProductPlan, threads=None) -> None:
    """y = J x with the vector kernels (each chunk writes its own rows of ``y``)."""

    def chunk(c):
        e0, e1 = plan.spans[c]
        matvec_chunk_nb(A, ia, B, ib, xa, xb, y, e0, e1, *sizes)

    run_chunks(chunk, plan.chunks, threads)
