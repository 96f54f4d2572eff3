"""Our whole pose-graph solve against GTSAM's Levenberg-Marquardt on every shared pose graph, in one run.

Rows per file (each timed as the minimum of ``--repeat`` runs after one untimed warm-up run of the same row;
numba kernels are compiled once up front by :func:`mixslam.pgo.warmup`):

``ours fp64`` / ``ours mixed``
    ``optimize_pose_graph(graph, precision=...)`` with every other setting at its default (``init="auto"``:
    the chordal relaxation unless the file's guess costs less), timed WHOLE around the call: our
    initialization, analysis and LM included, reading the file excluded.
``gtsam file``
    GTSAM LM (``mixslam.bench.peers.gtsam_pgo``: ``readG2o`` + ``LevenbergMarquardtOptimizer``, GTSAM's
    defaults except relative error tolerance 1e-10 and the iteration limit of ``peers.py``, first pose held
    by a tight prior) from the file's own poses, i.e. the graph we are handed (edge-only files, CSAIL and
    kitti_00: the reader's spanning-tree guess). Timed from optimizer construction to the end of
    ``optimize()``; ``readG2o`` and building the initial ``Values`` excluded.
``gtsam chordal``
    The same from our chordal initial guess (computed once, not in GTSAM's time), to separate the
    initialization from the LM's speed: compare it with our LM-only time (``ours`` minus ``timing['init']``).

Every answer is scored with our fp64 cost :func:`mixslam.problem.between.cost` (g2o convention: chi2 = 2 x
cost). On 3D files GTSAM minimises its own objective (see ``peers.py``), so its cost may differ from ours at
its optimum. Files that need an information repair when read (``peers.REPAIR``: cubicle.g2o) are handed to
GTSAM as the repaired graph written back to a temporary g2o file, so both solve the same problem.

    python benchmarks/pgo_gtsam.py [--files F ...] [--repeat 3] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

import mixslam
from mixslam.bench.context import write_csv
from mixslam.bench.peers import REPAIR, gtsam_pgo, peer_version
from mixslam.data import data_dir
from mixslam.io import read_pose_graph, write_g2o
from mixslam.pgo import initial_guess, optimize_pose_graph, warmup
from mixslam.problem.between import cost as our_cost

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgo_mixed import DEFAULT_FILES  # noqa: E402  (the same file list as benchmarks/pgo_mixed.py)

OURS = ("fp64", "mixed")
NAN = float("nan")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs; python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__} (NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}), "
        f"{peer_version('gtsam')}; mixslam {mixslam.__version__} from {Path(mixslam.__file__).parent}"
    )


def time_ours(graph, precision: str, repeat: int):
    """(seconds, result graph, report) of the fastest of ``repeat`` whole solves, after one warm-up solve."""
    optimize_pose_graph(graph, precision=precision)
    best = None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        res, rep = optimize_pose_graph(graph, precision=precision)
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, res, rep)
    return best


def time_gtsam(path: Path, graph, start, repeat: int):
    """(seconds, iterations, R, t) of the fastest of ``repeat`` GTSAM solves after a warm-up, or a reason."""
    first = gtsam_pgo(path, graph, start)
    if isinstance(first, str):
        return first
    best = None
    for _ in range(max(1, repeat)):
        r = gtsam_pgo(path, graph, start)
        if isinstance(r, str):
            return r
        if best is None or r[0] < best[0]:
            best = r
    return best


def reach_time(whole_s: float, report, target: float) -> float:
    """Seconds our whole solve took to first hold an iterate whose fp64 cost is at or below ``target`` (GTSAM's
    final cost): the whole time minus the LM iterations after that one (``IterationRecord.time_s``); the whole
    time if it never did, NaN if ``target`` is not finite."""
    if not math.isfinite(target):
        return NAN
    hist = report.history
    if hist and hist[0].cost <= target:  # the initialization already did
        return whole_s - sum(r.time_s for r in hist)
    for i, r in enumerate(hist):
        if r.accepted and r.new_cost <= target:
            return whole_s - sum(h.time_s for h in hist[i + 1 :])
    return whole_s


def fmt(x: float, spec: str) -> str:
    return format(x, spec) if math.isfinite(x) else "n/a"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", nargs="+", help="file names in the pgo data folder (default: pgo_mixed.py's set)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per row after one warm-up; minimum kept")
    ap.add_argument("--csv", help="also write the rows to this CSV file")
    args = ap.parse_args(argv)
    root = data_dir()
    if root is None:
        print("data folder not found: set MIXSLAM_DATA", file=sys.stderr)
        return 2
    print(machine_line())
    print("load average at start (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"numba compile/load: {warmup():.2f} s (excluded); repeat {args.repeat} after one warm-up run per row")
    print(
        "ours: optimize_pose_graph defaults (init auto), whole call timed; gtsam: peers.gtsam_pgo (optimizer "
        "construction + optimize); cost = mixslam.problem.between.cost (chi2 = 2 x cost)"
    )
    head = (
        f"{'file':>20} {'poses':>6} | {'fp64 s':>8} {'fp64 cost':>14} | {'mixed s':>8} {'mixed cost':>14} | "
        f"{'gt file s':>9} {'gt file cost':>14} | {'gt chord s':>10} {'gt chord cost':>14} | "
        f"{'gt/fp64':>7} {'gt/mixed':>8}"
    )
    print(head, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.files or DEFAULT_FILES:
            path = root / "pgo" / name
            if not path.exists():
                print(f"skip {name}: not found", flush=True)
                continue
            graph = read_pose_graph(path, repair=REPAIR.get(name))
            gpath = path
            if REPAIR.get(name):  # GTSAM solves the repaired problem, as we do
                gpath = Path(tmp) / name
                write_g2o(graph, gpath)
            row: dict = {"file": name, "poses": graph.num_poses, "edges": graph.num_edges, "dim": graph.dim}
            reports = {}
            for prec in OURS:
                dt, res, rep = time_ours(graph, prec, args.repeat)
                reports[prec] = rep
                tm = rep.timing
                row.update(
                    {
                        f"ours_{prec}_s": dt,
                        f"ours_{prec}_cost": our_cost(graph, res.rotations, res.translations),
                        f"ours_{prec}_iterations": rep.iterations,
                        f"ours_{prec}_init": rep.init,
                        f"ours_{prec}_status": rep.status.value,
                        f"ours_{prec}_init_s": tm.get("init", 0.0),
                        f"ours_{prec}_lm_only_s": dt - tm.get("init", 0.0),
                        **{f"ours_{prec}_{k}_s": tm.get(k, 0.0) for k in ("setup", "residual", "jacobian")},
                        f"ours_{prec}_linear_solve_s": tm.get("linear_solve", 0.0),
                        f"ours_{prec}_update_s": tm.get("update", 0.0),
                    }
                )
            t0 = time.perf_counter()
            chordal = initial_guess(graph, "chordal")
            row["chordal_init_s"] = time.perf_counter() - t0
            for tag, start in (("file", graph), ("chordal", chordal)):
                r = time_gtsam(gpath, graph, start, args.repeat)
                if isinstance(r, str):
                    row.update({f"gtsam_{tag}_s": NAN, f"gtsam_{tag}_cost": NAN, f"gtsam_{tag}_iterations": ""})
                    row[f"gtsam_{tag}_note"] = r
                else:
                    dt, its, R, t = r
                    row.update(
                        {
                            f"gtsam_{tag}_s": dt,
                            f"gtsam_{tag}_cost": our_cost(graph, R, t),
                            f"gtsam_{tag}_iterations": its,
                        }
                    )
                    row[f"gtsam_{tag}_note"] = ""
            for prec in OURS:
                row[f"ours_{prec}_reach_s"] = reach_time(row[f"ours_{prec}_s"], reports[prec], row["gtsam_file_cost"])
                row[f"gtsam_file_over_ours_{prec}_reach"] = row["gtsam_file_s"] / row[f"ours_{prec}_reach_s"]
            for prec in OURS:
                row[f"gtsam_file_over_ours_{prec}"] = row["gtsam_file_s"] / row[f"ours_{prec}_s"]
                row[f"gtsam_chordal_over_ours_{prec}_lm_only"] = row["gtsam_chordal_s"] / row[f"ours_{prec}_lm_only_s"]
            rows.append(row)
            print(
                f"{name:>20} {graph.num_poses:6d} | {row['ours_fp64_s']:8.3f} {row['ours_fp64_cost']:14.8g} | "
                f"{row['ours_mixed_s']:8.3f} {row['ours_mixed_cost']:14.8g} | "
                f"{fmt(row['gtsam_file_s'], '9.3f')} {fmt(row['gtsam_file_cost'], '14.8g')} | "
                f"{fmt(row['gtsam_chordal_s'], '10.3f')} {fmt(row['gtsam_chordal_cost'], '14.8g')} | "
                f"{fmt(row['gtsam_file_over_ours_fp64'], '7.2f')} {fmt(row['gtsam_file_over_ours_mixed'], '8.2f')}",
                flush=True,
            )
    print("\ndetails: our init choice, LM iterations (ours fp64/mixed, gtsam file/chordal), init and LM-only times")
    print(
        f"{'file':>20} {'ours init':>16} {'it64':>4} {'itmx':>4} {'gtF':>4} {'gtC':>4} | {'chordal s':>9} "
        f"{'fp64 init s':>11} {'fp64 LM s':>9} {'mixed LM s':>10} | {'gtC/fp64LM':>10} {'gtC/mixLM':>9}"
    )
    for r in rows:
        print(
            f"{r['file']:>20} {r['ours_fp64_init']:>16} {r['ours_fp64_iterations']:4d} "
            f"{r['ours_mixed_iterations']:4d} {r['gtsam_file_iterations']!s:>4} {r['gtsam_chordal_iterations']!s:>4} | "
            f"{r['chordal_init_s']:9.3f} {r['ours_fp64_init_s']:11.3f} {r['ours_fp64_lm_only_s']:9.3f} "
            f"{r['ours_mixed_lm_only_s']:10.3f} | {fmt(r['gtsam_chordal_over_ours_fp64_lm_only'], '10.2f')} "
            f"{fmt(r['gtsam_chordal_over_ours_mixed_lm_only'], '9.2f')}"
        )
        for tag in ("file", "chordal"):
            if r[f"gtsam_{tag}_note"]:
                print(f"{'':>20} gtsam {tag}: {r[f'gtsam_{tag}_note']}")
    print("\ntime to GTSAM's answer: our whole solve until its iterate first costs no more than GTSAM(file)'s final")
    print(f"{'file':>20} {'gtsam s':>8} {'fp64 reach s':>12} {'gt/fp64':>7} {'mixed reach s':>13} {'gt/mixed':>8}")
    for r in rows:
        print(
            f"{r['file']:>20} {fmt(r['gtsam_file_s'], '8.3f')} {fmt(r['ours_fp64_reach_s'], '12.3f')} "
            f"{fmt(r['gtsam_file_over_ours_fp64_reach'], '7.2f')} {fmt(r['ours_mixed_reach_s'], '13.3f')} "
            f"{fmt(r['gtsam_file_over_ours_mixed_reach'], '8.2f')}"
        )
    print(
        "\nratios: gt/fp64, gt/mixed = GTSAM(file guess) time / our whole time (> 1: we are faster); "
        "gtC/...LM = GTSAM(chordal guess) time / our time minus our initialization"
    )
    print("load average at end (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.csv:
        write_csv(args.csv, rows, list(dict.fromkeys(k for r in rows for k in r)))
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
