"""Pose-graph benchmark: every (precision, solver) pair side by side on each dataset, in one run.

Prints, per dataset: final chi2 (g2o convention), LM iterations, CG iterations, seconds per phase, total,
and the ratios of the linear-solve time to the same solver in fp32 and to fp64 Cholesky. Where GTSAM is
installed (extra `peers`), its LM on the same file is timed in the same run and its answer scored with our
cost (GTSAM minimises a different objective on 3D files: see the README's cost conventions).

    python benchmarks/pgo.py                       # all files in $MIXSLAM_DATA/pgo or ../shared/data/pgo
    python benchmarks/pgo.py sphere2500.g2o city10000.g2o --repeat 3 --csv out.csv

Times are the minimum over --repeat runs (these machines are noisy; compare ratios, not absolute times).
Compilation of the numba kernels is done before timing and reported apart.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from mixslam.bench.context import write_csv
from mixslam.bench.peers import PGO_MAX_ITERATIONS, REPAIR, g2o_pgo, gtsam_pgo
from mixslam.data import data_dir
from mixslam.io import read_pose_graph
from mixslam.pgo import PGOConfig, initial_guess, optimize_pose_graph, warmup
from mixslam.problem.between import cost as our_cost
from mixslam.solve import LMConfig

PAIRS = [("fp64", "cholesky"), ("fp64", "ic"), ("fp32", "ic"), ("mixed", "ic"), ("fp16", "ic"),
         ("fp32", "cgnr"), ("mixed16", "cgnr")]
DEFAULT_FILES = ["intel.g2o", "MIT.g2o", "CSAIL.g2o", "input_M3500_g2o.g2o", "kitti_00.g2o", "city10000.g2o",
                 "ais2klinik.g2o", "smallGrid3D.g2o", "parking-garage.g2o", "sphere2500.g2o", "torus3D.g2o",
                 "cubicle.g2o"]


def _peer_row(label, path, graph, init_graph, workdir, base_solve):
    """Run one peer (:mod:`mixslam.bench.peers`) from ``init_graph``, print its line; its CSV row or None."""
    if label == "gtsam":
        peer = gtsam_pgo(path, graph, init_graph)
        note = ("GTSAM LM from the same guess, init excluded; its chi2 in our g2o-convention cost; "
                "ratio to our fp64 Cholesky solve without init")
    else:
        peer = g2o_pgo(graph, init_graph, workdir)
        note = "g2o LM, Eigen sparse Cholesky, same guess; g2o's own chi2"
    if isinstance(peer, str):  # not installed, or failed
        print(f"{label:>9}: {peer}")
        return None
    dt, its, R, t = peer[:4]
    chi2 = 2 * our_cost(graph, R, t) if label == "gtsam" else peer[4]
    ratio = dt / base_solve
    print(f"{label:>9} {'LM':>8} {chi2:16.9f} {its:4d} {'':>6} {'':>7} {'':>7} {dt:8.3f} {'':>8} {'':>10} "
          f"{ratio:10.2f}       ({note})")
    return {"precision": label, "solver": "LM", "chi2": chi2, "lm_iterations": its, "total_s": dt,
            "total_vs_fp64_cholesky": ratio}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="file names in the pgo data folder (default: a standard set)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per pair; the minimum time is kept")
    ap.add_argument("--pairs", help="comma list of precision:solver, e.g. fp32:ic,mixed:ic")
    ap.add_argument("--csv", help="also write the rows to this CSV file")
    ap.add_argument("--no-peers", action="store_true", help="skip GTSAM even if installed")
    ap.add_argument("--cgnr-max-poses", type=int, default=3000, help="skip block-Jacobi CGNR above this size")
    ap.add_argument("--init", default="chordal", choices=["file", "odometry", "chordal"],
                    help="initial guess for every solver, GTSAM included (default chordal)")
    args = ap.parse_args(argv)
    root = data_dir()
    if root is None:
        print("data folder not found: set MIXSLAM_DATA", file=sys.stderr)
        return 2
    pairs = PAIRS if not args.pairs else [tuple(p.split(":")) for p in args.pairs.split(",")]
    print(f"numba compile/load: {warmup():.2f} s (excluded below)")
    rows = []
    for name in args.files or DEFAULT_FILES:
        path = root / "pgo" / name
        if not path.exists():
            print(f"skip {name}: not found")
            continue
        graph = read_pose_graph(path, repair=REPAIR.get(name))
        init = args.init
        print(f"\n== {name}: {graph.num_poses} poses, {graph.num_edges} edges, {graph.dim}D, init {init}")
        print(f"{'precision':>9} {'solver':>8} {'chi2':>16} {'LM':>4} {'CG':>6} {'jac s':>7} {'lin s':>7} "
              f"{'total s':>8} {'lin/fp32':>8} {'lin/fp64ch':>10} {'tot/fp64ch':>10} {'ovf':>4}  status")
        results = {}
        for precision, solver in pairs:
            if solver == "cgnr" and graph.num_poses > args.cgnr_max_poses:
                print(f"{precision:>9} {solver:>8}  skipped: block-Jacobi CGNR needs > 100 LM iterations at this size "
                      f"(--cgnr-max-poses {args.cgnr_max_poses})")
                continue
            best = None
            for _ in range(args.repeat):
                res, rep = optimize_pose_graph(graph, PGOConfig(precision=precision, solver=solver, init=init,
                                                                lm=LMConfig(max_iterations=PGO_MAX_ITERATIONS)))
                if best is None or rep.timing["total"] < best.timing["total"]:
                    best = rep
            results[(precision, solver)] = best
        base = results.get(("fp64", "cholesky"))
        for (precision, solver), rep in results.items():
            f32 = results.get(("fp32", solver))
            lin = rep.timing["linear_solve"]
            r32 = lin / f32.timing["linear_solve"] if f32 else float("nan")
            r64 = lin / base.timing["linear_solve"] if base else float("nan")
            t64 = rep.timing["total"] / base.timing["total"] if base else float("nan")
            rep.timing["solve"] = rep.timing["total"] - rep.timing.get("init", 0.0)
            print(f"{precision:>9} {solver:>8} {2 * rep.final_cost:16.9f} {rep.iterations:4d} "
                  f"{rep.linear_iterations:6d} "
                  f"{rep.timing['jacobian']:7.3f} {lin:7.3f} {rep.timing['total']:8.3f} {r32:8.2f} {r64:10.2f} "
                  f"{t64:10.2f} {rep.fp16_overflows:4d}  {rep.status.value} "
                  f"(init {rep.timing.get('init', 0):.2f} s incl.)")
            rows.append({"file": name, "precision": precision, "solver": solver, "chi2": 2 * rep.final_cost,
                         "lm_iterations": rep.iterations, "cg_iterations": rep.linear_iterations,
                         "residual_s": rep.timing["residual"], "jacobian_s": rep.timing["jacobian"],
                         "linear_solve_s": lin, "update_s": rep.timing["update"], "total_s": rep.timing["total"],
                         "init_s": rep.timing.get("init", 0.0), "linear_vs_fp32": r32, "linear_vs_fp64_cholesky": r64,
                         "total_vs_fp64_cholesky": t64, "fp16_overflows": rep.fp16_overflows,
                         "status": rep.status.value})
        if not args.no_peers:
            init_graph = graph if init == "file" else initial_guess(graph, init)
            # The peers start from init_graph: their times compare with our fp64 Cholesky solve less its init.
            base_solve = base.timing["total"] - base.timing.get("init", 0.0) if base else float("nan")
            with tempfile.TemporaryDirectory() as tmp:
                for label in ("gtsam", "g2o"):
                    row = _peer_row(label, path, graph, init_graph, Path(tmp), base_solve)
                    if row is not None:
                        rows.append({"file": name, **row})
    if args.csv:
        write_csv(args.csv, rows, sorted({k for r in rows for k in r}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
