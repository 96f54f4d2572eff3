"""Benchmark of the fp64 sparse Cholesky backends on the normal matrices of the real pose-graph datasets.

For each dataset only the edge endpoints (i, j) of the ``EDGE_SE2`` / ``EDGE_SE3:QUAT`` lines are read; pose
0 (the smallest id) is fixed and dropped. The Jacobian gets one random row block per edge (3x3 blocks in
2-D, 6x6 in 3-D, standard normal values, seeded) and H = JᵀJ + 1e-6·I: an SPD matrix with exactly the block
pattern of that dataset's Gauss-Newton normal matrix.

Per candidate: the ordering / symbolic analysis once ("analyze"), then the numeric factorization with the
analysis reused ("factor", what every LM iteration pays), one solve, and the relative residual
‖Hx - b‖/‖b‖. Times are the best of ``--repeats`` runs after a warm-up. The ratio column is the scipy
backend's (factor + solve) divided by the candidate's: > 1 is faster than scipy.

Candidates: every backend of :class:`mixslam.linear.direct.SparseCholesky` that is installed, plus, for
reference, plain ``scipy.sparse.linalg.splu`` with its default COLAMD ordering and no reuse (what
``spsolve`` does) and ``cholespy`` / ``sksparse-minimal`` when installed (they cannot refactor with a
kept analysis: their "factor" is a full analyze + factorize).

    python benchmarks/direct_solvers.py [--repeats 5] [--datasets city10000 torus3D] [--backends cvxopt scipy]

Data: ``$MIXSLAM_DATA/pgo`` or ``<repo>/../shared/data/pgo``; missing files are skipped.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mixslam.linear.direct import SparseCholesky, available_backends

DATASETS = [  # (file, block size)
    ("city10000.g2o", 3), ("ais2klinik.g2o", 3), ("sphere2500.g2o", 6), ("torus3D.g2o", 6),
    ("cubicle.g2o", 6), ("parking-garage.g2o", 6),
]


def find_data() -> Path | None:
    env = os.environ.get("MIXSLAM_DATA", "").strip()
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    repo = Path(__file__).resolve().parents[1]
    p = repo.parent / "shared" / "data"
    return p if p.is_dir() else None


def read_edges(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ii, jj = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("EDGE_SE2 ") or line.startswith("EDGE_SE3:QUAT "):
                t = line.split(None, 3)
                ii.append(int(t[1]))
                jj.append(int(t[2]))
    return np.asarray(ii, dtype=np.int64), np.asarray(jj, dtype=np.int64)


def normal_matrix(path: Path, d: int, seed: int = 0) -> sp.csc_matrix:
    """H = JᵀJ + 1e-6 I (full symmetric CSC, sorted) with the block pattern of the dataset's edges."""
    ei, ej = read_edges(path)
    ids = np.unique(np.concatenate([ei, ej]))
    a = np.searchsorted(ids, ei) - 1  # ids[0] is the fixed pose: -1
    b = np.searchsorted(ids, ej) - 1
    nv, m = ids.size - 1, a.size
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    r0 = np.arange(m)[:, None, None] * d + np.arange(d)[None, :, None]
    for v in (a, b):
        keep = v >= 0
        c0 = v[keep][:, None, None] * d + np.arange(d)[None, None, :]
        rr = np.broadcast_to(r0[keep], (int(keep.sum()), d, d))
        cc = np.broadcast_to(c0, rr.shape)
        rows.append(rr.ravel())
        cols.append(cc.ravel())
        vals.append(rng.standard_normal(rr.size))
    J = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m * d, nv * d))
    H = (J.T @ J + 1e-6 * sp.identity(nv * d)).tocsc()
    H.sort_indices()
    return H


# -- candidates ---------------------------------------------------------------------------------------------
class Mixslam:
    """A SparseCholesky backend: analyze = constructor, factor = factorize(H)."""

    def __init__(self, backend):
        self.name = backend
        self.backend = backend

    def analyze(self, H):
        self.c = SparseCholesky(H, backend=self.backend)

    def factorize(self, H):
        self.c.factorize(H)

    def solve(self, b):
        return self.c.solve(b)


class MixslamFp32Refined:
    """The mixed-precision direct solve: fp32 supernodal factor, then PCG with fp64 vectors and the fp64 H to
    the relative residual 1e-10 (what ``--precision mixed`` does per LM step, without the factor reuse)."""

    name = "mixslam-fp32+pcg"

    def analyze(self, H):
        self.c = SparseCholesky(H, backend="mixslam", dtype=np.float32)

    def factorize(self, H):
        self.H = H
        self.c.factorize(H)

    def solve(self, b):
        from mixslam.linear.refinement import refine

        return refine(self.H.dot, self.c.solve, b, 1e-10, 0, 200).x


class ScipyNoReuse:
    name = "splu-colamd"  # scipy.sparse.linalg.splu defaults, as spsolve: COLAMD + partial pivoting, no reuse

    def analyze(self, H):
        pass

    def factorize(self, H):
        self.lu = spla.splu(H)

    def solve(self, b):
        return self.lu.solve(b)


