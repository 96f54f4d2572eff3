"""Explicit SIMD micro-kernels for numba code, written as LLVM vector IR (``@intrinsic``).

numba's LLVM pipeline runs the loop vectorizer but not the SLP vectorizer (off by default since numba
#8705), and the loop vectorizer gives up on the short, fixed-length inner loops of block kernels (a 9 x 9
camera block: the runtime alias checks cost more than the loop). Measured on the Schur reduction of
problem-16-22106: the scalar kernel ran at 4-6 GFLOP/s in fp64 and fp32 alike, so fp32 saved nothing. The
intrinsics here emit the vector instructions themselves: LLVM vector types of the row width (16 fp32 lanes:
one AVX-512 register; 16 fp64 lanes: two), loaded and stored whole, with fused multiply-adds. The element
type follows the arrays (float32 or float64), so the fp32 specialization does the same work with half the
registers and bytes.

:func:`rank3_update` ``(acc, Z, e, f, PC, W)``
    ``acc[a, :] += Z[e, 0, a] * Z[f, 0, :] + Z[e, 1, a] * Z[f, 1, :] + Z[e, 2, a] * Z[f, 2, :]`` for
    ``a < len(PC)``, rows of ``len(W)`` elements: the Schur complement's per-observation-pair update
    Z_e Z_fᵀ (:mod:`mixslam.kernels.schur`). ``acc`` (pc, W) and ``Z`` (m, 3, W) are C-contiguous arrays of
    one float dtype; ``PC`` / ``W`` are tuples whose lengths are the compile-time sizes.

Every intrinsic has a numpy twin (suffix ``_ref``) that the tests compare bit-for-bit where the arithmetic
allows (an FMA rounds once, the twin twice: tolerances from the unit roundoff).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "rank3_update",
    "rank3_update_ref",
    "lanes",
    "splat",
    "vector_name",
    "obs_normal",
    "obs_matvec",
    "obs_rmatvec",
]


def _row_ptr(context, builder, arytype, ary, indices):
    """Pointer to ``ary[indices]`` (C-contiguous array; no bounds or wraparound checks)."""
    a = context.make_array(arytype)(context, builder, ary)
    shape = cgutils.unpack_tuple(builder, a.shape, arytype.ndim)
    strides = cgutils.unpack_tuple(builder, a.strides, arytype.ndim)
    return cgutils.get_item_pointer2(
        context, builder, a.data, shape, strides, arytype.layout, indices, wraparound=False, boundscheck=False
    )


@intrinsic
def rank3_update(typingctx, acc, Z, e, f, PC, W):
    """See the module docstring. njit only."""
    if not (
        isinstance(acc, types.Array)
        and isinstance(Z, types.Array)
        and acc.ndim == 2
        and Z.ndim == 3
        and acc.dtype == Z.dtype
        and acc.dtype in (types.float32, types.float64)
        and acc.layout == "C"
        and Z.layout == "C"
        and isinstance(e, types.Integer)
        and isinstance(f, types.Integer)
        and isinstance(PC, types.UniTuple)
        and isinstance(W, types.UniTuple)
    ):
        return None
    pc, w = PC.count, W.count

    def codegen(context, builder, sig, args):
        acc_v, z_v, e_v, f_v = args[0], args[1], args[2], args[3]
        fty = context.get_value_type(sig.args[1].dtype)
        vty = ir.VectorType(fty, w)
        i64 = ir.IntType(64)
        e64 = context.cast(builder, e_v, sig.args[2], types.int64)
        f64 = context.cast(builder, f_v, sig.args[3], types.int64)
        zero = ir.Constant(i64, 0)
        elem = fty.as_pointer()
        suffix = f"v{w}f{32 if sig.args[1].dtype == types.float32 else 64}"
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty, vty, vty]), f"llvm.fma.{suffix}"
        )
        zf = []
        for q in range(3):
            p = _row_ptr(context, builder, sig.args[1], z_v, [f64, ir.Constant(i64, q), zero])
            zf.append(
                builder.load(builder.bitcast(p, vty.as_pointer()), align=fty.get_abi_alignment(context.target_data))
            )
        ze_row = [_row_ptr(context, builder, sig.args[1], z_v, [e64, ir.Constant(i64, q), zero]) for q in range(3)]
        undef = ir.Constant(vty, ir.Undefined)
        mask = ir.Constant(ir.VectorType(ir.IntType(32), w), [0] * w)
        align = fty.get_abi_alignment(context.target_data)
        for a in range(pc):
            pa = builder.bitcast(
                _row_ptr(context, builder, sig.args[0], acc_v, [ir.Constant(i64, a), zero]), vty.as_pointer()
            )
            v = builder.load(pa, align=align)
            for q in range(3):
                s = builder.load(builder.gep(builder.bitcast(ze_row[q], elem), [ir.Constant(i64, a)]), align=align)
                splat = builder.shuffle_vector(
                    builder.insert_element(undef, s, ir.Constant(ir.IntType(32), 0)), undef, mask
                )
                v = builder.call(fma, [splat, zf[q], v])
            builder.store(v, pa, align=align)
        return context.get_dummy_value()

    return types.void(acc, Z, e, f, PC, W), codegen


def rank3_update_ref(acc: np.ndarray, Z: np.ndarray, e: int, f: int, pc: int) -> None:
    """numpy twin of :func:`rank3_update`."""
    acc[:pc] += Z[e, :, :pc].T @ Z[f]


# ---------------------------------------------------------------------------------------------------------
# Per-observation products of a two-block Jacobian row block (see mixslam.kernels.products)
# ---------------------------------------------------------------------------------------------------------
_I1, _I16, _I32, _I64 = ir.IntType(1), ir.IntType(16), ir.IntType(32), ir.IntType(64)


def lanes(p: int) -> int:
    """Vector width of a block row of p values: the smallest power of two >= p, at least 4."""
    w = 4
    while w < p:
        w *= 2
    return w


def vector_name(vty) -> str:
    e = vty.element
    kind = {ir.FloatType: "f32", ir.DoubleType: "f64", ir.HalfType: "f16"}.get(type(e)) or f"i{e.width}"
    return f"v{vty.count}{kind}"


def _masked_load(builder, ptr, vty, mask, align):
    fn = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(vty, [vty.as_pointer(), _I32, ir.VectorType(_I1, vty.count), vty]),
        f"llvm.masked.load.{vector_name(vty)}.p0{vector_name(vty)}",
    )
    return builder.call(fn, [ptr, ir.Constant(_I32, align), mask, ir.Constant(vty, None)])


def _hsum(builder, v):
    """Sum of the lanes by halving (a fixed tree: the same order on every call)."""
    n = v.type.count
    while n > 1:
        h = n // 2
        lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, h), list(range(h))))
        hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, h), list(range(h, n))))
        v = builder.fadd(lo, hi)
        n = h
    return builder.extract_element(v, ir.Constant(_I32, 0))


def splat(builder, s, vty):
    undef = ir.Constant(vty, ir.Undefined)
    first = builder.insert_element(undef, s, ir.Constant(_I32, 0))
    return builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(_I32, vty.count), [0] * vty.count))


def _reduce_to(builder, v, n):
    """Halve ``v`` (adding its halves) until it has ``n`` lanes."""
    m = v.type.count
    while m > n:
        h = m // 2
        lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, h), list(range(h))))
        hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, h), list(range(h, m))))
        v = builder.fadd(lo, hi)
        m = h
    return v


class _Obs:
    """Code generation shared by the three per-observation intrinsics (one row block ``e``): block ``a``
    in vectors of ``wa`` lanes, block ``b`` in ``wb`` lanes (:func:`lanes` of each width)."""

    def __init__(self, context, builder, acc_type, wa, wb):
        self.c, self.b = context, builder
        self.acc_type = acc_type
        self.aty = context.get_value_type(acc_type)
        self.wa, self.wb = wa, wb
        self.fmas = {}

    def vty(self, w):
        return ir.VectorType(self.aty, w)

    def fma(self, x, y, z):
        w = x.type.count
        fn = self.fmas.get(w)
        if fn is None:
            vt = self.vty(w)
            fn = self.fmas[w] = cgutils.get_or_insert_function(
                self.b.module, ir.FunctionType(vt, [vt] * 3), f"llvm.fma.{vector_name(vt)}"
            )
        return self.b.call(fn, [x, y, z])

    def data(self, arytype, ary):
        return self.c.make_array(arytype)(self.c, self.b, ary).data

    def i64(self, v, t):
        return self.c.cast(self.b, v, t, types.int64)

    def mask(self, p, w, j):
        """Lanes < p of w, or none when j < 0 (an absent block)."""
        b = self.b
        on = ir.Constant(ir.VectorType(_I1, w), [1 if i < p else 0 for i in range(w)])
        off = ir.Constant(ir.VectorType(_I1, w), [0] * w)
        return b.select(b.icmp_signed(">=", j, ir.Constant(_I64, 0)), on, off)

    def load(self, data, dtype, offset, mask):
        """Masked row load of ``dtype`` values at element ``offset``, converted to the arithmetic's vector
        (fp16 bits: one ``vcvtph2ps`` for the whole row)."""
        b = self.b
        w = mask.type.count
        sty = ir.IntType(16) if dtype == types.uint16 else self.c.get_value_type(dtype)
        vs = ir.VectorType(sty, w)
        v = _masked_load(b, b.bitcast(b.gep(data, [offset]), vs.as_pointer()), vs, mask, dtype.bitwidth // 8)
        if dtype == types.uint16:
            return b.fpext(b.bitcast(v, ir.VectorType(ir.HalfType(), w)), self.vty(w))
        if dtype.bitwidth < self.acc_type.bitwidth:
            return b.fpext(v, self.vty(w))
        if dtype.bitwidth > self.acc_type.bitwidth:
            return b.fptrunc(v, self.vty(w))
        return v

    def rows(self, data, dtype, e, k, p, mask):
        b = self.b
        base = b.mul(e, ir.Constant(_I64, k * p))
        return [self.load(data, dtype, b.add(base, ir.Constant(_I64, r * p)), mask) for r in range(k)]

    def dots(self, ra, xa, rb, xb):
        """t_r = Σ_c A[r, c] xa[c] + Σ_c B[r, c] xb[c] per row, by a fixed tree: the wider product is halved
        to the other's width and the two added lane-wise; then rows are paired into one vector (lanes of row
        r, then of row r+1) and halved together until each row's sum is one lane."""
        b = self.b
        n = min(self.wa, self.wb)
        q = [b.fadd(_reduce_to(b, b.fmul(ra[r], xa), n), _reduce_to(b, b.fmul(rb[r], xb), n)) for r in range(len(ra))]
        out = []
        for r in range(0, len(q) - 1, 2):
            v = b.shuffle_vector(q[r], q[r + 1], ir.Constant(ir.VectorType(_I32, 2 * n), list(range(2 * n))))
            m = n  # lanes per row in v
            while m > 1:
                h = m // 2
                lo = [i * m + j for i in range(2) for j in range(h)]
                hi = [i * m + h + j for i in range(2) for j in range(h)]
                mask = ir.VectorType(_I32, 2 * h)
                v = b.fadd(b.shuffle_vector(v, v, ir.Constant(mask, lo)), b.shuffle_vector(v, v, ir.Constant(mask, hi)))
                m = h
            out += [b.extract_element(v, ir.Constant(_I32, 0)), b.extract_element(v, ir.Constant(_I32, 1))]
        if len(q) % 2:
            out.append(_hsum(b, q[-1]))
        return out

    def forward(self, sig, args, k, pa, pb):
        """The shared part of :func:`obs_normal` and :func:`obs_matvec` (arguments A, B, e, ja, jb, xa, xb
        first): (e as i64, A's rows, B's rows, t_r per row)."""
        b, ti = self.b, sig.args
        e64, ja64, jb64 = (self.i64(args[i], ti[i]) for i in (2, 3, 4))
        ma, mb = self.mask(pa, self.wa, ja64), self.mask(pb, self.wb, jb64)
        xav = self.load(self.data(ti[5], args[5]), ti[5].dtype, b.mul(ja64, ir.Constant(_I64, pa)), ma)
        xbv = self.load(self.data(ti[6], args[6]), ti[6].dtype, b.mul(jb64, ir.Constant(_I64, pb)), mb)
        rA = self.rows(self.data(ti[0], args[0]), ti[0].dtype, e64, k, pa, ma)
        rB = self.rows(self.data(ti[1], args[1]), ti[1].dtype, e64, k, pb, mb)
        return e64, rA, rB, self.dots(rA, xav, rB, xbv)

    def accumulate(self, rows, t, pad, prow):
        """pad[prow, :] += Σ_r rows[r] t_r: a whole padded row, unmasked (store-to-load forwarding works)."""
        b = self.b
        w = rows[0].type.count
        vt = self.vty(w)
        u = b.fmul(rows[0], splat(b, t[0], vt))
        for r in range(1, len(rows)):
            u = self.fma(rows[r], splat(b, t[r], vt), u)
        ptr = b.bitcast(b.gep(pad, [b.mul(prow, ir.Constant(_I64, w))]), vt.as_pointer())
        align = self.acc_type.bitwidth // 8
        b.store(b.fadd(b.load(ptr, align=align), u), ptr, align=align)


