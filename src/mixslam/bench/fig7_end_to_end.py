"""Figure 7(b): whole solves end to end, BA by fp64 Schur and fp64 / fp32 / mixed CGNR, PGO by fp64 Cholesky
and fp64 / fp32 / mixed IC (:mod:`mixslam.bench.solves`, shared with figure 6): time, linear-solve time, final
cost relative to the fp64 direct solve, and the memory the Jacobian and the preconditioner hold
(``report.memory``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .context import BenchContext, new_figure, save_figure
from .problems import problems
from .ratios import geomean, ratio
from .solves import CG_SOLVER, DIRECT_SOLVER, POLICIES, lm_seconds, solve

CLAIM_LINEAR_MIXED_OVER_FP32 = {"ba": 0.59, "pgo": 0.74}
"""Figure 7's claimed end-to-end linear-solve time ratios mixed / fp32."""
E2E_COLUMNS = [
    "problem",
    "kind",
    "precision",
    "solver",
    "status",
    "total_s",
    "linear_solve_s",
    "lm_s",
    "lm_iterations",
    "cg_iterations",
    "linear_s_per_cg_iteration",
    "final_cost",
    "rel_cost_to_fp64_direct",
    "linear_over_fp32",
    "total_over_fp32",
    "linear_over_fp64_same_solver",
    "total_over_fp64_direct",
    "jacobian_bytes",
    "preconditioner_bytes",
    "direct_solver_bytes",
    "memory_bytes",
    "overflows",
    "fallbacks",
]


def end_to_end_rows(ctx: BenchContext, kind: str) -> list:
    rows = []
    cg, direct = CG_SOLVER[kind], DIRECT_SOLVER[kind]
    pairs = [("fp64", direct)] + [(p, cg) for p in POLICIES]
    for prob in problems(ctx, kind):
        ctx.log(f"figure 7: end to end, {prob.name}")
        reps = {pair: solve(ctx, prob, *pair) for pair in pairs}
        base = reps[("fp64", direct)]
        f32 = reps[("fp32", cg)]
        f64 = reps[("fp64", cg)]
        for (precision, solver), rep in reps.items():
            if rep is None:
                continue
            mem = rep.memory.as_dict()  # only what this solver holds
            t = rep.timing
            jb, pb = mem.get("jacobian_bytes", 0), mem.get("preconditioner_bytes", 0)
            db = sum(v for k, v in mem.items() if k not in ("jacobian_bytes", "preconditioner_bytes"))
            is_cg = solver == cg
            rows.append(
                {
                    "problem": prob.name,
                    "kind": kind,
                    "precision": precision,
                    "solver": solver,
                    "status": rep.status.value,
                    "total_s": t["total"],
                    "linear_solve_s": t["linear_solve"],
                    "lm_s": lm_seconds(rep),
                    "lm_iterations": rep.iterations,
                    "cg_iterations": rep.linear_iterations,
                    "linear_s_per_cg_iteration": ratio(t["linear_solve"], rep.linear_iterations)
                    if is_cg
                    else float("nan"),
                    "final_cost": rep.final_cost,
                    "rel_cost_to_fp64_direct": (
                        (rep.final_cost - base.final_cost) / base.final_cost
                        if base is not None and base.final_cost
                        else float("nan")
                    ),
                    "linear_over_fp32": ratio(t["linear_solve"], f32.timing["linear_solve"])
                    if is_cg and f32
                    else float("nan"),
                    "total_over_fp32": ratio(t["total"], f32.timing["total"]) if is_cg and f32 else float("nan"),
                    "linear_over_fp64_same_solver": (
                        ratio(t["linear_solve"], f64.timing["linear_solve"]) if is_cg and f64 else float("nan")
                    ),
                    "total_over_fp64_direct": ratio(t["total"], base.timing["total"]) if base else float("nan"),
                    "jacobian_bytes": jb,
                    "preconditioner_bytes": pb,
                    "direct_solver_bytes": db,
                    "memory_bytes": jb + pb + db,
                    "overflows": rep.quantization.overflows,
                    "fallbacks": rep.quantization.fallbacks,
                }
            )
    return rows


