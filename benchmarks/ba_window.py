"""Visual-odometry sliding window: every precision policy on the same generated windows, side by side.

Each window: 50 keyframes, about 100 landmarks seen per frame, 1 px pixel noise, the 10 oldest frames fixed
(mixslam.sim.bundle.WindowConfig defaults). For every policy: final cost (fp64), camera-centre RMSE and
rotation RMSE against ground truth, LM and CG iterations, fp16 overflow / underflow counts, seconds; and,
per policy, the largest relative difference of its pose error to fp64 Schur's over all seeds.

    python benchmarks/ba_window.py --seeds 10 [--csv out.csv]

The solves use function_tolerance 1e-10: the window's cost is flat along the weakly observed directions
(depth, scale), so Ceres' 1e-6 stops where different solvers leave the poses millimetres apart.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np

from mixslam.ba import BAConfig, optimize_bundle, warmup
from mixslam.bench.context import write_csv
from mixslam.lie import so3
from mixslam.sim.bundle import WindowConfig, simulate_window
from mixslam.solve.config import LMConfig

POLICIES = [("fp64", "schur"), ("fp64", "cgnr"), ("fp32", "cgnr"), ("mixed", "cgnr"), ("fp16", "cgnr")]


def pose_errors(cameras, truth):
    """(camera-centre RMSE in m, rotation RMSE in degrees) against the ground truth (no alignment: the
    oldest frames are fixed at the truth, so the estimate is already in its frame)."""
    R, t = cameras[:, :9].reshape(-1, 3, 3), cameras[:, 9:]
    Rt, tt = truth[:, :9].reshape(-1, 3, 3), truth[:, 9:]
    c = -np.einsum("nji,nj->ni", R, t)
    ct = -np.einsum("nji,nj->ni", Rt, tt)
    ang = np.linalg.norm(so3.log(np.swapaxes(Rt, 1, 2) @ R), axis=1)
    return float(np.sqrt(np.mean(np.sum((c - ct) ** 2, axis=1)))), float(np.degrees(np.sqrt(np.mean(ang ** 2))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--csv")
    args = ap.parse_args(argv)
    print(f"# {platform.platform()}, {platform.processor() or platform.machine()}, python {sys.version.split()[0]}")
    warmup("pinhole")
    lm = LMConfig(initial_lambda=1e-4, function_tolerance=1e-10, max_iterations=100)
    rows = []
    for seed in range(args.seeds):
        data, tc, tp = simulate_window(WindowConfig(), seed=seed)
        e0 = pose_errors(data.cameras, tc)
        print(f"\nseed {seed}: {data.num_cameras} frames ({int(data.fixed_cameras.sum())} fixed), {data.num_points} "
              f"landmarks, {data.num_observations} observations; initial centre RMSE {e0[0] * 1e3:.2f} mm, "
              f"rotation {e0[1]:.3f} deg")
        print(f"  {'policy':13s} {'status':20s} {'final cost':>14s} {'centre mm':>10s} {'rot deg':>8s} {'LM':>4s} "
              f"{'CG':>6s} {'ovf':>5s} {'underfl':>8s} {'s':>6s}")
        for precision, solver in POLICIES:
            t0 = time.perf_counter()
            result, rep = optimize_bundle(data, BAConfig(precision=precision, solver=solver, lm=lm))
            dt = time.perf_counter() - t0
            ec, er = pose_errors(result.cameras, tc)
            q = rep.quantization
            row = dict(seed=seed, precision=precision, solver=solver, status=rep.status.value,
                       final_cost=rep.final_cost, centre_rmse_m=ec, rotation_rmse_deg=er, iterations=rep.iterations,
                       cg_iterations=rep.linear_iterations, overflows=q.overflows,
                       underflows=q.underflows, seconds=dt, initial_centre_rmse_m=e0[0])
            rows.append(row)
            print(f"  {precision + '/' + solver:13s} {rep.status.value:20s} {rep.final_cost:14.6f} {ec * 1e3:10.4f} "
                  f"{er:8.4f} {rep.iterations:4d} {rep.linear_iterations:6d} {row['overflows']:5d} "
                  f"{row['underflows']:8d} {dt:6.2f}")
    print("\nSummary over seeds (relative to fp64/schur on the same window):")
    print(f"  {'policy':13s} {'mean centre mm':>14s} {'max |d err|/err':>16s} {'max d cost/cost':>16s} "
          f"{'mean CG':>8s} {'overflows':>9s}")
    ref = {r["seed"]: r for r in rows if r["precision"] == "fp64" and r["solver"] == "schur"}
    for precision, solver in POLICIES:
        sel = [r for r in rows if r["precision"] == precision and r["solver"] == solver]
        derr = max(abs(r["centre_rmse_m"] - ref[r["seed"]]["centre_rmse_m"]) / ref[r["seed"]]["centre_rmse_m"]
                   for r in sel)
        dcost = max((r["final_cost"] - ref[r["seed"]]["final_cost"]) / ref[r["seed"]]["final_cost"] for r in sel)
        print(f"  {precision + '/' + solver:13s} {np.mean([r['centre_rmse_m'] for r in sel]) * 1e3:14.4f} "
              f"{derr:16.2e} {dcost:16.2e} {np.mean([r['cg_iterations'] for r in sel]):8.0f} "
              f"{sum(r['overflows'] for r in sel):9d}")
    if args.csv:
        write_csv(args.csv, rows, list(rows[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
