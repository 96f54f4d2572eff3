"""Figure 7: speed ratios mixed vs fp32 vs fp64, (a) per kernel (:mod:`mixslam.bench.fig7_kernels`) and (b) end
to end (:mod:`mixslam.bench.fig7_end_to_end`), with the memory the Jacobian and the preconditioner hold.
"""

from __future__ import annotations

from .context import BenchContext, FigureResult
from .fig7_end_to_end import (
    CLAIM_LINEAR_MIXED_OVER_FP32,
    E2E_COLUMNS,
    end_to_end_rows,
    end_to_end_summary,
    plot_end_to_end,
)
from .fig7_kernels import KERNEL_COLUMNS, KERNEL_LABELS, kernel_notes, kernel_rows, l3_cache_bytes, plot_kernels
from .problems import run_cache
from .ratios import round3
from .report import fp16_arithmetic_note
from .solves import warm_kernels


def figure7(ctx: BenchContext) -> FigureResult:
    """Speed ratios mixed vs fp32 vs fp64: (a) per kernel (min-of-repeats time, modelled bytes moved, ratios
    fp16/fp32 and fp32/fp64), (b) end to end (whole solves: time, linear-solve time, final cost relative to
    fp64, memory of the Jacobian and the preconditioner). See the module docstring."""
    cache = run_cache(ctx)
    ctx.log("figure 7: compiling / loading kernels")
    warm_kernels()
    # ---- (a) kernels
    krows, fallbacks = kernel_rows(ctx)
    kcsv = ctx.write_csv("fig7_kernels.csv", krows, KERNEL_COLUMNS)
    # ---- (b) end to end
    erows = end_to_end_rows(ctx, "ba") + end_to_end_rows(ctx, "pgo")
    ecsv = ctx.write_csv("fig7_end_to_end.csv", erows, E2E_COLUMNS)

    # ---- table and summary
    table, summary = [], {}
    for r in krows:
        if r["problem"] == "ba_bal" and r["kernel"] != "normal_matvec":
            continue  # the BAL file's J·x and Jᵀ·y stay in the CSV (table kept short)
        table.append(
            {
                "problem": r["problem"],
                "what": f"kernel {KERNEL_LABELS[r['kernel']]}",
                "fp32/fp64": round3(r["fp32_over_fp64"]),
                "fp16 storage/fp32": round3(r["fp16_over_fp32"]),
                "MB fp64": round3(r["bytes_fp64"] / 1e6),
                "MB fp32": round3(r["bytes_fp32"] / 1e6),
                "MB fp16 storage": round3(r["bytes_fp16"] / 1e6),
                "claim mixed/fp32": "",
            }
        )
        summary[f"kernel_{r['kernel']}_fp16_over_fp32_{r['problem']}"] = round(r["fp16_over_fp32"], 4)
        summary[f"kernel_{r['kernel']}_fp32_over_fp64_{r['problem']}"] = round(r["fp32_over_fp64"], 4)
        summary[f"kernel_{r['kernel']}_bytes_fp16_over_fp32_{r['problem']}"] = round(r["bytes_fp16_over_fp32"], 4)
    e2e = end_to_end_summary(erows)
    for kind in ("ba", "pgo"):
        agg = e2e.get(kind)
        if not agg:
            continue
        n = agg["n"]
        for what, key in (("linear solve", "linear"), ("whole solve", "total")):
            table.append(
                {
                    "problem": f"{kind.upper()} ({n} problem{'s' if n > 1 else ''})",
                    "what": f"end to end, {what}",
                    "fp32/fp64": round3(agg[f"{key}_fp32_over_fp64"]),
                    "mixed(fp16)/fp32": round3(agg[f"{key}_mixed_over_fp32"]),
                    "MB fp64": round3(agg["mem_fp64"] / 1e6),
                    "MB fp32": round3(agg["mem_fp32"] / 1e6),
                    "MB mixed": round3(agg["mem_mixed"] / 1e6),
                    "claim mixed/fp32": CLAIM_LINEAR_MIXED_OVER_FP32[kind] if key == "linear" else "",
                }
            )
            for r in ("mixed_over_fp32", "fp32_over_fp64"):
                summary[f"{kind}_{key}_{r}"] = round(agg[f"{key}_{r}"], 4)
        summary[f"{kind}_linear_per_cg_iteration_mixed_over_fp32"] = round(agg["per_it_mixed_over_fp32"], 4)
        summary[f"{kind}_jacobian_bytes_mixed_over_fp32"] = round(agg["jac_mixed_over_fp32"], 4)
        summary[f"{kind}_preconditioner_bytes_mixed_over_fp32"] = round(agg["pre_mixed_over_fp32"], 4)
        summary[f"{kind}_max_rel_cost_mixed"] = agg["max_rel_cost_mixed"]
        summary[f"{kind}_problems"] = n
    kpng = plot_kernels(ctx, krows)
    epng = plot_end_to_end(ctx, erows)
    notes = list(cache["notes"]) + [f"Quantization fallback in figure 7(a): {f}." for f in fallbacks]
    notes += _notes(krows, e2e, summary)
    return FigureResult(
        7,
        "Speed ratios mixed vs fp32 vs fp64: per kernel and end to end, with memory",
        [kpng, epng, kcsv, ecsv],
        table,
        summary,
        notes,
    )


def _notes(krows: list, e2e: dict, summary: dict) -> list:
    notes = [
        "fp16 here is storage only: the kernels load binary16 and compute in fp32; "
        f"{fp16_arithmetic_note()}. Kernel rows 'fp16 storage' = fp16 storage, fp32 "
        "vectors and arithmetic. The mixed policies use fp16 for one operand each: BA mixed for the Jacobian "
        "(J·x, Jᵀ·y, JᵀJ·p rows), PGO mixed for the IC factor only (IC solve rows; its Jacobian stays fp32, so "
        "the PGO product rows show what fp16 Jacobian storage would cost, not what mixed runs).",
        "End-to-end ratios are geometric means over the problems of each kind; MB columns: bytes moved per "
        "call (kernel rows, model) or memory held by the Jacobian and the preconditioner summed over the "
        "problems (end-to-end rows; the fp64 column is the fp64 CG solve's). PGO solves start from the "
        "chordal guess, computed once and not timed.",
    ]
    notes += kernel_notes([r for r in krows if r["kernel"] in ("normal_matvec", "ic_solve")], l3_cache_bytes())
    for kind in ("ba", "pgo"):
        agg = e2e.get(kind)
        if not agg:
            continue
        claim = CLAIM_LINEAR_MIXED_OVER_FP32[kind]
        got = agg["linear_mixed_over_fp32"]
        its = agg["cg_iterations"]
        notes.append(
            f"{kind.upper()} end to end: mixed/fp32 linear-solve time {got:.2f} (claim {claim:.2f} on "
            f"the GPU), {agg['per_it_mixed_over_fp32']:.2f} per CG iteration (CG iterations mixed "
            f"{its['mixed']} vs fp32 {its['fp32']}); the mixed policy halves the "
            f"{'Jacobian' if kind == 'ba' else 'IC factor'} memory "
            f"({(agg['jac_mixed_over_fp32'] if kind == 'ba' else agg['pre_mixed_over_fp32']):.2f}x fp32) "
            "but on this CPU the saved bytes buy little time."
            if got > claim + 0.1
            else f"{kind.upper()} end to end: mixed/fp32 linear-solve time {got:.2f} (claim {claim:.2f}); "
            f"{agg['per_it_mixed_over_fp32']:.2f} per CG iteration."
        )
    return notes