class Cholespy:
    name = "cholespy"

    def analyze(self, H):
        from cholespy import CholeskySolverD, MatrixType
        self.cls, self.mt = CholeskySolverD, MatrixType

    def factorize(self, H):
        self.s = self.cls(H.shape[0], H.indptr.astype(np.int32), H.indices.astype(np.int32), H.data,
                          self.mt.CSC)

    def solve(self, b):
        x = np.zeros_like(b)
        self.s.solve(np.ascontiguousarray(b), x)
        return x


class SksparseMinimal:
    name = "sksparse-minimal"

    def analyze(self, H):
        from sksparse_minimal import SparseCholesky as S
        self.S = S

    def factorize(self, H):
        self.s = self.S(H)

    def solve(self, b):
        return self.s.solve_A(b)


def _installed(mod: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(mod) is not None


def candidates(selected: list[str] | None):
    out = [Mixslam(b) for b in available_backends()]
    out.append(MixslamFp32Refined())
    out.append(ScipyNoReuse())
    # cholespy and sksparse-minimal ship the same nanobind extension type and cannot share a process.
    if _installed("cholespy"):
        out.append(Cholespy())
    elif _installed("sksparse_minimal"):
        out.append(SksparseMinimal())
    if selected:
        out = [c for c in out if c.name in selected]
    return out


def best(f, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--datasets", nargs="*", help="dataset stems (default: all six)")
    ap.add_argument("--backends", nargs="*", help="candidate names (default: all installed)")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads for every candidate (default 1, as in the LM solves: threadpoolctl)")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=args.threads, user_api="blas"):
        return _run(args)


def _run(args) -> int:

    data = find_data()
    if data is None or not (data / "pgo").is_dir():
        print("no data folder (set MIXSLAM_DATA or put shared/data next to the repository)", file=sys.stderr)
        return 0
    cands = candidates(args.backends)
    print(f"# installed backends (auto order): {available_backends()}; cpus: {os.cpu_count()}; "
          f"BLAS threads: {args.threads}; best of {args.repeats}; times in ms")
    summary = {}
    for fname, d in DATASETS:
        stem = fname.rsplit(".", 1)[0]
        if args.datasets and stem not in args.datasets:
            continue
        path = data / "pgo" / fname
        if not path.is_file():
            print(f"\n{fname}: missing, skipped")
            continue
        H = normal_matrix(path, d)
        n = H.shape[0]
        b = np.random.default_rng(1).standard_normal(n)
        print(f"\n## {stem}: n = {n} ({n // d} poses x {d}), nnz(H) = {H.nnz}")
        print(f"| {'candidate':16s} | {'analyze':>8s} | {'factor':>8s} | {'solve':>7s} | {'fact+solve':>10s} "
              f"| {'vs scipy':>8s} | {'rel. residual':>13s} |")
        print(f"|{'-' * 18}|{'-' * 10}|{'-' * 10}|{'-' * 9}|{'-' * 12}|{'-' * 10}|{'-' * 15}|")
        rows = []
        for c in cands:
            try:
                t = time.perf_counter()
                c.analyze(H)
                ta = time.perf_counter() - t
                c.factorize(H)
                tf = best(partial(c.factorize, H), args.repeats)
                x = c.solve(b)
                ts = best(partial(c.solve, b), args.repeats)
                res = float(np.linalg.norm(H @ x - b) / np.linalg.norm(b))
                rows.append((c.name, ta, tf, ts, res))
            except Exception as e:  # report and go on
                rows.append((c.name, None, None, None, f"{type(e).__name__}: {e}"))
        ref = next((r[2] + r[3] for r in rows if r[0] == "scipy" and r[2] is not None), None)
        for name, ta, tf, ts, res in rows:
            if tf is None:
                print(f"| {name:16s} | failed: {res}")
                continue
            ratio = f"{ref / (tf + ts):7.2f}x" if ref else "      -"
            print(f"| {name:16s} | {ta * 1e3:8.1f} | {tf * 1e3:8.1f} | {ts * 1e3:7.2f} | {(tf + ts) * 1e3:10.1f} "
                  f"| {ratio:>8s} | {res:13.1e} |")
            summary.setdefault(name, {})[stem] = (tf + ts, ref)
        sys.stdout.flush()

    if summary:
        stems = [f.rsplit(".", 1)[0] for f, _ in DATASETS
                 if any(f.rsplit(".", 1)[0] in v for v in summary.values())]
        print("\n## factor + solve (ms), speed-up vs scipy in brackets, geometric mean of the speed-ups last")
        print("| candidate | " + " | ".join(stems) + " | geo-mean |")
        print("|---|" + "---|" * (len(stems) + 1))
        for name, per in summary.items():
            cells, sps = [], []
            for s in stems:
                if s in per:
                    t, ref = per[s]
                    cells.append(f"{t * 1e3:.1f} ({ref / t:.1f}x)" if ref else f"{t * 1e3:.1f}")
                    if ref:
                        sps.append(ref / t)
                else:
                    cells.append("-")
            gm = f"{np.exp(np.mean(np.log(sps))):.2f}x" if sps else "-"
            print(f"| {name} | " + " | ".join(cells) + f" | {gm} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
