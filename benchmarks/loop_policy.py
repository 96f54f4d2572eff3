"""Loop policies side by side: ``strict`` verification vs ``loose`` verification + GNC in the pose graph.

Issue 18, item 5: the SLAM pipeline may accept loop candidates with a looser verification and leave the
rejection to graduated non-convexity (``PipelineConfig.loop_policy``). This runs the study's trajectories
(:func:`mixslam.slam.study.run_trajectory`, the default world: 300 keyframes, 3 x 2 rooms, the study's seeds)
both ways, each trajectory's two policies in one worker process after a warm-up (so neither pays the
process's kernel loading), in three front-end settings:

* ``none``: the simulator's own candidates (recall 0.5, 1% false proposals). Its front end matches landmarks
  by their true ids, so a false proposal (a different place) shares no landmarks with the keyframe and is
  always rejected: this setting measures what the loose policy costs when there is nothing to reject;
* ``weak``: plus perceptual aliasing (``LoopConfig.aliasing_rate`` 0.02: about 5 aliased candidates per run)
  with 6-19 wrong matches consistent with one wrong pose (below the strict verification's 20 inliers) and
  0-20 random ones: strict rejects them, loose admits some, GNC has to reject those;
* ``strong``: the same with 6-40 consistent wrong matches: strict admits the aliased candidates with 20 or
  more, which nothing downstream rejects.

A loop is *false* when its measured relative pose is off the truth's by more than 0.25 m or 5 deg
(``mixslam.slam.pipeline.loop_is_wrong``). Printed per (setting, policy), totals over the trajectories:
candidates (aliased among them), loops admitted by the verification, false loops admitted, loops GNC's final
pose-graph solve rejected (false / correct), false loops left in the trajectory; the loop-closed ATE RMSE
(SE(3)-aligned; pose graph then global BA) median and max over the trajectories, the pose-graph solve time
summed over each run (median over runs) and the whole run's time (VO included, median); then the ratios loose+gnc /
strict per trajectory (median, max). Writes the table to ``docs/results/loop_policy.txt`` (``--out``).

    python benchmarks/loop_policy.py                      # 8 trajectories, fp64, 2 workers: ~4 min on 2 cores
    python benchmarks/loop_policy.py --trajectories 2 --settings strong --out /tmp/lp.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace

import numpy as np

from mixslam.atomic import atomic_write_text
from mixslam.runner import TaskRunner
from mixslam.sim.world import TrajectoryConfig
from mixslam.slam.pipeline import LOOP_POLICIES
from mixslam.slam.study import LOOP_COUNTS, StudyConfig, demo_config, run_trajectory, trajectory_seed

SETTINGS = {
    "none": dict(aliasing_rate=0.0),
    "weak": dict(aliasing_rate=0.02, aliasing_matches=(6, 19), aliasing_outliers=(0, 20)),
    "strong": dict(aliasing_rate=0.02, aliasing_matches=(6, 40), aliasing_outliers=(0, 20)),
}
"""The front-end settings (``LoopConfig`` overrides) the policies are compared in."""
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "docs", "results", "loop_policy.txt")


def study_config(setting: str, policy: str, base: StudyConfig | None = None) -> StudyConfig:
    """The default study with ``setting``'s loop candidates and ``policy``."""
    base = base or StudyConfig()
    loops = replace(base.pipeline.loops, **SETTINGS[setting])
    return replace(base, pipeline=replace(base.pipeline, loops=loops, loop_policy=policy))


_WARM = False


def one(setting: str, seed: int, precision: str) -> dict:
    """Both policies on trajectory ``seed`` in ``setting`` (the study's :func:`run_trajectory` rows, by
    policy), in one process after a warm-up: the first pose-graph solve of a process loads the compiled kernels
    (about 0.5 s, more than a whole run's solves), which would otherwise land on whichever policy runs first."""
    global _WARM
    if not _WARM:
        small = replace(demo_config(), trajectory=TrajectoryConfig(keyframes=80))
        for pol in LOOP_POLICIES:
            run_trajectory(1, (precision,), study_config("strong", pol, small))
        _WARM = True
    return {
        pol: run_trajectory(seed, (precision,), study_config(setting, pol))["policies"][precision]
        for pol in LOOP_POLICIES
    }


