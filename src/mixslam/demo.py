"""``mixslam demo``: the embedded default job, runnable with no data download.

A small simulated flat (2 x 2 rooms with furniture), one robot run of 150 keyframes with loops, and the whole
pipeline (sliding-window VO, loop-closure verification, pose-graph optimization, global bundle adjustment)
in each precision policy
(fp64, fp32, mixed, naive fp16). Prints the ATE table without and with loop closure for each policy, and
writes to ``--out``: TUM trajectories (ground truth, VO, loop-closed), the final pose graph (g2o), a JSON
report and PNG plots (top view, error over time, the ATE table).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROWS = ("max", "p99", "p90", "mean")


def format_ate_table(report: dict, policies) -> str:
    """The article's table: ATE without loop closure (VO) vs with it (LC), rows max / 99% / 90% / mean."""
    head = f"{'ATE [m]':>8} " + " ".join(f"{p + ' VO':>11} {p + ' LC':>11}" for p in policies)
    lines = [head]
    for row in ROWS:
        cells = []
        for p in policies:
            d = report["policies"][p]
            cells.append(f"{d['ate_vo'][row]:11.3e} {d['ate_lc'][row]:11.3e}")
        lines.append(f"{row:>8} " + " ".join(cells))
    return "\n".join(lines)


def run_demo(
    out: str = "mixslam-demo",
    seed: int = 0,
    quiet: bool = False,
    verbose: bool = False,
    policies=("fp64", "fp32", "mixed", "fp16"),
) -> int:
    import logging
    import time

    from .atomic import atomic_write_text
    from .errors import check_seed
    from .eval import ate
    from .io import write_g2o, write_tum
    from .slam import plots
    from .slam.study import check_policies, demo_config, run_trajectory, summarize

    seed = check_seed(seed, "run_demo: seed")  # before anything is written
    policies = check_policies(policies, "run_demo")
    log = logging.getLogger("mixslam")
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    cfg = demo_config()
    t0 = time.perf_counter()
    if not quiet:
        print(
            f"mixslam demo: simulated {cfg.world.rooms[0]}x{cfg.world.rooms[1]}-room flat, "
            f"{cfg.trajectory.keyframes} keyframes, window {cfg.pipeline.vo.window}, seed {seed}; "
            f"policies {', '.join(policies)}"
        )
    result = run_trajectory(seed, policies, cfg, keep=True)
    objs = result.pop("_objects")
    run, world = objs["run"], objs["world"]
    report = summarize([result], policies)
    report.update(
        {
            "seed": seed,
            "keyframes": result["keyframes"],
            "path_length_m": result["path_length_m"],
            "seconds": time.perf_counter() - t0,
        }
    )
    write_tum(outdir / "groundtruth.tum", run.R_wc, run.t_wc)
    errors = {}
    for p in policies:
        res = objs["results"][p]
        write_tum(outdir / f"{p}_vo.tum", res.vo_R, res.vo_t)
        write_tum(outdir / f"{p}_lc.tum", res.lc_R, res.lc_t)
        write_g2o(res.graph, outdir / f"{p}_graph.g2o")
        loops = np.column_stack([res.graph.edge_i, res.graph.edge_j])
        loops = loops[np.abs(loops[:, 1] - loops[:, 0]) > 1]
        plots.plot_top_view(
            outdir / f"top_view_{p}.png",
            run.t_wc,
            {"VO": res.vo_t, "pose graph": res.pgo_t, "loop-closed (global BA)": res.lc_t},
            world=world,
            loops=loops,
            title=f"{p}: ground truth, VO and loop-closed (seed {seed})",
        )
        errors[f"{p} VO"] = ate(run.R_wc, run.t_wc, res.vo_R, res.vo_t, mode=cfg.align)
        if p == policies[0]:  # the pose-graph stage of one policy (the others' overlap it, or are in the table)
            errors[f"{p} PGO"] = ate(run.R_wc, run.t_wc, res.pgo_R, res.pgo_t, mode=cfg.align)
        errors[f"{p} LC"] = ate(run.R_wc, run.t_wc, res.lc_R, res.lc_t, mode=cfg.align)
        log.info(
            "%s: VO %.1f s (BA %d solves, %d CG it), PGO %.2f s (%d solves), loops %d/%d accepted, global BA %s",
            p,
            res.vo.seconds,
            res.vo.ba.solves,
            res.vo.ba.linear_iterations,
            res.pgo.seconds,
            res.pgo.solves,
            res.accepted,
            res.candidates,
            f"{res.gba.seconds:.2f} s ({res.gba.reason})" if res.gba else "not run",
        )
    plots.plot_error_over_time(outdir / "error_over_time.png", errors, title="ATE per keyframe (SE(3)-aligned)")
    plots.plot_ate_table(
        outdir / "ate_table.png",
        {f"{p} {s}": report["policies"][p][f"ate_{s.lower()}"] for p in policies for s in ("VO", "PGO", "LC")},
        title="ATE without loop closure (VO), pose graph (PGO), after global BA (LC)",
    )
    atomic_write_text(outdir / "report.json", json.dumps(report, indent=2))
    if not quiet:
        print(format_ate_table(report, policies))
        first = report["policies"][policies[0]]["trajectories"][0]
        print(
            f"loops: {first['loops_accepted']} of {first['loop_candidates']} candidates accepted "
            f"({first['loop_candidates_true']} true); path {result['path_length_m']:.1f} m"
        )
        for p in policies:
            t = report["policies"][p]["trajectories"][0]
            d = report["policies"][p]
            print(
                f"  {p:>5}: mean ATE VO {d['ate_vo']['mean']:.3e} -> pose graph {d['ate_pgo']['mean']:.3e} -> "
                f"global BA {d['ate_lc']['mean']:.3e} m, {t['seconds']:.1f} s, "
                f"BA CG iterations {t['ba_cg_iterations']}, fp16 overflows {t['fp16_overflows']}, "
                f"windows not converged {t['ba_not_converged']}/{t['ba_solves']}"
            )
        print(
            f"files and plots written to {outdir}/ (groundtruth.tum, *_vo.tum, *_lc.tum, *_graph.g2o, "
            f"top_view_*.png, error_over_time.png, ate_table.png, report.json) in {report['seconds']:.1f} s"
        )
    return 0
