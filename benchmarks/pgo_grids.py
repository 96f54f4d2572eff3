"""Issue 16: the default install's fp64 direct solve on generated graphs far beyond the shared files, against
CHOLMOD (the ``fast`` extra) and ``mixed``, each variant in its own process (its peak resident set is its own).

Generates a 2-D grid of 200,000 poses and a 3-D grid of 50,000 poses (``mixslam generate pgo``, seeded, loop
closures included) into a temporary folder, then solves each with:

``fp64/mixslam``
    the core install's supernodal factor (no optional dependency);
``fp64/cvxopt``
    CHOLMOD through cvxopt, when installed;
``fp64/scipy``
    SuperLU (the default install's fallback before issue 16; minutes on the 3-D grid: only with ``--superlu``);
``mixed``
    the fp32 factor refined to fp64.

Prints per variant: whole-solve time (``SolveReport.timing['total']`` plus the initialization), LM iterations,
final cost, peak resident set (``peak_rss_bytes``: the child process's high-water mark, reading the graph
included), the factor's bytes, and the ratio of each time to CHOLMOD's.

    python benchmarks/pgo_grids.py [--poses2d 200000] [--poses3d 50000] [--superlu] [--timeout S] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
from mixslam.io import read_pose_graph
from mixslam.linear.config import DirectConfig
from mixslam.pgo import optimize_pose_graph, warmup
warmup()
path, precision, backend = sys.argv[1], sys.argv[2], sys.argv[3]
graph = read_pose_graph(path)
kw = {} if backend == "-" else {"direct": DirectConfig(backend=backend)}
t = time.perf_counter()
_, rep = optimize_pose_graph(graph, precision=precision, **kw)
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, "iterations": rep.iterations, "cost": rep.final_cost,
                  "status": rep.status.value, "peak_rss": rep.peak_rss_bytes,
                  "factor_bytes": rep.memory.factor_bytes, "init_s": rep.timing.get("init", 0.0),
                  "backend": (rep.direct.backend if rep.direct else None)}))
"""


def variants(superlu: bool) -> list[tuple[str, str, str]]:
    from mixslam.linear.direct import available_backends

    out = [("fp64/mixslam", "fp64", "mixslam")]
    if "cvxopt" in available_backends():
        out.append(("fp64/cvxopt", "fp64", "cvxopt"))
    if superlu:
        out.append(("fp64/scipy", "fp64", "scipy"))
    out.append(("mixed", "mixed", "-"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--poses2d", type=int, default=200_000)
    ap.add_argument("--poses3d", type=int, default=50_000)
    ap.add_argument("--superlu", action="store_true", help="also SuperLU (9-10 minutes on the 3-D grid)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per variant (CHOLMOD ran out on 3-D)")
    ap.add_argument("--out", help="also write the log here")
    args = ap.parse_args(argv)
    lines: list[str] = []

    def say(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    import platform

    say(f"pgo_grids, {time.strftime('%Y-%m-%d %H:%M:%S')}, {platform.machine()}, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, n in (("grid2d", args.poses2d), ("grid3d", args.poses3d)):
            path = Path(tmp) / f"{kind}_{n}.g2o"
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "mixslam", "generate", "pgo", str(path), "--poses", str(n), "--kind", kind,
                 "--seed", "0", "-q"],
                check=True,
            )
            say(f"\n== {kind}, {n} poses (generated in {time.perf_counter() - t:.1f} s, seed 0)")
            say(f"{'variant':>14} {'time s':>8} {'LM':>3} {'cost':>16} {'peak RSS MiB':>13} {'factor MiB':>11} "
                f"{'vs cvxopt':>9}  status")
            rows = {}
            for label, precision, backend in variants(args.superlu):
                try:
                    res = subprocess.run([sys.executable, "-c", CHILD, str(path), precision, backend],
                                         capture_output=True, text=True, timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    say(f"{label:>14} did not finish in {args.timeout:.0f} s")
                    continue
                if res.returncode != 0:
                    say(f"{label:>14} failed: {res.stderr.strip().splitlines()[-1] if res.stderr else res.returncode}")
                    continue
                rows[label] = json.loads(res.stdout.strip().splitlines()[-1])
            ref = rows.get("fp64/cvxopt", {}).get("wall_s")
            for label, r in rows.items():
                ratio = f"{ref / r['wall_s']:.2f}x" if ref else "-"
                peak = r["peak_rss"] / 2**20 if r["peak_rss"] else float("nan")
                factor = r["factor_bytes"] / 2**20 if r["factor_bytes"] else float("nan")
                say(f"{label:>14} {r['wall_s']:8.2f} {r['iterations']:3d} {r['cost']:16.6f} {peak:13.0f} "
                    f"{factor:11.0f} {ratio:>9}  {r['status']}")
    say("\nvs cvxopt: CHOLMOD's whole-solve time / the variant's (> 1: faster). Times include the chordal "
        "initialization and the analysis; compilation is done before timing (warmup()).")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
