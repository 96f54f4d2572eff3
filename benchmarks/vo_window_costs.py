"""VO window by window, two policies side by side: where each window solve stops, and the ATE it leads to.

For each seed, runs the sliding-window VO of one world in policy A (default fp64) and policy B (default naive
fp16) on identical inputs and compares every window solve: B's final cost relative to A's, B's cost decrease
relative to A's, LM iterations and statuses; then both VO ATEs. It answers whether a policy's different ATE
comes from windows that fail to descend (cost far above) or from windows that reach the same cost but stop at
a different point of the window's flat valley (monocular scale, depths).

    python benchmarks/vo_window_costs.py --world demo --seeds 0,5 --policies fp64,fp16
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import mixslam.slam.vo as vo
from mixslam.eval import ate
from mixslam.sim.world import make_world, simulate_run
from mixslam.slam.study import StudyConfig, demo_config, trajectory_seed


def window_log(run, policy: str, cfg) -> tuple[list, object]:
    """Run the VO; returns ([(window, status, LM iterations, initial cost, final cost)], VOResult)."""
    log = []
    real = vo.optimize_bundle

    def recording(data, config):
        out, rep = real(data, config)
        log.append((data.source, rep.status.value, rep.iterations, rep.initial_cost, rep.final_cost))
        return out, rep
    vo.optimize_bundle = recording
    try:
        res = vo.run_vo(run, policy, config=cfg.pipeline.vo)
    finally:
        vo.optimize_bundle = real
    return log, res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", choices=("demo", "default"), default="demo",
                    help="the demo's world (150 keyframes, window 30) or the study's (300, window 50)")
    ap.add_argument("--seeds", default="0,1,2,3",
                    help="study trajectory indices (seeded as `mixslam sim --seed 0`)")
    ap.add_argument("--policies", default="fp64,fp16", help="two policies: reference,compared")
    a = ap.parse_args(argv)
    cfg = demo_config() if a.world == "demo" else StudyConfig()
    ref, other = a.policies.split(",")
    print(f"{'traj':>4} {'ATE ' + ref:>10} {'ATE ' + other:>10} {'ratio':>6} "
          f"{'cost above ' + ref + ' (median/max)':>30} "
          f"{'decrease / ' + ref + ' (median/min)':>28} {'LM it ' + ref:>9} {'LM it ' + other:>9} "
          f"{'unconv ' + other:>10}")
    for i in (int(x) for x in a.seeds.split(",")):
        seed = trajectory_seed(0, i)
        world = make_world(cfg.world, seed)
        run = simulate_run(world, cfg.trajectory, cfg.camera, seed)
        (la, ra), (lb, rb) = window_log(run, ref, cfg), window_log(run, other, cfg)
        above = np.array([(y[4] - x[4]) / x[4] for x, y in zip(la, lb)])
        desc = np.array([(y[3] - y[4]) / max(x[3] - x[4], 1e-300) for x, y in zip(la, lb)])
        ea = float(np.sqrt(np.mean(ate(run.R_wc, run.t_wc, ra.R_wc, ra.t_wc, mode="se3") ** 2)))
        eb = float(np.sqrt(np.mean(ate(run.R_wc, run.t_wc, rb.R_wc, rb.t_wc, mode="se3") ** 2)))
        print(f"{i:4d} {ea:10.4f} {eb:10.4f} {eb / ea:6.3f} {np.median(above):14.2e} / {np.max(above):9.2e} "
              f"{np.median(desc):14.4f} / {np.min(desc):7.4f} {sum(x[2] for x in la):9d} {sum(y[2] for y in lb):9d} "
              f"{sum(y[1] != 'converged' for y in lb):6d}/{len(lb)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
