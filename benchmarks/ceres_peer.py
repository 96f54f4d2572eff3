"""Ceres Solver as a same-machine peer for bundle adjustment (BAL files).

Builds ``benchmarks/ceres_bal.cc`` (our own small driver: autodiff BAL reprojection cost, Levenberg-Marquardt,
function_tolerance 1e-6, initial trust radius 1e4, points eliminated first) against the system Ceres
(Debian: ``apt-get install libceres-dev``) and runs it as a subprocess. The driver prints one JSON line, which
:func:`solve_with_ceres` returns as a dict; its costs use Ceres' convention 0.5 Σ r², the same as ours.

Use from another benchmark script (with ``benchmarks/`` on ``sys.path``)::

    from ceres_peer import ceres_available, solve_with_ceres
    if (why := ceres_available()) is None:
        res = solve_with_ceres(path, "DENSE_SCHUR")

Run as a script: DENSE_SCHUR, SPARSE_SCHUR and ITERATIVE_SCHUR (SCHUR_JACOBI) on problem-16-22106 and
problem-49-7776, each ``--repeat`` times; prints the minimum time, final cost (Ceres' and rescored with our
cost) and iterations. ``--ours`` also times our fp64 solver on the same files in the same run::

    python benchmarks/ceres_peer.py [--repeat 3] [--threads 1] [--ours]

Note on the gauge: Ceres is given every camera free (as in Ceres' examples); our reader fixes the pose of
camera 0 by default. Both report 0.5 Σ r² over all observations.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "ceres_bal.cc"
DEFAULT_CACHE = HERE / ".build"
CXX = os.environ.get("CXX", "g++")
CXXFLAGS = ["-O3", "-march=native", "-std=c++17", "-DNDEBUG"]
INCLUDE_ROOTS = ("/usr/include", "/usr/local/include")
LIBS = ["-lceres", "-lglog", "-lpthread"]
LINEAR_SOLVERS = ("DENSE_SCHUR", "SPARSE_SCHUR", "ITERATIVE_SCHUR")
#: (linear solver, preconditioner) runs of the script
RUNS = (("DENSE_SCHUR", None), ("SPARSE_SCHUR", None), ("ITERATIVE_SCHUR", "SCHUR_JACOBI"))
DEFAULT_FILES = ("problem-16-22106-pre.txt", "problem-49-7776-pre.txt")

_available: dict[Path, str | None] = {}


class CeresError(RuntimeError):
    """The driver could not be built or a solve failed."""


# ---------------------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------------------
def _find_include(rel: str) -> Path | None:
    for root in INCLUDE_ROOTS:
        if (Path(root) / rel).is_file():
            return Path(root)
    return None


def _cpu_model() -> str:
    """The CPU's model name: part of the cache key, since the binary is built with -march=native."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _command(out: Path) -> list[str]:
    eigen = _find_include("eigen3/Eigen/Core")
    incs = [f"-I{eigen / 'eigen3'}"] if eigen is not None else []
    return [CXX, *CXXFLAGS, *incs, str(SOURCE), "-o", str(out), *LIBS]


