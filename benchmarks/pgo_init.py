"""Initialization study: file guess vs chordal relaxation on the hard 3D files, against GTSAM's
InitializePose3 + LM where GTSAM is installed. Every answer is scored with our g2o-convention chi2.

    python benchmarks/pgo_init.py [--repair nearest|isotropic]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mixslam.data import data_dir
from mixslam.io import read_pose_graph, write_g2o
from mixslam.pgo import optimize_pose_graph
from mixslam.problem.between import cost as our_cost


def gtsam_initialize_pose3(path: Path, graph):
    try:
        import gtsam
    except ImportError:
        return None
    factors, _ = gtsam.readG2o(str(path), True)
    first = int(graph.ids[0])
    R0, t0 = graph.rotations[0], graph.translations[0]
    factors.add(gtsam.PriorFactorPose3(first, gtsam.Pose3(gtsam.Rot3(R0), gtsam.Point3(*t0)),
                                       gtsam.noiseModel.Isotropic.Sigma(6, 1e-6)))
    t0_ = time.perf_counter()
    init = gtsam.InitializePose3.initialize(factors)
    t1 = time.perf_counter()
    params = gtsam.LevenbergMarquardtParams()
    params.setRelativeErrorTol(1e-10)
    params.setMaxIterations(200)
    opt = gtsam.LevenbergMarquardtOptimizer(factors, init, params)
    try:
        result = opt.optimize()
    except RuntimeError as exc:  # GTSAM's "Indeterminant linear system"
        return {"error": str(exc).splitlines()[0]}
    t2 = time.perf_counter()

    def score(values):
        R = np.stack([values.atPose3(int(i)).rotation().matrix() for i in graph.ids])
        t = np.stack([values.atPose3(int(i)).translation() for i in graph.ids])
        return 2 * our_cost(graph, R, t)

    return {"init_chi2": score(init), "final_chi2": score(result), "iterations": opt.iterations(),
            "init_s": t1 - t0_, "lm_s": t2 - t1}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repair", default="nearest", choices=["nearest", "isotropic"])
    ap.add_argument("files", nargs="*", default=["torus3D.g2o", "cubicle.g2o", "sphere2500.g2o", "parking-garage.g2o"])
    args = ap.parse_args(argv)
    root = data_dir()
    if root is None:
        print("data folder not found: set MIXSLAM_DATA", file=sys.stderr)
        return 2
    print(f"{'file':>20} {'method':>26} {'init chi2':>14} {'final chi2':>16} {'LM':>4} {'time s':>7}")
    for name in args.files:
        src = root / "pgo" / name
        graph = read_pose_graph(src, repair=args.repair if name == "cubicle.g2o" else None)
        label = name + (f" ({args.repair})" if name == "cubicle.g2o" else "")
        for init in ("file", "chordal"):
            _, rep = optimize_pose_graph(graph, init=init)
            print(f"{label:>20} {'mixslam LM, ' + init:>26} {2 * rep.initial_cost:14.6f} {2 * rep.final_cost:16.6f} "
                  f"{rep.iterations:4d} {rep.timing['total']:7.2f}  {rep.status.value}")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            write_g2o(graph, path)  # the (repaired) graph GTSAM reads
            g = gtsam_initialize_pose3(path, graph)
        if g is None:
            print(f"{label:>20} {'gtsam':>26}  not installed")
        elif "error" in g:
            print(f"{label:>20} {'gtsam InitializePose3+LM':>26}  failed: {g['error']}")
        else:
            print(f"{label:>20} {'gtsam InitializePose3+LM':>26} {g['init_chi2']:14.6f} {g['final_chi2']:16.6f} "
                  f"{g['iterations']:4d} {g['init_s'] + g['lm_s']:7.2f}  (GTSAM objective; scored in ours)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
