"""Camera-major structure-of-arrays products of a bundle-adjustment Jacobian (two variable sets).

The row-block kernels (:mod:`.vector_products`) load one observation's rows as vectors and must sum each
row's lanes and scatter each observation's result alone: ~70 instructions per observation whatever the
storage, so fp16 saved bytes but no time. Here the *lanes are observations*:

Layout (:class:`CameraMajor`, built once per linearization by :func:`build`)
    Observations are grouped by camera (then point) and each camera's group is padded to a multiple of 16.
    A batch of 16 observations of one camera stores each Jacobian entry (r, c) as one 16-lane vector:
    ``JA[batch, (r*pa + c)*16 + lane]``, ``JB[batch, (r*pb + c)*16 + lane]``, in the storage format (fp16 as
    bits, converted 16 values per instruction). ``IB[batch, lane]`` is the point (int32; -1 for padding and
    fixed points) and ``ROW[batch, lane]`` the observation's row in the original order (-1 for padding).

Per batch (one intrinsic, :func:`cm_normal_batch`)
    The camera's tangent values are broadcast (one camera per batch), the point values gathered
    (``vgatherdps``), t_r = Σ_c JA[r, c] xa_c + Σ_c JB[r, c] xb_c is 2(pa + pb) fused multiply-adds on
    whole vectors, the camera's Jᵀt accumulates in pa vectors summed once per camera, and the points'
    Jᵀt is gathered, added and scattered back (``vscatterdps``: the points of one batch are distinct because
    a camera sees a point once; :func:`build` refuses a Jacobian where it does not).

Chunks and threads
    The points are split into ranges of nearly equal observation counts (:func:`~.threads.chunk_count`, or
    more so that no range holds over :data:`TILE_POINTS` points), fixed when the layout is built. Each chunk
    holds the observations of its points, camera-major: chunks write disjoint point rows, keep private
    camera sums, and everything is added in chunk order, so results do not depend on the thread count.

Arithmetic: fp32 or fp64 (the dtype of the vectors); products and sums with fused multiply-adds, lanes
summed by a fixed tree. Emulated fp16 arithmetic keeps the scalar kernels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .fp16 import FP16_TINY, FP32_TINY, f2h, h2f, rounding_outcome
from .simd import splat, vector_name
from .threads import chunk_count, run_chunks

__all__ = ["CameraMajor", "build", "cm_normal", "cm_matvec", "cm_rmatvec", "LANES"]

LANES = 16
TILE_POINTS = 32768
"""Most points per chunk: a chunk's point values and sums (2 x 32768 x 3 fp32 = 768 KiB) stay in the 2 MiB L2
while its cameras sweep them. Measured on a generated 6M-observation problem (1M points): with 8 chunks of
125k points the fused product gathered from L3 and fp16 storage saved no time over fp32."""
_I1, _I32, _I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)


# ---------------------------------------------------------------------------------------------------------
# Code generation
# ---------------------------------------------------------------------------------------------------------
def _vec_ptrs(builder, base, idx, elem_bytes, ety):
    """Vector of pointers base + idx * elem_bytes (llvmlite's gep takes no vector indices)."""
    vi64 = ir.VectorType(_I64, LANES)
    b = builder.insert_element(ir.Constant(vi64, ir.Undefined), builder.ptrtoint(base, _I64), ir.Constant(_I32, 0))
    b = builder.shuffle_vector(b, b, ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))
    off = builder.mul(idx, ir.Constant(vi64, [elem_bytes] * LANES))
    return builder.inttoptr(builder.add(b, off), ir.VectorType(ety.as_pointer(), LANES))


def _fkind(ety) -> str:
    return "f32" if isinstance(ety, ir.FloatType) else "f64"


def _gather(builder, ptrs, vty, mask, align):
    fn = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(vty, [ptrs.type, _I32, mask.type, vty]),
        f"llvm.masked.gather.{vector_name(vty)}.v{LANES}p0{_fkind(vty.element)}",
    )
    return builder.call(fn, [ptrs, ir.Constant(_I32, align), mask, ir.Constant(vty, None)])


