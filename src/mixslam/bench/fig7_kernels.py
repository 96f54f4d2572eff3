"""Figure 7(a): the speed of each kernel in each storage format.

J·x (``jac_matvec``), Jᵀ·y (``jac_rmatvec``), the fused JᵀJ·p (``normal_matvec``) and the IC triangular solve
(``ic_solve``, pose graphs) on the column-scaled Jacobian of a simulated BA window (and of the first BAL data
file, with the data), of a simulated 3-D sphere graph (sphere2500-like) and of a simulated 2-D Manhattan graph
(city10000-like; sizes in :data:`KERNEL_GRAPHS`), stored in fp64 (fp64 vectors and arithmetic), fp32, and fp16
(fp16 storage, fp32 vectors and arithmetic: the ``mixed`` policies). Time: minimum over
``sizes.kernel_repeats`` calls after a warm-up call. Bytes: the model of ``benchmarks/kernels.py`` (matrix,
index arrays and vectors, each moved once per call; the IC factor twice).
"""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .context import BenchContext, new_figure, save_figure
from .fig7_end_to_end import CLAIM_LINEAR_MIXED_OVER_FP32
from .problems import problems
from .ratios import ratio

KERNEL_GRAPHS = {
    "quick": (("pgo3d", "sphere", 400), ("pgo2d", "manhattan", 1000)),
    "default": (("pgo3d", "sphere", 2500), ("pgo2d", "manhattan", 10000)),
    "full": (("pgo3d", "sphere", 2500), ("pgo2d", "manhattan", 10000)),
}
"""Figure 7(a)'s pose graphs per scale: (short name, simulator kind, poses). A 10,000-pose Manhattan graph
has about 23,000 edges (city10000: 20,687)."""
L3_BYTES_DEFAULT = 32 * 2**20
"""Last-level cache assumed when ``/sys`` does not tell (the bench machine: 32 MiB L3)."""
KERNELS = ("jac_matvec", "jac_rmatvec", "normal_matvec", "ic_solve")
KERNEL_LABELS = {"jac_matvec": "J·x", "jac_rmatvec": "Jᵀ·y", "normal_matvec": "JᵀJ·p", "ic_solve": "IC solve"}
FORMATS = ("fp64", "fp32", "fp16")
KERNEL_COLUMNS = [
    "problem",
    "description",
    "kernel",
    "rows",
    "unknowns",
    "t_fp64_s",
    "t_fp32_s",
    "t_fp16_s",
    "bytes_fp64",
    "bytes_fp32",
    "bytes_fp16",
    "stored_fp64",
    "stored_fp32",
    "stored_fp16",
    "fp32_over_fp64",
    "fp16_over_fp32",
    "bytes_fp32_over_fp64",
    "bytes_fp16_over_fp32",
    "gbps_fp64",
    "gbps_fp32",
    "gbps_fp16",
]


def tmin(fn, repeats: int) -> float:
    """Minimum seconds of ``repeats`` calls of ``fn()`` after one warm-up call. The callers bind the kernel's
    arguments with :func:`functools.partial` (bound when built, unlike a lambda closing over loop variables)."""
    fn()
    best = math.inf
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def solver_scale(lin) -> np.ndarray:
    """The CG solver's power-of-two Jacobi column scaling of ``lin``
    (:func:`mixslam.linear.operators.column_scale`)."""
    from ..linear.operators import column_scale

    return column_scale(lin.column_sq_norms())


def kernel_problems(ctx: BenchContext) -> list:
    """[(short name, description, Linearization (fp64), IC pattern or None)] of figure 7(a)."""
    from ..ba import BundleProblem
    from ..linear.config import ICConfig, fill_level_of
    from ..pgo import PoseGraphProblem
    from ..precision import PrecisionPolicy
    from ..sim.pose_graph import simulate_pose_graph

    out: list[tuple] = []
    ba_probs = problems(ctx, "ba")
    picks = [p for p in ba_probs if p.simulated][:1] + [p for p in ba_probs if not p.simulated][:1]
    for prob in picks:
        bp = BundleProblem(prob.data, PrecisionPolicy.preset("fp64", "ba"))
        lin = bp.linearize((prob.data.cameras, prob.data.points))
        short = "ba" if prob.simulated else "ba_bal"
        out.append((short, prob.name, lin, None))
    fill = ICConfig().fill_level
    for short, kind, n in KERNEL_GRAPHS.get(ctx.config.scale, KERNEL_GRAPHS["default"]):
        g = simulate_pose_graph(kind, n, seed=ctx.config.seed).graph
        pp = PoseGraphProblem(g, PrecisionPolicy.preset("fp64", "pgo"))
        lin = pp.linearize((g.rotations, g.translations))
        pattern = pp.pattern.with_fill(fill_level_of(fill, pp.pattern.nv))
        out.append((short, f"{kind}{n}-sim ({g.dim}D, {g.num_edges} edges)", lin, pattern))
    return out