def end_to_end_summary(erows: list) -> dict:
    """Per kind: geometric means over the problems of the CG solver's time ratios, memory summed over the
    problems per precision, the largest relative cost difference of mixed to the fp64 direct solve."""
    out = {}
    for kind in ("ba", "pgo"):
        cg = CG_SOLVER[kind]
        rows = [r for r in erows if r["kind"] == kind and r["solver"] == cg]
        names = sorted({r["problem"] for r in rows})
        if not names:
            continue
        by = {(r["problem"], r["precision"]): r for r in rows}
        agg: dict[str, Any] = {"n": len(names)}
        for key, col in (("linear", "linear_solve_s"), ("total", "total_s")):
            agg[f"{key}_mixed_over_fp32"] = geomean(
                ratio(by[(p, "mixed")][col], by[(p, "fp32")][col])
                for p in names
                if (p, "mixed") in by and (p, "fp32") in by
            )
            agg[f"{key}_fp32_over_fp64"] = geomean(
                ratio(by[(p, "fp32")][col], by[(p, "fp64")][col])
                for p in names
                if (p, "fp32") in by and (p, "fp64") in by
            )
        agg["per_it_mixed_over_fp32"] = geomean(
            ratio(by[(p, "mixed")]["linear_s_per_cg_iteration"], by[(p, "fp32")]["linear_s_per_cg_iteration"])
            for p in names
            if (p, "mixed") in by and (p, "fp32") in by
        )
        for prec in POLICIES:
            sel = [r for r in rows if r["precision"] == prec and r["solver"] == CG_SOLVER[r["kind"]]]
            agg[f"mem_{prec}"] = float(sum(r["memory_bytes"] for r in sel))
            agg[f"jac_{prec}"] = float(sum(r["jacobian_bytes"] for r in sel))
            agg[f"pre_{prec}"] = float(sum(r["preconditioner_bytes"] for r in sel))
        agg["jac_mixed_over_fp32"] = ratio(agg["jac_mixed"], agg["jac_fp32"])
        agg["pre_mixed_over_fp32"] = ratio(agg["pre_mixed"], agg["pre_fp32"])
        rel = [
            abs(r["rel_cost_to_fp64_direct"])
            for r in rows
            if r["precision"] == "mixed" and math.isfinite(r["rel_cost_to_fp64_direct"])
        ]
        agg["max_rel_cost_mixed"] = float(max(rel)) if rel else float("nan")
        its = {prec: sum(r["cg_iterations"] for r in rows if r["precision"] == prec) for prec in POLICIES}
        agg["cg_iterations"] = its
        out[kind] = agg
    return out


def plot_end_to_end(ctx: BenchContext, erows: list) -> str:
    fig = new_figure((11.0, 5.0))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    cg_rows = [r for r in erows if r["solver"] == CG_SOLVER[r["kind"]]]
    names = list(dict.fromkeys(r["problem"] for r in cg_rows))
    by = {(r["problem"], r["precision"]): r for r in cg_rows}
    x = np.arange(len(names))
    w = 0.27
    series = (
        (
            "fp32/fp64 linear",
            lambda p: ratio(by[(p, "fp32")]["linear_solve_s"], by[(p, "fp64")]["linear_solve_s"]),
            "tab:green",
        ),
        (
            "mixed/fp32 linear",
            lambda p: ratio(by[(p, "mixed")]["linear_solve_s"], by[(p, "fp32")]["linear_solve_s"]),
            "tab:red",
        ),
        (
            "mixed/fp32 whole solve",
            lambda p: ratio(by[(p, "mixed")]["total_s"], by[(p, "fp32")]["total_s"]),
            "tab:orange",
        ),
    )
    top = 1.0
    for i, (label, fn, color) in enumerate(series):
        vals = np.array([fn(p) if all((p, q) in by for q in POLICIES) else float("nan") for p in names], float)
        if np.isfinite(vals).any():
            top = max(top, float(np.nanmax(vals)))
        ax1.bar(x + (i - 1) * w, np.nan_to_num(vals, nan=0.0), w, label=label, color=color)
    ax1.set_ylim(0, 1.4 * top)
    claims = [CLAIM_LINEAR_MIXED_OVER_FP32[next(r["kind"] for r in cg_rows if r["problem"] == p)] for p in names]
    ax1.plot(x, claims, "kD", label="claim mixed/fp32 linear (GPU)")
    ax1.axhline(1.0, color="k", lw=1)
    ax1.set_xticks(x)
    ax1.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax1.set_ylabel("time ratio")
    ax1.set_title("End to end (min over repeats)")
    ax1.grid(axis="y", alpha=0.3)
    ax1.legend(fontsize=7, loc="upper left", ncol=2)
    for i, (prec, color) in enumerate((("fp64", "tab:blue"), ("fp32", "tab:green"), ("mixed", "tab:red"))):
        ref = [
            by[(p, "fp64")]["jacobian_bytes"] + by[(p, "fp64")]["preconditioner_bytes"] if (p, "fp64") in by else 0
            for p in names
        ]
        jac = [
            ratio(by[(p, prec)]["jacobian_bytes"], r) if (p, prec) in by else float("nan") for p, r in zip(names, ref)
        ]
        pre = [
            ratio(by[(p, prec)]["preconditioner_bytes"], r) if (p, prec) in by else float("nan")
            for p, r in zip(names, ref)
        ]
        jac_h, pre_h = np.nan_to_num(jac, nan=0.0), np.nan_to_num(pre, nan=0.0)
        ax2.bar(x + (i - 1) * w, jac_h, w, color=color, label=f"{prec} Jacobian")
        ax2.bar(
            x + (i - 1) * w, pre_h, w, bottom=jac_h, color=color, alpha=0.45, hatch="//", label=f"{prec} preconditioner"
        )
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax2.set_ylabel("memory held / fp64 total")
    ax2.set_ylim(0, 1.3)
    ax2.set_title("Memory of the Jacobian + preconditioner (relative to fp64)")
    ax2.grid(axis="y", alpha=0.3)
    ax2.legend(fontsize=6, ncol=3, loc="upper right")
    return save_figure(ctx, fig, "fig7_end_to_end.png")