def _obs_types(A, B, xa, xb, K, PA, PB):
    ok = (
        isinstance(A, types.Array)
        and isinstance(B, types.Array)
        and A.ndim == 3
        and B.ndim == 3
        and A.layout == "C"
        and B.layout == "C"
        and isinstance(xa, types.Array)
        and isinstance(xb, types.Array)
        and xa.dtype == xb.dtype
        and xa.dtype in (types.float32, types.float64)
        and isinstance(K, types.UniTuple)
        and isinstance(PA, types.UniTuple)
        and isinstance(PB, types.UniTuple)
        and max(PA.count, PB.count) <= 16
    )
    return ok


@intrinsic
def obs_normal(typingctx, A, B, e, ja, jb, xa, xb, GA, ra, GB, rb, K, PA, PB):
    """Fused JᵀJ p for row block ``e``: t = A[e] xa[ja] + B[e] xb[jb]; GA[ra, :] += A[e]ᵀ t;
    GB[rb, :] += B[e]ᵀ t (padded accumulators of ``lanes(pa)`` / ``lanes(pb)`` columns in the arithmetic
    dtype); returns Σ t_r².

    ``ja``/``jb`` < 0: the block is absent (its loads are masked off, so it adds zeros to its row).
    ``xa``/``xb`` (n, pa)/(n, pb) C-contiguous in the arithmetic dtype (the dtype of GA). njit only.
    """
    if not (_obs_types(A, B, xa, xb, K, PA, PB) and GA.dtype == GB.dtype == xa.dtype and GA.layout == "C"):
        return None
    k, pa, pb = K.count, PA.count, PB.count
    wa, wb = lanes(pa), lanes(pb)

    def codegen(context, builder, sig, args):
        g = _Obs(context, builder, sig.args[7].dtype, wa, wb)
        ti = sig.args
        _, rA, rB, t = g.forward(sig, args, k, pa, pb)
        nrm = builder.fmul(t[0], t[0])
        for r in range(1, k):
            nrm = builder.fadd(nrm, builder.fmul(t[r], t[r]))
        g.accumulate(rA, t, g.data(ti[7], args[7]), g.i64(args[8], ti[8]))
        g.accumulate(rB, t, g.data(ti[9], args[9]), g.i64(args[10], ti[10]))
        return nrm

    return GA.dtype(A, B, e, ja, jb, xa, xb, GA, ra, GB, rb, K, PA, PB), codegen


