"""Two threads against one for the kernels that split their work into chunks or lanes (issue 17: "both cores
used where it pays ... results identical across thread counts"), side by side in one run.

Per case, the variants run interleaved (one call each per round, ``--rounds`` rounds after a warm-up) and the
best time of each is kept; the ratio is one thread's best over two threads' best, and every case checks that
both give the same bits. Cases:

* the supernodal triangular solve (fp32 and fp16 panels, fp64 vectors) on a generated 200,000-pose grid
  (``generate_pose_graph('grid2d', ...)``; its factor is far beyond the L3 share of one core) and on
  city10000 / sphere2500 when the data folder is present: the two lanes of ``kernels.supernodal.lane_split``;
* bundle adjustment's Schur elimination (point blocks + reduced camera system), its right-hand side and
  back-substitution, the BAL residual/Jacobian kernel, and the whole fp64 Schur solve, on problem-16-22106
  and problem-49-7776 (data folder) or a generated BAL problem;
* the fused normal product JᵀJ·p (fp32 and 16-bit storage) on the same problems.

    python benchmarks/threads.py [--rounds 15] [--poses 200000] [--out docs/results/threads.txt]

Machine noise: times are the best of interleaved rounds; compare the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roofline import fraction  # noqa: E402

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def interleaved(fns: dict, rounds: int) -> dict:
    """Best time of each callable over ``rounds`` rounds (one call each per round, after one warm-up call)."""
    for f in fns.values():
        f()
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def with_threads(n: int, fn):
    def run():
        old = os.environ.get("MIXSLAM_THREADS")
        os.environ["MIXSLAM_THREADS"] = str(n)
        try:
            return fn()
        finally:
            if old is None:
                del os.environ["MIXSLAM_THREADS"]
            else:
                os.environ["MIXSLAM_THREADS"] = old

    return run


def compare(label: str, fn, rounds: int, nbytes: float | None = None, level: str = "mem") -> str:
    """One line: 1 thread, 2 threads, ratio, identical results, bandwidth of the two-thread run."""
    out1, out2 = with_threads(1, fn)(), with_threads(2, fn)()
    same = all(np.array_equal(a, b) for a, b in zip(_flat(out1), _flat(out2)))
    t = interleaved({"1": with_threads(1, fn), "2": with_threads(2, fn)}, rounds)
    bw = ""
    if nbytes:
        bw = f"  | 1t {fraction(nbytes / t['1'], level=level, cores=1)}; 2t {fraction(nbytes / t['2'], level=level, cores=2)}"
    return f"{label:44s} 1t {t['1'] * 1e3:9.2f} ms  2t {t['2'] * 1e3:9.2f} ms  {t['1'] / t['2']:5.2f}x  identical {same}{bw}"


def _flat(x):
    if isinstance(x, (tuple, list)):
        out = []
        for v in x:
            out += _flat(v)
        return out
    return [np.asarray(x)]


def supernodal_cases(H, label: str, rounds: int, lines: list) -> None:
    import scipy.sparse as sp

    from mixslam.linear.supernodal import SupernodalCholesky

    Hl = sp.tril(H).tocsc()
    Hl.sort_indices()
    ch = SupernodalCholesky(H.shape[0], Hl.indptr, Hl.indices)
    lines.append(
        f"{label}: n {H.shape[0]}, ordering {ch.ordering}, {ch.nsuper} supernodes, {ch.poff[-1]:,} panel entries, "
        f"lanes {ch.lanes}"
    )
    if ch.lanes is None:
        lines.append("  no lanes (below LANE_MIN_ENTRIES, or no split brings the estimate to LANE_MAX_TIME): one thread by design")
        return
    ch.factorize(Hl.data, np.float32)
    b = np.random.default_rng(0).standard_normal(H.shape[0])
    lines.append("  " + compare("solve, fp32 panels", lambda: ch.solve(b), rounds, 2.0 * ch.nbytes))
    ch.store16()
    lines.append("  " + compare("solve, fp16 panels", lambda: ch.solve(b), rounds, 2.0 * ch.nbytes))


def pose_graph_H(graph):
    from mixslam.linear.base import Damping
    from mixslam.pgo import PoseGraphProblem
    from mixslam.precision import PrecisionPolicy

    prob = PoseGraphProblem(graph, PrecisionPolicy.preset("mixed", "pgo"))
    lin = prob.linearize(prob.initial_state)
    return prob.pattern.assemble_csc(lin.A, lin.B, Damping(1e-4).diagonal(lin.column_sq_norms()))


def ba_cases(data, label: str, rounds: int, lines: list) -> None:
    from mixslam.ba import BundleProblem, optimize_bundle
    from mixslam.kernels.products import static_size
    from mixslam.kernels.schur import camera_pairs, padded_width, schur_back, schur_point_blocks, schur_reduce, schur_rhs
    from mixslam.precision import PrecisionPolicy
    from mixslam.problem import reprojection as rp

    lines.append(f"{label}: {data.num_cameras} cameras, {data.num_points} points, {data.num_observations} observations")
    prob = BundleProblem(data, PrecisionPolicy.preset("fp64", "ba"))
    lin = prob.linearize(prob.initial_state)
    pc, w = lin.p, padded_width(lin.p)
    pairs = camera_pairs(lin.ia, lin.ib, lin.nv, lin.nb)
    dc, dp = np.full((lin.nv, pc), 1e-4), np.full((lin.nb, 3), 1e-4)
    A, B = np.ascontiguousarray(lin.A), np.ascontiguousarray(lin.B)
    Z = np.empty((A.shape[0], 3, w))

    def eliminate():
        U, Linv, _ = schur_point_blocks(A, lin.ia, B, lin.ib, dc, dp, Z, static_size(pc), static_size(w))
        return schur_reduce(U, Z, *pairs, static_size(pc), static_size(w)), Linv

    S, Linv = eliminate()
    rc, rpnt = np.ones((lin.nv, pc)), np.ones((lin.nb, 3))

    def rhs_back():
        bc, t, dpt = np.empty_like(rc), np.empty_like(rpnt), np.empty_like(rpnt)
        schur_rhs(Z, Linv, lin.ia, lin.ib, rc, rpnt, bc, t)
        schur_back(Z, Linv, lin.ia, lin.ib, t, bc, dpt)
        return bc, dpt

    arrays = rp.bundle_arrays(data)
    lines.append("  " + compare("Schur elimination (point blocks + S), fp64", eliminate, rounds))
    lines.append("  " + compare("Schur right-hand side + back-substitution", rhs_back, rounds))
    lines.append("  " + compare("BAL residuals + Jacobians, fp64", lambda: rp.linearize(*arrays)[:3], rounds))
    lines.append("  " + compare("whole LM solve, fp64 Schur", lambda: optimize_bundle(data, precision="fp64")[0].cameras, max(3, rounds // 3)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--poses", type=int, default=200_000)
    ap.add_argument("--out", default=str(RESULTS / "threads.txt"))
    args = ap.parse_args()
    from mixslam.data import data_dir
    from mixslam.io import read_pose_graph
    from mixslam.io.bal import read_bal
    from mixslam.sim.generate import generate_pose_graph

    t0 = time.perf_counter()
    lines = [
        "two threads against one (benchmarks/threads.py): best of interleaved rounds; identical = the same bits",
        f"machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, load average "
        f"at start {os.getloadavg()[0]:.2f}; rounds {args.rounds}",
        "",
    ]
    graph, _ = generate_pose_graph("grid2d", args.poses, seed=0)
    supernodal_cases(pose_graph_H(graph), f"generated grid2d, {args.poses} poses", args.rounds, lines)
    root = data_dir()
    for name in ("city10000.g2o", "sphere2500.g2o"):
        if (root / "pgo" / name).is_file():
            supernodal_cases(pose_graph_H(read_pose_graph(root / "pgo" / name)), name, args.rounds, lines)
    for name in ("problem-16-22106-pre.txt", "problem-49-7776-pre.txt"):
        if (root / "ba" / name).is_file():
            ba_cases(read_bal(root / "ba" / name), name, args.rounds, lines)
    lines.append(f"wall time {time.perf_counter() - t0:.0f} s, load average at end {os.getloadavg()[0]:.2f}")
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
