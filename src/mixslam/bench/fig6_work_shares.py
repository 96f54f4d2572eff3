"""Figure 6: where the work of a mixed-precision solve goes, for BA (CGNR, block-Jacobi) and PGO (CG on the
normal equations with the static IC preconditioner), per policy fp64 / fp32 / mixed, on the problems of
:mod:`mixslam.bench.problems`:

(a) the share of a CG iteration spent in the Jacobian products (the fused JᵀJ·p pass);
(b) PGO: the share of each linear solve spent in the IC triangular solves (the preconditioner apply);
(c) the share of the LM time (``timing["total"]`` less setup and initialization) in the Jacobian
    evaluation (``timing["jacobian"]``) and in the linear solves (``timing["linear_solve"]``).

(a) and (b) are given three ways. *Counted flops* and *counted bytes* come from the analytic model of
:mod:`mixslam.bench.work_model` (per CG iteration for (a); for (b), per linear solve: the per-solve setup plus
the measured mean number of CG iterations per solve times the per-iteration work), evaluated with the block
sizes, counts and the formats the solve really used (bytes per stored Jacobian and IC-factor entry read back
from ``report.memory``). *Time* comes from the :class:`~mixslam.solve.report.SolveReport` of the
fastest whole solve (:func:`mixslam.bench.solves.solve`): the CG routine times its operator products
(``timing["products_s"]``), its preconditioner applies (``timing["preconditioner_s"]``) and its own loops
(``timing["cg_s"]``); (a) is the products' time over the time of the CG loops, (b) the preconditioner applies'
time over the solve's ``timing["linear_solve"]`` (which also holds the per-solve setup and the IC
factorizations). (c) has no counted model (its cells are empty). Claims: (a) 83 % for BA, (b) 50 % for PGO,
(c) 15 % Jacobian and 60 % linear solve (put on the mixed rows, the claim's configuration).
"""

from __future__ import annotations

import math

import numpy as np

from .context import BenchContext, FigureResult, new_figure, save_figure
from .problems import Problem, problems, run_cache
from .ratios import nanmean, ratio, round3
from .report import fp16_arithmetic_note
from .solves import CG_SOLVER, POLICIES, lm_seconds, solve, warm_kernels
from .work_model import ic_setup_work, iteration_work, problem_dims

CLAIMS = {"products": 0.83, "ic_solve": 0.50, "jacobian": 0.15, "linear": 0.60}
"""Figure 6's claimed shares: BA products / CG iteration, PGO IC solves / linear solve, Jacobian / LM,
linear solve / LM."""
_QUANTITIES = {
    "products": ("jacobian_products_share_of_cg_iteration", "Jacobian products / CG iteration"),
    "ic_solve": ("ic_triangular_solves_share_of_linear_solve", "IC triangular solves / linear solve"),
    "jacobian": ("jacobian_share_of_lm", "Jacobian evaluation / LM"),
    "linear": ("linear_solve_share_of_lm", "linear solve / LM"),
}
FIG6_COLUMNS = [
    "problem",
    "kind",
    "policy",
    "solver",
    "quantity",
    "counted_flops_share",
    "counted_bytes_share",
    "time_share",
    "claim",
    "numerator_s",
    "denominator_s",
    "cg_iterations",
    "linear_solves",
    "jacobian_bytes_per_entry",
    "preconditioner_bytes_per_entry",
    "ic_fill_level",
    "ic_blocks",
]


