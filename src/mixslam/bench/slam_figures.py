"""Figures 1-3: the SLAM pipeline's trajectory error in every precision policy.

All three use the simulated household world of ``mixslam demo`` (:func:`mixslam.slam.study.demo_config`)
with the sizes of :class:`~mixslam.bench.config.BenchSizes` (keyframes, window, rooms):

1. one trajectory, naive fp16 vs mixed VO estimates against the ground truth (top view);
2. the cumulative histogram of VO ATE (per-trajectory RMSE after SE(3) alignment) over many seeded
   trajectories, for fp64, fp32, mixed and naive fp16;
3. ATE without vs with loop closure: max / 99% / 90% / mean of the pooled per-keyframe errors.

Figures 2 and 3 come from one study (every trajectory solved in every policy, on identical inputs), run
through the bench's task runner, so a Dask cluster can take it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..eval import align_trajectory, ate, stats
from ..sim.world import make_world, simulate_run
from ..slam import plots
from ..slam.study import POLICIES, demo_config, run_study, trajectory_seed, with_overrides
from ..slam.vo import run_vo
from .context import BenchContext, FigureResult

STAT_ROWS = ("max", "p99", "p90", "mean")


def study_config(ctx: BenchContext):
    """The demo world at the bench's sizes."""
    s = ctx.config.sizes
    cfg = with_overrides(demo_config(), keyframes=s.vo_keyframes, window=s.vo_window)
    return replace(cfg, world=replace(cfg.world, rooms=tuple(s.vo_rooms)))


def figure1(ctx: BenchContext) -> FigureResult:
    """Naive fp16 vs mixed VO on one trajectory (seed = trajectory 0 of the study), against the truth."""
    cfg = study_config(ctx)
    seed = trajectory_seed(ctx.config.seed, 0)
    world = make_world(cfg.world, seed)
    run = simulate_run(world, cfg.trajectory, cfg.camera, seed)
    est, rows, table = {}, [], []
    for name in ("mixed", "fp16"):
        ctx.log(f"  figure 1: VO in {name} ({len(run.R_wc)} keyframes)")
        vo = run_vo(run, name, None, cfg.pipeline.vo)
        R, t = vo.R_wc, vo.t_wc
        Ra, ta = align_trajectory(run.R_wc, run.t_wc, R, t, mode="se3")[:2]
        e = ate(run.R_wc, run.t_wc, R, t, mode="se3")
        est[name] = (ta, e, vo)
        st = stats(e)
        table.append(
            {
                "policy": name,
                "ate_rmse_m": st["rmse"],
                "ate_max_m": st["max"],
                "windows_not_converged": int(vo.ba.not_converged),
                "window_solves": int(vo.ba.solves),
                "fp16_overflows": int(vo.ba.overflows),
            }
        )
    for k in range(len(run.R_wc)):
        row = {"keyframe": k, "truth_x": run.t_wc[k, 0], "truth_y": run.t_wc[k, 1], "truth_z": run.t_wc[k, 2]}
        for name, (ta, e, _) in est.items():
            row.update({f"{name}_x": ta[k, 0], f"{name}_y": ta[k, 1], f"{name}_z": ta[k, 2], f"{name}_ate_m": e[k]})
        rows.append(row)
    files = [ctx.write_csv("fig1_fp16_vs_mixed.csv", rows)]
    png = ctx.path("fig1_fp16_vs_mixed.png")
    plots.plot_top_view(
        png,
        run.t_wc,
        {f"{n} VO (ATE RMSE {table[i]['ate_rmse_m']:.3g} m)": est[n][0] for i, n in enumerate(est)},
        world=world,
        title=f"Naive fp16 vs mixed VO, one trajectory (seed {seed}), SE(3)-aligned",
    )
    err_png = ctx.path("fig1_error_over_time.png")
    plots.plot_error_over_time(err_png, {n: est[n][1] for n in est}, title="ATE per keyframe (SE(3)-aligned)")
    files = [png.name, err_png.name] + files
    ratio = table[1]["ate_rmse_m"] / table[0]["ate_rmse_m"] if table[0]["ate_rmse_m"] > 0 else float("nan")
    extra = []
    if ratio < 1:
        extra = [
            f"On this trajectory naive fp16 ends *closer* to the truth ({ratio:.3g}x mixed's ATE), with "
            f"{table[1]['windows_not_converged']} of its {table[1]['window_solves']} window solves unconverged "
            f"and {table[1]['fp16_overflows']} fp16 overflows; figure 2 shows its ATE spread over many "
            "trajectories, in both directions."
        ]
    return FigureResult(
        1,
        "Naive fp16 vs mixed: one VO trajectory against the ground truth",
        files,
        table,
        {
            "seed": seed,
            "keyframes": int(len(run.R_wc)),
            "ate_rmse_mixed_m": table[0]["ate_rmse_m"],
            "ate_rmse_fp16_m": table[1]["ate_rmse_m"],
            "fp16_over_mixed": ratio,
        },
        [
            "Both estimates are SE(3)-aligned to the truth before plotting and scoring.",
            "Naive fp16 stores the Jacobian in fp16 and also does the CG arithmetic and keeps the Krylov "
            "vectors in fp16 (emulated with numpy float16, rounded to nearest even after every operation); "
            "mixed stores the Jacobian in fp16 and computes in fp32.",
        ]
        + extra,
    )