def build(cache_dir: str | os.PathLike | None = None) -> Path:
    """Compile the driver (cached under ``cache_dir``, default ``benchmarks/.build/``); returns the binary.

    The binary's name carries a hash of the source, the compile command and the CPU model, so an edit of the
    source, of the flags or a move to another machine rebuilds it. Raises :class:`CeresError` when the compile
    fails (with the compiler's last lines).
    """
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(" ".join(_command(Path("x"))).encode())
    key.update(_cpu_model().encode())
    out = cache / f"ceres_bal-{key.hexdigest()[:16]}"
    if out.is_file() and os.access(out, os.X_OK):
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    proc = subprocess.run(_command(tmp), capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise CeresError(f"compile failed ({' '.join(_command(out))}):\n{tail}")
    tmp.replace(out)  # atomic: a concurrent build of the same key is harmless
    return out


def ceres_available(cache_dir: str | os.PathLike | None = None) -> str | None:
    """None when the driver builds (it is then cached), else the reason: no compiler, no headers, compile
    failed."""
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    if cache in _available:
        return _available[cache]
    why: str | None = None
    if shutil.which(CXX) is None:
        why = f"no C++ compiler ({CXX} not found)"
    elif _find_include("ceres/ceres.h") is None:
        why = "no Ceres headers (ceres/ceres.h); install libceres-dev"
    elif _find_include("eigen3/Eigen/Core") is None:
        why = "no Eigen headers (eigen3/Eigen/Core); install libeigen3-dev"
    else:
        try:
            build(cache)
        except (CeresError, OSError) as e:
            why = str(e)
    _available[cache] = why
    return why


# ---------------------------------------------------------------------------------------------------------
# solve
# ---------------------------------------------------------------------------------------------------------
def solve_with_ceres(
    bal_path,
    linear_solver: str = "DENSE_SCHUR",
    threads: int = 1,
    max_iterations: int = 100,
    params_out=None,
    preconditioner: str | None = None,
    cache_dir=None,
) -> dict:
    """Solve a BAL file with Ceres; returns the driver's JSON as a dict.

    Keys: ``linear_solver``, ``preconditioner``, ``sparse_library``, ``threads``, ``initial_cost``,
    ``final_cost`` (0.5 Σ r²), ``iterations`` (successful + unsuccessful), ``solver_time_s``
    (``Summary::total_time_in_seconds``: excludes reading the file), ``linear_solver_time_s``,
    ``termination``, ``message``, ``ceres_version``, plus the problem's counts. ``params_out``: where to
    write the final cameras and points (see :func:`read_params`). ``preconditioner``: a Ceres
    PreconditionerType name (default: Ceres' JACOBI; SCHUR_JACOBI suits ITERATIVE_SCHUR). A ``.bz2`` file is
    decompressed to a temporary file first. With ``threads=1`` OpenMP/BLAS threads are limited to one too.
    """
    exe = build(cache_dir)
    path = Path(bal_path)
    with tempfile.TemporaryDirectory(prefix="ceres_bal_") as tmpdir:
        if path.suffix == ".bz2":
            plain = Path(tmpdir) / path.stem
            with bz2.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            path = plain
        cmd = [str(exe), str(path), linear_solver, "--threads", str(threads), "--max-iterations", str(max_iterations)]
        if preconditioner:
            cmd += ["--preconditioner", preconditioner]
        if params_out is not None:
            cmd += ["--params-out", str(params_out)]
        env = dict(os.environ)
        if threads == 1:
            env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise CeresError(f"{' '.join(cmd)} exited {proc.returncode} without a result: {proc.stderr.strip()[-2000:]}")
    res = json.loads(lines[-1])
    res["returncode"] = proc.returncode
    return res


def read_params(path) -> tuple[np.ndarray, np.ndarray]:
    """(cameras (nc, 9), points (np, 3)) from a ``params_out`` file of the driver."""
    with open(path) as f:
        nc, npt = (int(v) for v in f.readline().split())
        vals = np.array(f.read().split(), dtype=np.float64)
    if vals.size != 9 * nc + 3 * npt:
        raise CeresError(f"{path}: expected {9 * nc + 3 * npt} numbers, found {vals.size}")
    return vals[: 9 * nc].reshape(nc, 9), vals[9 * nc :].reshape(npt, 3)


def rescore(data, params_path) -> float:
    """Our fp64 cost 0.5 Σ r² (``mixslam.problem.reprojection.cost``) of the driver's final parameters on
    ``data`` (a BAL :class:`~mixslam.problem.bundle.BundleData`)."""
    from mixslam.problem import reprojection

    cams, pts = read_params(params_path)
    return reprojection.cost(*reprojection.bundle_arrays(data, cams, pts))


# ---------------------------------------------------------------------------------------------------------
# script
# ---------------------------------------------------------------------------------------------------------
def _data_root() -> Path | None:
    env = os.environ.get("MIXSLAM_DATA", "").strip()
    if env:
        return Path(env).expanduser()
    for cand in (HERE.parent.parent / "shared" / "data", Path("/work/shared/data")):
        if cand.is_dir():
            return cand
    return None


def _find_problem(root: Path | None, name: str) -> Path | None:
    for cand in (Path(name), *((root / "ba" / name, root / "ba" / (name + ".bz2")) if root else ())):
        if cand.is_file():
            return cand
    return None


def _time_ours(data, repeat: int) -> tuple[float, float, float, int, str]:
    """(min wall seconds, its report's timing["total"], final cost, LM iterations, status) of our fp64 solver
    (default settings, as ``optimize_bundle(data, precision="fp64")``), after one warm-up solve."""
    from mixslam.ba import optimize_bundle

    optimize_bundle(data, precision="fp64")  # warm-up (numba compile/load, caches)
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        _, rep = optimize_bundle(data, precision="fp64")
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, rep)
    assert best is not None
    dt, rep = best
    return dt, float(rep.timing.get("total", np.nan)), float(rep.final_cost), int(rep.iterations), str(rep.status)