def work_rows(prob: Problem, precision: str, rep, dims: dict) -> list:
    """Figure 6's CSV rows of one (problem, policy) from the report ``rep`` of one whole solve."""
    from ..precision import Precision, PrecisionPolicy

    pol = PrecisionPolicy.preset(precision, prob.kind)
    mem = rep.memory
    t = rep.timing
    sj = (mem.jacobian_bytes or 0) / dims["Et"] if dims["Et"] else 8.0
    vb = float(pol.krylov.compute_dtype.itemsize)
    rows = []
    base = {"problem": prob.name, "kind": prob.kind, "policy": precision, "solver": CG_SOLVER[prob.kind]}
    n_solves = max(len(rep.history), 1)
    its_per_solve = rep.linear_iterations / n_solves
    info = {"cg_iterations": rep.linear_iterations, "linear_solves": len(rep.history), "jacobian_bytes_per_entry": sj}
    if prob.kind == "ba":
        sp = float(pol.preconditioner_accumulate.compute_dtype.itemsize)
        w = iteration_work(dims, sj, vb, sp)
    else:
        ic = rep.preconditioner_stats  # None: no IC factor was made
        fill = ic.fill_level if ic is not None else 0
        pattern = dims["pattern"]
        if ic is not None and ic.ordering == "min-degree":  # the escalated factor (ICConfig.escalate)
            pattern = pattern.with_min_degree_order()
        from ..linear.config import fill_level_of

        pattern = pattern.with_fill(fill_level_of(fill, pattern.nv))
        nnzb, p = pattern.nnzb, dims["p"]
        sp = (mem.preconditioner_bytes or 0) / (nnzb * p * p) if nnzb else 8.0
        w = iteration_work(dims, sj, vb, sp, nnzb)
        info.update(ic_fill_level=fill, ic_blocks=nnzb, preconditioner_bytes_per_entry=sp)
    tot_f = sum(v[0] for v in w.values())
    tot_b = sum(v[1] for v in w.values())
    claim = CLAIMS["products"] if (prob.kind == "ba" and precision == "mixed") else float("nan")
    rows.append(
        {
            **base,
            "quantity": _QUANTITIES["products"][0],
            "counted_flops_share": w["products"][0] / tot_f,
            "counted_bytes_share": w["products"][1] / tot_b,
            "time_share": ratio(t["products_s"], t["cg_s"]),
            "claim": claim,
            "numerator_s": t["products_s"],
            "denominator_s": t["cg_s"],
            **info,
        }
    )
    if prob.kind == "pgo":
        rb = float(pol.residual.compute_dtype.itemsize)
        sf, sb = ic_setup_work(dims, rb, sj, pol.rhs is not Precision.FP64)
        solve_f = sf + its_per_solve * tot_f
        solve_b = sb + its_per_solve * tot_b
        lin = t["linear_solve"]
        claim = CLAIMS["ic_solve"] if precision == "mixed" else float("nan")
        rows.append(
            {
                **base,
                "quantity": _QUANTITIES["ic_solve"][0],
                "counted_flops_share": its_per_solve * w["preconditioner"][0] / solve_f,
                "counted_bytes_share": its_per_solve * w["preconditioner"][1] / solve_b,
                "time_share": ratio(t["preconditioner_s"], lin),
                "claim": claim,
                "numerator_s": t["preconditioner_s"],
                "denominator_s": lin,
                **info,
            }
        )
    lm = lm_seconds(rep)
    for q, key in (("jacobian", "jacobian"), ("linear", "linear_solve")):
        claim = CLAIMS[q] if precision == "mixed" else float("nan")
        rows.append(
            {
                **base,
                "quantity": _QUANTITIES[q][0],
                "counted_flops_share": float("nan"),
                "counted_bytes_share": float("nan"),
                "time_share": ratio(t[key], lm),
                "claim": claim,
                "numerator_s": t[key],
                "denominator_s": lm,
                "cg_iterations": rep.linear_iterations,
                "linear_solves": len(rep.history),
            }
        )
    return rows


def figure6(ctx: BenchContext) -> FigureResult:
    """Where the work goes: (a) the Jacobian products' share of a CG iteration, (b) the IC triangular solves'
    share of a PGO linear solve, (c) the Jacobian evaluation's and the linear solves' shares of the LM time;
    counted (flops, bytes: :func:`~mixslam.bench.work_model.iteration_work`,
    :func:`~mixslam.bench.work_model.ic_setup_work`) and timed (the CG timings and the other timings of the
    fastest whole solve's SolveReport). See the module docstring."""
    cache = run_cache(ctx)
    ctx.log("figure 6: compiling / loading kernels")
    warm_kernels()
    rows = []
    for kind in ("ba", "pgo"):
        for prob in problems(ctx, kind):
            ctx.log(f"figure 6: {prob.name} ({kind})")
            dims = problem_dims(prob)
            for precision in POLICIES:
                rep = solve(ctx, prob, precision, CG_SOLVER[kind])
                if rep is not None:  # a failed solve is in the run's notes
                    rows += work_rows(prob, precision, rep, dims)
    csv_name = ctx.write_csv("fig6_work_shares.csv", rows, FIG6_COLUMNS)

    # table: mean over the problems of a kind; (a)/(b) for the mixed policy, (c) per policy
    table, summary = [], {}
    plan = [
        ("ba", "products", ("mixed",)),
        ("pgo", "products", ("mixed",)),
        ("pgo", "ic_solve", ("mixed",)),
        ("ba", "jacobian", POLICIES),
        ("ba", "linear", POLICIES),
        ("pgo", "jacobian", POLICIES),
        ("pgo", "linear", POLICIES),
    ]
    for kind, q, pols in plan:
        qname, label = _QUANTITIES[q]
        for precision in pols:
            sel = [r for r in rows if r["kind"] == kind and r["quantity"] == qname and r["policy"] == precision]
            if not sel:
                continue
            f, b, t = (nanmean(r[c] for r in sel) for c in ("counted_flops_share", "counted_bytes_share", "time_share"))
            claim = nanmean(r["claim"] for r in sel)
            table.append(
                {
                    "problem": f"{kind.upper()} (mean of {len(sel)})",
                    "policy": precision,
                    "quantity": label,
                    "flops share": round3(f) if math.isfinite(f) else "",
                    "bytes share": round3(b) if math.isfinite(b) else "",
                    "time share": round3(t),
                    "claim": round3(claim) if math.isfinite(claim) else "",
                }
            )
            for meas, v in (("flops", f), ("bytes", b), ("time", t)):
                if math.isfinite(v):
                    summary[f"{kind}_{q}_{precision}_{meas}_share"] = round(v, 4)
    summary["ba_problems"] = len(problems(ctx, "ba"))
    summary["pgo_problems"] = len(problems(ctx, "pgo"))
    png = _plot(ctx, table)
    notes = list(cache["notes"]) + _notes(rows, summary)
    return FigureResult(
        6,
        "Where the work goes: Jacobian products, IC triangular solves, Jacobian evaluation "
        "and linear solves (counted flops and bytes, measured time)",
        [png, csv_name],
        table,
        summary,
        notes,
    )