def row(runs: list) -> dict:
    """One table row from one policy's trajectory rows: loop totals, ATE and time statistics."""
    lc = np.array([r["ate_lc_rmse"] for r in runs])
    return {
        **{k: int(sum(r[k] for r in runs)) for k in LOOP_COUNTS},
        "ate_lc_median": float(np.median(lc)),
        "ate_lc_max": float(np.max(lc)),
        "pgo_s_median": float(np.median([r["pgo_seconds"] for r in runs])),
        "run_s_median": float(np.median([r["seconds"] for r in runs])),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trajectories", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {list(SETTINGS)}")
    ap.add_argument("--precision", default="fp64", help="the precision policy of the pipeline (default fp64)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=OUT, help="the table's file ('' to write none)")
    a = ap.parse_args(argv)
    settings = [s for s in a.settings.split(",") if s]
    bad = [s for s in settings if s not in SETTINGS]
    if bad:
        ap.error(f"unknown settings {bad}; expected some of {list(SETTINGS)}")
    t0 = time.perf_counter()
    seeds = [trajectory_seed(a.seed, i) for i in range(a.trajectories)]
    tasks = [(s, seed, a.precision) for s in settings for seed in seeds]
    runner = TaskRunner("process", a.workers, progress=True)
    try:
        done = runner.map(one, tasks, label="trajectories")
    finally:
        runner.close()
    per = {
        (s, pol): [d[pol] for (s_, _, _), d in zip(tasks, done) if s_ == s] for s in settings for pol in LOOP_POLICIES
    }
    rows = {key: row(runs) for key, runs in per.items()}
    lines = [
        f"benchmarks/loop_policy.py --trajectories {a.trajectories} --seed {a.seed} --settings {','.join(settings)} "
        f"--precision {a.precision} --workers {a.workers}",
        f"default world (StudyConfig(): 300 keyframes, 3 x 2 rooms), {a.trajectories} trajectories per cell, the "
        f"same seeds in every cell; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{a.workers} worker(s) (times: per run, wall clock, machine shared)",
        "false loop: measured relative pose off the truth by > 0.25 m or > 5 deg; rejected: GNC weight < 0.5 in "
        "the final pose-graph solve; ATE: loop-closed RMSE (m), SE(3)-aligned",
        "",
        f"{'setting':7s} {'policy':9s} {'cand':>5s} {'alias':>5s} {'admit':>5s} {'false':>5s} {'rej':>4s} "
        f"{'rejF':>4s} {'rejOK':>5s} {'kept':>4s} {'ATE med':>9s} {'ATE max':>9s} {'pgo s':>6s} {'run s':>6s}",
    ]
    for (s, pol), r in rows.items():
        lines.append(
            f"{s:7s} {pol:9s} {r['loop_candidates']:5d} {r['loop_candidates_aliased']:5d} "
            f"{r['loops_accepted']:5d} {r['loops_wrong']:5d} {r['loops_rejected']:4d} "
            f"{r['loops_rejected_wrong']:4d} {r['loops_rejected'] - r['loops_rejected_wrong']:5d} "
            f"{r['loops_wrong_kept']:4d} {r['ate_lc_median']:9.2e} {r['ate_lc_max']:9.2e} "
            f"{r['pgo_s_median']:6.2f} {r['run_s_median']:6.2f}"
        )
    lines += [
        "",
        "cand: candidates (alias: aliased among them); admit: passed the verification; false: false loops "
        "admitted; rej: rejected by GNC (rejF false, rejOK correct); kept: false loops left in the trajectory; "
        "pgo s: pose-graph solves per run (median); run s: whole run (median)",
        "",
        "ratios loose+gnc / strict per trajectory (median, max):",
    ]
    strict, loose = LOOP_POLICIES
    for s in settings:
        ratio = {
            k: np.array([b[k] / a_[k] for a_, b in zip(per[s, strict], per[s, loose])])
            for k in ("ate_lc_rmse", "pgo_seconds", "seconds")
        }
        lines.append(
            f"  {s:7s} ATE {np.median(ratio['ate_lc_rmse']):.4f} (max {np.max(ratio['ate_lc_rmse']):.4f}), "
            f"pose-graph time {np.median(ratio['pgo_seconds']):.2f}x (max {np.max(ratio['pgo_seconds']):.2f}x), "
            f"run time {np.median(ratio['seconds']):.2f}x (max {np.max(ratio['seconds']):.2f}x)"
        )
    lines.append(f"total {time.perf_counter() - t0:.0f} s")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if a.out:
        atomic_write_text(a.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
