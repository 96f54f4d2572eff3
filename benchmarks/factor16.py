"""Issue 17: the fp16-stored factor against the fp32 factor on a generated pose graph of >= 200,000 poses.

Target (must-show): the 16-bit format at least 1.3x faster per CG (refinement) iteration than fp32, the same
final cost within 1e-6 relative, peak memory <= 0.6x of fp32's.

Both are the pose-graph Cholesky refined to fp64 (``solver="cholesky"``): ``mixed`` factors in fp32 and keeps
fp32 panels; ``mixed16`` factors in fp32 and keeps the panels in fp16 with a power-of-two scale per supernode
(:meth:`mixslam.linear.supernodal.SupernodalCholesky.store16`). Every refinement / PCG iteration is one fp64
product with the assembled H and one solve with the factor, which reads every panel twice (forward and back):
the bytes fp16 halves.

Each policy runs in its own process (this script with ``--child POLICY``) so that the peak resident memory
(``VmHWM``, reset before the solve) is its own. A child generates the graph
(:func:`mixslam.sim.generate.generate_pose_graph`, seeded), solves it, and then times, side by side on the
final linearization's H, one factor solve and one H product (min of ``--repeats``), with the panel bytes
read per solve as a fraction of this machine's memory read bandwidth (``benchmarks/roofline.py``'s roofs,
docs/results/roofline.txt), on two threads (the solve's two lanes, ``kernels.supernodal.lane_split``) and on one.

    python benchmarks/factor16.py [--kind grid2d] [--poses 200000] [--seed 0]

Writes docs/results/factor16.txt (what it prints).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from roofline import fraction  # noqa: E402
POLICIES = ("mixed", "mixed16")


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def child(args) -> dict:
    import numpy as np

    from mixslam.linear.config import DirectConfig
    from mixslam.pgo import PoseGraphProblem, optimize_pose_graph
    from mixslam.precision import PrecisionPolicy
    from mixslam.sim.generate import generate_pose_graph

    NO_FALLBACK = DirectConfig(fp64_fallback=False)
    policy = args.child
    tiny, _ = generate_pose_graph(args.kind, 500, seed=args.seed + 1)
    optimize_pose_graph(tiny, precision=policy, solver="cholesky", direct=NO_FALLBACK)  # compile outside
    t = time.perf_counter()
    graph, _ = generate_pose_graph(args.kind, args.poses, seed=args.seed)
    gen = time.perf_counter() - t
    base = _status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    t = time.perf_counter()
    # fp64_fallback off: the comparison is of the two formats, not of the rule that would move a format whose
    # steps need more than max_fp32_iterations solves to an fp64 factor (it does for fp16 here)
    res, rep = optimize_pose_graph(graph, precision=policy, solver="cholesky", direct=NO_FALLBACK)
    solve = time.perf_counter() - t
    peak = _status("VmHWM")
    d = rep.direct
    tm = rep.timing
    lin_its = d.cg_iterations + d.refinements + d.factorizations  # every factor solve of the LM steps
    out = {
        "policy": policy,
        "generate_s": gen,
        "solve_s": solve,
        "iterations": rep.iterations,
        "status": rep.status.value,
        "final_cost": rep.final_cost,
        "factorizations": d.factorizations,
        "cg_iterations": d.cg_iterations,
        "refinements": d.refinements,
        "factor_s": tm.get("factor", 0.0),
        "refine_s": tm.get("refine", 0.0) + tm.get("reuse", 0.0),
        "solves": lin_its,
        "factor_bytes": rep.memory.factor_bytes,
        "base_rss": base,
        "peak_rss": peak,
        "hwm_reset": reset,
        "overflows": rep.quantization.overflows,
        "switched_to_fp64": d.switched_to_fp64,
        "underflows": rep.quantization.underflows,
    }
    # One factor solve and one H product, side by side, on the final linearization's H.
    from mixslam.linear.base import Damping
    from mixslam.linear.cholesky import CholeskySolver

    prob = PoseGraphProblem(res, PrecisionPolicy.preset(policy, "pgo"))
    lin = prob.linearize(prob.initial_state)
    solver = CholeskySolver(prob.pattern, prob.policy)
    colsq = lin.column_sq_norms()
    H = prob.pattern.assemble_csc(lin.A, lin.B, Damping(1e-8).diagonal(colsq))
    solver.chol.factorize(H)
    if solver.store16:
        solver.chol.store_panels16()
    b = np.random.default_rng(0).standard_normal(H.shape[0])
    ts, tp = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        solver.chol.solve(b)
        ts.append(time.perf_counter() - t)
        t = time.perf_counter()
        H.dot(b)
        tp.append(time.perf_counter() - t)
    out["solve_ms"] = 1e3 * min(ts)
    out["product_ms"] = 1e3 * min(tp)
    # the same solve on one thread (the two-lane split runs its lanes one after the other: same bits)
    threads = os.environ.get("MIXSLAM_THREADS")
    os.environ["MIXSLAM_THREADS"] = "1"
    x1 = solver.chol.solve(b)
    ts1 = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        solver.chol.solve(b)
        ts1.append(time.perf_counter() - t)
    if threads is None:
        del os.environ["MIXSLAM_THREADS"]
    else:
        os.environ["MIXSLAM_THREADS"] = threads
    out["solve_ms_1t"] = 1e3 * min(ts1)
    out["threads_identical"] = bool(np.array_equal(x1, solver.chol.solve(b)))
    inner = getattr(getattr(solver.chol, "_impl", None), "_s", None)  # the mixslam backend's SupernodalCholesky
    out["lanes"] = None if inner is None or getattr(inner, "lanes", None) is None else list(inner.lanes)
    out["ordering"] = getattr(inner, "ordering", None)
    out["panel_bytes"] = float(solver.chol.nbytes)
    out["h_bytes"] = float(H.data.nbytes + H.indices.nbytes + H.indptr.nbytes)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="grid2d")
    ap.add_argument("--poses", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS / "factor16.txt"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    t0 = time.perf_counter()
    lines = [
        "Issue 17: fp16-stored factor (mixed16) vs fp32 factor (mixed), pose-graph Cholesky refined to fp64",
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, load average at start {os.getloadavg()[0]:.2f}",
        f"problem: generate_pose_graph({args.kind!r}, {args.poses}, seed={args.seed}); solver='cholesky', "
        "DirectConfig(fp64_fallback=False); one process per policy",
    ]
    rows = {}
    for pol in POLICIES:
        cmd = [sys.executable, __file__, "--child", pol, "--kind", args.kind, "--poses", str(args.poses)]
        cmd += ["--seed", str(args.seed), "--repeats", str(args.repeats)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            lines.append(f"  {pol}: FAILED rc={p.returncode}: {p.stderr.strip().splitlines()[-1:]}")
            continue
        rows[pol] = json.loads(p.stdout.strip().splitlines()[-1])
    mib = 2.0**20
    lines.append("")
    lines.append(
        f"{'policy':8s} {'solve s':>8s} {'LM it':>5s} {'fact':>4s} {'CG it':>5s} {'ms/it':>7s} {'solve ms':>8s}"
        f" {'1t ms':>7s} {'H·x ms':>7s} {'GB/s':>6s} {'factor MiB':>10s} {'peak MiB':>8s} {'solver MiB':>10s}  final cost"
    )
    for pol, r in rows.items():
        per_it = 1e3 * r["refine_s"] / max(r["cg_iterations"] + r["refinements"], 1)
        gbs = 2 * r["panel_bytes"] / (r["solve_ms"] * 1e-3) / 1e9
        r["per_iteration_ms"] = per_it
        lines.append(
            f"{pol:8s} {r['solve_s']:8.2f} {r['iterations']:5d} {r['factorizations']:4d} {r['cg_iterations']:5d}"
            f" {per_it:7.2f} {r['solve_ms']:8.2f} {r['solve_ms_1t']:7.2f} {r['product_ms']:7.2f} {gbs:6.2f} {r['factor_bytes'] / mib:10.0f}"
            f" {r['peak_rss'] / mib:8.0f} {(r['peak_rss'] - r['base_rss']) / mib:10.0f}  {r['final_cost']:.9f}"
        )
    lines.append(
        "  ms/it: refinement + reuse time / CG iterations (each: one fp64 H product, one factor solve, vector "
        "updates); solve ms / H·x ms: one factor solve / one H product side by side after the solve (min of "
        f"{args.repeats}; 1t ms: the solve on one thread); GB/s: panel bytes read per solve (twice the factor) / "
        "solve time"
    )
    for pol, r in rows.items():
        by = 2 * r["panel_bytes"]
        lines.append(
            f"  {pol}: solve {fraction(by / (r['solve_ms'] * 1e-3), level='mem', cores=2)}; one thread "
            f"{fraction(by / (r['solve_ms_1t'] * 1e-3), level='mem', cores=1)}; 2 threads / 1: "
            f"{r['solve_ms_1t'] / r['solve_ms']:.2f}x, results identical: {r['threads_identical']}; ordering "
            f"{r['ordering']}, lanes {r['lanes']}"
        )
    for pol, r in rows.items():
        lines.append(
            f"  {pol}: status {r['status']}, factor {r['factor_s']:.2f} s over {r['factorizations']} "
            f"factorizations, refinements {r['refinements']}, overflows {r['overflows']}, underflows "
            f"{r['underflows']}, hwm reset {r['hwm_reset']}, generate {r['generate_s']:.1f} s"
        )
    if len(rows) == 2:
        a, b = rows["mixed"], rows["mixed16"]
        rel = abs(a["final_cost"] - b["final_cost"]) / abs(a["final_cost"])
        per_it = a["per_iteration_ms"] / b["per_iteration_ms"]
        solve_sp = a["solve_ms"] / b["solve_ms"]
        iter_sp = (a["solve_ms"] + a["product_ms"]) / (b["solve_ms"] + b["product_ms"])
        mem = b["peak_rss"] / a["peak_rss"]
        mem_solver = (b["peak_rss"] - b["base_rss"]) / max(a["peak_rss"] - a["base_rss"], 1)
        lines += [
            "",
            "Ratios mixed16 / mixed (speed-ups as fp32 time / fp16 time):",
            f"  per CG iteration, in the solve              : {per_it:.3f}x",
            f"  factor solve, standalone                    : {solve_sp:.3f}x (one thread: "
            f"{a['solve_ms_1t'] / b['solve_ms_1t']:.3f}x)",
            f"  factor solve + H product, standalone        : {iter_sp:.3f}x",
            f"  CG iterations                               : {b['cg_iterations']} vs {a['cg_iterations']}",
            f"  whole solve                                 : {a['solve_s'] / b['solve_s']:.3f}x",
            f"  factor bytes                                : {b['factor_bytes'] / a['factor_bytes']:.3f}",
            f"  peak memory (VmHWM)                         : {mem:.3f} (solver only: {mem_solver:.3f})",
            f"  final cost relative difference              : {rel:.3e}",
            "",
            "Verdicts (issue 17 targets):",
            f"  >= 1.3x per CG iteration  : {'MET' if per_it >= 1.3 else 'NOT MET'} ({per_it:.2f}x in the solve; "
            f"{iter_sp:.2f}x standalone)",
            f"  final cost within 1e-6    : {'MET' if rel <= 1e-6 else 'NOT MET'} ({rel:.2e})",
            f"  peak memory <= 0.6x       : {'MET' if mem <= 0.6 else 'NOT MET'} ({mem:.2f}; solver only "
            f"{mem_solver:.2f})",
        ]
    lines.append(f"wall time {time.perf_counter() - t0:.0f} s, load average at end {os.getloadavg()[0]:.2f}")
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
