"""Flush-to-zero for compiled fp32 kernels: :func:`ftz_on` / :func:`ftz_restore`, callable from ``njit`` code.

A sparse Cholesky factor's fill entries decay geometrically along the elimination tree; in fp32 some reach
the subnormal range (below 1.2e-38: 4,367 of 1.56M panel entries on city10000), and every arithmetic
operation on or producing a subnormal takes a microcode assist on x86 (about 100x slower). That alone made
the fp32 factorization 2x slower than the fp64 one. Kernels that work in fp32 therefore set the SSE control
register's FTZ (flush results to zero) and DAZ (read subnormal inputs as zero) bits on entry and restore the
caller's register on exit, as GPUs and most BLAS builds do for fp32. Values that small are far below fp32's
resolution of any entry they are added to, so the factor changes by less than its rounding error.

On x86-64 this compiles to ``stmxcsr`` / ``ldmxcsr`` (LLVM intrinsics); elsewhere the two functions do
nothing (ARM's FPCR would need its own intrinsic; not measured here).
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["ftz_on", "ftz_restore", "FTZ_SUPPORTED"]

#: MXCSR bits: FTZ (bit 15) and DAZ (bit 6).
_FTZ_DAZ = (1 << 15) | (1 << 6)

FTZ_SUPPORTED = platform.machine().lower() in ("x86_64", "amd64")


def _mxcsr_call(builder, name: str, ptr):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [builder.bitcast(ptr, ir.IntType(8).as_pointer())])


@intrinsic
def _read_mxcsr(typingctx):
    def codegen(context, builder, signature, args):
        ptr = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", ptr)
        return builder.load(ptr)

    return types.uint32(), codegen


@intrinsic
def _write_mxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        ptr = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(args[0], ptr)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", ptr)
        return context.get_dummy_value()

    return types.void(types.uint32), codegen


if FTZ_SUPPORTED:

    @njit(cache=True)
    def ftz_on():
        """Set FTZ and DAZ; returns the previous control register for :func:`ftz_restore`."""
        old = _read_mxcsr()
        _write_mxcsr(np.uint32(old | _FTZ_DAZ))
        return old

    @njit(cache=True)
    def ftz_restore(old):
        """Restore the control register saved by :func:`ftz_on`."""
        _write_mxcsr(old)

else:  # pragma: no cover - not x86-64

    @njit(cache=True)
    def ftz_on():
        return 0

    @njit(cache=True)
    def ftz_restore(old):
        return None
