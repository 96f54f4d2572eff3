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

__all__ = ["rank3_update", "rank3_update_ref"]


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
