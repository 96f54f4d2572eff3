"""Issue 17: the 16-bit instructions of this CPU, measured: AVX-512 FP16 fused multiply-adds and AVX-512 BF16
dot products (``vdpbf16ps``), against fp32 FMAs, in registers (peak arithmetic, no memory).

* fp32 FMA: 16 independent chains of ``llvm.fma.v16f32`` (the roofline's ``fma`` kernel).
* fp16 FMA: the same with ``llvm.fma.v32f16``: 32 half lanes per zmm. With AVX-512 FP16 LLVM emits
  ``vfmadd...ph``; without it, it promotes every operation to fp32 and rounds back (the run says which).
* bf16 dot: ``vdpbf16ps`` (16 fp32 accumulators += pairs of bf16 products, 64 flops per instruction) by
  inline assembly, run only where the CPU has AVX-512 BF16 (``avx512_bf16`` in /proc/cpuinfo).

Each kernel is selected at run time from the CPU flags; the fp32 kernel runs everywhere. Flops count 2 per
multiply-add. Prints GFLOP/s per core and the ratios to fp32.

Why it matters here (docs/ba_results.md): the CG products are bound by memory traffic and gathers, not by
arithmetic (3-10% of the fp32 FMA peak, `benchmarks/products.py`), and fp16 values are converted 16 per
``vcvtph2ps``; so 2x the arithmetic throughput of 16-bit FMAs would not shorten them. The numbers below say
what a compute-bound kernel (a dense fp16 factorization, say) could gain on this CPU.

    python benchmarks/fp16_bf16.py [--seconds 0.5]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

CHAINS = 16


class _BFloat(ir.Type):
    """LLVM's ``bfloat`` (llvmlite's IR builder has none; the type only has to print)."""

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash("bfloat")


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@intrinsic
def _chains(typingctx, x, n, kind):
    """CHAINS register-resident chains of one 512-bit operation, n times; ``kind`` a string literal type."""
    if not (isinstance(x, types.Array) and isinstance(n, types.Integer) and isinstance(kind, types.StringLiteral)):
        return None
    what = kind.literal_value

    def codegen(context, builder, sig, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        f32 = ir.FloatType()
        if what in ("fp32", "fp16"):  # llvm.fma on one zmm of floats or halves
            lanes = 16 if what == "fp32" else 32
            vty = ir.VectorType(f32 if what == "fp32" else ir.HalfType(), lanes)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty] * 3), f"llvm.fma.v{lanes}f{32 if what == 'fp32' else 16}"
            )

            def step(v, a, b):
                return builder.call(fn, [v, a, b])

            a = ir.Constant(vty, [0.75] * lanes)
            b = ir.Constant(vty, [0.25] * lanes)
        else:  # bf16: acc(16 x f32) += dot(pairs of bf16 in a, b)
            vty = ir.VectorType(f32, 16)
            bty = ir.VectorType(_BFloat(), 32)  # llvmlite has no bfloat type: one that prints as LLVM's
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty, bty, bty]), "llvm.x86.avx512bf16.dpbf16ps.512"
            )
            ity = ir.VectorType(i32, 16)

            def step(v, a, b):
                return builder.call(fn, [v, a, b])

            a = builder.bitcast(ir.Constant(ity, [0x3F403F40] * 16), bty)  # bf16 pairs of 0.75
            b = builder.bitcast(ir.Constant(ity, [0] * 16), bty)  # zeros: the accumulators stay finite
        base = context.make_array(sig.args[0])(context, builder, args[0]).data
        bp = builder.bitcast(base, vty.as_pointer())
        slots = []
        for k in range(CHAINS):
            p = builder.gep(bp, [ir.Constant(i64, k)])
            s = cgutils.alloca_once(builder, vty)
            builder.store(builder.load(p, align=2), s)
            slots.append((p, s))
        with cgutils.for_range(builder, context.cast(builder, args[1], sig.args[1], types.int64)):
            for _, s in slots:
                builder.store(step(builder.load(s), a, b), s)
        for p, s in slots:
            builder.store(builder.load(s), p, align=2)
        return context.get_dummy_value()

    return types.void(x, n, kind), codegen


def _kernel(kind: str):
    @njit(nogil=True)
    def k(x, n):
        _chains(x, n, kind)

    return k


FLOPS_PER_OP = {"fp32": 2 * 16, "fp16": 2 * 32, "bf16": 2 * 32}


def measure(kind: str, seconds: float) -> float:
    """GFLOP/s of one core (best of 5 timed runs after a warm-up)."""
    k = _kernel(kind)
    x = np.zeros(CHAINS * 64 // 4, np.float32)  # 64 bytes per chain, as float32 storage
    if kind != "bf16":
        x[:] = 0.5 if kind == "fp32" else 0.0
    k(x, 10)
    n = 1000
    while True:
        t0 = time.perf_counter()
        k(x, n)
        dt = time.perf_counter() - t0
        if dt > seconds / 5 or n > 1 << 30:
            break
        n *= 4
    best = min(_timed(k, x, n) for _ in range(5))
    return FLOPS_PER_OP[kind] * CHAINS * n / best / 1e9


def _timed(k, x, n) -> float:
    t0 = time.perf_counter()
    k(x, n)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    flags = cpu_flags()
    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)

    has16, has_bf = "avx512_fp16" in flags, "avx512_bf16" in flags
    log(f"CPU flags: avx512f={'avx512f' in flags} avx512_fp16={has16} avx512_bf16={has_bf} f16c={'f16c' in flags}")
    base = measure("fp32", a.seconds)
    log(f"fp32 FMA (zmm)              {base:8.1f} GFLOP/s per core")
    g16 = measure("fp16", a.seconds)
    how = "native vfmadd...ph" if has16 else "no AVX-512 FP16: LLVM promotes to fp32 and rounds back"
    log(f"fp16 FMA (32 half lanes)    {g16:8.1f} GFLOP/s per core = {g16 / base:.2f}x fp32 ({how})")
    if has_bf:
        gbf = measure("bf16", a.seconds)
        log(f"bf16 dot (vdpbf16ps)        {gbf:8.1f} GFLOP/s per core = {gbf / base:.2f}x fp32")
    else:
        log("bf16 dot (vdpbf16ps)        not run: this CPU has no AVX-512 BF16")
    if a.out:
        a.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