def _study(ctx: BenchContext) -> dict:
    if "study" not in ctx.shared:
        s = ctx.config.sizes
        ctx.log(
            f"  figures 2-3: {s.vo_trajectories} trajectories x {len(POLICIES)} policies on {ctx.runner.describe()}"
        )
        ctx.shared["study"] = run_study(
            s.vo_trajectories, ctx.config.seed, POLICIES, study_config(ctx), runner=ctx.runner
        )
    return ctx.shared["study"]


def figure2(ctx: BenchContext) -> FigureResult:
    """Cumulative histogram of the per-trajectory VO ATE RMSE, every policy."""
    rep = _study(ctx)
    n = rep["trajectories"]
    values = {p: np.array([t["ate_vo_rmse"] for t in rep["policies"][p]["trajectories"]]) for p in POLICIES}
    png = ctx.path("fig2_vo_ate_cdf.png")
    plots.plot_cumulative_histograms(
        png, values, xlabel="VO ATE RMSE per trajectory [m]", title=f"Cumulative ATE histogram of VO, {n} trajectories"
    )
    cdf = ctx.path("fig2_vo_ate_cdf.csv")
    plots.write_cumulative_csv(cdf, values)
    per_traj = []
    for i, t64 in enumerate(rep["policies"]["fp64"]["trajectories"]):
        row = {"seed": t64["seed"]}
        for p in POLICIES:
            row[f"{p}_ate_vo_rmse_m"] = rep["policies"][p]["trajectories"][i]["ate_vo_rmse"]
        per_traj.append(row)
    traj_csv = ctx.write_csv("fig2_vo_ate_per_trajectory.csv", per_traj)
    ctx.write_json("fig2_fig3_study.json", dict(rep))
    table, summary = [], {"trajectories": n}
    for p in POLICIES:
        v = values[p]
        row = {
            "policy": p,
            "median_m": float(np.median(v)),
            "p90_m": float(np.percentile(v, 90)),
            "max_m": float(np.max(v)),
        }
        r = rep["policies"][p].get("ratio_to_fp64_vo")
        if r:
            row.update(
                {
                    "ratio_to_fp64_median": r["median"],
                    "ratio_to_fp64_max": r["max"],
                    "worse_than_fp64_by_5pct": r["worse_than_5pct"],
                }
            )
            summary[f"{p}_over_fp64_median"] = r["median"]
            summary[f"{p}_over_fp64_max"] = r["max"]
            summary[f"{p}_worse_than_5pct"] = r["worse_than_5pct"]
        summary[f"{p}_median_m"] = row["median_m"]
        tr = rep["policies"][p]["trajectories"]
        solves = sum(t["ba_solves"] for t in tr)
        row["windows_not_converged"] = f"{sum(t['ba_not_converged'] for t in tr)}/{solves}"
        row["fp16_overflows"] = int(sum(t["fp16_overflows"] for t in tr))
        summary[f"{p}_windows_not_converged_fraction"] = sum(t["ba_not_converged"] for t in tr) / max(solves, 1)
        table.append(row)
    notes = [
        f"{n} seeded trajectories ({ctx.config.sizes.vo_keyframes} keyframes, {ctx.config.sizes.vo_window}-"
        f"keyframe window); the claim used 1,703 estimations (`mixslam bench --full`).",
        "ATE = RMSE of the keyframe positions after SE(3) alignment; every policy sees identical inputs.",
    ]
    for p in ("fp32", "mixed"):
        r = rep["policies"][p].get("ratio_to_fp64_vo")
        if r and r["worse_than_5pct"]:
            notes.append(
                f"{p} is within 5% of fp64's VO ATE on {n - r['worse_than_5pct']} of {n} trajectories; on "
                f"{r['worse_than_5pct']} it is worse by more (up to {r['max']:.2f}x): a discrete VO decision "
                "(gating, triangulation timing, an iteration cap) flipped by a last-digit difference."
            )
        elif r:
            notes.append(
                f"{p} is within 5% of fp64's VO ATE on every one of the {n} trajectories (ratio "
                f"{r['min']:.4f}-{r['max']:.4f}, median {r['median']:.4f})."
            )
    notes += _fp16_note(rep, "fp16")
    return FigureResult(
        2,
        "Cumulative ATE histogram of VO: fp64, fp32, mixed, naive fp16",
        [png.name, cdf.name, traj_csv, "fig2_fig3_study.json"],
        table,
        summary,
        notes,
    )


