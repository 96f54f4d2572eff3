"""The device backend (JAX) against the CPU backend (numba), every policy, in one prepared run (issue 19).

Cases, in this order (the headline GPU cases first, so that a global time budget cuts the long tail):

1. ``vo-batch``: a batch of VO windows (default 1,000 of 50 keyframes, about 5,000 observations each: one
   simulated window's observation structure, each window with its own pixel noise and initial guess),
   solved in one call (:func:`mixslam.backend.jax_batch.solve_batch`); the CPU backend solves the first
   ``--cpu-windows`` of them one at a time (its time is per window);
2. ``ba-gen``: a generated BAL problem of >= 5 million observations (``mixslam.sim.generate``); the CPU
   backend is skipped (about 30 s per policy);
3. ``problem-16-22106`` and ``problem-49-7776`` from ``$MIXSLAM_DATA/ba``;
4. the shared pose graphs in ``$MIXSLAM_DATA/pgo`` (``*.g2o``, smallest first), from the chordal initial
   guess (computed once per graph on the host, not timed).

Every case runs each policy (``fp64``, ``fp32``, ``mixed``, ``mixed16``) with the same linear solver on
both backends (CG with block-Jacobi); the pose graphs then run again as ``NAME [cholesky]``: on the device
CG preconditioned by the complete supernodal factor (factored on the host in the policy's format, its
triangular solves level-scheduled on the device, reused across LM steps), on the CPU the direct solver. Per row: LM iterations, CG
iterations, fp64 final cost (and relative to the device fp64's), time per LM step ((linearization + step
time) / LM iterations), time per CG iteration (step time / CG iterations: the per-step work amortized in),
total solve time (compilation apart, in ``compile_s``), the stored Jacobian's bytes, the device's peak
allocated bytes so far (JAX's high-water mark: it includes earlier cases), and the mixed/fp32 and
mixed/fp64 ratios of the time per CG iteration and per LM step (``*_vs_fp32``, ``*_vs_fp64``: every
policy's row against its case's fp32 / fp64 row of the same backend), and the device's speedup over the CPU
backend (``vs_cpu``: CPU total / device total).

A global time budget (``--budget``, default 450 s) skips the cases that would start after it; the report
lists them. Writes ``OUT/results.csv`` and ``OUT/results.md`` (default ``docs/results/gpu``) with the
device (``jax.devices()[0].device_kind``), jax's version and the date at the top. Needs only jax and
mixslam (the GPU machine has no package registry).

On a GPU (the command of the results in ``docs/results/gpu``)::

    MIXSLAM_DATA=/path/to/shared/data python benchmarks/gpu.py --device gpu --out docs/results/gpu

Here, to check that it runs (tiny problems, < 2 minutes on a CPU)::

    MIXSLAM_DATA=../shared/data python benchmarks/gpu.py --device cpu --quick --out /tmp/gpu-quick
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

POLICIES = ("fp64", "fp32", "mixed", "mixed16")
FIELDS = (
    "case",
    "kind",
    "batch",
    "unknowns",
    "terms",
    "policy",
    "backend",
    "status",
    "lm_iterations",
    "cg_iterations",
    "final_cost",
    "rel_to_fp64",
    "lm_step_ms",
    "cg_iter_ms",
    "total_s",
    "compile_s",
    "jacobian_mb",
    "device_peak_mb",
    "cg_iter_vs_fp32",
    "lm_step_vs_fp32",
    "cg_iter_vs_fp64",
    "lm_step_vs_fp64",
    "vs_cpu",
    "note",
)


@dataclasses.dataclass
class Case:
    name: str
    kind: str  # "pgo", "ba", "vo-batch"
    make: object  # () -> problem(s)
    cpu: bool = True
    solver: str = "cg"  # pose graphs: "cg" (block-Jacobi) or "cholesky" (CG preconditioned by the complete factor)


def _row(case: Case, batch: int, unknowns: int, terms: int, policy: str, backend: str, rep, seconds=None) -> dict:
    t = rep.timing
    its = max(rep.iterations, 1)
    lin = max(rep.linear_iterations, 1)
    step_s = t.get("linear_solve", math.nan)
    total = t.get("total", math.nan) if seconds is None else seconds
    peak = t.get("device_peak_bytes")
    jac = rep.memory.jacobian_bytes
    return {
        "case": case.name,
        "kind": case.kind,
        "batch": batch,
        "unknowns": unknowns,
        "terms": terms,
        "policy": policy,
        "backend": rep.backend,
        "status": rep.status.value,
        "lm_iterations": rep.iterations,
        "cg_iterations": rep.linear_iterations,
        "final_cost": rep.final_cost,
        "rel_to_fp64": math.nan,
        "lm_step_ms": 1e3 * (t.get("jacobian", 0.0) + step_s) / its,
        "cg_iter_ms": 1e3 * step_s / lin,
        "total_s": total,
        "compile_s": t.get("compile", 0.0),
        "jacobian_mb": (jac or 0) / 2**20,
        "device_peak_mb": math.nan if peak is None else peak / 2**20,
        "note": "",
    }


def _ratios(rows: list) -> None:
    """Fill the rows' ratios against their case's fp32 / fp64 row of the same backend and the CPU total."""
    by = {(r["case"], r["backend"], r["policy"]): r for r in rows}
    for r in rows:
        for ref in ("fp32", "fp64"):
            base = by.get((r["case"], r["backend"], ref))
            for key, col in (("cg_iter_ms", f"cg_iter_vs_{ref}"), ("lm_step_ms", f"lm_step_vs_{ref}")):
                r[col] = r[key] / base[key] if base and base[key] > 0 else math.nan
        f64 = by.get((r["case"], r["backend"], "fp64"))
        r["rel_to_fp64"] = (r["final_cost"] - f64["final_cost"]) / f64["final_cost"] if f64 else math.nan
        cpu = by.get((r["case"], "numba", r["policy"]))
        if r["backend"] != "numba" and cpu:
            per = 1.0 if r["kind"] != "vo-batch" else r["batch"] / max(cpu["batch"], 1)
            r["vs_cpu"] = cpu["total_s"] * per / r["total_s"] if r["total_s"] > 0 else math.nan
        else:
            r["vs_cpu"] = math.nan


def _vo_windows(count: int, keyframes: int, landmarks: int, seed: int = 0):
    """``count`` VO windows with one observation structure: one simulated window's cameras, points and
    observations indices; each window its own pixel noise and initial-guess perturbation."""
    from mixslam.lie import so3
    from mixslam.problem.camera import pinhole_project
    from mixslam.sim.bundle import WindowConfig, simulate_window

    cfg = WindowConfig(keyframes=keyframes, landmarks_per_frame=landmarks)
    base, truth_c, truth_p = simulate_window(cfg, seed=seed)
    K = base.intrinsics
    pred, _ = pinhole_project(truth_c[base.cam_idx], truth_p[base.pt_idx], K)
    fixed = base.fixed_cameras
    nc = base.num_cameras
    R_cw = truth_c[:, :9].reshape(nc, 3, 3)
    centre_true = -np.einsum("nji,nj->ni", R_cw, truth_c[:, 9:12])
    trans_std, rot_std = cfg.pose_noise
    out = []
    for i in range(count):
        rng = np.random.default_rng(10_000 + i)
        obs = pred + rng.normal(0.0, cfg.pixel_noise, pred.shape)
        R0 = R_cw @ so3.exp(rng.normal(0.0, rot_std, (nc, 3)))
        centre = centre_true + rng.normal(0.0, trans_std, (nc, 3))
        guess = np.concatenate([R0.reshape(nc, 9), -np.einsum("nij,nj->ni", R0, centre)], axis=1)
        guess[fixed] = truth_c[fixed]
        pts = truth_p + rng.normal(0.0, cfg.point_noise, truth_p.shape)
        out.append(dataclasses.replace(base, cameras=guess, points=pts, observations=obs, source=f"vo-window-{i}"))
    return out


def _cases(args) -> list:
    from mixslam.io import read_pose_graph
    from mixslam.io.bal import read_bal
    from mixslam.sim.generate import generate_bundle

    data = Path(os.environ.get("MIXSLAM_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    q = args.quick
    cases = [
        Case(
            "vo-batch",
            "vo-batch",
            lambda: _vo_windows(args.windows or (8 if q else 1000), 20 if q else 50, 30 if q else 100),
        ),
        Case(
            "ba-gen",
            "ba",
            lambda: generate_bundle(20 if q else 2000, 300 if q else 1_000_000, seed=1).initial,
            cpu=q,
        ),
    ]
    bal = [] if q else ["problem-16-22106-pre.txt", "problem-49-7776-pre.txt"]
    for name in bal:
        path = data / "ba" / name
        if path.exists():
            cases.append(Case(name.removesuffix("-pre.txt"), "ba", lambda p=path: read_bal(str(p))))
    graphs = sorted((data / "pgo").glob("*.g2o"), key=lambda p: p.stat().st_size)
    if q:
        graphs = [p for p in graphs if p.name == "smallGrid3D.g2o"]
    for path in graphs:
        cases.append(Case(path.stem, "pgo", lambda p=path: read_pose_graph(str(p))))
    if "cholesky" in args.pgo_solvers.split(","):  # after every CG case: the budget cuts these first
        for path in graphs:
            cases.append(
                Case(f"{path.stem} [cholesky]", "pgo", lambda p=path: read_pose_graph(str(p)), solver="cholesky")
            )
    return cases


DEADLINE = [math.inf]
"""perf_counter time after which every solve stops at its next LM iteration (the budget's hard end)."""


def _deadline(record) -> None:
    if time.perf_counter() > DEADLINE[0]:
        raise StopIteration


def _lm(args, ba: bool):
    from mixslam.solve.config import LMConfig

    if ba:
        return LMConfig(
            max_iterations=args.max_iterations, initial_lambda=1e-4, function_tolerance=1e-6, callback=_deadline
        )
    return LMConfig(max_iterations=args.max_iterations, callback=_deadline)


def _solve(case: Case, problem, policy: str, backend: str, device, args):
    from mixslam.ba import BAConfig, optimize_bundle
    from mixslam.pgo import PGOConfig, optimize_pose_graph

    dev = {"device": device} if backend == "jax" else {}
    if case.kind == "pgo":
        pre = {"preconditioner": "jacobi"} if case.solver == "cg" else {}
        cfg = PGOConfig(
            precision=policy,
            solver=case.solver,
            **pre,
            init="file",
            backend=backend,
            lm=_lm(args, False),
            **dev,
        )
        return optimize_pose_graph(problem, cfg)[1]
    lm = _lm(args, True)
    cfg = BAConfig(precision=policy, solver="cg", preconditioner="jacobi", backend=backend, lm=lm, **dev)
    return optimize_bundle(problem, cfg)[1]


def _batch(problems, policy: str, device, args):
    from mixslam.ba import BAConfig
    from mixslam.backend.jax_batch import solve_batch

    cfg = BAConfig(
        precision=policy, solver="cg", preconditioner="jacobi", backend="jax", device=device, lm=_lm(args, True)
    )
    return [rep for _, rep in solve_batch(problems, cfg)]


def _batch_row(case: Case, reps: list, policy: str) -> dict:
    """One row for a batch: LM / CG iterations summed over its problems, the batch's times."""
    rep = reps[0]
    agg = dataclasses.replace(
        rep,
        iterations=max(r.iterations for r in reps),
        linear_iterations=max(r.linear_iterations for r in reps),
        final_cost=float(sum(r.final_cost for r in reps)),
    )
    row = _row(case, len(reps), 0, 0, policy, "jax", agg)
    conv = sum(r.converged for r in reps)
    row["status"] = f"{conv}/{len(reps)} converged"
    row["note"] = "LM / CG iterations: the batch's (the slowest problem's); final_cost: sum over the batch"
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "gpu"], default=None, help="default: the GPU when JAX sees one")
    ap.add_argument("--quick", action="store_true", help="tiny problems (a check that the script runs)")
    ap.add_argument("--out", default="docs/results/gpu")
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds after which later cases are skipped and running solves stop at their next LM iteration "
        "(default 450; quick 100)",
    )
    ap.add_argument(
        "--cpu-case-limit",
        type=float,
        default=20.0,
        help="a case's later policies skip the CPU backend once one of its CPU solves took longer (s)",
    )
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--windows", type=int, default=None, help="VO windows in the batch (default 1000; quick 8)")
    ap.add_argument("--cpu-windows", type=int, default=None, help="windows the CPU solves (default 50; quick 4)")
    ap.add_argument("--max-iterations", type=int, default=100)
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU (numba) backend")
    ap.add_argument(
        "--pgo-solvers",
        default="cg,cholesky",
        help="pose-graph solvers: cg (block-Jacobi) and cholesky (device: CG preconditioned by the complete "
        "factor, built on the host, triangular solves level-scheduled on the device; CPU: the direct solver)",
    )
    args = ap.parse_args(argv)
    if args.budget is None:
        args.budget = 100.0 if args.quick else 450.0
    t_start = time.perf_counter()
    DEADLINE[0] = t_start + args.budget

    from mixslam.backend.jax_device import device as jax_device
    from mixslam.backend.jax_device import jax

    dev = jax_device(args.device)
    kind = "cpu" if dev.platform == "cpu" else "gpu"
    policies = [p for p in args.policies.split(",") if p]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list = []
    skipped: list = []
    failed: list = []

    def left() -> float:
        return args.budget - (time.perf_counter() - t_start)

    for case in _cases(args):
        if left() <= 0:
            skipped.append(f"{case.name} (time budget of {args.budget:.0f} s spent)")
            continue
        t_case = time.perf_counter()
        try:
            problem = case.make()
        except Exception as exc:  # noqa: BLE001 - a case that cannot be built is reported, the others run
            failed.append(f"{case.name}: {type(exc).__name__}: {exc}")
            continue
        if case.kind == "pgo":
            from mixslam.pgo import choose_initial_guess

            problem, _ = choose_initial_guess(problem)
            unknowns, terms = problem.num_poses * problem.tangent_dim, problem.num_edges
        else:
            unknowns = terms = 0
        if case.kind == "ba":
            unknowns = problem.num_cameras * problem.camera_tangent_dim + 3 * problem.num_points
            terms = problem.num_observations
        print(f"[{time.perf_counter() - t_start:6.1f} s] {case.name}", flush=True)
        run_cpu = case.cpu and not args.no_cpu
        for policy in policies:
            if left() <= 0:
                skipped.append(f"{case.name} {policy} and later (time budget spent)")
                break
            try:
                if case.kind == "vo-batch":
                    reps = _batch(problem, policy, kind, args)
                    row = _batch_row(case, reps, policy)
                    row["unknowns"] = sum(p.num_cameras * 6 + 3 * p.num_points for p in problem)
                    row["terms"] = sum(p.num_observations for p in problem)
                    rows.append(row)
                    if run_cpu:
                        k = min(len(problem), args.cpu_windows or (4 if args.quick else 50))
                        t0 = time.perf_counter()
                        creps = [_solve(Case("w", "ba", None), p, policy, "numba", None, args) for p in problem[:k]]
                        crow = _batch_row(case, creps, policy)
                        crow.update(backend="numba", total_s=time.perf_counter() - t0, batch=k)
                        crow["note"] = f"one window at a time, the first {k}; " + crow["note"]
                        rows.append(crow)
                else:
                    rep = _solve(case, problem, policy, "jax", kind, args)
                    rows.append(_row(case, 1, unknowns, terms, policy, "jax", rep))
                    if run_cpu:
                        crep = _solve(case, problem, policy, "numba", None, args)
                        rows.append(_row(case, 1, unknowns, terms, policy, "numba", crep))
                cpu_row = rows[-1] if run_cpu else None
                if cpu_row is not None and cpu_row["total_s"] > args.cpu_case_limit:
                    run_cpu = False
                    skipped.append(f"{case.name}: CPU backend after {policy} (a solve took {cpu_row['total_s']:.0f} s)")
                for r in rows[-2:]:
                    if time.perf_counter() > DEADLINE[0] and r["case"] == case.name:
                        r["note"] = "stopped at the time budget (status: stopped by the callback)"
                last = rows[-2] if cpu_row is not None else rows[-1]
                print(
                    f"    {policy:8s} {last['backend']}: {last['status']}, {last['lm_iterations']} LM, "
                    f"{last['cg_iterations']} CG, {last['total_s']:.3f} s"
                    + ("" if last is rows[-1] else f"; numba {rows[-1]['total_s']:.3f} s"),
                    flush=True,
                )
            except Exception as exc:  # noqa: BLE001 - one failed policy must not lose the run's results
                failed.append(f"{case.name} {policy}: {type(exc).__name__}: {exc}")
                print(f"    {policy}: FAILED {type(exc).__name__}: {exc}", flush=True)
        print(f"    case {time.perf_counter() - t_case:.1f} s", flush=True)
    _ratios(rows)
    wall = time.perf_counter() - t_start
    header = {
        "device": f"{dev.platform} ({dev.device_kind})",
        "jax": jax.__version__,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": f"{platform.node()} ({os.cpu_count()} CPUs), Python {platform.python_version()}",
        "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "wall_s": f"{wall:.1f}",
    }
    _write(out, rows, header, skipped, failed)
    print(f"wrote {out / 'results.csv'} and {out / 'results.md'} ({wall:.1f} s; device {header['device']})")
    return 1 if failed else 0


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:.9g}"
    return str(v)