def _scatter(builder, val, ptrs, mask, align):
    vty = val.type
    fn = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(ir.VoidType(), [vty, ptrs.type, _I32, mask.type]),
        f"llvm.masked.scatter.{vector_name(vty)}.v{LANES}p0{_fkind(vty.element)}",
    )
    builder.call(fn, [val, ptrs, ir.Constant(_I32, align), mask])


class _Batch:
    """One batch of 16 observations: loads, conversions and the arithmetic of the three products."""

    def __init__(self, context, builder, sig, args, acc_type, k, pa, pb):
        self.c, self.b, self.sig, self.args = context, builder, sig, args
        self.acc = acc_type
        self.aty = context.get_value_type(acc_type)
        self.vty = ir.VectorType(self.aty, LANES)
        self.al = acc_type.bitwidth // 8
        self.k, self.pa, self.pb = k, pa, pb
        self.fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vty, [self.vty] * 3), f"llvm.fma.{vector_name(self.vty)}"
        )

    def data(self, i):
        return self.c.make_array(self.sig.args[i])(self.c, self.b, self.args[i]).data

    def i64(self, i):
        return self.c.cast(self.b, self.args[i], self.sig.args[i], types.int64)

    def const(self, v):
        return ir.Constant(_I64, v)

    def jac(self, i, bat, n, q):
        """Entry q of the batch's n vectors in array i (storage format) as an arithmetic vector."""
        b = self.b
        st = self.sig.args[i].dtype
        sty = ir.IntType(16) if st == types.uint16 else self.c.get_value_type(st)
        vs = ir.VectorType(sty, LANES)
        off = b.add(b.mul(bat, self.const(n * LANES)), self.const(q * LANES))
        x = b.load(b.bitcast(b.gep(self.data(i), [off]), vs.as_pointer()), align=st.bitwidth // 8)
        if st == types.uint16:
            return b.fpext(b.bitcast(x, ir.VectorType(ir.HalfType(), LANES)), self.vty)
        if st.bitwidth < self.acc.bitwidth:
            return b.fpext(x, self.vty)
        if st.bitwidth > self.acc.bitwidth:
            return b.fptrunc(x, self.vty)
        return x

    def lane_index(self, i, bat, ity):
        """The 16 int32/int64 indices of the batch in array i, as <16 x i64>, and the mask index >= 0."""
        b = self.b
        w = ity.width if isinstance(ity, ir.IntType) else ity.bitwidth
        vt = ir.VectorType(ir.IntType(w), LANES)
        p = b.gep(self.data(i), [b.mul(bat, self.const(LANES))])
        v = b.load(b.bitcast(p, vt.as_pointer()), align=w // 8)
        mask = b.icmp_signed(">=", v, ir.Constant(vt, [0] * LANES))
        v64 = b.sext(v, ir.VectorType(_I64, LANES)) if w < 64 else v
        return v64, mask

    def rows(self, ia_, ib_, bat):
        JA = [[self.jac(ia_, bat, self.k * self.pa, r * self.pa + c) for c in range(self.pa)] for r in range(self.k)]
        JB = [[self.jac(ib_, bat, self.k * self.pb, r * self.pb + c) for c in range(self.pb)] for r in range(self.k)]
        return JA, JB

    def camera_values(self, i_xa, j):
        """Broadcasts of xa[j, c] (xa is (na + 1, pa), C-contiguous)."""
        b = self.b
        d = self.data(i_xa)
        base = b.mul(j, self.const(self.pa))
        return [splat(b, b.load(b.gep(d, [b.add(base, self.const(c))])), self.vty) for c in range(self.pa)]

    def point_ptrs(self, i_arr, ib64, p):
        """Per component c < p: the vector of pointers to arr[ib, c] ((n, p) C-contiguous)."""
        b = self.b
        d = self.data(i_arr)
        base = b.mul(ib64, ir.Constant(ir.VectorType(_I64, LANES), [p] * LANES))
        return [
            _vec_ptrs(b, d, b.add(base, ir.Constant(ir.VectorType(_I64, LANES), [c] * LANES)), self.al, self.aty)
            for c in range(p)
        ]

    def dots(self, JA, JB, xa, xb):
        b = self.b
        ts = []
        for r in range(self.k):
            t = b.fmul(JA[r][0], xa[0])
            for c in range(1, self.pa):
                t = b.call(self.fma, [JA[r][c], xa[c], t])
            for c in range(self.pb):
                t = b.call(self.fma, [JB[r][c], xb[c], t])
            ts.append(t)
        return ts

    def forward(self, i_ib, i_xa, i_j, i_xb):
        """The shared part of the normal and matvec batches: (batch as i64, point indices, their mask, rows of
        JA, rows of JB, t_r per row); the ``i_*`` are argument positions (JA, JB are 0 and 1; the batch is
        the argument just before XA)."""
        bat = self.i64(i_xa - 1)
        ib64, pmask = self.lane_index(i_ib, bat, _I32)
        xa = self.camera_values(i_xa, self.i64(i_j))
        xb = [_gather(self.b, p, self.vty, pmask, self.al) for p in self.point_ptrs(i_xb, ib64, self.pb)]
        JA_, JB_ = self.rows(0, 1, bat)
        return bat, ib64, pmask, JA_, JB_, self.dots(JA_, JB_, xa, xb)

    def accumulate(self, JA, JB, ts, i_acc, gptrs, pmask):
        """ACC[c, :] += Σ_r JA[r, c] t_r (camera, whole vectors); gb[ib, c] += Σ_r JB[r, c] t_r (points)."""
        b = self.b
        accd = self.data(i_acc)
        for c in range(self.pa):
            p = b.bitcast(b.gep(accd, [self.const(c * LANES)]), self.vty.as_pointer())
            u = b.load(p, align=self.al)
            for r in range(self.k):
                u = b.call(self.fma, [JA[r][c], ts[r], u])
            b.store(u, p, align=self.al)
        for c in range(self.pb):
            u = b.fmul(JB[0][c], ts[0])
            for r in range(1, self.k):
                u = b.call(self.fma, [JB[r][c], ts[r], u])
            old = _gather(b, gptrs[c], self.vty, pmask, self.al)
            _scatter(b, b.fadd(old, u), gptrs[c], pmask, self.al)


def _types_ok(JA, JB, IB, ROW, xdt, K, PA, PB):
    return (
        all(isinstance(a, types.Array) and a.layout == "C" for a in (JA, JB, IB, ROW))
        and IB.dtype == types.int32
        and ROW.dtype in (types.int32, types.int64)
        and xdt in (types.float32, types.float64)
        and all(isinstance(t, types.UniTuple) for t in (K, PA, PB))
    )


@intrinsic
def cm_normal_batch(typingctx, JA, JB, IB, bat, XA, j, xb, gb, ACC, NRM, K, PA, PB):
    """Batch ``bat`` of the fused JᵀJ p (camera ``j``): ACC (pa*16) += camera sums; gb[ib] += point sums;
    NRM (16) += Σ_r t_r². ``XA`` (na+1, pa) with a zero last row for fixed cameras; njit only."""
    if not (_types_ok(JA, JB, IB, IB, XA.dtype, K, PA, PB) and XA.dtype == xb.dtype == gb.dtype == ACC.dtype):
        return None
    k, pa, pb = K.count, PA.count, PB.count

    def codegen(context, builder, sig, args):
        g = _Batch(context, builder, sig, args, sig.args[4].dtype, k, pa, pb)
        bat, ib64, pmask, JA_, JB_, ts = g.forward(2, 4, 5, 6)
        nd = builder.bitcast(g.data(9), g.vty.as_pointer())
        n = builder.load(nd, align=g.al)
        for r in range(k):
            n = builder.call(g.fma, [ts[r], ts[r], n])
        builder.store(n, nd, align=g.al)
        g.accumulate(JA_, JB_, ts, 8, g.point_ptrs(7, ib64, pb), pmask)
        return context.get_dummy_value()

    return types.void(JA, JB, IB, bat, XA, j, xb, gb, ACC, NRM, K, PA, PB), codegen


@intrinsic
def cm_matvec_batch(typingctx, JA, JB, IB, ROW, bat, XA, j, xb, y, K, PA, PB):
    """Batch ``bat`` of y = J x: y[ROW[lane], r] = t_r (padding lanes write nothing). njit only."""
    if not (_types_ok(JA, JB, IB, ROW, XA.dtype, K, PA, PB) and XA.dtype == xb.dtype == y.dtype):
        return None
    k, pa, pb = K.count, PA.count, PB.count

    def codegen(context, builder, sig, args):
        g = _Batch(context, builder, sig, args, sig.args[5].dtype, k, pa, pb)
        bat, _, _, _, _, ts = g.forward(2, 5, 6, 7)
        row64, rmask = g.lane_index(3, bat, sig.args[3].dtype)
        for r, p in enumerate(g.point_ptrs(8, row64, k)):
            _scatter(builder, ts[r], p, rmask, g.al)
        return context.get_dummy_value()

    return types.void(JA, JB, IB, ROW, bat, XA, j, xb, y, K, PA, PB), codegen


@intrinsic
def cm_rmatvec_batch(typingctx, JA, JB, IB, ROW, bat, y, gb, ACC, K, PA, PB):
    """Batch ``bat`` of Jᵀ y: t_r = y[ROW[lane], r], then as :func:`cm_normal_batch`. njit only."""
    if not (_types_ok(JA, JB, IB, ROW, y.dtype, K, PA, PB) and y.dtype == gb.dtype == ACC.dtype):
        return None
    k, pa, pb = K.count, PA.count, PB.count

    def codegen(context, builder, sig, args):
        g = _Batch(context, builder, sig, args, sig.args[5].dtype, k, pa, pb)
        bat = g.i64(4)
        ib64, pmask = g.lane_index(2, bat, _I32)
        row64, rmask = g.lane_index(3, bat, sig.args[3].dtype)
        ts = [_gather(builder, p, g.vty, rmask, g.al) for p in g.point_ptrs(5, row64, k)]
        JA_, JB_ = g.rows(0, 1, bat)
        g.accumulate(JA_, JB_, ts, 7, g.point_ptrs(6, ib64, pb), pmask)
        return context.get_dummy_value()

    return types.void(JA, JB, IB, ROW, bat, y, gb, ACC, K, PA, PB), codegen


# ---------------------------------------------------------------------------------------------------------
# Compiled chunk loops
# ---------------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _camera_sums(ACC, ga, j):
    """ga[j, c] = Σ_lanes ACC[c, :] by a fixed tree (pairwise halving), then ACC zeroed."""
    for c in range(ga.shape[1]):
        w = LANES
        while w > 1:
            h = w // 2
            for q in range(h):
                ACC[c * LANES + q] += ACC[c * LANES + q + h]
            w = h
        ga[j, c] += ACC[c * LANES]
    ACC[:] = 0.0


@njit(cache=True, nogil=True)
def cm_normal_chunk(JA, JB, IB, seg_cam, seg_b0, seg_b1, s0, s1, XA, xb, ga, gb, ACC, NRM, K, PA, PB):
    """Segments [s0, s1) of the fused product; ``ga`` (na, pa) this chunk's camera sums (zeroed by the
    caller), ``gb`` the shared point output (rows of this chunk's points zeroed by the caller)."""
    na = ga.shape[0]
    ACC[:] = 0.0
    NRM[:] = 0.0
    for s in range(s0, s1):
        j = seg_cam[s]
        jx = j if j >= 0 else na
        for bat in range(seg_b0[s], seg_b1[s]):
            cm_normal_batch(JA, JB, IB, bat, XA, jx, xb, gb, ACC, NRM, K, PA, PB)
        if j >= 0:
            _camera_sums(ACC, ga, j)
        else:
            ACC[:] = 0.0
    w = LANES
    while w > 1:
        h = w // 2
        for q in range(h):
            NRM[q] += NRM[q + h]
        w = h
    return NRM[0]


@njit(cache=True, nogil=True)
def cm_rmatvec_chunk(JA, JB, IB, ROW, seg_cam, seg_b0, seg_b1, s0, s1, y, ga, gb, ACC, K, PA, PB):
    """Segments [s0, s1) of Jᵀ y (outputs as :func:`cm_normal_chunk`)."""
    ACC[:] = 0.0
    for s in range(s0, s1):
        j = seg_cam[s]
        for bat in range(seg_b0[s], seg_b1[s]):
            cm_rmatvec_batch(JA, JB, IB, ROW, bat, y, gb, ACC, K, PA, PB)
        if j >= 0:
            _camera_sums(ACC, ga, j)
        else:
            ACC[:] = 0.0


@njit(cache=True, nogil=True)
def cm_matvec_chunk(JA, JB, IB, ROW, seg_cam, seg_b0, seg_b1, s0, s1, XA, xb, y, K, PA, PB):
    """Segments [s0, s1) of y = J x."""
    na = XA.shape[0] - 1
    for s in range(s0, s1):
        j = seg_cam[s]
        jx = j if j >= 0 else na
        for bat in range(seg_b0[s], seg_b1[s]):
            cm_matvec_batch(JA, JB, IB, ROW, bat, XA, jx, xb, y, K, PA, PB)


# ---------------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------------
@dataclass
class CameraMajor:
    """A two-set Jacobian in camera-major batches of 16 observations (see the module docstring)."""

    JA: np.ndarray
    """(batches, k*pa*16) camera blocks, storage format (float64, float32 or fp16 bits as uint16)."""
    JB: np.ndarray
    """(batches, k*pb*16) point blocks, same format."""
    IB: np.ndarray
    """(batches, 16) int32 point of each lane; -1: padding or a fixed point."""
    ROW: np.ndarray
    """(batches, 16) row block of each lane in the original order; -1: padding."""
    seg_cam: np.ndarray
    """(segments,) camera of each segment (-1: the fixed cameras' observations)."""
    seg_b0: np.ndarray
    """(segments,) first batch of each segment."""
    seg_b1: np.ndarray
    """(segments,) one past the last batch."""
    chunk_seg: np.ndarray
    """(chunks + 1,) segment ranges of the chunks (each chunk owns a range of points)."""
    chunk_pts: np.ndarray
    """(chunks + 1,) point ranges of the chunks."""
    shape: tuple
    """(R, k, pa, pb, na, nb)."""
    order: np.ndarray
    """(R,) the original row of each observation in camera-major order (int32 below 2**31 rows)."""
    slot: np.ndarray
    """(R,) the lane (batch * 16 + lane) of each observation in camera-major order."""
    source: tuple = ()
    """(ia, ib) the layout was built from: :func:`build` reuses the structure when given the same arrays."""

    @property
    def chunks(self) -> int:
        return int(self.chunk_seg.shape[0] - 1)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored Jacobian values (padding lanes included; indices not: :attr:`index_nbytes`)."""
        return int(self.JA.nbytes + self.JB.nbytes)

    @property
    def index_nbytes(self) -> int:
        return int(self.IB.nbytes + self.ROW.nbytes + self.seg_cam.nbytes + self.seg_b0.nbytes + self.seg_b1.nbytes)

    def sizes(self):
        from .products import static_size

        _, k, pa, pb, _, _ = self.shape
        return static_size(k), static_size(pa), static_size(pb)


def _same_structure(like: CameraMajor, A, ia, B, ib, na: int, nb: int, chunks: int | None) -> bool:
    """Whether ``like`` was built from these index arrays (the same objects: a problem's structure does not
    change between linearizations) and block shapes."""
    return (
        len(like.source) == 2
        and like.source[0] is ia
        and like.source[1] is ib
        and like.shape == (A.shape[0], A.shape[1], A.shape[2], B.shape[2], na, nb)
        and (chunks is None or chunks == like.chunks)
    )


def build(
    A,
    ia,
    B,
    ib,
    na: int,
    nb: int,
    chunks: int | None = None,
    like: CameraMajor | None = None,
    values: bool = True,
) -> CameraMajor | None:
    """The camera-major layout of (A, ia, B, ib), or None where it cannot serve: a camera observing a point
    twice (two lanes of one batch would scatter to the same point) or blocks wider than 16. Observations of
    fixed cameras (-1) form groups in which each point appears once.

    ``like``: a layout built from the same ``ia`` and ``ib`` arrays (the same objects: a problem's structure
    does not change between linearizations) whose structure is reused; only the values are placed (one
    compiled pass, instead of the sorts: 1.5 s per linearization on 2M observations). ``values=False``: the
    structure only (JA, JB empty), for :func:`fill_scaled`.
    """
    if like is not None and _same_structure(like, A, ia, B, ib, na, nb, chunks):
        JA = _batches(A, like.order, like.slot, like.IB.shape[0])
        JB = _batches(B, like.order, like.slot, like.IB.shape[0])
        return dataclasses.replace(like, JA=JA, JB=JB)
    R, k, pa = A.shape
    pb = B.shape[2]
    if max(pa, pb) > 16 or R == 0:
        return None
    source = (ia, ib)
    ia = np.asarray(ia, np.int64)
    ib = np.asarray(ib, np.int64)
    C = max(chunk_count(R), -(-nb // TILE_POINTS)) if chunks is None else max(1, int(chunks))
    # chunk c owns points [pts[c], pts[c+1]) with about R/C observations; fixed points (-1) go to chunk 0
    counts = np.bincount(ib[ib >= 0], minlength=nb)
    cum = np.concatenate([[0], np.cumsum(counts)])
    pts = np.searchsorted(cum, [R * c / C for c in range(C)] + [cum[-1] + 1], side="left")
    pts[0], pts[-1] = 0, nb
    pts = np.maximum.accumulate(np.minimum(pts, nb))
    chunk_of = np.searchsorted(pts, np.maximum(ib, 0), side="right") - 1
    cam = np.where(ia >= 0, ia, na)  # fixed cameras sort last ...
    fixed = np.flatnonzero(ia < 0)
    if fixed.size:  # ... in groups that see each point at most once (the k-th observation of a point: group k)
        f = fixed[np.argsort(ib[fixed], kind="stable")]
        first = np.concatenate([[True], ib[f][1:] != ib[f][:-1]])
        start = np.maximum.accumulate(np.where(first, np.arange(f.size), 0))
        cam[f] = na + (np.arange(f.size) - start)
    order = np.lexsort((ib, cam, chunk_of))
    c_s, cam_s, ib_s = chunk_of[order], cam[order], ib[order]
    dup = (c_s[1:] == c_s[:-1]) & (cam_s[1:] == cam_s[:-1]) & (ib_s[1:] == ib_s[:-1]) & (ib_s[1:] >= 0)
    if dup.any():
        return None
    new_seg = np.concatenate([[True], (c_s[1:] != c_s[:-1]) | (cam_s[1:] != cam_s[:-1])])
    starts = np.flatnonzero(new_seg)
    lens = np.diff(np.concatenate([starts, [R]]))
    nbat = (lens + LANES - 1) // LANES
    seg_b1 = np.cumsum(nbat)
    seg_b0 = seg_b1 - nbat
    NB = int(seg_b1[-1]) if nbat.size else 0
    # slot of each sorted observation in the padded batch array
    slot = np.repeat(seg_b0 * LANES - starts, lens) + np.arange(R)
    seg_cam = np.where(cam_s[starts] < na, cam_s[starts], -1).astype(np.int64)
    seg_chunk = c_s[starts]
    chunk_seg = np.searchsorted(seg_chunk, np.arange(C + 1), side="left").astype(np.int64)
    IB = np.full(NB * LANES, -1, np.int32)
    IB[slot] = ib_s
    idx = np.int32 if NB * LANES < 2**31 else np.int64
    ROW = np.full(NB * LANES, -1, idx)
    ROW[slot] = order
    order, slot = order.astype(idx), slot.astype(idx)
    if values:
        JA, JB = _batches(A, order, slot, NB), _batches(B, order, slot, NB)
    else:
        JA, JB = np.zeros((0, 0), A.dtype), np.zeros((0, 0), B.dtype)
    return CameraMajor(
        JA,
        JB,
        IB.reshape(NB, LANES),
        ROW.reshape(NB, LANES),
        seg_cam,
        seg_b0.astype(np.int64),
        seg_b1.astype(np.int64),
        chunk_seg,
        np.asarray(pts, np.int64),
        (R, k, pa, pb, na, nb),
        order,
        slot,
        source,
    )


@njit(cache=True, nogil=True)
def _fill_batches(M2, order, slot, out):
    """out[s // 16, q*16 + s % 16] = M2[order[e], q] for s = slot[e] (padding lanes stay 0)."""
    n = M2.shape[1]
    for e in range(order.shape[0]):
        r = order[e]
        s = slot[e]
        b = s // LANES
        lane = s - b * LANES
        for q in range(n):
            out[b, q * LANES + lane] = M2[r, q]


@njit(cache=True, nogil=True)
def _fill_scaled(M, idx, s, order, slot, out, mode):
    """out[s // 16, q*16 + s % 16] = quantized(M[order[e], q] * s[idx[order[e]], q % p]) for s = slot[e]
    (zero where idx < 0: a fixed variable), with the statistics of that quantization (as
    ``kernels.fp16.quantize16_stats``/``quantize32_stats``: non-finite inputs, max |finite x|, overflows,
    underflows, subnormals). ``mode``: 0 fp64 (no rounding), 1 fp32, 2 fp16 bits via fp32 (round to nearest
    even, as ``vcvtps2ph``); ``out`` of the matching dtype (float64, float32, uint16)."""
    k, p = M.shape[1], M.shape[2]
    nonfinite = 0
    overflows = 0
    underflows = 0
    subnormals = 0
    max_abs = 0.0
    for e in range(order.shape[0]):
        row = order[e]
        sl = slot[e]
        b = sl // LANES
        lane = sl - b * LANES
        j = idx[row]
        for r in range(k):
            for c in range(p):
                x = np.float64(M[row, r, c]) * s[j, c] if j >= 0 else 0.0
                col = (r * p + c) * LANES + lane
                if not np.isfinite(x):
                    nonfinite += 1
                    if mode == 2:
                        out[b, col] = f2h(np.float32(x))
                    else:
                        out[b, col] = x
                    continue
                a = abs(x)
                if a > max_abs:
                    max_abs = a
                if mode == 0:
                    out[b, col] = x
                    continue
                v = np.float32(x)
                if mode == 1:
                    out[b, col] = v
                    o, u, sub = rounding_outcome(x, v, FP32_TINY)
                else:
                    h = f2h(v)
                    out[b, col] = h
                    o, u, sub = rounding_outcome(v, h2f(h), FP16_TINY)
                overflows += o
                underflows += u
                subnormals += sub
    return nonfinite, max_abs, overflows, underflows, subnormals


def fill_scaled(L: CameraMajor, A, ia, sa, B, ib, sb, dtype) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The column-scaled blocks (A Sa, B Sb) placed in ``L``'s structure and rounded to ``dtype`` (float64,
    float32, or uint16 = fp16 bits) in one pass, without the row-block copy: (JA, JB, statistics summed over
    both, as :func:`_fill_scaled` returns them)."""
    mode = {np.dtype(np.float64): 0, np.dtype(np.float32): 1, np.dtype(np.uint16): 2}[np.dtype(dtype)]
    NB = L.IB.shape[0]
    out = []
    stats = [0, 0.0, 0, 0, 0]
    for M, idx, sc in ((A, ia, sa), (B, ib, sb)):
        J = np.zeros((NB, M.shape[1] * M.shape[2] * LANES), dtype)
        st = _fill_scaled(np.ascontiguousarray(M), idx, np.ascontiguousarray(sc), L.order, L.slot, J, mode)
        stats = [stats[0] + st[0], max(stats[1], float(st[1])), stats[2] + st[2], stats[3] + st[3], stats[4] + st[4]]
        out.append(J)
    return out[0], out[1], tuple(stats)


def structure_of(A, ia, B, ib, na: int, nb: int, like: CameraMajor | None = None) -> CameraMajor | None:
    """:func:`build`'s layout for this structure with the values left out (JA, JB empty): ``like`` itself when
    it describes the same structure, else a new one (None where the layout cannot serve)."""
    if like is not None and _same_structure(like, A, ia, B, ib, na, nb, None):
        return like
    return build(A, ia, B, ib, na, nb, values=False)


def _batches(M, order, slot, NB):
    """(R, k, p) rows in the storage format -> (NB, k*p*16) camera-major batches."""
    n = M.shape[1] * M.shape[2]
    out = np.zeros((NB, n * LANES), M.dtype)
    _fill_batches(np.ascontiguousarray(M).reshape(M.shape[0], n), order, slot, out)
    return out


# ---------------------------------------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------------------------------------
def _padded_xa(xa, dtype):
    XA = np.zeros((xa.shape[0] + 1, xa.shape[1]), dtype)
    XA[:-1] = xa
    return XA


def _zero_rows(gb, L, c):
    gb[L.chunk_pts[c] : L.chunk_pts[c + 1]] = 0.0


def _segments(L: CameraMajor, c: int) -> tuple:
    """The arguments that name chunk ``c``'s segments: (seg_cam, seg_b0, seg_b1, first, one past last)."""
    return L.seg_cam, L.seg_b0, L.seg_b1, L.chunk_seg[c], L.chunk_seg[c + 1]


def _camera_chunks(L: CameraMajor, ga, gb, threads, run) -> list:
    """Run ``run(c, gpart, ACC)`` for every chunk with a zeroed private camera output ``gpart`` and accumulator,
    after zeroing the chunk's own rows of ``gb``; then ga = Σ gpart in chunk order. Returns run's results."""
    _, _, pa, _, na, _ = L.shape
    dt = ga.dtype

    def chunk(c):
        gpart = np.zeros((na, pa), dt)
        _zero_rows(gb, L, c)
        return gpart, run(c, gpart, np.zeros(pa * LANES, dt))

    parts = run_chunks(chunk, L.chunks, threads)
    ga[:] = 0.0
    for gpart, _ in parts:
        ga += gpart
    return [r for _, r in parts]


def cm_normal(L: CameraMajor, xa, xb, ga, gb, threads=None) -> float:
    """ga, gb = JᵀJ (xa, xb) (overwritten; all four arrays of the arithmetic dtype); returns ||J x||²."""
    dt = ga.dtype
    XA = _padded_xa(xa, dt)
    xb = np.ascontiguousarray(xb, dt)
    sizes = L.sizes()

    def run(c, gpart, ACC):
        NRM = np.zeros(LANES, dt)
        return cm_normal_chunk(L.JA, L.JB, L.IB, *_segments(L, c), XA, xb, gpart, gb, ACC, NRM, *sizes)

    total = dt.type(0)
    for s in _camera_chunks(L, ga, gb, threads, run):
        total = dt.type(total + s)
    return float(total)


def cm_rmatvec(L: CameraMajor, y, ga, gb, threads=None) -> None:
    """ga, gb = Jᵀ y (overwritten; ``y`` (R, k) in the original row order, all of the arithmetic dtype)."""
    y = np.ascontiguousarray(y, ga.dtype)
    sizes = L.sizes()

    def run(c, gpart, ACC):
        cm_rmatvec_chunk(L.JA, L.JB, L.IB, L.ROW, *_segments(L, c), y, gpart, gb, ACC, *sizes)

    _camera_chunks(L, ga, gb, threads, run)


def cm_matvec(L: CameraMajor, xa, xb, y, threads=None) -> None:
    """y = J (xa, xb) in the original row order (``y`` (R, k) C-contiguous, the arithmetic dtype)."""
    dt = y.dtype
    XA = _padded_xa(xa, dt)
    xb = np.ascontiguousarray(xb, dt)
    sizes = L.sizes()

    def chunk(c):
        cm_matvec_chunk(L.JA, L.JB, L.IB, L.ROW, *_segments(L, c), XA, xb, y, *sizes)

    run_chunks(chunk, L.chunks, threads)
