"""Bundle-adjustment benchmark: every (precision, solver) pair side by side on each problem, in one run.

Prints, per problem: final cost (0.5 Σ r², fp64, Ceres' convention), its relative difference to the fp64 Schur
cost, LM and CG iterations, status, seconds per phase, the mixed/fp32 linear-solve ratio on CGNR (total and per CG
iteration, since the iteration counts differ), and an analysis of where CGNR's work goes: flops and bytes of the
fused JᵀJ·p pass per CG iteration (analytic, from the problem sizes) against the rest of the iteration
(block-Jacobi apply, vector updates), and the same share MEASURED by timing one ``JacobianOperator.normal_matvec``
against the time of a CG iteration.

Problems: BAL files from the data folder's ``ba/`` (default: ladybug shrink-1800, problem-16-22106,
problem-49-7776) and one simulated visual-odometry sliding window (pinhole, seed 0; ``--no-window`` drops it).
Where GTSAM is installed (extra ``peers``) its LM on the same BAL file is timed in the same run and its answer
scored with our cost. Ceres' published result on problem-16-22106 is printed next to ours.

    python benchmarks/ba.py                                    # the default problems, every pair
    python benchmarks/ba.py problem-16-22106-pre.txt --repeat 3 --csv out.csv --pairs fp64:schur,mixed:cgnr

Times are the minimum over --repeat runs (these machines are noisy and shared: compare ratios, not absolute
times). Compilation of the numba kernels is done before timing and reported apart.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from mixslam.ba import BundleProblem, optimize_bundle, warmup
from mixslam.bench.context import write_csv
from mixslam.bench.fig7_kernels import solver_scale, tmin
from mixslam.bench.peers import CERES_PUBLISHED, PEERS, PYCERES_SKIP, gtsam_ba, peer_version
from mixslam.bench.problems import Problem
from mixslam.bench.report import machine_info
from mixslam.bench.work_model import iteration_work, problem_dims
from mixslam.data import data_dir
from mixslam.io.bal import read_bal
from mixslam.linear import CGConfig, Damping
from mixslam.linear.cgnr import CGSolver
from mixslam.linear.operators import JacobianOperator
from mixslam.linear.preconditioners import JacobiPreconditioner
from mixslam.precision import PrecisionPolicy
from mixslam.solve import LMConfig

PAIRS = [("fp64", "schur"), ("fp64", "cgnr"), ("fp32", "cgnr"), ("mixed", "cgnr"), ("fp16", "cgnr")]
DEFAULT_FILES = ["bal-ladybug-problem-49-7776-pre-shrink-1800.txt", "problem-16-22106-pre.txt",
                 "problem-49-7776-pre.txt"]
WINDOW = "window-seed0"
PHASES = ("residual", "jacobian", "linear_solve", "update", "total")
BYTES = {"fp64": 8, "fp32": 4, "fp16": 2}


# ---------------------------------------------------------------------------------------------------------
# problems
# ---------------------------------------------------------------------------------------------------------
def load_problems(files, with_window):
    """[(name, BundleData)]; missing files are reported and skipped."""
    root = data_dir()
    out = []
    for name in files:
        path = Path(name)
        if not path.is_file():
            if root is None:
                print(f"skip {name}: data folder not found (set MIXSLAM_DATA)")
                continue
            path = root / "ba" / name
        if not path.is_file():
            print(f"skip {name}: not found")
            continue
        t0 = time.perf_counter()
        data = read_bal(path)
        print(f"read {path.name}: {time.perf_counter() - t0:.2f} s")
        out.append((path.name, data))
    if with_window:
        from mixslam.sim.bundle import WindowConfig, simulate_window
        sim = simulate_window(WindowConfig(), seed=0)
        out.append((WINDOW, sim.data))
    return out


def sizes(data):
    """(m observations, pc, nc free cameras, npts free points) as the solver numbers them."""
    prob = BundleProblem(data, PrecisionPolicy.preset("fp64", "ba"))
    return data.num_observations, prob.pc, prob.nc, prob.npts


# ---------------------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------------------
def run_pair(data, precision, solver, lm, repeat):
    """The report of the fastest of ``repeat`` runs (the runs are deterministic: same iterates each time)."""
    best = None
    for _ in range(repeat):
        _, rep = optimize_bundle(data, precision=precision, solver=solver, lm=lm)
        if best is None or rep.timing["total"] < best.timing["total"]:
            best = rep
    return best


# ---------------------------------------------------------------------------------------------------------
# CGNR work per iteration: analytic counts and measured times
# ---------------------------------------------------------------------------------------------------------
def analytic_counts(dims, storage_bytes, vec_bytes, pre_bytes):
    """MACs and bytes of one CG iteration: the fused JᵀJ·p pass vs the rest (block-Jacobi + vector work).

    The model is :func:`mixslam.bench.work_model.iteration_work` (the bench's figure 6; one MAC = 2 of its flops) on
    ``dims`` = :func:`mixslam.bench.work_model.problem_dims`: the fused pass reads the present Jacobian entries once,
    the two int64 index arrays, p, and reads+writes the output; the rest is the block-Jacobi apply (its inverse
    blocks, r read, z written) and the vector updates and dot products of length n = nc pc + 3 npts.
    """
    w = iteration_work(dims, storage_bytes, vec_bytes, pre_bytes)
    (prod_f, prod_b), (jac_f, jac_b), (vec_f, vec_b) = w["products"], w["preconditioner"], w["vectors"]
    return dict(n=dims["n"], entries=dims["E"], prod_macs=prod_f / 2, prod_bytes=prod_b, jacobi_macs=jac_f / 2,
                jacobi_bytes=jac_b, vector_macs=vec_f / 2, vector_bytes=vec_b,
                macs_share=prod_f / (prod_f + jac_f + vec_f), bytes_share=prod_b / (prod_b + jac_b + vec_b))


def measure_products(data, policies, repeats, cg_iterations):
    """Per policy name, at the initial state: the seconds of one ``normal_matvec``, the seconds per iteration
    of the solver's CG loop, and the rest of one linear solve, all measured.

    The operator is built as the solver builds it (``JacobianOperator.from_linearization`` with the solver's
    column scaling, in the policy's Jacobian storage and accumulation). The CG loop is the solver's own: a fresh
    ``CGSolver`` with the block-Jacobi preconditioner (``cgnr``) on a fresh linearization (as in an LM step) with
    an unreachable tolerance, so that it runs
    ``cg_iterations`` iterations; its ``times`` split the solve into "quantize" (column norms, scaling, Jᵀr in
    the policy's right-hand-side precision, the scaled J stored in the policy's format), "preconditioner"
    (block-Jacobi build), "cg" (the loop) and the rest (the fp64 model decrease ‖Jδ‖², unscaling the step).
    Each time is the minimum over the repeats.
    """
    # As optimize_bundle does: BLAS limited to one thread. Without it, on a loaded 2-core machine each fp64
    # np.dot of the CG loop (OpenBLAS threads ddot) can take milliseconds instead of microseconds.
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        return _measure_products(data, policies, repeats, cg_iterations)


def _measure_products(data, policies, repeats, cg_iterations):
    out = {}
    for name in policies:
        pol = PrecisionPolicy.preset(name, "ba")
        problem = BundleProblem(data, pol)
        lin = problem.linearize((data.cameras, data.points))
        # The solver's column scaling (power-of-two Jacobi). With scale 1 the unscaled Ladybug Jacobians
        # overflow fp16 and the operator falls back to fp32 storage, which would time the wrong format.
        op = JacobianOperator.from_linearization(lin, solver_scale(lin), pol.jacobian_storage,
                                                 pol.jacobian_accumulate)
        vdt = pol.krylov.compute_dtype
        rng = np.random.default_rng(0)
        p = rng.standard_normal(lin.size).astype(vdt)
        q = np.empty(lin.size, vdt)
        t_mv = tmin(partial(op.normal_matvec, p, q), repeats)
        best = dict(cg=math.inf, quantize=math.inf, preconditioner=math.inf, rest=math.inf)
        its = 0
        for _ in range(max(1, min(repeats, 3))):
            lin = problem.linearize((data.cameras, data.points))
            lin.gradient(np.float64)  # LM computes this before calling the solver
            solver = CGSolver(pol, JacobiPreconditioner(pol),
                              CGConfig(max_iterations=cg_iterations, stagnation_window=10 ** 6))
            t0 = time.perf_counter()
            res = solver.solve(lin, Damping(1e-4, 1e-6, 1e32), 1e-30)
            wall = time.perf_counter() - t0
            if not res.iterations:
                continue
            its = res.iterations
            tm = res.times
            best["cg"] = min(best["cg"], tm["cg"] / res.iterations)
            best["quantize"] = min(best["quantize"], tm.get("quantize", 0.0))
            best["preconditioner"] = min(best["preconditioner"], tm.get("preconditioner", 0.0))
            # The solve's phases; its other entries (products_s, cg_calls, ...) are parts of "cg" or counts.
            best["rest"] = min(best["rest"], wall - sum(tm.get(k, 0.0) for k in ("quantize", "preconditioner", "cg")))
        out[name] = dict(normal_matvec_s=t_mv, cg_iter_s=best["cg"], cg_its=its, quantize_s=best["quantize"],
                         preconditioner_s=best["preconditioner"], rest_s=best["rest"], storage=op.storage.name,
                         acc16=op.acc16, jacobian_bytes=op.nbytes, fallbacks=op.fallbacks)
    return out


# ---------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------
def machine_header():
    import numba
    m = machine_info()
    print(f"machine: {m['platform']} | cpu_count {m['logical_cpus']} | python {m['python']} | numpy {np.__version__} "
          f"| numba {numba.__version__} | NUMBA_NUM_THREADS {m.get('numba_threads')} (kernels are serial)")
    try:
        l3 = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        l3 = "?"
    print(f"cpu: {m['cpu']}, L3 {l3}; AVX2 {m['avx2']}, F16C {m['f16c']}, AVX-512 FP16 {m['avx512fp16']}; "
          f"memory {m['memory_gib']} GiB")
    print(f"peers: {', '.join(peer_version(p) for p in PEERS)}")
    try:
        load = os.getloadavg()
        print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    except OSError:
        pass


def fmt_ratio(x):
    return f"{x:.2f}" if np.isfinite(x) else "-"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="BAL file names in the data folder's ba/ (or paths); default: a set")
    ap.add_argument("--repeat", type=int, default=1, help="runs per pair; the minimum time is kept")
    ap.add_argument("--pairs", help="comma list of precision:solver, e.g. fp64:schur,mixed:cgnr")
    ap.add_argument("--csv", help="also write the rows to this CSV file")
    ap.add_argument("--max-iterations", type=int, default=100, help="LM iterations at most (default 100)")
    ap.add_argument("--fp16-max-iterations", type=int, default=None,
                    help="LM iterations at most for the naive fp16 policy (default: --max-iterations; its emulated "
                         "fp16 arithmetic makes it several times slower per CG iteration)")
    ap.add_argument("--function-tolerance", type=float, default=1e-6,
                    help="relative cost decrease that stops LM (default 1e-6, the BA default, as Ceres)")
    ap.add_argument("--no-window", action="store_true", help="leave out the simulated sliding window")
    ap.add_argument("--no-peers", action="store_true", help="skip GTSAM even if installed")
    ap.add_argument("--matvec-repeats", type=int, default=20, help="timings of normal_matvec (min kept)")
    ap.add_argument("--cg-iterations", type=int, default=50, help="length of the timed stand-alone CG solves")
    args = ap.parse_args(argv)
    pairs = PAIRS if not args.pairs else [tuple(p.split(":")) for p in args.pairs.split(",")]
    lm = LMConfig(initial_lambda=1e-4, function_tolerance=args.function_tolerance, max_iterations=args.max_iterations)

    print("mixslam bundle-adjustment benchmark")
    machine_header()
    print(f"command: {' '.join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))}")
    print(f"LM: initial_lambda 1e-4, function_tolerance {args.function_tolerance:g}, max_iterations "
          f"{args.max_iterations}; CG: defaults (block-Jacobi, max 500 per solve); "
          f"times: min over {args.repeat} run(s)")
    problems = load_problems(args.files or DEFAULT_FILES, not args.no_window)
    if not problems:
        print("no problem to run", file=sys.stderr)
        return 2
    for model in sorted({d.model for _, d in problems}):
        print(f"numba compile/load ({model}): {warmup(model):.2f} s (excluded below)")

    rows = []
    for name, data in problems:
        m, pc, nc, npts = sizes(data)
        dims = problem_dims(Problem("ba", name, data, name == WINDOW))
        n = nc * pc + 3 * npts
        print(f"\n== {name}: model {data.model}, {data.num_cameras} cameras ({nc} free), {data.num_points} points "
              f"({npts} free), {m} observations, {n} unknowns, {2 * m} residuals")
        results = {}
        for precision, solver in pairs:
            try:
                lm_p = lm
                if precision == "fp16" and args.fp16_max_iterations is not None:
                    lm_p = LMConfig(initial_lambda=1e-4, function_tolerance=args.function_tolerance,
                                    max_iterations=args.fp16_max_iterations)
                results[(precision, solver)] = run_pair(data, precision, solver, lm_p, args.repeat)
            except Exception as e:  # report and go on: one failing pair must not hide the others
                print(f"{precision:>9} {solver:>6}  FAILED: {type(e).__name__}: {e}")
        if not results:
            continue
        rep0 = next(iter(results.values()))
        print(f"initial cost {rep0.initial_cost:.6e}")
        base = results.get(("fp64", "schur"))
        print(f"{'precision':>9} {'solver':>6} {'final cost':>14} {'rel to f64s':>11} {'LM':>4} {'CG':>6} "
              f"{'resid s':>8} {'jac s':>7} {'lin s':>8} {'upd s':>6} {'total s':>8} {'lin/fp32':>8} "
              f"{'ms/CG':>7} {'ovf/unf/sub/fb':>22}  status")
        for (precision, solver), rep in results.items():
            t = rep.timing
            rel = (rep.final_cost - base.final_cost) / base.final_cost if base else float("nan")
            f32 = results.get(("fp32", solver))
            r32 = t["linear_solve"] / f32.timing["linear_solve"] if f32 and solver == "cgnr" else float("nan")
            per_cg = (t["linear_solve"] / rep.linear_iterations if solver == "cgnr" and rep.linear_iterations
                      else float("nan"))
            q = rep.quantization
            qs = f"{q.overflows}/{q.underflows}/{q.subnormals}/{q.fallbacks}"
            print(f"{precision:>9} {solver:>6} {rep.final_cost:14.6f} {rel:11.2e} {rep.iterations:4d} "
                  f"{rep.linear_iterations:6d} {t['residual']:8.3f} {t['jacobian']:7.3f} {t['linear_solve']:8.3f} "
                  f"{t['update']:6.3f} {t['total']:8.3f} {fmt_ratio(r32):>8} "
                  f"{per_cg * 1e3 if np.isfinite(per_cg) else float('nan'):7.2f} {qs:>22}  {rep.status.value}")
            mem = rep.memory
            rows.append({"problem": name, "row": "solve", "precision": precision, "solver": solver,
                         "initial_cost": rep.initial_cost, "final_cost": rep.final_cost, "rel_to_fp64_schur": rel,
                         "lm_iterations": rep.iterations, "cg_iterations": rep.linear_iterations,
                         "status": rep.status.value, "reason": rep.reason,
                         **{f"{k}_s": t.get(k, float("nan")) for k in PHASES + ("setup",)},
                         "linear_vs_fp32": r32, "linear_s_per_cg_iteration": per_cg,
                         "overflows": q.overflows, "underflows": q.underflows,
                         "subnormals": q.subnormals, "fallbacks": q.fallbacks,
                         "jacobian_bytes": "" if mem.jacobian_bytes is None else mem.jacobian_bytes,
                         "preconditioner_bytes": "" if mem.preconditioner_bytes is None else mem.preconditioner_bytes})
        for (precision, solver), p in results.items():  # the pair's own solver label (cgnr), not the report's (cg)
            if p.status.value != "converged":
                print(f"    note {precision}/{solver}: {p.reason}")
        mx, f32 = results.get(("mixed", "cgnr")), results.get(("fp32", "cgnr"))
        if mx and f32:
            lin_r = mx.timing["linear_solve"] / f32.timing["linear_solve"]
            per_r = ((mx.timing["linear_solve"] / max(mx.linear_iterations, 1))
                     / (f32.timing["linear_solve"] / max(f32.linear_iterations, 1)))
            print(f"mixed/fp32 (cgnr): linear-solve time {lin_r:.2f}, per CG iteration {per_r:.2f} "
                  f"(CG iterations {mx.linear_iterations} vs {f32.linear_iterations}), "
                  f"total {mx.timing['total'] / f32.timing['total']:.2f}")
            rows.append({"problem": name, "row": "mixed_vs_fp32_cgnr", "linear_vs_fp32": lin_r,
                         "per_cg_iteration_vs_fp32": per_r,
                         "total_vs_fp32": mx.timing["total"] / f32.timing["total"]})

        # ---- where a CGNR iteration's work goes
        print(f"-- CGNR work per iteration (n = {n}, fused JᵀJ·p pass vs block-Jacobi + ~5 axpy + 3 dots; "
              "MACs; bytes moved once each):")
        pols = [p for p in ("fp64", "fp32", "mixed", "fp16") if (p, "cgnr") in results] or ["fp32", "mixed"]
        meas = measure_products(data, pols, args.matvec_repeats, args.cg_iterations)
        print(f"{'policy':>7} {'J store':>7} {'prod MMAC':>9} {'other MMAC':>10} {'MAC share':>9} {'prod MB':>8} "
              f"{'other MB':>8} {'byte share':>10} | {'matvec ms':>9} {'CG it ms':>8} {'share':>6} "
              f"{'rep ms/CG':>9} {'share':>6} | {'quant ms':>8} {'prec ms':>7} {'rest ms':>7}")
        for pname in pols:
            pol = PrecisionPolicy.preset(pname, "ba")
            st = meas[pname]["storage"].lower()
            if meas[pname]["fallbacks"]:
                print(f"    note {pname}: the Jacobian overflowed its 16-bit format and fell back to {st} storage")
            vb = np.dtype(pol.krylov.compute_dtype).itemsize
            pb = np.dtype(pol.preconditioner_accumulate.compute_dtype).itemsize
            a = analytic_counts(dims, BYTES.get(st, 4), vb, pb)
            mv, cgit = meas[pname]["normal_matvec_s"], meas[pname]["cg_iter_s"]
            rep = results.get((pname, "cgnr"))
            rep_it = (rep.timing["linear_solve"] / rep.linear_iterations if rep and rep.linear_iterations
                      else float("nan"))
            other_macs = a["jacobi_macs"] + a["vector_macs"]
            other_bytes = a["jacobi_bytes"] + a["vector_bytes"]
            print(f"{pname:>7} {st:>7} {a['prod_macs'] / 1e6:9.3f} {other_macs / 1e6:10.3f} {a['macs_share']:9.1%} "
                  f"{a['prod_bytes'] / 1e6:8.2f} {other_bytes / 1e6:8.2f} {a['bytes_share']:10.1%} | "
                  f"{mv * 1e3:9.3f} {cgit * 1e3:8.3f} {mv / cgit:6.1%} {rep_it * 1e3:9.3f} {mv / rep_it:6.1%} | "
                  f"{meas[pname]['quantize_s'] * 1e3:8.1f} {meas[pname]['preconditioner_s'] * 1e3:7.1f} "
                  f"{meas[pname]['rest_s'] * 1e3:7.1f}")
            rows.append({"problem": name, "row": "products", "precision": pname, "jacobian_storage": st,
                         "acc16": meas[pname]["acc16"], "n": a["n"], "jacobian_entries": a["entries"],
                         "products_macs": a["prod_macs"], "jacobi_macs": a["jacobi_macs"],
                         "vector_macs": a["vector_macs"], "products_mac_share": a["macs_share"],
                         "products_bytes": a["prod_bytes"], "jacobi_bytes": a["jacobi_bytes"],
                         "vector_bytes": a["vector_bytes"], "products_byte_share": a["bytes_share"],
                         "normal_matvec_s": mv, "cg_iteration_s": cgit, "cg_iterations_timed": meas[pname]["cg_its"],
                         "measured_products_share": mv / cgit, "report_s_per_cg_iteration": rep_it,
                         "measured_products_share_of_report": mv / rep_it if np.isfinite(rep_it) else float("nan"),
                         "jacobian_bytes": meas[pname]["jacobian_bytes"],
                         "solve_quantize_s": meas[pname]["quantize_s"],
                         "solve_preconditioner_s": meas[pname]["preconditioner_s"],
                         "solve_rest_s": meas[pname]["rest_s"]})
        if "fp32" in meas and "mixed" in meas:
            a32 = analytic_counts(dims, 4, 4, 4)
            a16 = analytic_counts(dims, 2, 4, 4)
            t_r = meas["mixed"]["normal_matvec_s"] / meas["fp32"]["normal_matvec_s"]
            b_r = a16["prod_bytes"] / a32["prod_bytes"]
            e_r = meas["mixed"]["jacobian_bytes"] / meas["fp32"]["jacobian_bytes"]
            print(f"fp16-storage vs fp32 normal_matvec (fp32 arithmetic): time {t_r:.2f}, bytes of the pass {b_r:.2f} "
                  f"(Jacobian alone {e_r:.2f}); CG iteration time mixed/fp32 "
                  f"{meas['mixed']['cg_iter_s'] / meas['fp32']['cg_iter_s']:.2f}")
            rows.append({"problem": name, "row": "fp16_vs_fp32_matvec", "normal_matvec_time_ratio": t_r,
                         "products_bytes_ratio": b_r, "jacobian_bytes_ratio": e_r,
                         "cg_iteration_time_ratio": meas["mixed"]["cg_iter_s"] / meas["fp32"]["cg_iter_s"]})
        its_timed = sorted({meas[p]["cg_its"] for p in pols})
        print("   (matvec ms: one fused normal_matvec at the initial state, the solver's column scaling; CG it ms: the "
              f"solver's CG loop alone ({'/'.join(map(str, its_timed))} iterations timed); "
              "rep ms/CG: linear_solve / CG iterations of the run "
              "above, which also carries the per-linear-solve work; quant/prec/rest ms: that work, once per linear "
              "solve: column norms + scaling + Jᵀr + storing J, block-Jacobi build, the rest (fp64 model decrease))")

        # ---- peers and published numbers
        if data.model == "bal" and not args.no_peers:
            path = Path(data.source)
            peer = gtsam_ba(path, data, args.max_iterations, args.function_tolerance)
            if isinstance(peer, str):
                print(f"    gtsam: {peer}")
            else:
                dt, its, c, c0, how = peer
                rel = (c - base.final_cost) / base.final_cost if base else float("nan")
                ratio = dt / base.timing["total"] if base else float("nan")
                print(f"{'gtsam':>9} {'LM':>6} {c:14.6f} {rel:11.2e} {its:4d} {'':>6} {'':>8} {'':>7} {'':>8} {'':>6} "
                      f"{dt:8.3f}   ({how}; same gauge; graph building excluded; scored with our cost; start "
                      f"{c0:.6e}; time / our fp64 schur {ratio:.2f})")
                rows.append({"problem": name, "row": "peer", "precision": "gtsam", "solver": "LM", "final_cost": c,
                             "initial_cost": c0, "rel_to_fp64_schur": rel, "lm_iterations": its, "total_s": dt,
                             "total_vs_fp64_schur": ratio, "reason": how})
            pyceres = "not installed" if peer_version("pyceres").endswith("not installed") else PYCERES_SKIP
            print(f"  pyceres: {pyceres}")
        if name in CERES_PUBLISHED and base is not None:
            c0, c1, its, secs = CERES_PUBLISHED[name]
            print(f"{'Ceres':>9} {'pub.':>6} {c1:14.6e} {(c1 - base.final_cost) / base.final_cost:11.2e} {its:4d} "
                  f"{'':>6} {'':>8} {'':>7} {'':>8} {'':>6} {secs:8.3f}   (published: simple_bundle_adjuster, "
                  f"DENSE_SCHUR, v2.2.0, {c0:.6e} -> {c1:.6e}; hardware not named)")
            print(f"ours fp64/schur: {base.initial_cost:.6e} -> {base.final_cost:.6e} in {base.iterations} iterations, "
                  f"{base.timing['total']:.3f} s; our_time / 0.384 s = {base.timing['total'] / secs:.2f} "
                  "(vs the published time on unknown hardware)")
            rows.append({"problem": name, "row": "reference", "precision": "ceres-published", "solver": "DENSE_SCHUR",
                         "initial_cost": c0, "final_cost": c1, "lm_iterations": its, "total_s": secs,
                         "total_vs_fp64_schur": base.timing["total"] / secs,
                         "reason": "our fp64 schur time / published time (unknown hardware)"})
    if args.csv:
        write_csv(args.csv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