def _write(out: Path, rows: list, header: dict, skipped: list, failed: list) -> None:
    with open(out / "results.csv", "w", newline="") as f:
        f.write("".join(f"# {k}: {v}\n" for k, v in header.items()))
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k, "")) for k in FIELDS})
    lines = ["# Device backend (JAX) vs CPU backend (numba): `benchmarks/gpu.py`", ""]
    lines += [f"- {k}: `{v}`" if k == "command" else f"- {k}: {v}" for k, v in header.items()]
    lines += [
        "",
        "Linear solver on both backends: CG with block-Jacobi; `[cholesky]` rows: the device's CG preconditioned "
        "by the complete factor (host factorization in `timing.factor`, inside the step time), the CPU's direct "
        "solver. Times exclude compilation (`compile_s`).",
        "",
    ]
    cols = (
        "case",
        "policy",
        "backend",
        "status",
        "lm_iterations",
        "cg_iterations",
        "rel_to_fp64",
        "lm_step_ms",
        "cg_iter_ms",
        "total_s",
        "cg_iter_vs_fp32",
        "cg_iter_vs_fp64",
        "lm_step_vs_fp64",
        "vs_cpu",
        "jacobian_mb",
        "device_peak_mb",
    )
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    notes = sorted({r["note"] for r in rows if r.get("note")})
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    lines += ["", "Skipped: " + ("; ".join(skipped) if skipped else "none")]
    lines += ["", "Failed: " + ("; ".join(failed) if failed else "none"), ""]
    (out / "results.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