def _notes(rows: list, summary: dict) -> list:
    notes = [
        "Counted shares are a model (see iteration_work / ic_setup_work in mixslam/bench/work_model.py): per CG "
        "iteration for the products, per linear solve (setup + the measured mean CG iterations per solve) for "
        "the IC solves; the IC factorization is not counted but its time is in the linear-solve time. The "
        "Jacobian / LM and linear solve / LM rows have no counted model."
    ]
    t, f, b = (summary.get(f"ba_products_mixed_{m}_share") for m in ("time", "flops", "bytes"))
    if t is not None and f is not None:
        notes.append(
            f"BA mixed CGNR: the Jacobian products are {f:.0%} of a CG iteration's flops and "
            f"{b:.0%} of its bytes, {t:.0%} of its time here (claim 83%)."
        )
    t, f, b = (summary.get(f"pgo_ic_solve_mixed_{m}_share") for m in ("time", "flops", "bytes"))
    if t is not None and f is not None:
        closer = "flops" if abs(t - f) < abs(t - b) else "bytes"
        notes.append(
            f"PGO mixed IC: the triangular solves are {f:.0%} of a linear solve's counted flops, {b:.0%} "
            f"of its bytes and {t:.0%} of its time here (claim 50%); the measured time share is closer "
            f"to the counted {closer} share. The fp16 factor saves bytes, not arithmetic: "
            f"{fp16_arithmetic_note()}."
        )
    for kind in ("ba", "pgo"):
        j, lin = summary.get(f"{kind}_jacobian_mixed_time_share"), summary.get(f"{kind}_linear_mixed_time_share")
        if j is not None and lin is not None:
            notes.append(
                f"{kind.upper()} mixed: Jacobian evaluation {j:.0%} and linear solves {lin:.0%} of the LM "
                "time (claims 15% and 60%); the rest is residual/cost evaluation, the state update and "
                "the loop's bookkeeping."
            )
    return notes


def _plot(ctx: BenchContext, table: list) -> str:
    fig = new_figure((max(8.0, 0.75 * len(table) + 3.0), 5.0))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(table))
    width = 0.27
    for i, (col, color) in enumerate(
        (("flops share", "tab:blue"), ("bytes share", "tab:orange"), ("time share", "tab:green"))
    ):
        vals = np.array([r[col] if r[col] != "" else np.nan for r in table], dtype=float)
        ax.bar(
            x + (i - 1) * width,
            np.nan_to_num(vals, nan=0.0),
            width,
            label=col.replace(" share", " (counted)") if col != "time share" else "time (measured)",
            color=color,
        )
    claims = np.array([r["claim"] if r["claim"] != "" else np.nan for r in table], dtype=float)
    if np.isfinite(claims).any():
        ax.plot(x, claims, "kD", markersize=7, label="claim")
    ax.set_xticks(x)
    ax.set_xticklabels(
        [f"{r['problem'].split(' ')[0]} {r['policy']}\n{r['quantity']}" for r in table],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("share")
    ax.set_title("Where the work goes (mean over problems; counted flops / bytes, measured time)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="upper center")
    return save_figure(ctx, fig, "fig6_work_shares.png")