def _num(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", default=list(DEFAULT_FILES), help="BAL files (names under $MIXSLAM_DATA/ba)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-iterations", type=int, default=100)
    ap.add_argument("--ours", action="store_true", help="also time our fp64 solver (min of --repeat after a warm-up)")
    ap.add_argument("--no-rescore", action="store_true", help="skip rescoring Ceres' answer with our cost")
    args = ap.parse_args(argv)

    why = ceres_available()
    if why is not None:
        print(f"Ceres unavailable: {why}")
        return 1
    exe = build()
    print(f"driver: {exe} (built with {' '.join(_command(exe)[:1] + CXXFLAGS)})")
    print(f"cpu: {_cpu_model()}; os.cpu_count()={os.cpu_count()}; threads={args.threads}; repeat={args.repeat}")

    root = _data_root()
    rows = []
    for name in args.files:
        path = _find_problem(root, name)
        if path is None:
            print(f"skip {name}: not found (data root {root}; set MIXSLAM_DATA)")
            continue
        data = None
        if not args.no_rescore or args.ours:
            from mixslam.io.bal import read_bal

            data = read_bal(path)
        for solver, pre in RUNS:
            best, costs = None, []
            with tempfile.TemporaryDirectory(prefix="ceres_peer_") as tmp:
                params = Path(tmp) / "params.txt"
                for _ in range(args.repeat):
                    res = solve_with_ceres(path, solver, args.threads, args.max_iterations, params, pre)
                    costs.append(res["final_cost"])
                    if best is None or res["solver_time_s"] < best["solver_time_s"]:
                        best = res
                ours_cost = rescore(data, params) if data is not None and not args.no_rescore else float("nan")
            assert best is not None
            label = solver + (f"/{pre}" if pre else "")
            rows.append(
                (
                    path.name,
                    f"ceres {label}",
                    best["solver_time_s"],
                    best["linear_solver_time_s"],
                    best["iterations"],
                    best["initial_cost"],
                    best["final_cost"],
                    ours_cost,
                    best["termination"],
                )
            )
            if max(costs) != min(costs):
                print(f"note: {path.name} {label}: final cost varies over repeats: {min(costs)!r} .. {max(costs)!r}")
        if args.ours:
            assert data is not None
            try:
                dt, total, cost, its, status = _time_ours(data, args.repeat)
            except Exception as e:  # our solver failing must not lose the Ceres table
                print(f"ours fp64 {path.name}: failed: {type(e).__name__}: {e}")
                continue
            print(f"ours fp64 {path.name}: min wall {dt:.3f} s (report timing total {total:.3f} s)")
            rows.append(
                (path.name, "ours fp64 (wall, default solver)", dt, float("nan"), its, float("nan"), cost, cost, status)
            )

    head = ("problem", "solver", "min s", "lin s", "iters", "initial cost", "final cost", "our cost", "termination")
    fmt = "{:<26} {:<38} {:>7} {:>7} {:>5} {:>14} {:>16} {:>16} {}"
    print()
    print(fmt.format(*head))
    for p, s, t, tl, it, c0, c1, co, term in rows:
        print(
            fmt.format(
                p, s, _num(t, ".3f"), _num(tl, ".3f"), it, _num(c0, ".6e"), _num(c1, ".9e"), _num(co, ".9e"), term
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
