"""Mixed-precision direct solves against fp64 direct solves on every pose graph, side by side in one run.

Variants (each a whole ``optimize_pose_graph`` from the same initial guess, chordal by default):

``fp64/<backend>``
    fp64 sparse Cholesky with each installed fp64 backend (``mixslam``: this package's supernodal factor,
    the core install's default; ``cvxopt``: CHOLMOD, the GPL extra).
``mixed``
    ``--precision mixed`` with its default solver: fp32 supernodal factor, PCG with fp64 vectors to the
    relative residual 1e-10, the factor reused across LM steps while PCG stays short.
``mixed/no-reuse``
    The same, factoring every step.
``auto``
    ``--precision auto``: mixed's first step, an fp64 second step, the faster kept for the rest.
``mixed/cg+ic``
    The article's design (CG with the fp16 incomplete-Cholesky preconditioner), for reference.

Prints per file the final chi2 (g2o convention), its relative difference to fp64/mixslam, LM iterations,
factorizations/reuses, the whole solve's seconds (initialization included; minimum of ``--repeat``) and the
speed-up against each fp64 backend (> 1: faster). Compilation is done before timing.

    python benchmarks/pgo_mixed.py [files...] [--repeat 3] [--init chordal] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import sys

from mixslam.bench.context import write_csv
from mixslam.bench.peers import PGO_MAX_ITERATIONS, REPAIR
from mixslam.data import data_dir
from mixslam.io import read_pose_graph
from mixslam.linear.config import DirectConfig
from mixslam.linear.direct import available_backends
from mixslam.pgo import PGOConfig, optimize_pose_graph, warmup
from mixslam.solve import LMConfig

DEFAULT_FILES = ["intel.g2o", "MIT.g2o", "CSAIL.g2o", "input_M3500_g2o.g2o", "kitti_00.g2o", "city10000.g2o",
                 "ais2klinik.g2o", "smallGrid3D.g2o", "parking-garage.g2o", "sphere2500.g2o", "torus3D.g2o",
                 "cubicle.g2o"]


def variants(with_cg: bool):
    out = {}
    for b in available_backends():
        if b in ("mixslam", "cvxopt", "cholmod", "pardiso"):
            out[f"fp64/{b}"] = dict(precision="fp64", direct=DirectConfig(backend=b))
    out["mixed"] = dict(precision="mixed")
    out["auto"] = dict(precision="auto")
    out["mixed/no-reuse"] = dict(precision="mixed", direct=DirectConfig(reuse=False))
    if with_cg:
        out["mixed/cg+ic"] = dict(precision="mixed", solver="cg")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="file names in the pgo data folder (default: a standard set)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant; the minimum time is kept")
    ap.add_argument("--init", default="chordal", choices=["file", "odometry", "chordal"])
    ap.add_argument("--cg", action="store_true", help="also run the article's CG + fp16 IC (slow)")
    ap.add_argument("--csv", help="also write the rows to this CSV file")
    args = ap.parse_args(argv)
    root = data_dir()
    if root is None:
        print("data folder not found: set MIXSLAM_DATA", file=sys.stderr)
        return 2
    print(f"numba compile/load: {warmup():.2f} s (excluded below); fp64 backends: {available_backends()}")
    rows = []
    for name in args.files or DEFAULT_FILES:
        path = root / "pgo" / name
        if not path.exists():
            print(f"skip {name}: not found")
            continue
        graph = read_pose_graph(path, repair=REPAIR.get(name))
        print(f"\n== {name}: {graph.num_poses} poses, {graph.num_edges} edges, {graph.dim}D, init {args.init}")
        print(f"{'variant':>16} {'chi2':>18} {'rel diff':>9} {'LM':>4} {'fact':>5} {'reuse':>5} {'total s':>8} "
              + " ".join(f"{'vs ' + v:>14}" for v in variants(False) if v.startswith("fp64")))
        results = {}
        for label, kw in variants(args.cg).items():
            best = None
            for _ in range(args.repeat):
                config = PGOConfig(init=args.init, lm=LMConfig(max_iterations=PGO_MAX_ITERATIONS), **kw)
                _, rep = optimize_pose_graph(graph, config)
                if best is None or rep.timing["total"] < best.timing["total"]:
                    best = rep
            results[label] = best
        ref = results.get("fp64/mixslam")
        for label, rep in results.items():
            d = rep.direct
            rel = (rep.final_cost - ref.final_cost) / ref.final_cost if ref else float("nan")
            speed = {v: r.timing["total"] / rep.timing["total"] for v, r in results.items() if v.startswith("fp64")}
            print(f"{label:>16} {2 * rep.final_cost:18.10f} {rel:9.1e} {rep.iterations:4d} "
                  f"{d.factorizations if d else 0:5d} {d.reuses if d else 0:5d} {rep.timing['total']:8.3f} "
                  + " ".join(f"{speed[v]:13.2f}x" for v in speed) + f"  {rep.status.value}")
            rows.append({"file": name, "variant": label, "chi2": 2 * rep.final_cost, "rel_diff_fp64": rel,
                         "lm_iterations": rep.iterations, "linear_iterations": rep.linear_iterations,
                         "factorizations": d.factorizations if d else 0, "reuses": d.reuses if d else 0,
                         "failed_reuses": d.failed_reuses if d else 0, "total_s": rep.timing["total"],
                         "init_s": rep.timing.get("init", 0.0), "linear_solve_s": rep.timing["linear_solve"],
                         **{f"speedup_vs_{v.replace('/', '_')}": s for v, s in speed.items()},
                         "status": rep.status.value})
        sys.stdout.flush()
    if args.csv:
        write_csv(args.csv, rows, sorted({k for r in rows for k in r}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
