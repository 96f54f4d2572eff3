"""How far can loop closure lower the ATE on the default world? The pipeline's stages against an oracle.

For each seeded trajectory of the default world (the study's: ``mixslam sim``), runs the fp64 pipeline and
prints the RMSE ATE (SE(3)-aligned) of

* ``VO``: the sliding-window VO alone;
* ``PGO``: the pose graph (VO odometry + wheel odometry + verified loops);
* ``GBA``: the pipeline's global bundle adjustment (tracks fused through the loops' inliers);
* ``oracle``: a global bundle adjustment with the *perfect* data association (one track per simulated
  landmark id, every revisit recognised), started from the pose graph, scale from the wheel odometry as
  the pipeline's: close to the maximum-likelihood estimate from every pixel and odometry reading, which no
  back end beats by more than the estimator's spread;
* ``oracle_sim3``: the same with the scale aligned away (Sim(3)): what is left with a perfect scale too;
* ``scale_floor_m``: what the wheel odometry can tell of the scale (noise ``a`` per metre per step, so
  ``a / sqrt(steps)`` relative over the run) times the run's RMS distance from keyframe 0: the camera sees
  no scale, so no estimator's SE(3) error goes much below this.

and the ratios VO / GBA and VO / oracle: the second bounds what any loop closure can achieve on these
measurements. ``--pixel-noise`` reruns at other pixel noise levels: both errors scale with the noise, so the
ratio does not (the bound is set by the geometry: trajectory length, revisits, landmarks in view).

    python benchmarks/loop_closure_floor.py --trajectories 10 --workers 2
    python benchmarks/loop_closure_floor.py --trajectories 4 --pixel-noise 1.0,0.25 --csv floor.csv
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from multiprocessing import Pool

import numpy as np

from mixslam.bench.context import write_csv
from mixslam.eval import align_trajectory, ate
from mixslam.sim.world import make_world, simulate_run
from mixslam.slam.global_ba import global_bundle_adjustment
from mixslam.slam.pipeline import run_pipeline
from mixslam.slam.study import StudyConfig, trajectory_seed, with_overrides


def _rmse(run, R, t, mode="se3"):
    return float(np.sqrt(np.mean(ate(run.R_wc, run.t_wc, R, t, mode=mode) ** 2)))


def one(args):
    i, seed, noise, cfg = args
    cfg = replace(cfg, camera=replace(cfg.camera, pixel_noise=noise))
    t0 = time.perf_counter()
    run = simulate_run(make_world(cfg.world, seed), cfg.trajectory, cfg.camera, seed)
    res = run_pipeline(run, "fp64", cfg.pipeline, seed)
    oracle = global_bundle_adjustment(run, res.pgo_R, res.pgo_t, [], "fp64", window=cfg.pipeline.vo.window,
                                      config=replace(cfg.pipeline.global_ba, association="truth"))
    row = {"trajectory": i, "seed": seed, "pixel_noise": noise, "keyframes": len(run.R_wc),
           "loops": res.accepted, "vo": _rmse(run, res.vo_R, res.vo_t), "pgo": _rmse(run, res.pgo_R, res.pgo_t),
           "gba": _rmse(run, res.lc_R, res.lc_t),
           "oracle": _rmse(run, oracle.R_wc, oracle.t_wc) if oracle.ok else float("nan"),
           "oracle_sim3": _rmse(run, oracle.R_wc, oracle.t_wc, "sim3") if oracle.ok else float("nan"),
           # The oracle's scale error (%): the Sim(3) alignment's scale, which the wheel odometry set.
           "oracle_scale_err_pct": (100 * abs(align_trajectory(run.R_wc, run.t_wc, oracle.R_wc, oracle.t_wc,
                                                               "sim3")[2][2] - 1) if oracle.ok else float("nan")),
           # What 5% per-step wheel noise leaves of the scale over the run (%), and that error at the run's
           # RMS distance from keyframe 0 (the point the scale acts about), in m.
           "scale_floor_pct": 100 * cfg.trajectory.odometry_noise[0] / np.sqrt(max(len(run.R_wc) - 1, 1)),
           "scale_floor_m": (cfg.trajectory.odometry_noise[0] / np.sqrt(max(len(run.R_wc) - 1, 1))
                             * float(np.sqrt(np.mean(np.sum((run.t_wc - run.t_wc[0]) ** 2, axis=1))))),
           "seconds": time.perf_counter() - t0}
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trajectories", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keyframes", type=int, default=None, help="default: the default world's (300)")
    ap.add_argument("--window", type=int, default=None,
                    help="VO window (default: VOConfig's, 50, as the 200-run study)")
    ap.add_argument("--pixel-noise", default="1.0", help="comma-separated pixel noise levels (px)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--csv", help="write the rows as CSV")
    a = ap.parse_args(argv)
    cfg = with_overrides(StudyConfig(), keyframes=a.keyframes, window=a.window)
    noises = [float(x) for x in a.pixel_noise.split(",")]
    tasks = [(i, trajectory_seed(a.seed, i), nz, cfg) for nz in noises for i in range(a.trajectories)]
    t0 = time.perf_counter()
    if a.workers > 1:
        with Pool(a.workers) as pool:
            rows = pool.map(one, tasks)
    else:
        rows = [one(t) for t in tasks]
    cols = ("vo", "pgo", "gba", "oracle", "oracle_sim3", "scale_floor_m")
    print(f"{'noise':>5} {'traj':>4} {'loops':>5} " + " ".join(f"{c:>11}" for c in cols)
          + f" {'VO/GBA':>7} {'VO/oracle':>9}")
    for r in rows:
        print(f"{r['pixel_noise']:5.2f} {r['trajectory']:4d} {r['loops']:5d} "
              + " ".join(f"{r[c]:11.4e}" for c in cols) + f" {r['vo'] / r['gba']:7.1f} {r['vo'] / r['oracle']:9.1f}")
    for nz in noises:
        sub = [r for r in rows if r["pixel_noise"] == nz]
        m = {c: float(np.nanmean([r[c] for r in sub])) for c in cols}
        print(f"pixel noise {nz:g} px, mean RMSE over {len(sub)}: " + ", ".join(f"{c} {m[c]:.4e}" for c in cols)
              + f"; VO/GBA {m['vo'] / m['gba']:.1f}x, VO/oracle {m['vo'] / m['oracle']:.1f}x, "
                f"VO/oracle_sim3 {m['vo'] / m['oracle_sim3']:.1f}x; oracle scale error "
                f"{np.nanmean([r['oracle_scale_err_pct'] for r in sub]):.2f}% (floor "
                f"{np.mean([r['scale_floor_pct'] for r in sub]):.2f}%)")
    print(f"{len(rows)} runs in {time.perf_counter() - t0:.0f} s ({a.workers} worker(s))")
    if a.csv:
        write_csv(a.csv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
