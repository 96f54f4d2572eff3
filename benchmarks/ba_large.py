"""Issue 17: ``mixed`` CGNR (fp16 Jacobian storage, fp32 accumulation) vs ``fp32`` CGNR on a generated bundle
adjustment problem with at least 2 million observations.

Target (must-show): mixed at least 1.3x faster per CG iteration than fp32, same final cost within 1e-6
relative, peak memory <= 0.6x of fp32's.

Each policy runs in its own process (this script with ``--child POLICY``), so that the peak resident memory
(``VmHWM`` of /proc/self/status; ``ru_maxrss`` beside it) is that policy's alone. A child:

1. compiles the policy's kernels on a tiny generated problem (so JIT memory is in the baseline, not the solve);
2. generates the large problem from the seed (:func:`mixslam.sim.generate.generate_bundle`, deterministic);
3. records the resident memory (``VmRSS``, the baseline), resets the high-water mark (``echo 5 >
   /proc/self/clear_refs``), solves with ``optimize_bundle(precision=P, solver="cg", lm=LMConfig(max_iterations=K))``
   and reads ``VmHWM``: the solve's peak; solver memory = peak - baseline;
4. times one fused normal product ``JᵀJ p`` (:meth:`JacobianOperator.normal_matvec`) at the initial state in
   the policy's Jacobian storage (fp32 / fp16 bits), the solver's column scaling, min of ``--repeats``; bytes
   moved per product as :func:`mixslam.bench.work_model.iteration_work` counts them (stored Jacobian entries,
   two int64 index arrays, p read, the output zeroed and accumulated), as a fraction of this machine's measured
   memory bandwidth (``benchmarks/roofline.py``).

Per CG iteration: ``linear_solve / CG iterations`` (everything the linear solver did, including the per-step
column scaling, quantization and block-Jacobi build), ``cg_s / CG iterations`` (the CG loop only) and
``products_s / products_calls`` (the fused products inside the loop).

    python benchmarks/ba_large.py [--cameras 1000] [--points 410000] [--lm-iterations 5] [--fp64]

Writes docs/results/ba_large.txt (what it prints) and docs/results/ba_large.csv (one row per policy).
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "docs" / "results"
MiB = 1 << 20
TARGET_SPEEDUP, TARGET_COST, TARGET_MEMORY = 1.3, 1e-6, 0.6


# ---------------------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------------------
def proc_status() -> dict:
    """VmRSS / VmHWM / VmPeak of this process, bytes."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmPeak"):
                out[key] = int(val.split()[0]) * 1024
    return out


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where it is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------
# child: one policy
# ---------------------------------------------------------------------------------------------------------
def child(args) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from mixslam.ba import BundleProblem, optimize_bundle
    from mixslam.bench.fig7_kernels import tmin
    from mixslam.bench.work_model import INDEX_BYTES
    from mixslam.linear.operators import JacobianOperator, column_scale
    from mixslam.precision import PrecisionPolicy
    from mixslam.sim.generate import generate_bundle
    from mixslam.solve import LMConfig

    policy = args.child
    lm = LMConfig(max_iterations=args.lm_iterations, initial_lambda=1e-4, function_tolerance=1e-6)

    # 1. compile on a tiny problem (same policy, same solver)
    t0 = time.perf_counter()
    tiny, _ = generate_bundle(20, 2000, seed=args.seed + 1)
    optimize_bundle(tiny, precision=policy, solver="cg", lm=LMConfig(max_iterations=2))
    warm_s = time.perf_counter() - t0
    del tiny

    # 2. the large problem
    t0 = time.perf_counter()
    data, truth = generate_bundle(args.cameras, args.points, seed=args.seed)
    del truth
    gen_s = time.perf_counter() - t0
    gc.collect()

    # 3. the solve, its memory
    base = proc_status()
    hwm_reset = reset_hwm()
    t0 = time.perf_counter()
    _, rep = optimize_bundle(data, precision=policy, solver="cg", lm=lm)
    wall = time.perf_counter() - t0
    after = proc_status()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tm = rep.timing
    its = max(rep.linear_iterations, 1)
    out = dict(
        policy=policy,
        observations=data.num_observations,
        cameras=data.num_cameras,
        points=data.num_points,
        generate_s=gen_s,
        warm_s=warm_s,
        solve_wall_s=wall,
        total_s=tm["total"],
        compile_s=tm.get("compile", 0.0),
        lm_iterations=rep.iterations,
        cg_iterations=rep.linear_iterations,
        linear_solve_s=tm["linear_solve"],
        per_cg_linear_s=tm["linear_solve"] / its,
        per_cg_loop_s=tm.get("cg_s", tm.get("cg", float("nan"))) / its,
        per_product_s=tm["products_s"] / tm["products_calls"] if tm.get("products_calls") else float("nan"),
        quantize_s=tm.get("quantize", 0.0),
        preconditioner_build_s=tm.get("preconditioner", 0.0),
        initial_cost=rep.initial_cost,
        final_cost=rep.final_cost,
        status=str(rep.status.value if hasattr(rep.status, "value") else rep.status),
        jacobian_bytes=rep.memory.jacobian_bytes,
        preconditioner_bytes=rep.memory.preconditioner_bytes,
        fallbacks=rep.quantization.fallbacks,
        underflows=rep.quantization.underflows,
        baseline_rss=base["VmRSS"],
        peak_hwm=after["VmHWM"],
        hwm_reset=hwm_reset,
        ru_maxrss=maxrss,
        per_iteration_cg=[h.linear_iterations for h in rep.history],
    )
    out["solver_memory"] = out["peak_hwm"] - out["baseline_rss"]
    del rep
    gc.collect()

    # 4. one fused normal product in the policy's storage, at the initial state
    pol = PrecisionPolicy.preset(policy, "ba")
    with threadpool_limits(limits=1, user_api="blas"):
        problem = BundleProblem(data, pol)
        lin = problem.linearize((data.cameras, data.points))
        op = JacobianOperator.from_linearization(
            lin, column_scale(lin.column_sq_norms()), pol.jacobian_storage, pol.jacobian_accumulate
        )
        vdt = np.dtype(pol.krylov.compute_dtype)
        p = np.random.default_rng(0).standard_normal(op.size).astype(vdt)
        q = np.empty(op.size, vdt)
        t_mv = tmin(partial(op.normal_matvec, p, q), args.repeats)
    n = op.size
    m = int(op.ia.shape[0])
    nbytes = op.A.nbytes + op.B.nbytes + 2 * m * INDEX_BYTES + 3 * n * vdt.itemsize
    out.update(
        product_storage=op.storage.name if hasattr(op.storage, "name") else str(op.storage),
        product_A_dtype=str(op.A.dtype),
        product_s=t_mv,
        product_bytes=nbytes,
        product_jac_bytes=op.A.nbytes + op.B.nbytes,
        product_GBps=nbytes / t_mv / 1e9,
        unknowns=n,
    )
    return out


