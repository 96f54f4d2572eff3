"""Issue 17: the vectorized Jacobian products against the scalar kernels they replace, 1 and 2 threads.

For each problem and format, in one run:
  scalar   the scalar compiled cores (``*_nb`` in mixslam.kernels.products: the kernels before this issue)
  rows     the explicit-SIMD row-block kernels (mixslam.kernels.vector_products), one thread: lanes are the
           columns of one observation's block rows (every problem; pose graphs use these)
  cm 1t    camera-major structure of arrays (mixslam.kernels.camera_major), one thread: lanes are 16
           observations of one camera (bundle adjustment)
  cm 2t    the same on two threads (same chunks: identical results); for pose graphs: rows on two threads
for the fused normal product JᵀJ·p, J·x and Jᵀ·y. Each time is the minimum over ``--repeats`` calls after a
warm-up. Bytes counted per call: the stored Jacobian blocks with their indices (the camera-major layout's padded
batches, int32 point and row indices), and the vectors read and written once; flops: 4 per Jacobian entry for the fused product, 2 for the others. Rates are printed
as fractions of this machine's roofline (``benchmarks/roofline.py``, docs/results/roofline.txt): L3 for the
in-cache problem, memory for the generated out-of-cache one.

Problems
  problem-16-22106   the BAL file's Jacobian at its initial guess, scaled as the CG solver scales it
                     (``$MIXSLAM_DATA/ba``; a same-shaped random stand-in when the file is absent)
  ba-large           generated: 2,000 cameras, points sorted, 6 observations each (``--large-rows``,
                     default 6,000,000 row blocks: 1.15 GB of fp32 blocks, beyond any cache here)
  se3-graph          a 3-D pose-graph shape: 200,000 poses, 6x6 blocks, chain plus 10% loop closures

    python benchmarks/products.py [--repeats 10] [--large-rows N] [--skip-large] [--out docs/results/products.txt]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roofline import fraction, load  # noqa: E402

from mixslam.bench.fig7_kernels import tmin  # noqa: E402
from mixslam.kernels.fp16 import arith_tag  # noqa: E402
from mixslam.kernels.products import (  # noqa: E402
    jac_matvec,
    jac_matvec_nb,
    jac_rmatvec,
    jac_rmatvec_nb,
    normal_matvec,
    normal_matvec_nb,
    plan_for,
    static_size,
)
from mixslam.kernels.camera_major import build, cm_matvec, cm_normal, cm_rmatvec  # noqa: E402
from mixslam.precision import Precision  # noqa: E402
from mixslam.storage import quantize  # noqa: E402

FORMATS = {  # name: storage, arithmetic dtype
    "fp64": (Precision.FP64, np.float64),
    "fp32": (Precision.FP32, np.float32),
    "mixed": (Precision.FP16, np.float32),
}


def bal_problem():
    root = Path(os.environ.get("MIXSLAM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    path = root / "ba" / "problem-16-22106-pre.txt"
    if not path.exists():
        return None
    from mixslam.ba import BundleProblem
    from mixslam.bench.fig7_kernels import solver_scale
    from mixslam.io.bal import read_bal
    from mixslam.precision import PrecisionPolicy

    data = read_bal(path)
    lin = BundleProblem(data, PrecisionPolicy.preset("fp64", "ba")).linearize((data.cameras, data.points))
    s = solver_scale(lin)
    sa, sb = lin.split(s)
    A = np.ascontiguousarray(lin.A * sa[np.maximum(lin.ia, 0)][:, None, :])
    B = np.ascontiguousarray(lin.B * sb[np.maximum(lin.ib, 0)][:, None, :])
    return dict(A=A, ia=lin.ia, B=B, ib=lin.ib, na=lin.nv, nb=lin.nb, alias=False)


def random_ba(R, nc, npts, rng):
    """Observations sorted by point, each point seen by distinct cameras (as in every real problem)."""
    ib = np.sort(rng.integers(0, npts, R)).astype(np.int64)
    start = np.flatnonzero(np.r_[True, ib[1:] != ib[:-1]])
    rank = np.arange(R) - np.repeat(start, np.diff(np.r_[start, R]))  # k-th observation of its point
    first = rng.integers(0, nc, npts)  # a point is seen by consecutive cameras (a track), all distinct
    ia = ((first[ib] + rank) % nc).astype(np.int64)
    A = (rng.standard_normal((R, 2, 9)) * 0.3).astype(np.float32)
    B = (rng.standard_normal((R, 2, 3)) * 0.3).astype(np.float32)
    return dict(A=A, ia=ia, B=B, ib=ib, na=nc, nb=npts, alias=False)


def se3_graph(n, rng):
    m = n // 10
    lc = rng.integers(0, n, (2 * m, 2))
    lc = lc[lc[:, 0] != lc[:, 1]][:m]
    ia = np.concatenate([np.arange(n - 1), lc[:, 0]]).astype(np.int64)
    ib = np.concatenate([np.arange(1, n), lc[:, 1]]).astype(np.int64)
    R = ia.size
    A = (rng.standard_normal((R, 6, 6)) * 0.3).astype(np.float32)
    B = (-np.eye(6) + 0.1 * rng.standard_normal((R, 6, 6))).astype(np.float32)
    return dict(A=A, ia=ia, B=B, ib=ib, na=n, nb=n, alias=True)


def _stored(M, prec):
    q, _ = quantize(M, prec)
    return q.view(np.uint16) if prec is Precision.FP16 else np.ascontiguousarray(q)


def run_problem(name, P, repeats, level, roof, rng, log):
    R, k, pa = P["A"].shape
    pb = P["B"].shape[2]
    sizes = (static_size(k), static_size(pa), static_size(pb))
    rows = []
    for fmt, (prec, dt) in FORMATS.items():
        A, B = _stored(P["A"], prec), _stored(P["B"], prec)
        ia, ib = P["ia"], P["ib"]
        xa = rng.standard_normal((P["na"], pa)).astype(dt)
        xb = xa if P["alias"] else rng.standard_normal((P["nb"], pb)).astype(dt)
        ga = np.empty_like(xa)
        gb = ga if P["alias"] else np.empty_like(xb)
        y = rng.standard_normal((R, k)).astype(dt)
        tag = arith_tag(np.dtype(dt))
        t = np.empty(k, dt)
        plan = plan_for(ia, ib, P["alias"])
        entries = R * k * (pa + pb)
        jb = A.nbytes + B.nbytes + ia.nbytes + ib.nbytes
        vec = xa.nbytes + (0 if P["alias"] else xb.nbytes)
        L = None if P["alias"] else build(A, ia, B, ib, P["na"], P["nb"])
        if L is not None:
            fast = {
                "normal": lambda th: partial(cm_normal, L, xa, xb, ga, gb, threads=th),
                "J x": lambda th: partial(cm_matvec, L, xa, xb, y, threads=th),
                "J^T y": lambda th: partial(cm_rmatvec, L, y, ga, gb, threads=th),
            }
        kernels = {
            "normal": (
                partial(normal_matvec_nb, A, ia, B, ib, xa, xb, ga, gb, t, tag, *sizes),
                lambda th: partial(normal_matvec, A, ia, B, ib, xa, xb, ga, gb, plan=plan, threads=th),
                jb + 2 * vec, 4 * entries,
            ),
            "J x": (
                partial(jac_matvec_nb, A, ia, B, ib, xa, xb, y, tag, *sizes),
                lambda th: partial(jac_matvec, A, ia, B, ib, xa, xb, y, plan=plan, threads=th),
                jb + vec + y.nbytes, 2 * entries,
            ),
            "J^T y": (
                partial(jac_rmatvec_nb, A, ia, B, ib, y, ga, gb, tag, *sizes),
                lambda th: partial(jac_rmatvec, A, ia, B, ib, y, ga, gb, plan=plan, threads=th),
                jb + vec + y.nbytes, 2 * entries,
            ),
        }
        for kname, (old, rows_k, nbytes, flops) in kernels.items():
            best = fast[kname] if L is not None else rows_k
            outs = (ga, gb) if kname != "J x" else (y,)
            errs = []
            old()
            ref = [o.copy() for o in outs]
            for cand in (rows_k(1), best(1), best(2)):
                cand()
                scale = max(float(np.abs(r).max()) for r in ref) or 1.0
                errs.append(max(float(np.abs(a - b).max()) for a, b in zip(ref, outs)) / scale)
            t_old = tmin(old, repeats)
            t_rows = tmin(rows_k(1), repeats)
            t1 = tmin(best(1), repeats)
            t2 = tmin(best(2), repeats)
            if L is not None:
                nbytes_best = L.nbytes + L.IB.nbytes + vec * (2 if kname == "normal" else 1) + (0 if kname == "normal" else y.nbytes)
            else:
                nbytes_best = nbytes
            row = dict(problem=name, kernel=kname, format=fmt, rows=R, scalar_s=t_old, rows_s=t_rows, best1_s=t1,
                       best2_s=t2, best="camera-major" if L is not None else "rows", bytes=nbytes_best, flops=flops,
                       max_rel_diff=max(errs))
            rows.append(row)
            log(
                f"{name:17s} {kname:6s} {fmt:5s} scalar {t_old*1e3:8.3f} ms  rows {t_rows*1e3:8.3f}  "
                f"{'cm' if L is not None else 'rows'} 1t {t1*1e3:8.3f}  2t {t2*1e3:8.3f}"
                f"  | scalar/best 1t {t_old/t1:5.2f}x  2t {t_old/t2:5.2f}x  (1t/2t {t1/t2:4.2f}x)"
                f"  | diff {max(errs):.1e}"
            )
            log(
                f"{'':31s} best 1t: {fraction(nbytes_best / t1, flops / t1, level, 1, dt, roof)}"
                f"; 2t: {fraction(nbytes_best / t2, None, level, 2, dt, roof)}"
            )
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--large-rows", type=int, default=6_000_000)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="also write the log here")
    a = ap.parse_args(argv)
    lines = []

    def log(s=""):
        print(s, flush=True)
        lines.append(s)

    roof = load()
    log(f"products benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}, {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores; roofline from docs/results/roofline.txt")
    log("scalar = the kernels before issue 17; vec = explicit SIMD (mixslam.kernels.vector_products); "
        "ratios > 1: the vector kernels are faster")
    rng = np.random.default_rng(0)
    P = bal_problem()
    name = "problem-16-22106"
    if P is None:
        P, name = random_ba(83718, 16, 22106, rng), "bal-16-like (random)"
    rows = run_problem(name, P, a.repeats, "L3", roof, rng, log)
    if not a.skip_large:
        R = a.large_rows
        rows += run_problem(f"ba-large {R/1e6:.1f}M", random_ba(R, 2000, R // 6, rng), max(3, a.repeats // 3),
                            "mem", roof, rng, log)
        rows += run_problem("se3-graph 200k", se3_graph(200_000, rng), max(3, a.repeats // 2), "L3", roof, rng, log)
    if a.out:
        a.out.write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