def _formats():
    from ..precision import Precision

    return {
        "fp64": (Precision.FP64, Precision.FP64, np.float64),
        "fp32": (Precision.FP32, Precision.FP32, np.float32),
        "fp16": (Precision.FP16, Precision.FP32, np.float32),
    }


def bench_kernels(lin, pattern, repeats: int, seed: int) -> dict:
    """{kernel: {format: (seconds, bytes moved, bytes of the stored matrix)}} on one problem (the logic of
    ``benchmarks/kernels.py``, on the solver's scaled and quantized operator)."""
    from ..kernels import ic_solve, jac_matvec, jac_rmatvec, normal_matvec
    from ..linear.operators import JacobianOperator
    from ..linear.preconditioners import ICFactor
    from ..precision import Precision
    from ..storage import kernel_array, quantize_with_fallback

    scale = solver_scale(lin)
    rng = np.random.default_rng(seed)
    L64 = None
    if pattern is not None:
        ic = ICFactor(pattern, pattern.assemble(lin.A, lin.B), scale, Precision.FP64, Precision.FP64)
        L64 = ic.L
    res: dict[str, Any] = {k: {} for k in KERNELS if k != "ic_solve" or pattern is not None}
    fallbacks = []
    for fmt, (storage, acc, vd) in _formats().items():
        op = JacobianOperator.from_linearization(lin, scale, storage, acc)
        if op.fallbacks:
            fallbacks.append(f"{fmt} Jacobian fell back to {op.storage.value}")
        A, B, ia, ib = op.A, op.B, op.ia, op.ib
        alias = not lin.pb
        R, k = ia.size, A.shape[1]
        xa = rng.standard_normal((lin.nv, lin.p)).astype(vd)
        xb = xa if alias else rng.standard_normal((lin.nb, lin.pb)).astype(vd)
        y = rng.standard_normal((R, k)).astype(vd)
        ga = np.empty((lin.nv, lin.p), vd)
        gb = ga if alias else np.empty((lin.nb, lin.pb), vd)
        yo = np.empty((R, k), vd)
        mbytes = A.nbytes + B.nbytes + ia.nbytes + ib.nbytes
        vb = np.dtype(vd).itemsize
        vec_in = xa.nbytes + (0 if alias else xb.nbytes)
        vec_g = ga.nbytes + (0 if alias else gb.nbytes)
        stored = A.nbytes + B.nbytes
        res["jac_matvec"][fmt] = (
            tmin(partial(jac_matvec, A, ia, B, ib, xa, xb, yo, False), repeats),
            mbytes + vec_in + R * k * vb,
            stored,
        )
        res["jac_rmatvec"][fmt] = (
            tmin(partial(jac_rmatvec, A, ia, B, ib, y, ga, gb, False), repeats),
            mbytes + R * k * vb + 2 * vec_g,
            stored,
        )
        res["normal_matvec"][fmt] = (
            tmin(partial(normal_matvec, A, ia, B, ib, xa, xb, ga, gb, False), repeats),
            mbytes + vec_in + 2 * vec_g,
            stored,
        )
        if L64 is not None:
            q, _, used, fell = quantize_with_fallback(L64, storage)
            if fell:
                fallbacks.append(f"{fmt} IC factor fell back to {used.value}")
            Ls = kernel_array(q, used)
            indptr, indices = pattern.indptr, pattern.indices
            b = rng.standard_normal((lin.nv, lin.p)).astype(vd)
            x = np.empty_like(b)
            res["ic_solve"][fmt] = (
                tmin(partial(ic_solve, indptr, indices, Ls, b, x, False), repeats),
                2 * (Ls.nbytes + indices.nbytes + indptr.nbytes) + b.nbytes + 3 * x.nbytes,
                Ls.nbytes,
            )
    res["_fallbacks"] = fallbacks
    return res