# ---------------------------------------------------------------------------------------------------------
# parent
# ---------------------------------------------------------------------------------------------------------
def run_child(policy: str, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            policy,
            "--json",
            str(path),
            "--cameras",
            str(args.cameras),
            "--points",
            str(args.points),
            "--seed",
            str(args.seed),
            "--lm-iterations",
            str(args.lm_iterations),
            "--repeats",
            str(args.repeats),
        ]
        subprocess.run(cmd, check=True)
        return json.loads(path.read_text())


def mib(x: float) -> str:
    return f"{x / MiB:.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=1000)
    ap.add_argument("--points", type=int, default=410_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm-iterations", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10, help="normal_matvec timing: min of this many")
    ap.add_argument("--fp64", action="store_true", help="also run fp64 CGNR (reference)")
    ap.add_argument("--out", default=str(RESULTS / "ba_large.txt"))
    ap.add_argument("--csv", default=str(RESULTS / "ba_large.csv"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        res = child(args)
        Path(args.json).write_text(json.dumps(res))
        return 0

    sys.path.insert(0, str(HERE))
    from roofline import fraction

    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    policies = ["fp32", "mixed"] + (["fp64"] if args.fp64 else [])
    say("Issue 17: mixed (fp16 J storage, fp32 accumulation) vs fp32 CGNR on a generated BA problem")
    say(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    say(
        f"problem: generate_bundle(cameras={args.cameras}, points={args.points}, seed={args.seed}), "
        f"default BundleGenConfig; solve: optimize_bundle(precision=P, solver='cg', "
        f"lm=LMConfig(max_iterations={args.lm_iterations}, initial_lambda=1e-4, function_tolerance=1e-6)), "
        "block-Jacobi, default CGConfig; one process per policy"
    )
    t_start = time.perf_counter()
    res = {}
    for pol in policies:
        res[pol] = run_child(pol, args)
        r = res[pol]
        say(
            f"  {pol}: done (generate {r['generate_s']:.1f} s, warm-up {r['warm_s']:.1f} s, "
            f"solve {r['solve_wall_s']:.1f} s)"
        )
    r0 = res["fp32"]
    say(
        f"observations {r0['observations']:,}, cameras {r0['cameras']:,}, points {r0['points']:,}, "
        f"unknowns {r0['unknowns']:,}"
    )
    if r0["observations"] < 2_000_000:
        say("WARNING: fewer than 2,000,000 observations: raise --points")
    say()

    hdr = (
        f"{'policy':7} {'total s':>8} {'LM it':>5} {'CG it':>5} {'lin/CG ms':>9} {'loop/CG ms':>10} "
        f"{'prod ms':>8} {'final cost':>18} {'J MiB':>6} {'base MiB':>8} {'peak MiB':>8} {'solver MiB':>10} "
        f"{'maxrss MiB':>10}"
    )
    say(hdr)
    say("-" * len(hdr))
    for pol in policies:
        r = res[pol]
        say(
            f"{pol:7} {r['total_s']:8.2f} {r['lm_iterations']:5d} {r['cg_iterations']:5d} "
            f"{1e3 * r['per_cg_linear_s']:9.2f} {1e3 * r['per_cg_loop_s']:10.2f} {1e3 * r['per_product_s']:8.2f} "
            f"{r['final_cost']:18.10g} {mib(r['jacobian_bytes']):>6} {mib(r['baseline_rss']):>8} "
            f"{mib(r['peak_hwm']):>8} {mib(r['solver_memory']):>10} {mib(r['ru_maxrss']):>10}"
        )
    say(
        "  lin/CG: linear_solve time / CG iterations (includes per-step scaling, quantization, block-Jacobi "
        "build); loop/CG: the CG loop only; prod: solver's fused products (products_s / products_calls)"
    )
    say(
        "  base: VmRSS after generating (before the solve); peak: VmHWM during the solve (high-water mark reset "
        "before it); solver = peak - base; maxrss: ru_maxrss of the whole process (includes generation)"
    )
    for pol in policies:
        r = res[pol]
        say(
            f"  {pol}: initial cost {r['initial_cost']:.10g}, status {r['status']}, CG its per LM step "
            f"{r['per_iteration_cg']}, fallbacks {r['fallbacks']}, fp16 underflows {r['underflows']}, "
            f"quantize {r['quantize_s']:.2f} s, preconditioner build {r['preconditioner_build_s']:.2f} s, "
            f"hwm reset {r['hwm_reset']}"
        )
    say()

    say(f"One fused normal product JᵀJ p at the initial state (min of {args.repeats}):")
    for pol in policies:
        r = res[pol]
        rate = fraction(bytes_per_s=r["product_GBps"] * 1e9, level="mem", cores=1, precision="fp32")
        say(
            f"  {pol:6} storage {r['product_A_dtype']:8} {1e3 * r['product_s']:8.2f} ms, "
            f"{r['product_bytes'] / 1e6:7.1f} MB moved (J {r['product_jac_bytes'] / 1e6:.1f} MB), {rate}"
        )
    say()

    m, f = res["mixed"], res["fp32"]
    speed_lin = f["per_cg_linear_s"] / m["per_cg_linear_s"]
    speed_loop = f["per_cg_loop_s"] / m["per_cg_loop_s"]
    speed_prod = f["per_product_s"] / m["per_product_s"]
    speed_mv = f["product_s"] / m["product_s"]
    peak_ratio = m["peak_hwm"] / f["peak_hwm"]
    maxrss_ratio = m["ru_maxrss"] / f["ru_maxrss"]
    solver_ratio = m["solver_memory"] / max(f["solver_memory"], 1)
    jac_ratio = m["jacobian_bytes"] / f["jacobian_bytes"]
    cost_rel = abs(m["final_cost"] - f["final_cost"]) / abs(f["final_cost"])
    say("Ratios mixed / fp32 (speed-ups as fp32 time / mixed time):")
    say(f"  per-CG-iteration speed-up, linear_solve/CG its : {speed_lin:.3f}x")
    say(f"  per-CG-iteration speed-up, CG loop only         : {speed_loop:.3f}x")
    say(f"  fused product speed-up, in the solve            : {speed_prod:.3f}x")
    say(f"  fused product speed-up, standalone (min of {args.repeats:>2}) : {speed_mv:.3f}x")
    say(f"  peak memory during the solve (VmHWM)            : {peak_ratio:.3f}")
    say(f"  whole-process ru_maxrss                         : {maxrss_ratio:.3f}")
    say(f"  solver memory (peak - baseline)                 : {solver_ratio:.3f}")
    say(f"  Jacobian bytes stored                           : {jac_ratio:.3f}")
    say(f"  final cost relative difference                  : {cost_rel:.3e}")
    if "fp64" in res:
        d = res["fp64"]
        say(
            f"  (fp64 reference final cost {d['final_cost']:.10g}: "
            f"fp32 rel {abs(f['final_cost'] - d['final_cost']) / d['final_cost']:.2e}, "
            f"mixed rel {abs(m['final_cost'] - d['final_cost']) / d['final_cost']:.2e})"
        )
    say()

    def verdict(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    say("Verdicts (issue 17 targets):")
    say(
        f"  speed >= {TARGET_SPEEDUP}x per CG iteration : {verdict(speed_lin >= TARGET_SPEEDUP)} "
        f"({speed_lin:.2f}x linear_solve/CG; {speed_loop:.2f}x CG loop; {speed_prod:.2f}x products)"
    )
    say(
        f"  final cost within {TARGET_COST:g} relative : {verdict(cost_rel <= TARGET_COST)} "
        f"({cost_rel:.2e}; {m['final_cost']:.10g} vs {f['final_cost']:.10g})"
    )
    say(
        f"  peak memory <= {TARGET_MEMORY}x of fp32      : {verdict(peak_ratio <= TARGET_MEMORY)} "
        f"({peak_ratio:.2f} solve peak {mib(m['peak_hwm'])} / {mib(f['peak_hwm'])} MiB; solver-only "
        f"{solver_ratio:.2f} = {mib(m['solver_memory'])} / {mib(f['solver_memory'])} MiB; ru_maxrss {maxrss_ratio:.2f})"
    )
    say(
        f"wall time of the benchmark {time.perf_counter() - t_start:.0f} s, "
        f"load average at end {os.getloadavg()[0]:.2f}"
    )

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    cols = [k for k in res["fp32"] if k != "per_iteration_cg"] + ["per_iteration_cg"]
    with open(args.csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for pol in policies:
            row = dict(res[pol])
            row["per_iteration_cg"] = " ".join(str(x) for x in row["per_iteration_cg"])
            w.writerow(row)
    print(f"wrote {args.out} and {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