def _fp16_note(rep: dict, name: str) -> list:
    """What the naive policy's VO ATE does against fp64's, with its solver counts beside it."""
    if name not in rep["policies"] or "fp64" not in rep["policies"]:
        return []
    a = np.array([t["ate_vo_rmse"] for t in rep["policies"]["fp64"]["trajectories"]])
    b = np.array([t["ate_vo_rmse"] for t in rep["policies"][name]["trajectories"]])
    tr = rep["policies"][name]["trajectories"]
    failed = sum(t["ba_not_converged"] for t in tr)
    solves = sum(t["ba_solves"] for t in tr)
    overflows = sum(t["fp16_overflows"] for t in tr)
    lm = sum(t["ba_lm_iterations"] for t in tr) / max(
        sum(t["ba_lm_iterations"] for t in rep["policies"]["fp64"]["trajectories"]), 1
    )
    lower, worse = int(np.sum(b < a)), int(np.sum(b > 1.05 * a))
    counts = (
        f"its windows take {lm:.1f}x fp64's LM iterations, {failed} of its {solves} window solves stop "
        f"unconverged, and it counts {overflows} fp16 overflows"
    )
    if lower * 2 <= len(a):
        return [
            f"Naive {name} VO is worse than fp64 on {len(a) - lower} of {len(a)} trajectories (by more than 5% "
            f"on {worse}, up to {np.max(b / a):.2f}x); {counts}."
        ]
    return [
        f"Naive {name} VO spreads around fp64's in both directions: lower on {lower} of {len(a)} trajectories "
        f"(median ratio {np.median(b / a):.3g}), worse by more than 5% on {worse} (up to {np.max(b / a):.2f}x); "
        f"{counts}. A window's cost is nearly flat along the monocular scale and the depths, so solves that "
        "end at almost the same cost can end at different poses, and the next windows and the gate inherit the "
        "difference; `benchmarks/vo_window_costs.py` compares the two policies window by window "
        "(docs/slam_results.md). A lower ATE from a solver with these counts is not a gain of 16-bit arithmetic."
    ]


def figure3(ctx: BenchContext) -> FigureResult:
    """ATE without vs with loop closure: max / p99 / p90 / mean of the pooled per-keyframe errors."""
    rep = _study(ctx)
    rows, table_stats = [], {}
    summary = {}
    for p in POLICIES:
        d = rep["policies"][p]
        names = {"vo": "without loop closure", "pgo": "pose graph only", "lc": "with loop closure"}
        for stage, label in (("vo", "VO"), ("pgo", "PGO"), ("lc", "LC")):
            st = d.get(f"ate_{stage}", d["ate_lc"])
            table_stats[f"{p} {label}"] = st
            rows.append(
                {
                    "policy": p,
                    "stage": names[stage],
                    **{f"{k}_m": st[k] for k in STAT_ROWS},
                    "median_m": st["median"],
                    "rmse_m": st["rmse"],
                    "keyframes": st["n"],
                }
            )
        vo, lc = d["ate_vo"]["mean"], d["ate_lc"]["mean"]
        summary[f"{p}_mean_vo_m"], summary[f"{p}_mean_lc_m"] = vo, lc
        summary[f"{p}_mean_pgo_m"] = d.get("ate_pgo", d["ate_lc"])["mean"]
        summary[f"{p}_mean_reduction"] = vo / lc if lc > 0 else float("nan")
        improved = [t["ate_lc_rmse"] < t["ate_vo_rmse"] for t in d["trajectories"]]
        summary[f"{p}_fraction_improved"] = float(np.mean(improved)) if improved else float("nan")
    png = ctx.path("fig3_loop_closure_table.png")
    plots.plot_ate_table(
        png,
        table_stats,
        title=f"ATE without (VO) vs with loop closure (PGO: pose graph only, "
        f"LC: then global BA), {rep['trajectories']} trajectories",
    )
    csv_name = ctx.write_csv("fig3_loop_closure_table.csv", rows)
    notes = [
        "Statistics pool every keyframe of every trajectory (SE(3)-aligned). LC is the final loop-closed "
        "trajectory (pose graph, then global bundle adjustment); PGO the pose graph's alone."
    ]
    for p in ("fp64", "mixed"):
        notes.append(
            f"{p}: mean ATE {summary[f'{p}_mean_vo_m']:.3g} m without -> {summary[f'{p}_mean_pgo_m']:.3g} m "
            f"pose graph -> {summary[f'{p}_mean_lc_m']:.3g} m with loop closure "
            f"({summary[f'{p}_mean_reduction']:.2f}x; the claim: 1e-1 -> 1e-4 m, 1000x); "
            f"loop closure lowered the ATE on {summary[f'{p}_fraction_improved']:.0%} of the trajectories."
        )
    notes.append(
        "The claim's reduction is out of reach of any back end on these measurements: a monocular camera "
        "sees no scale and the wheel odometry (5% per step) fixes it to about 0.3% over a run, about 1 cm "
        "at these distances; a global BA with the perfect data association does no better "
        "(benchmarks/loop_closure_floor.py; docs/slam_results.md, 'What is not met')."
    )
    return FigureResult(
        3, "ATE without vs with loop closure (max / 99% / 90% / mean)", [png.name, csv_name], rows, summary, notes
    )