def kernel_rows(ctx: BenchContext) -> tuple[list, list]:
    """Figure 7(a)'s CSV rows (one per problem and kernel: times, bytes and ratios per format) and the
    quantization fallbacks met, with BLAS held to one thread."""
    from threadpoolctl import threadpool_limits

    krows, fallbacks = [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for i, (short, desc, lin, pattern) in enumerate(kernel_problems(ctx)):
            ctx.log(f"figure 7: kernels on {short} ({desc})")
            res = bench_kernels(lin, pattern, ctx.config.sizes.kernel_repeats, seed=ctx.config.seed * 1000 + i)
            fallbacks += [f"{short}: {f}" for f in res.pop("_fallbacks")]
            for kern, by in res.items():
                row = {
                    "problem": short,
                    "description": desc,
                    "kernel": kern,
                    "rows": int(lin.ia.size),
                    "unknowns": int(lin.size),
                }
                for fmt in FORMATS:
                    t, nb, st = by[fmt]
                    row[f"t_{fmt}_s"], row[f"bytes_{fmt}"], row[f"stored_{fmt}"] = t, nb, st
                    row[f"gbps_{fmt}"] = nb / t / 1e9
                row["fp32_over_fp64"] = ratio(row["t_fp32_s"], row["t_fp64_s"])
                row["fp16_over_fp32"] = ratio(row["t_fp16_s"], row["t_fp32_s"])
                row["bytes_fp32_over_fp64"] = ratio(row["bytes_fp32"], row["bytes_fp64"])
                row["bytes_fp16_over_fp32"] = ratio(row["bytes_fp16"], row["bytes_fp32"])
                krows.append(row)
    return krows, fallbacks


def l3_cache_bytes() -> int:
    """Bytes of the last-level (L3) cache of CPU 0, from ``/sys``; :data:`L3_BYTES_DEFAULT` when it does not tell."""
    try:
        txt = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip().upper()
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(txt[-1], 1)
        return int(txt.rstrip("KMG")) * mult
    except (OSError, ValueError, IndexError):
        return L3_BYTES_DEFAULT


def kernel_notes(rows: list, l3: int) -> list:
    """Whether each kernel's fp16/fp32 time follows its fp16/fp32 bytes, and the cache situation behind it."""

    def item(r):
        return (
            f"{r['problem']} {KERNEL_LABELS[r['kernel']]} {r['fp16_over_fp32']:.2f}x the time for "
            f"{r['bytes_fp16_over_fp32']:.2f}x the bytes (fp32 working set {r['bytes_fp32'] / 1e6:.1f} MB)"
        )

    notes = []
    follow = [r for r in rows if r["fp16_over_fp32"] <= r["bytes_fp16_over_fp32"] + 0.1]
    if follow:
        notes.append("fp16 storage vs fp32, where the time follows the bytes: " + "; ".join(map(item, follow)) + ".")
    for fits in (True, False):
        sel = [r for r in rows if r not in follow and (r["bytes_fp32"] < l3) == fits]
        if not sel:
            continue
        why = (
            f"these working sets fit in the {l3 / 2**20:.0f} MiB L3, so the passes run from cache and are "
            "bound by instruction throughput and latency (each fp16 entry costs an extra conversion), not by "
            "memory bandwidth"
            if fits
            else f"these working sets exceed the {l3 / 2**20:.0f} MiB L3, yet one core does not saturate the "
            "memory bandwidth (per-entry work, scattered index loads and, in the IC solve, the substitution's "
            "dependency chain cap it)"
        )
        notes.append(
            "fp16 storage vs fp32, where the time does not follow the bytes: "
            + "; ".join(map(item, sel))
            + f". Why: {why}. The claim's GPU runs these kernels bandwidth-bound, where the time follows "
            "the bytes: that is where its mixed-precision speed-up comes from, and why it does not show "
            "on this CPU."
        )
    return notes


def plot_kernels(ctx: BenchContext, krows: list) -> str:
    fig = new_figure((max(8.0, 0.6 * len(krows) + 3.0), 5.0))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(krows))
    w = 0.38
    ax.bar(x - w / 2, [r["fp32_over_fp64"] for r in krows], w, label="fp32 / fp64", color="tab:green")
    ax.bar(x + w / 2, [r["fp16_over_fp32"] for r in krows], w, label="fp16 storage / fp32", color="tab:red")
    ax.plot(
        x + w / 2,
        [r["bytes_fp16_over_fp32"] for r in krows],
        "k_",
        markersize=12,
        mew=2,
        label="bytes fp16 / fp32 (model)",
    )
    ax.axhline(1.0, color="k", lw=1)
    ax.axhline(
        CLAIM_LINEAR_MIXED_OVER_FP32["ba"],
        color="tab:purple",
        ls="--",
        lw=1,
        label=f"claim BA end-to-end linear mixed/fp32 {CLAIM_LINEAR_MIXED_OVER_FP32['ba']}",
    )
    ax.axhline(
        CLAIM_LINEAR_MIXED_OVER_FP32["pgo"],
        color="tab:brown",
        ls=":",
        lw=1.5,
        label=f"claim PGO end-to-end linear mixed/fp32 {CLAIM_LINEAR_MIXED_OVER_FP32['pgo']}",
    )
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['problem']}\n{KERNEL_LABELS[r['kernel']]}" for r in krows], fontsize=7)
    top = max([1.0] + [v for r in krows for v in (r["fp32_over_fp64"], r["fp16_over_fp32"]) if math.isfinite(v)])
    ax.set_ylim(0, 1.45 * top)
    ax.set_ylabel("time ratio (min of repeats)")
    ax.set_title("Per-kernel time ratios (this CPU)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    return save_figure(ctx, fig, "fig7_kernels.png")
