"""Micro-benchmark of the compiled kernels in fp64 / fp32 / fp16 storage.

Problems (synthetic, random values, realistic shapes):
  city10000-like  pose graph: 10k poses, 3x3 blocks, ~20k row blocks (chain + loop closures)
  sphere-like     3-D pose graph: 2.5k poses, 6x6 blocks, 5k row blocks
  BA-like         k=2, pa=9 (cameras), pb=3 (points), 80k observations

Formats: fp64 = float64 storage, float64 vectors and arithmetic; fp32 = all float32; fp16 = fp16 storage (uint16
bits), float32 vectors and arithmetic (the "mixed" policy). Each time is the min over repeats after a warm-up.

    python benchmarks/kernels.py [--repeats 20] [--acc16]

All three problems fit in a 32 MiB L3 (fp64 BA: 18 MB), so on such a CPU the kernels are compute/latency bound
and the bytes saved by narrower storage barely show.
"""
from __future__ import annotations

import argparse
from functools import partial

import numpy as np

from mixslam.bench.fig7_kernels import tmin
from mixslam.kernels import ic0_factor, ic_solve, jac_matvec, jac_rmatvec, normal_matvec, two_block_normal_lower
from mixslam.precision import Precision
from mixslam.storage import kernel_array, quantize


def pose_graph(n, p, R, rng):
    ia = np.arange(n - 1)
    ib = np.arange(1, n)
    m = R - (n - 1)
    lc = rng.integers(0, n, (2 * m, 2))
    lc = lc[lc[:, 0] != lc[:, 1]][:m]
    ia = np.concatenate([ia, lc[:, 0]])
    ib = np.concatenate([ib, lc[:, 1]])
    R = ia.size
    A = rng.standard_normal((R, p, p))
    B = -np.eye(p) + 0.1 * rng.standard_normal((R, p, p))
    return dict(A=A, ia=ia, B=B, ib=ib, na=n, nb=n, alias=True)


def ba(ncam, npts, R, rng):
    ia = rng.integers(0, ncam, R)
    ib = rng.integers(0, npts, R)
    A = rng.standard_normal((R, 2, 9))
    B = rng.standard_normal((R, 2, 3))
    return dict(A=A, ia=ia, B=B, ib=ib, na=ncam, nb=npts, alias=False)


def store(M, fmt):
    """``M`` as the kernels read it in ``fmt``, rounded as the solvers round it (fp16 via fp32: uint16 bits)."""
    precision = Precision.parse(fmt)
    return kernel_array(quantize(M, precision)[0], precision)


def bench_problem(name, P, repeats, acc16, rng, with_ic):
    R, k, pa = P["A"].shape
    pb = P["B"].shape[2]
    na, nb = P["na"], P["nb"]
    res = {}
    fmts = ["fp64", "fp32", "fp16"] + (["fp16a16"] if acc16 else [])
    ic_pat = None
    if with_ic:
        indptr, indices, blocks = two_block_normal_lower(P["A"], P["ia"], P["B"], P["ib"], na, diag=1e-3)
        shift = 0.0
        while True:
            L, ok, _ = ic0_factor(indptr, indices, blocks, shift)
            if ok:
                break
            shift = max(1e-3, 10 * shift)
        ic_pat = (indptr, indices, L)
    for fmt in fmts:
        sfmt = "fp16" if fmt == "fp16a16" else fmt
        a16 = fmt == "fp16a16"
        vd = np.float64 if fmt == "fp64" else np.float32
        A, B = store(P["A"], sfmt), store(P["B"], sfmt)
        ia, ib = P["ia"], P["ib"]
        xa = rng.standard_normal((na, pa)).astype(vd)
        xb = xa if P["alias"] else rng.standard_normal((nb, pb)).astype(vd)
        y = rng.standard_normal((R, k)).astype(vd)
        ga = np.empty((na, pa), vd)
        gb = ga if P["alias"] else np.empty((nb, pb), vd)
        yo = np.empty((R, k), vd)
        mbytes = A.nbytes + B.nbytes + ia.nbytes + ib.nbytes
        vb = np.dtype(vd).itemsize
        vec_in = xa.nbytes + (0 if P["alias"] else xb.nbytes)
        vec_g = ga.nbytes + (0 if P["alias"] else gb.nbytes)
        r = {}
        r["matvec"] = (tmin(partial(jac_matvec, A, ia, B, ib, xa, xb, yo, a16), repeats),
                       mbytes + vec_in + R * k * vb)
        r["rmatvec"] = (tmin(partial(jac_rmatvec, A, ia, B, ib, y, ga, gb, a16), repeats),
                        mbytes + R * k * vb + 2 * vec_g)
        r["normal"] = (tmin(partial(normal_matvec, A, ia, B, ib, xa, xb, ga, gb, a16), repeats),
                       mbytes + vec_in + 2 * vec_g)
        if ic_pat is not None:
            indptr, indices, L = ic_pat
            Ls = store(L, sfmt)
            b = rng.standard_normal((na, pa)).astype(vd)
            x = np.empty_like(b)
            # the factor is read twice (forward and backward); x is read/written ~3 times
            r["ic_solve"] = (tmin(partial(ic_solve, indptr, indices, Ls, b, x, a16), repeats),
                             2 * (Ls.nbytes + indices.nbytes + indptr.nbytes) + b.nbytes + 3 * x.nbytes)
        res[fmt] = r
    print(f"\n{name}: R={R} k={k} pa={pa} pb={pb} na={na} nb={nb}"
          + (f" nnzb(L)={ic_pat[1].size}" if ic_pat else ""))
    hdr = f"  {'kernel':9s}" + "".join(f" {f + ' us':>10s} {f + ' MB':>8s}" for f in fmts)
    hdr += f" {'fp32/fp64':>10s} {'fp16/fp32':>10s}" + (f" {'a16/fp32':>9s}" if acc16 else "")
    print(hdr)
    for kern in res["fp64"]:
        line = f"  {kern:9s}"
        for f in fmts:
            t, nbytes = res[f][kern]
            line += f" {t * 1e6:10.1f} {nbytes / 1e6:8.2f}"
        t64, t32, t16 = (res[f][kern][0] for f in ("fp64", "fp32", "fp16"))
        line += f" {t32 / t64:10.2f} {t16 / t32:10.2f}"
        if acc16:
            line += f" {res['fp16a16'][kern][0] / t32:9.2f}"
        print(line)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--acc16", action="store_true", help="also time emulated fp16 arithmetic")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--large", action="store_true",
                    help="also a BA problem 20x larger than L3 (1.6M observations: fp32 Jacobian 154 MB)")
    args = ap.parse_args(argv)
    rngs = [np.random.default_rng([args.seed, i]) for i in range(3)]  # problems independent of the flags
    bench_problem("city10000-like (2-D PGO)", pose_graph(10000, 3, 20687, rngs[0]), args.repeats, args.acc16,
                  rngs[0], True)
    bench_problem("sphere-like (3-D PGO)", pose_graph(2500, 6, 4949, rngs[1]), args.repeats, args.acc16,
                  rngs[1], True)
    bench_problem("BA-like", ba(100, 20000, 80000, rngs[2]), args.repeats, args.acc16, rngs[2], False)
    if args.large:
        rng = np.random.default_rng([args.seed, 3])
        bench_problem("BA-like, out of cache", ba(2000, 400000, 1600000, rng), max(3, args.repeats // 4),
                      args.acc16, rng, False)
    print("\nus = min time per call; MB = bytes moved per call (matrix + indices + vectors, each once);"
          " ratios < 1 mean the narrower format is faster")


if __name__ == "__main__":
    main()
