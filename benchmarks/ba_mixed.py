"""Mixed precision in bundle adjustment's direct solver, side by side with fp64 and with Ceres, in one run.

Per BAL file, every row solves from the file's start with LM (function tolerance 1e-6, as Ceres):

* ``fp64 schur``: points eliminated, dense reduced camera system S, all fp64 (the baseline of the ratios);
* ``mixed`` (the preset's default solver): fp32 residuals and Jacobian; the Schur solver measures its first
  step with S formed and factored in fp32 + PCG with fp64 residuals, its second in fp64, and keeps the faster;
* ``fp32 schur only``: the fp32 elimination for every step, refined by PCG to the fp64 tolerance (no
  fallback): what fp32 costs when it is forced;
* ``mixed cg``: CGNR with the Jacobian stored in fp16 (fp32 accumulation), block-Jacobi;
* Ceres 2.1 DENSE_SCHUR, SPARSE_SCHUR and ITERATIVE_SCHUR (SCHUR_JACOBI), one thread, built from our own driver
  ``benchmarks/ceres_bal.cc`` when ``libceres-dev`` is installed (``benchmarks/ceres_peer.py``), else absent.

Then, per file, the two facts that decide whether fp32 can pay: the time of the Schur reduction kernel in
fp64 and fp32 (with the flops it does), and the accuracy of an fp32 S: κ(S) and ‖S⁻½ (S₃₂ - S) S⁻½‖₂ at the
damping of the first LM step (1e-4) and of the last ones (1e-8). A preconditioner error e costs about
log(tol) / log(e) PCG iterations per step, each a product with the full fp64 normal matrix.

    python benchmarks/ba_mixed.py [--repeat 3] [--files a.txt,b.txt] [--csv out.csv] [--no-ceres]

Times are the minimum over --repeat runs after a warm-up solve; compare ratios within one run (these machines
are shared and noisy).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mixslam.ba import BundleProblem, optimize_bundle
from mixslam.bench.context import write_csv
from mixslam.bench.report import machine_info
from mixslam.data import data_dir
from mixslam.io.bal import read_bal
from mixslam.kernels.products import static_size
from mixslam.kernels.schur import camera_pairs, padded_width, schur_point_blocks, schur_reduce
from mixslam.linear.config import DirectConfig
from mixslam.precision import PrecisionPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ceres_peer import ceres_available, solve_with_ceres  # noqa: E402

FILES = ["problem-16-22106-pre.txt", "problem-49-7776-pre.txt", "bal-ladybug-problem-49-7776-pre-shrink-1800.txt"]
OURS = [
    ("fp64 schur", dict(precision="fp64")),
    ("mixed", dict(precision="mixed")),
    ("fp32 schur only", dict(precision="fp32", direct=DirectConfig(fp64_fallback=False))),
    ("mixed cg", dict(precision="mixed", solver="cg")),
]
CERES = [("DENSE_SCHUR", None), ("SPARSE_SCHUR", None), ("ITERATIVE_SCHUR", "SCHUR_JACOBI")]


def tmin(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def run_ours(data, kw, repeat):
    optimize_bundle(data, **kw)  # compile / warm
    t, (_, rep) = tmin(lambda: optimize_bundle(data, **kw), repeat)
    st = rep.direct
    return dict(
        seconds=t,
        cost=rep.final_cost,
        iterations=rep.iterations,
        status=rep.status.value,
        solver=rep.solver_label,
        pcg=None if st is None else st.cg_iterations,
        shifts=None if st is None else st.shifts,
        note=(st.choice or st.switched_to_fp64 or "") if st is not None else f"{rep.linear_iterations}",
    )


def schur_analysis(data, repeat):
    """Reduction kernel time fp64 / fp32 and the accuracy of an fp32 S at two dampings."""
    prob = BundleProblem(data, PrecisionPolicy.preset("fp64", "ba"))
    lin = prob.linearize(prob.initial_state)
    pairs = camera_pairs(lin.ia, lin.ib, lin.nv, lin.nb)
    pc, w = lin.p, padded_width(lin.p)
    colsq = lin.column_sq_norms()
    out = dict(pairs=len(pairs[0]), flops=2 * 3 * pc * pc * len(pairs[0]))
    for lam in (1e-4, 1e-8):
        d = np.where(colsq > 0, lam * colsq, 1.0)
        S = {}
        for dt in (np.float64, np.float32):
            A, B = np.ascontiguousarray(lin.A, dt), np.ascontiguousarray(lin.B, dt)
            da, db = (np.ascontiguousarray(x, dt) for x in lin.split(d))
            Z = np.empty((A.shape[0], 3, w), dt)
            U, _, _ = schur_point_blocks(A, lin.ia, B, lin.ib, da, db, Z, static_size(pc), static_size(w))
            S[dt] = schur_reduce(U, Z, *pairs, static_size(pc), static_size(w))
            if lam == 1e-4:
                t, _ = tmin(lambda U=U, Z=Z: schur_reduce(U, Z, *pairs, static_size(pc), static_size(w)), repeat * 3)
                out[f"reduce_{np.dtype(dt).name}_ms"] = 1e3 * t
        S64 = S[np.float64]
        ev = np.linalg.eigvalsh(S64)
        Li = np.linalg.inv(np.linalg.cholesky(S64))
        out[f"cond_{lam:g}"] = ev[-1] / ev[0]
        out[f"err32_{lam:g}"] = float(np.linalg.norm(Li @ (S[np.float32].astype(np.float64) - S64) @ Li.T, 2))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", default=",".join(FILES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--csv", default=None)
    ap.add_argument("--no-ceres", action="store_true")
    ap.add_argument(
        "--window",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default=[900, 2000],
        help="keyframes of the simulated many-camera windows (comma-separated; empty: none)",
    )
    args = ap.parse_args(argv)
    root = data_dir()
    if root is None or not (root / "ba").is_dir():
        print("no data folder (MIXSLAM_DATA or ../shared/data) with ba/: nothing to run")
        return 1
    info = machine_info()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    why = "disabled (--no-ceres)" if args.no_ceres else ceres_available()
    print(f"Ceres: {'built from benchmarks/ceres_bal.cc' if why is None else 'absent: ' + why}")
    rows = []
    for name in args.files.split(","):
        path = root / "ba" / name
        data = read_bal(path)
        print(
            f"\n== {name}: {data.cameras.shape[0]} cameras, {data.points.shape[0]} points, "
            f"{data.observations.shape[0]} observations =="
        )
        base = None
        for label, kw in OURS:
            r = run_ours(data, kw, args.repeat)
            base = base or r
            rows.append(dict(file=name, row=label, **r))
        if why is None:
            for solver, pre in CERES:
                res = [solve_with_ceres(path, solver, threads=1, preconditioner=pre) for _ in range(args.repeat)]
                best = min(res, key=lambda x: x["solver_time_s"])
                rows.append(
                    dict(
                        file=name,
                        row=f"ceres {solver}",
                        seconds=best["solver_time_s"],
                        cost=best["final_cost"],
                        iterations=best["iterations"],
                        status=best["termination"],
                        solver=solver.lower(),
                        pcg=None,
                        shifts=None,
                        note="",
                    )
                )
        print(
            f"{'row':22s} {'seconds':>8s} {'fp64/row':>8s} {'LM its':>6s} {'final cost':>16s} {'rel. to fp64':>12s} "
            f"{'PCG':>5s}  note"
        )
        for r in rows:
            if r["file"] != name:
                continue
            rel = r["cost"] / base["cost"] - 1
            r["ratio"] = base["seconds"] / r["seconds"]
            r["rel_cost"] = rel
            print(
                f"{r['row']:22s} {r['seconds']:8.3f} {r['ratio']:8.2f} {r['iterations']:6d} {r['cost']:16.8f} "
                f"{rel:12.1e} {'' if r['pcg'] is None else r['pcg']:>5}  {r['note']}"
            )
        a = schur_analysis(data, args.repeat)
        print(
            f"Schur reduction ({a['pairs']} observation pairs, {a['flops'] / 1e6:.0f} Mflop): "
            f"fp64 {a['reduce_float64_ms']:.1f} ms ({a['flops'] / a['reduce_float64_ms'] / 1e6:.1f} GFLOP/s), "
            f"fp32 {a['reduce_float32_ms']:.1f} ms ({a['flops'] / a['reduce_float32_ms'] / 1e6:.1f} GFLOP/s), "
            f"fp32/fp64 time {a['reduce_float32_ms'] / a['reduce_float64_ms']:.2f}"
        )
        for lam in (1e-4, 1e-8):
            print(
                f"  damping {lam:g}: cond(S) {a[f'cond_{lam:g}']:.1e}, fp32 S error in the S-norm "
                f"{a[f'err32_{lam:g}']:.1e}"
            )
        rows.append(dict(file=name, row="schur kernel", **a))
    for keyframes in args.window:
        many_cameras(keyframes, args.repeat, rows)
    if args.csv:
        write_csv(args.csv, rows)
    return 0


def many_cameras(keyframes: int, repeat: int, rows: list) -> None:
    """A simulated visual-odometry window of ``keyframes`` pinhole cameras: the implicit Schur solver (PCG on
    the reduced camera system, Schur-Jacobi) in fp64, fp32 and mixed (Jacobian in fp16) against CGNR (mixed,
    block-Jacobi) and, while the reduced system fits MAX_DENSE, the dense fp64 Schur solver."""
    from mixslam.linear.schur import MAX_DENSE
    from mixslam.sim.bundle import WindowConfig, simulate_window

    data, _, _ = simulate_window(WindowConfig(keyframes=keyframes, landmarks_per_frame=40, fixed_frames=2), seed=0)
    name = f"window-{keyframes}"
    print(
        f"\n== {name}: {data.cameras.shape[0]} cameras (6 parameters), {data.points.shape[0]} points, "
        f"{data.observations.shape[0]} observations =="
    )
    cases = [("mixed cg", dict(precision="mixed", solver="cg"))]
    if (keyframes - 2) * 6 <= MAX_DENSE:
        cases.insert(0, ("fp64 schur", dict(precision="fp64")))
    cases += [(f"{p} iterative_schur", dict(precision=p, solver="iterative_schur")) for p in ("fp64", "fp32", "mixed")]
    base = None
    head = f"{'row':24s} {'seconds':>8s} {'base/row':>8s} {'LM its':>6s} {'PCG its':>7s} {'final cost':>16s}"
    print(head + f" {'rel':>9s}")
    for label, kw in cases:
        r = run_ours(data, kw, repeat)
        base = base or r
        r.update(file=name, row=label, ratio=base["seconds"] / r["seconds"], rel_cost=r["cost"] / base["cost"] - 1)
        rows.append(r)
        print(
            f"{label:24s} {r['seconds']:8.3f} {r['ratio']:8.2f} {r['iterations']:6d} {r['note']:>7s} "
            f"{r['cost']:16.8f} {r['rel_cost']:9.1e}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