@intrinsic
def obs_matvec(typingctx, A, B, e, ja, jb, xa, xb, y, K, PA, PB):
    """y[e, :] = A[e] xa[ja] + B[e] xb[jb] (same arithmetic and order as :func:`obs_normal`). njit only."""
    if not (_obs_types(A, B, xa, xb, K, PA, PB) and isinstance(y, types.Array) and y.dtype == xa.dtype):
        return None
    k, pa, pb = K.count, PA.count, PB.count
    wa, wb = lanes(pa), lanes(pb)

    def codegen(context, builder, sig, args):
        g = _Obs(context, builder, sig.args[7].dtype, wa, wb)
        e64, _, _, t = g.forward(sig, args, k, pa, pb)
        yd = g.data(sig.args[7], args[7])
        base = builder.mul(e64, ir.Constant(_I64, k))
        for r in range(k):
            builder.store(t[r], builder.gep(yd, [builder.add(base, ir.Constant(_I64, r))]))
        return context.get_dummy_value()

    return types.void(A, B, e, ja, jb, xa, xb, y, K, PA, PB), codegen


@intrinsic
def obs_rmatvec(typingctx, A, B, e, ja, jb, y, GA, ra, GB, rb, K, PA, PB):
    """GA[ra, :] += A[e]ᵀ y[e]; GB[rb, :] += B[e]ᵀ y[e] (padded accumulators, as :func:`obs_normal`)."""
    if not (
        _obs_types(A, B, GA, GB, K, PA, PB)
        and GA.dtype == GB.dtype
        and isinstance(y, types.Array)
        and y.dtype == GA.dtype
    ):
        return None
    k, pa, pb = K.count, PA.count, PB.count
    wa, wb = lanes(pa), lanes(pb)

    def codegen(context, builder, sig, args):
        A_v, B_v, e_v, ja_v, jb_v, y_v, GA_v, ra_v, GB_v, rb_v = args[:10]
        g = _Obs(context, builder, sig.args[6].dtype, wa, wb)
        ti = sig.args
        e64, ja64, jb64 = g.i64(e_v, ti[2]), g.i64(ja_v, ti[3]), g.i64(jb_v, ti[4])
        ma, mb = g.mask(pa, wa, ja64), g.mask(pb, wb, jb64)
        rA = g.rows(g.data(ti[0], A_v), ti[0].dtype, e64, k, pa, ma)
        rB = g.rows(g.data(ti[1], B_v), ti[1].dtype, e64, k, pb, mb)
        yd = g.data(ti[5], y_v)
        base = builder.mul(e64, ir.Constant(_I64, k))
        t = [builder.load(builder.gep(yd, [builder.add(base, ir.Constant(_I64, r))])) for r in range(k)]
        g.accumulate(rA, t, g.data(ti[6], GA_v), g.i64(ra_v, ti[7]))
        g.accumulate(rB, t, g.data(ti[8], GB_v), g.i64(rb_v, ti[9]))
        return context.get_dummy_value()

    return types.void(A, B, e, ja, jb, y, GA, ra, GB, rb, K, PA, PB), codegen
