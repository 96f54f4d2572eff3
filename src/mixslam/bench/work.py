"""Figures 6-7: where the work of a mixed-precision solve goes, and how fast each precision is.

Problems (both figures). **BA**: ``sizes.ba_window_seeds`` simulated 50-keyframe sliding windows
(:func:`~mixslam.sim.bundle.simulate_window` with the default :class:`~mixslam.sim.bundle.WindowConfig`, seed
0, 1, ...) and, when ``sizes.use_data`` and the data folder is there, the BAL files of ``sizes.ba_files``.
**PGO**: one simulated sphere graph (:func:`~mixslam.sim.pose_graph.simulate_pose_graph`, ``"sphere"``, seed
0, :data:`PGO_SIM_POSES` poses) and, with the data, the g2o files of ``sizes.pgo_files``. Every PGO solve
starts from the chordal initial guess, computed once per graph and passed as the graph's poses (``init=
"file"``), so the initialization is not timed. BA solves use the :class:`~mixslam.ba.BAConfig` defaults, PGO
solves the :class:`~mixslam.pgo.PGOConfig` defaults (LM at most 100 iterations, CG at most 500 per solve,
IC(2) static factor refreshed when CG stalls). A whole solve's time is the minimum over ``sizes.repeats``
runs (these machines are noisy); numba compilation is done before anything is timed. Everything runs
sequentially in the main process. Figure 7 reuses the whole solves figure 6 made in the same run.

6. **Where the work goes** (:func:`figure6`), for BA (CGNR, block-Jacobi) and PGO (CG on the normal equations
   with the static IC preconditioner), per policy fp64 / fp32 / mixed:

   (a) the share of a CG iteration spent in the Jacobian products (the fused JᵀJ·p pass);
   (b) PGO: the share of each linear solve spent in the IC triangular solves (the preconditioner apply);
   (c) the share of the LM time (``timing["total"]`` less setup and initialization) in the Jacobian
       evaluation (``timing["jacobian"]``) and in the linear solves (``timing["linear_solve"]``), from the
       :class:`~mixslam.solve.report.SolveReport` of the fastest of the whole solves.

   (a) and (b) are given three ways. *Counted flops* and *counted bytes* come from the analytic model of
   :func:`iteration_work` and :func:`ic_setup_work` (per CG iteration for (a); for (b), per linear solve: the
   per-solve setup plus the measured mean number of CG iterations per solve times the per-iteration work),
   evaluated with the block sizes, counts and the formats the solve really used (bytes per stored Jacobian
   and IC-factor entry read back from ``report.extra["memory"]``). *Time* is measured inside one real whole
   solve: :func:`instrumented_pcg` wraps the CG routine the solvers call so that every ``normal_matvec`` of
   the quantized operator and every preconditioner apply is timed; (a) is the products' time over the time
   of the CG loops, (b) the preconditioner applies' time over the solve's ``timing["linear_solve"]`` (which
   also holds the per-solve setup and the IC factorizations). (c) has no counted model (its cells are
   empty). Claims: (a) 83 % for BA, (b) 50 % for PGO, (c) 15 % Jacobian and 60 % linear solve (put on the
   mixed rows, the claim's configuration).

7. **Speed ratios** (:func:`figure7`):

   (a) per kernel: J·x (``jac_matvec``), Jᵀ·y (``jac_rmatvec``), the fused JᵀJ·p (``normal_matvec``) and the
       IC triangular solve (``ic_solve``, pose graphs) on the column-scaled Jacobian of a simulated BA window
       (and of the first BAL data file, with the data), of a simulated 3-D sphere graph (sphere2500-like) and
       of a simulated 2-D Manhattan graph (city10000-like; sizes in :data:`KERNEL_GRAPHS`), stored in fp64
       (fp64 vectors and arithmetic), fp32, and fp16 (fp16 storage, fp32 vectors and arithmetic: the
       ``mixed`` policies). Time: minimum over ``sizes.kernel_repeats`` calls after a warm-up call. Bytes:
       the model of ``benchmarks/kernels.py`` (matrix, index arrays and vectors, each moved once per call;
       the IC factor twice).
   (b) end to end: whole solves, BA by fp64 Schur and fp64 / fp32 / mixed CGNR, PGO by fp64 Cholesky and
       fp64 / fp32 / mixed IC: time, linear-solve time, final cost relative to the fp64 direct solve, and
       the memory the Jacobian and the preconditioner hold (``report.extra["memory"]``).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .context import BenchContext, FigureResult, new_figure, save_figure
from .report import fp16_arithmetic_note

POLICIES = ("fp64", "fp32", "mixed")
"""The precision policies compared (the ``ba`` / ``pgo`` presets of those names)."""
CG_SOLVER = {"ba": "cgnr", "pgo": "ic"}
"""The iterative solver of each problem kind."""
DIRECT_SOLVER = {"ba": "schur", "pgo": "cholesky"}
"""The fp64 direct solver of each problem kind (the accuracy and speed baseline of figure 7)."""
PGO_SIM_POSES = {"quick": 400, "default": 2500, "full": 2500}
"""Poses of the simulated sphere graph, per bench scale."""
KERNEL_GRAPHS = {"quick": (("pgo3d", "sphere", 400), ("pgo2d", "manhattan", 1000)),
                 "default": (("pgo3d", "sphere", 2500), ("pgo2d", "manhattan", 10000)),
                 "full": (("pgo3d", "sphere", 2500), ("pgo2d", "manhattan", 10000))}
"""Figure 7(a)'s pose graphs per scale: (short name, simulator kind, poses). A 10,000-pose Manhattan graph
has about 23,000 edges (city10000: 20,687)."""
CLAIMS = {"products": 0.83, "ic_solve": 0.50, "jacobian": 0.15, "linear": 0.60}
"""Figure 6's claimed shares: BA products / CG iteration, PGO IC solves / linear solve, Jacobian / LM,
linear solve / LM."""
CLAIM_LINEAR_MIXED_OVER_FP32 = {"ba": 0.59, "pgo": 0.74}
"""Figure 7's claimed end-to-end linear-solve time ratios mixed / fp32."""
INDEX_BYTES = 8
"""Bytes of an index (the kernels' index arrays are int64)."""
L3_BYTES_DEFAULT = 32 * 2 ** 20
"""Last-level cache assumed when ``/sys`` does not tell (the bench machine: 32 MiB L3)."""
KERNELS = ("jac_matvec", "jac_rmatvec", "normal_matvec", "ic_solve")
KERNEL_LABELS = {"jac_matvec": "J·x", "jac_rmatvec": "Jᵀ·y", "normal_matvec": "JᵀJ·p", "ic_solve": "IC solve"}
FORMATS = ("fp64", "fp32", "fp16")
_QUANTITIES = {
    "products": ("jacobian_products_share_of_cg_iteration", "Jacobian products / CG iteration"),
    "ic_solve": ("ic_triangular_solves_share_of_linear_solve", "IC triangular solves / linear solve"),
    "jacobian": ("jacobian_share_of_lm", "Jacobian evaluation / LM"),
    "linear": ("linear_solve_share_of_lm", "linear solve / LM"),
}


# ---------------------------------------------------------------------------------------------------------
# problems and whole solves (cached for the run: figure 7 reuses figure 6's)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Problem:
    kind: str
    """``ba`` or ``pgo``."""
    name: str
    data: object
    """BundleData (BA) or the PoseGraph at its chordal initial guess (PGO)."""
    simulated: bool


_CACHE: dict = {"ctx": None}
_WARM = {"done": False}


def _cache(ctx: BenchContext) -> dict:
    """Per-run cache (problems, whole solves): reset when a different context asks."""
    if _CACHE.get("ctx") is not ctx:
        _CACHE.clear()
        _CACHE.update(ctx=ctx, problems={}, solves={}, notes=[])
    return _CACHE


def _warm() -> None:
    """numba compilation / cache load of every kernel the solves use, on tiny problems, once per process."""
    if _WARM["done"]:
        return
    from ..ba import optimize_bundle
    from ..ba import warmup as ba_warmup
    from ..pgo import PGOConfig, optimize_pose_graph
    from ..pgo import warmup as pgo_warmup
    from ..sim.bundle import WindowConfig, simulate_window
    from ..sim.pose_graph import simulate_pose_graph
    from ..solve.config import LMConfig
    ba_warmup("pinhole")
    ba_warmup("bal")
    pgo_warmup()
    lm = LMConfig(max_iterations=2)
    win = simulate_window(WindowConfig(keyframes=12, landmarks_per_frame=30, fixed_frames=2), seed=0).data
    for prec, solver in (("fp64", "schur"),) + tuple((p, "cgnr") for p in POLICIES):
        optimize_bundle(win, precision=prec, solver=solver, lm=lm)
    for dim_kind in ("sphere", "manhattan"):
        g = simulate_pose_graph(dim_kind, 40, seed=0).graph
        for prec, solver in (("fp64", "cholesky"),) + tuple((p, "ic") for p in POLICIES):
            optimize_pose_graph(g, PGOConfig(precision=prec, solver=solver, init="chordal", lm=lm))
    _WARM["done"] = True


def problems(ctx: BenchContext, kind: str) -> list:
    """The figure's problems of ``kind`` (see the module docstring); missing data files are noted and skipped."""
    cache = _cache(ctx)
    if kind in cache["problems"]:
        return cache["problems"][kind]
    sizes = ctx.config.sizes
    out = []
    if kind == "ba":
        from ..sim.bundle import WindowConfig, simulate_window
        for i in range(int(sizes.ba_window_seeds)):
            seed = ctx.config.seed + i
            out.append(Problem("ba", f"ba-window-seed{seed}", simulate_window(WindowConfig(), seed=seed).data, True))
        for path in _data_files(ctx, "ba", sizes.ba_files):
            from ..io.bal import read_bal
            out.append(Problem("ba", path.name, read_bal(path), False))
    else:
        from ..pgo import initial_guess
        from ..sim.pose_graph import simulate_pose_graph
        n = PGO_SIM_POSES.get(ctx.config.scale, 2500)
        g = simulate_pose_graph("sphere", n, seed=ctx.config.seed).graph
        out.append(Problem("pgo", f"sphere{n}-sim", initial_guess(g, "chordal"), True))
        for path in _data_files(ctx, "pgo", sizes.pgo_files):
            from ..io import read_pose_graph
            out.append(Problem("pgo", path.name, initial_guess(read_pose_graph(path), "chordal"), False))
    cache["problems"][kind] = out
    return out


def _data_files(ctx: BenchContext, sub: str, names) -> list:
    from ..data import data_dir
    if not ctx.config.sizes.use_data or not names:
        return []
    root = data_dir()
    notes = _cache(ctx)["notes"]
    if root is None:
        msg = f"{sub.upper()} data files skipped: the data folder was not found (set MIXSLAM_DATA)."
        if msg not in notes:
            notes.append(msg)
        return []
    out = []
    for name in names:
        p = root / sub / name
        if p.is_file():
            out.append(p)
        else:
            msg = f"{sub}/{name} skipped: not in the data folder."
            if msg not in notes:
                notes.append(msg)
    return out


def _run_once(prob: Problem, precision: str, solver: str):
    if prob.kind == "ba":
        from ..ba import optimize_bundle
        return optimize_bundle(prob.data, precision=precision, solver=solver)[1]
    from ..pgo import PGOConfig, optimize_pose_graph
    return optimize_pose_graph(prob.data, PGOConfig(precision=precision, solver=solver, init="file"))[1]


def solve(ctx: BenchContext, prob: Problem, precision: str, solver: str):
    """The report of the fastest of ``sizes.repeats`` whole solves (cached for the run); None if it failed."""
    cache = _cache(ctx)
    key = (prob.kind, prob.name, precision, solver)
    if key not in cache["solves"]:
        best = None
        try:
            for _ in range(max(1, int(ctx.config.sizes.repeats))):
                rep = _run_once(prob, precision, solver)
                if best is None or rep.timing["total"] < best.timing["total"]:
                    best = rep
        except Exception as exc:  # one failing solve must not hide the others
            cache["notes"].append(f"{prob.name} {precision}/{solver} failed: {type(exc).__name__}: {exc}")
            best = None
        cache["solves"][key] = best
    return cache["solves"][key]


def lm_seconds(rep) -> float:
    """The LM loop's time: the report's total less problem setup and initialization."""
    t = rep.timing
    return t["total"] - t.get("setup", 0.0) - t.get("init", 0.0)


# ---------------------------------------------------------------------------------------------------------
# figure 6: instrumented CG and the analytic work model
# ---------------------------------------------------------------------------------------------------------
class _TimedOperator:
    """Delegates to a JacobianOperator, timing each ``normal_matvec``."""

    def __init__(self, op, acc: dict):
        self._op, self._acc = op, acc

    def normal_matvec(self, p_vec, out):
        t0 = time.perf_counter()
        r = self._op.normal_matvec(p_vec, out)
        self._acc["products_s"] += time.perf_counter() - t0
        self._acc["products_calls"] += 1
        return r

    def __getattr__(self, name):
        return getattr(self._op, name)


class _TimedPreconditioner:
    """Delegates to a preconditioner, timing each ``apply``."""

    def __init__(self, pre, acc: dict):
        self._pre, self._acc = pre, acc

    def apply(self, r):
        t0 = time.perf_counter()
        z = self._pre.apply(r)
        self._acc["preconditioner_s"] += time.perf_counter() - t0
        self._acc["preconditioner_calls"] += 1
        return z

    def __getattr__(self, name):
        return getattr(self._pre, name)


@contextlib.contextmanager
def instrumented_pcg():
    """Inside, the linear solvers' CG (``mixslam.linear.solvers.pcg``) times its operator products, its
    preconditioner applies and itself; yields the accumulator dict (seconds, calls, CG iterations)."""
    from ..linear import solvers
    acc = dict(products_s=0.0, products_calls=0, preconditioner_s=0.0, preconditioner_calls=0, cg_s=0.0,
               cg_iterations=0, cg_calls=0)
    real = solvers.pcg

    def pcg(op, damping, b, precond, arith, **kw):
        t0 = time.perf_counter()
        res = real(_TimedOperator(op, acc), damping, b,
                   None if precond is None else _TimedPreconditioner(precond, acc), arith, **kw)
        acc["cg_s"] += time.perf_counter() - t0
        acc["cg_iterations"] += res.iterations
        acc["cg_calls"] += 1
        return res

    solvers.pcg = pcg
    try:
        yield acc
    finally:
        solvers.pcg = real


def problem_dims(prob: Problem) -> dict:
    """Counts the work model needs: m row blocks, k rows per block, present Jacobian entries E (blocks of
    fixed variables are skipped by the kernels), stored entries Et, unknowns n; BA: the block-Jacobi
    entries; PGO: nv, p and the ia/ib arrays (for the IC pattern)."""
    from ..precision import PrecisionPolicy
    if prob.kind == "ba":
        from ..ba import BundleProblem
        bp = BundleProblem(prob.data, PrecisionPolicy.preset("fp64", "ba"))
        m, k, pc = int(bp.ia.size), 2, bp.pc
        E = k * (pc * int((bp.ia >= 0).sum()) + 3 * int((bp.ib >= 0).sum()))
        return dict(m=m, k=k, E=E, Et=m * k * (pc + 3), n=bp.nc * pc + 3 * bp.npts,
                    jacobi_entries=bp.nc * pc * pc + 9 * bp.npts, pre="jacobi")
    from ..pgo import PoseGraphProblem
    pp = PoseGraphProblem(prob.data, PrecisionPolicy.preset("fp64", "pgo"))
    m, p = int(pp.ia.size), pp.p
    E = p * p * (int((pp.ia >= 0).sum()) + int((pp.ib >= 0).sum()))
    return dict(m=m, k=p, E=E, Et=2 * m * p * p, n=pp.nv * p, nv=pp.nv, p=p, pre="ic", pattern=pp.pattern)


def iteration_work(d: dict, sj: float, vb: float, sp: float, nnzb: int = 0) -> dict:
    """(flops, bytes) of one CG iteration of :func:`mixslam.linear.cgnr.pcg`, split into its parts.

    ``sj``: bytes per stored Jacobian entry; ``vb``: bytes per Krylov vector entry; ``sp``: bytes per
    preconditioner entry (block-Jacobi inverse: held in the accumulation dtype; IC factor: its storage);
    ``nnzb``: blocks of the IC factor. A flop is one multiply or one add; every array is moved once.

    * products (the fused JᵀJ·p of ``normal_matvec``): 4 E flops (J·p then Jᵀ·t); bytes: the E present
      Jacobian entries, the two index arrays (m each), p read, the output zeroed and accumulated (3 n).
    * block-Jacobi apply: 2 flops per inverse entry; its entries, r read, z written, concatenated (4 n).
    * IC apply: forward and backward substitution, 2 p² flops per off-diagonal block and p (p + 1) per
      (inverse-triangular) diagonal block each way, plus the two diagonal corrections c ∘ ·; bytes: the
      factor, its block indices and row pointers twice, b read and x touched three times (4 n), and the
      corrections (c converted from fp64, c ∘ r and c ∘ x: 8 n + 7 n vector entries).
    * vector updates: d ∘ p + JᵀJ p, three axpy (x, r, p) and three dot products: 15 n flops, 20 vector
      passes of n.

    The periodic true-residual refresh (one more product every 50 iterations) is left out.
    """
    n = d["n"]
    prod = (4.0 * d["E"], d["E"] * sj + 2.0 * d["m"] * INDEX_BYTES + 3.0 * n * vb)
    if d["pre"] == "jacobi":
        P = d["jacobi_entries"]
        pre = (2.0 * P, P * sp + 4.0 * n * vb)
    else:
        nv, p = d["nv"], d["p"]
        flops = 2.0 * (2 * p * p * (nnzb - nv) + p * (p + 1) * nv) + 2.0 * n
        nbytes = (2.0 * (nnzb * p * p * sp + nnzb * INDEX_BYTES + (nv + 1) * INDEX_BYTES) + 4.0 * n * vb
                  + 8.0 * n + 7.0 * n * vb)
        pre = (flops, nbytes)
    vec = (15.0 * n, 20.0 * n * vb)
    return {"products": prod, "preconditioner": pre, "vectors": vec}


def ic_setup_work(d: dict, rb: float, sj: float, rhs32: bool) -> tuple:
    """(flops, bytes) of the once-per-linear-solve work of the IC solver outside its CG loop.

    ``rb``: bytes of a residual-precision Jacobian entry; ``sj``: of a stored entry; ``rhs32``: the policy
    computes Jᵀr in fp32 (an extra pass; the fp64 one is LM's, counted with the Jacobian). Column norms
    (2 E flops, E entries read), the fp32 right-hand side, scaling the Et stored entries into an fp64 buffer
    and storing it in the policy's format (read 8, write sj bytes: no copy in fp64), the new scale of the
    static factor (n), and the fp64 model decrease ‖J δ‖² (J converted to fp64 when it is fp32, one
    product). The IC factorization itself (once, or when CG stalls) is not counted.
    """
    E, Et, m, k, n = d["E"], d["Et"], d["m"], d["k"], d["n"]
    flops = 2.0 * E + (2.0 * E if rhs32 else 0.0) + Et + n + 2.0 * E + 2.0 * m * k + 2.0 * n
    nbytes = (E * rb + 8.0 * n
              + ((E * rb + m * k * rb + 4.0 * n) if rhs32 else 0.0)
              + Et * (rb + 8.0) + (Et * (8.0 + sj) if sj < 8 else 0.0)
              + 3.0 * 8.0 * n
              + (Et * (rb + 8.0) if rb < 8 else 0.0) + E * 8.0 + 2.0 * m * k * 8.0 + 8.0 * n)
    return flops, nbytes


def _instrumented(prob: Problem, precision: str, solver: str):
    with instrumented_pcg() as acc:
        rep = _run_once(prob, precision, solver)
    return rep, acc


def _share(num: float, den: float) -> float:
    return num / den if den > 0 and math.isfinite(num) and math.isfinite(den) else float("nan")


def _work_rows(prob: Problem, precision: str, rep_plain, rep_inst, acc: dict, dims: dict) -> list:
    """Figure 6's CSV rows of one (problem, policy)."""
    from ..precision import Precision, PrecisionPolicy
    pol = PrecisionPolicy.preset(precision, prob.kind)
    mem = rep_inst.extra.get("memory", {})
    sj = mem.get("jacobian_bytes", 0) / dims["Et"] if dims["Et"] else 8.0
    vb = float(pol.krylov.compute_dtype.itemsize)
    rows = []
    base = dict(problem=prob.name, kind=prob.kind, policy=precision, solver=CG_SOLVER[prob.kind])
    n_solves = max(len(rep_inst.history), 1)
    its_per_solve = acc["cg_iterations"] / n_solves
    info = dict(cg_iterations=acc["cg_iterations"], linear_solves=len(rep_inst.history),
                jacobian_bytes_per_entry=sj)
    if prob.kind == "ba":
        sp = float(pol.preconditioner_accumulate.compute_dtype.itemsize)
        w = iteration_work(dims, sj, vb, sp)
    else:
        ic = rep_inst.extra.get("ic", {})
        fill = ic.get("fill_level", 0)
        pattern = dims["pattern"]
        if ic.get("ordering") == "min-degree":  # the escalated factor (CGConfig.ic_escalate)
            pattern = pattern.with_min_degree_order()
        from ..linear.solvers import fill_level_of
        pattern = pattern.with_fill(fill_level_of(fill, pattern.nv))
        nnzb, p = pattern.nnzb, dims["p"]
        sp = mem.get("preconditioner_bytes", 0) / (nnzb * p * p) if nnzb else 8.0
        w = iteration_work(dims, sj, vb, sp, nnzb)
        info.update(ic_fill_level=fill, ic_blocks=nnzb, preconditioner_bytes_per_entry=sp)
    tot_f = sum(v[0] for v in w.values())
    tot_b = sum(v[1] for v in w.values())
    claim = CLAIMS["products"] if (prob.kind == "ba" and precision == "mixed") else float("nan")
    rows.append({**base, "quantity": _QUANTITIES["products"][0],
                 "counted_flops_share": w["products"][0] / tot_f, "counted_bytes_share": w["products"][1] / tot_b,
                 "time_share": _share(acc["products_s"], acc["cg_s"]), "claim": claim,
                 "numerator_s": acc["products_s"], "denominator_s": acc["cg_s"], **info})
    if prob.kind == "pgo":
        rb = float(pol.residual.compute_dtype.itemsize)
        sf, sb = ic_setup_work(dims, rb, sj, pol.rhs is not Precision.FP64)
        solve_f = sf + its_per_solve * tot_f
        solve_b = sb + its_per_solve * tot_b
        lin = rep_inst.timing["linear_solve"]
        claim = CLAIMS["ic_solve"] if precision == "mixed" else float("nan")
        rows.append({**base, "quantity": _QUANTITIES["ic_solve"][0],
                     "counted_flops_share": its_per_solve * w["preconditioner"][0] / solve_f,
                     "counted_bytes_share": its_per_solve * w["preconditioner"][1] / solve_b,
                     "time_share": _share(acc["preconditioner_s"], lin), "claim": claim,
                     "numerator_s": acc["preconditioner_s"], "denominator_s": lin, **info})
    if rep_plain is not None:
        lm = lm_seconds(rep_plain)
        for q, key in (("jacobian", "jacobian"), ("linear", "linear_solve")):
            claim = CLAIMS[q] if precision == "mixed" else float("nan")
            rows.append({**base, "quantity": _QUANTITIES[q][0], "counted_flops_share": float("nan"),
                         "counted_bytes_share": float("nan"), "time_share": _share(rep_plain.timing[key], lm),
                         "claim": claim, "numerator_s": rep_plain.timing[key], "denominator_s": lm,
                         "cg_iterations": rep_plain.linear_iterations, "linear_solves": len(rep_plain.history)})
    return rows


FIG6_COLUMNS = ["problem", "kind", "policy", "solver", "quantity", "counted_flops_share", "counted_bytes_share",
                "time_share", "claim", "numerator_s", "denominator_s", "cg_iterations", "linear_solves",
                "jacobian_bytes_per_entry", "preconditioner_bytes_per_entry", "ic_fill_level", "ic_blocks"]


def _nanmean(values) -> float:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else float("nan")


def figure6(ctx: BenchContext) -> FigureResult:
    """Where the work goes: (a) the Jacobian products' share of a CG iteration, (b) the IC triangular solves'
    share of a PGO linear solve, (c) the Jacobian evaluation's and the linear solves' shares of the LM time;
    counted (flops, bytes: :func:`iteration_work`, :func:`ic_setup_work`) and timed (:func:`instrumented_pcg`
    inside a real whole solve; SolveReport timings for (c)). See the module docstring."""
    cache = _cache(ctx)
    ctx.log("figure 6: compiling / loading kernels")
    _warm()
    rows, own_notes = [], []
    for kind in ("ba", "pgo"):
        for prob in problems(ctx, kind):
            ctx.log(f"figure 6: {prob.name} ({kind})")
            dims = problem_dims(prob)
            for precision in POLICIES:
                rep = solve(ctx, prob, precision, CG_SOLVER[kind])
                try:
                    rep_i, acc = _instrumented(prob, precision, CG_SOLVER[kind])
                except Exception as exc:
                    own_notes.append(f"{prob.name} {precision}/{CG_SOLVER[kind]} (instrumented) failed: "
                                     f"{type(exc).__name__}: {exc}")
                    continue
                rows.append(_work_rows(prob, precision, rep, rep_i, acc, dims))
    rows = [r for group in rows for r in group]
    csv_name = ctx.write_csv("fig6_work_shares.csv", rows, FIG6_COLUMNS)

    # table: mean over the problems of a kind; (a)/(b) for the mixed policy, (c) per policy
    table, summary = [], {}
    plan = [("ba", "products", ("mixed",)), ("pgo", "products", ("mixed",)), ("pgo", "ic_solve", ("mixed",)),
            ("ba", "jacobian", POLICIES), ("ba", "linear", POLICIES), ("pgo", "jacobian", POLICIES),
            ("pgo", "linear", POLICIES)]
    for kind, q, pols in plan:
        qname, label = _QUANTITIES[q]
        for precision in pols:
            sel = [r for r in rows if r["kind"] == kind and r["quantity"] == qname and r["policy"] == precision]
            if not sel:
                continue
            f, b, t = (_nanmean(r[c] for r in sel) for c in ("counted_flops_share", "counted_bytes_share",
                                                               "time_share"))
            claim = _nanmean(r["claim"] for r in sel)
            table.append({"problem": f"{kind.upper()} (mean of {len(sel)})", "policy": precision, "quantity": label,
                          "flops share": _r3(f) if math.isfinite(f) else "",
                          "bytes share": _r3(b) if math.isfinite(b) else "", "time share": _r3(t),
                          "claim": _r3(claim) if math.isfinite(claim) else ""})
            for meas, v in (("flops", f), ("bytes", b), ("time", t)):
                if math.isfinite(v):
                    summary[f"{kind}_{q}_{precision}_{meas}_share"] = round(v, 4)
    summary["ba_problems"] = len(problems(ctx, "ba"))
    summary["pgo_problems"] = len(problems(ctx, "pgo"))
    png = _plot_fig6(ctx, table)
    notes = list(cache["notes"]) + own_notes + _fig6_notes(rows, summary)
    return FigureResult(6, "Where the work goes: Jacobian products, IC triangular solves, Jacobian evaluation "
                           "and linear solves (counted flops and bytes, measured time)",
                        [png, csv_name], table, summary, notes)


def _r3(x) -> float:
    return round(float(x), 3) if x is not None and math.isfinite(float(x)) else float("nan")


def _fig6_notes(rows: list, summary: dict) -> list:
    notes = ["Counted shares are a model (see iteration_work / ic_setup_work in mixslam/bench/work.py): per CG "
             "iteration for the products, per linear solve (setup + the measured mean CG iterations per solve) for "
             "the IC solves; the IC factorization is not counted but its time is in the linear-solve time. The "
             "Jacobian / LM and linear solve / LM rows have no counted model."]
    t, f, b = (summary.get(f"ba_products_mixed_{m}_share") for m in ("time", "flops", "bytes"))
    if t is not None and f is not None:
        notes.append(f"BA mixed CGNR: the Jacobian products are {f:.0%} of a CG iteration's flops and "
                     f"{b:.0%} of its bytes, {t:.0%} of its time here (claim 83%).")
    t, f, b = (summary.get(f"pgo_ic_solve_mixed_{m}_share") for m in ("time", "flops", "bytes"))
    if t is not None and f is not None:
        closer = "flops" if abs(t - f) < abs(t - b) else "bytes"
        notes.append(f"PGO mixed IC: the triangular solves are {f:.0%} of a linear solve's counted flops, {b:.0%} "
                     f"of its bytes and {t:.0%} of its time here (claim 50%); the measured time share is closer "
                     f"to the counted {closer} share. The fp16 factor saves bytes, not arithmetic: "
                     f"{fp16_arithmetic_note()}.")
    for kind in ("ba", "pgo"):
        j, lin = summary.get(f"{kind}_jacobian_mixed_time_share"), summary.get(f"{kind}_linear_mixed_time_share")
        if j is not None and lin is not None:
            notes.append(f"{kind.upper()} mixed: Jacobian evaluation {j:.0%} and linear solves {lin:.0%} of the LM "
                         "time (claims 15% and 60%); the rest is residual/cost evaluation, the state update and "
                         "the loop's bookkeeping.")
    return notes


def _plot_fig6(ctx: BenchContext, table: list) -> str:
    fig = new_figure((max(8.0, 0.75 * len(table) + 3.0), 5.0))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(table))
    width = 0.27
    for i, (col, color) in enumerate((("flops share", "tab:blue"), ("bytes share", "tab:orange"),
                                      ("time share", "tab:green"))):
        vals = np.array([r[col] if r[col] != "" else np.nan for r in table], dtype=float)
        ax.bar(x + (i - 1) * width, np.nan_to_num(vals, nan=0.0), width, label=col.replace(" share", " (counted)")
               if col != "time share" else "time (measured)", color=color)
    claims = np.array([r["claim"] if r["claim"] != "" else np.nan for r in table], dtype=float)
    if np.isfinite(claims).any():
        ax.plot(x, claims, "kD", markersize=7, label="claim")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['problem'].split(' ')[0]} {r['policy']}\n{r['quantity']}" for r in table],
                       rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("share")
    ax.set_title("Where the work goes (mean over problems; counted flops / bytes, measured time)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="upper center")
    return save_figure(ctx, fig, "fig6_work_shares.png")


# ---------------------------------------------------------------------------------------------------------
# figure 7: kernels
# ---------------------------------------------------------------------------------------------------------
def tmin(fn, repeats: int) -> float:
    """Minimum seconds of ``repeats`` calls after one warm-up call."""
    fn()
    best = math.inf
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _solver_scale(lin) -> np.ndarray:
    """The CG solvers' power-of-two Jacobi column scaling."""
    from ..linear.operators import power_of_two
    colsq = lin.column_sq_norms()
    return np.where(colsq > 0, power_of_two(1.0 / np.sqrt(np.maximum(colsq, 1e-300))), 1.0)


solver_scale = _solver_scale
"""Public name of :func:`_solver_scale` (``benchmarks/ba.py`` scales its operator with it)."""


def kernel_problems(ctx: BenchContext) -> list:
    """[(short name, description, Linearization (fp64), IC pattern or None)] of figure 7(a)."""
    from ..ba import BundleProblem
    from ..pgo import PoseGraphProblem
    from ..precision import PrecisionPolicy
    from ..sim.pose_graph import simulate_pose_graph
    from ..solve.config import CGConfig
    out = []
    ba_probs = problems(ctx, "ba")
    picks = [p for p in ba_probs if p.simulated][:1] + [p for p in ba_probs if not p.simulated][:1]
    for prob in picks:
        bp = BundleProblem(prob.data, PrecisionPolicy.preset("fp64", "ba"))
        lin = bp.linearize((prob.data.cameras, prob.data.points))
        short = "ba" if prob.simulated else "ba_bal"
        out.append((short, prob.name, lin, None))
    fill = CGConfig().ic_fill_level
    for short, kind, n in KERNEL_GRAPHS.get(ctx.config.scale, KERNEL_GRAPHS["default"]):
        g = simulate_pose_graph(kind, n, seed=ctx.config.seed).graph
        pp = PoseGraphProblem(g, PrecisionPolicy.preset("fp64", "pgo"))
        lin = pp.linearize((g.rotations, g.translations))
        out.append((short, f"{kind}{n}-sim ({g.dim}D, {g.num_edges} edges)", lin, pp.pattern.with_fill(fill)))
    return out


def _formats():
    from ..precision import Precision
    return {"fp64": (Precision.FP64, Precision.FP64, np.float64),
            "fp32": (Precision.FP32, Precision.FP32, np.float32),
            "fp16": (Precision.FP16, Precision.FP32, np.float32)}


def bench_kernels(lin, pattern, repeats: int, seed: int) -> dict:
    """{kernel: {format: (seconds, bytes moved, bytes of the stored matrix)}} on one problem (the logic of
    ``benchmarks/kernels.py``, on the solver's scaled and quantized operator)."""
    from ..kernels import ic_solve, jac_matvec, jac_rmatvec, normal_matvec
    from ..linear.operators import JacobianOperator, kernel_storage
    from ..linear.preconditioners import StaticIC
    from ..precision import Precision, quantize_with_fallback
    scale = _solver_scale(lin)
    rng = np.random.default_rng(seed)
    L64 = None
    if pattern is not None:
        ic = StaticIC(pattern, pattern.assemble(lin.A, lin.B), scale, Precision.FP64, Precision.FP64)
        L64 = ic.L
    res = {k: {} for k in KERNELS if k != "ic_solve" or pattern is not None}
    fallbacks = []
    for fmt, (storage, acc, vd) in _formats().items():
        op = JacobianOperator.from_linearization(lin, scale, storage, acc)
        if op.fallbacks:
            fallbacks.append(f"{fmt} Jacobian fell back to {op.storage.value}")
        A, B, ia, ib = op.A, op.B, op.ia, op.ib
        alias = not lin.nb
        R, k = ia.size, A.shape[1]
        xa = rng.standard_normal((lin.nv, lin.p)).astype(vd)
        xb = xa if alias else rng.standard_normal((lin.nb, lin.pb)).astype(vd)
        y = rng.standard_normal((R, k)).astype(vd)
        ga = np.empty((lin.nv, lin.p), vd)
        gb = ga if alias else np.empty((lin.nb, lin.pb), vd)
        yo = np.empty((R, k), vd)
        mbytes = A.nbytes + B.nbytes + ia.nbytes + ib.nbytes
        vb = np.dtype(vd).itemsize
        vec_in = xa.nbytes + (0 if alias else xb.nbytes)
        vec_g = ga.nbytes + (0 if alias else gb.nbytes)
        stored = A.nbytes + B.nbytes
        res["jac_matvec"][fmt] = (tmin(lambda: jac_matvec(A, ia, B, ib, xa, xb, yo, False), repeats),
                                  mbytes + vec_in + R * k * vb, stored)
        res["jac_rmatvec"][fmt] = (tmin(lambda: jac_rmatvec(A, ia, B, ib, y, ga, gb, False), repeats),
                                   mbytes + R * k * vb + 2 * vec_g, stored)
        res["normal_matvec"][fmt] = (tmin(lambda: normal_matvec(A, ia, B, ib, xa, xb, ga, gb, False), repeats),
                                     mbytes + vec_in + 2 * vec_g, stored)
        if L64 is not None:
            q, _, used, fell = quantize_with_fallback(L64, storage)
            if fell:
                fallbacks.append(f"{fmt} IC factor fell back to {used.value}")
            Ls = kernel_storage(q, used)
            indptr, indices = pattern.indptr, pattern.indices
            b = rng.standard_normal((lin.nv, lin.p)).astype(vd)
            x = np.empty_like(b)
            res["ic_solve"][fmt] = (tmin(lambda: ic_solve(indptr, indices, Ls, b, x, False), repeats),
                                    2 * (Ls.nbytes + indices.nbytes + indptr.nbytes) + b.nbytes + 3 * x.nbytes,
                                    Ls.nbytes)
    res["_fallbacks"] = fallbacks
    return res


# ---------------------------------------------------------------------------------------------------------
# figure 7
# ---------------------------------------------------------------------------------------------------------
def _ratio(a, b) -> float:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return float("nan")
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else float("nan")


def _geomean(values) -> float:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x)) and float(x) > 0]
    return float(np.exp(np.mean(np.log(v)))) if v else float("nan")


def _l3_bytes() -> int:
    try:
        txt = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip().upper()
        mult = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}.get(txt[-1], 1)
        return int(txt.rstrip("KMG")) * mult
    except (OSError, ValueError, IndexError):
        return L3_BYTES_DEFAULT


E2E_COLUMNS = ["problem", "kind", "precision", "solver", "status", "total_s", "linear_solve_s", "lm_s",
               "lm_iterations", "cg_iterations", "linear_s_per_cg_iteration", "final_cost", "rel_cost_to_fp64_direct",
               "linear_over_fp32", "total_over_fp32", "linear_over_fp64_same_solver", "total_over_fp64_direct",
               "jacobian_bytes", "preconditioner_bytes", "direct_solver_bytes", "memory_bytes", "overflows",
               "fallbacks"]


def _e2e_rows(ctx: BenchContext, kind: str) -> list:
    rows = []
    cg, direct = CG_SOLVER[kind], DIRECT_SOLVER[kind]
    pairs = [("fp64", direct)] + [(p, cg) for p in POLICIES]
    for prob in problems(ctx, kind):
        ctx.log(f"figure 7: end to end, {prob.name}")
        reps = {pair: solve(ctx, prob, *pair) for pair in pairs}
        base = reps[("fp64", direct)]
        f32 = reps[("fp32", cg)]
        f64 = reps[("fp64", cg)]
        for (precision, solver), rep in reps.items():
            if rep is None:
                continue
            mem = rep.extra.get("memory", {})
            t = rep.timing
            jb, pb = mem.get("jacobian_bytes", 0), mem.get("preconditioner_bytes", 0)
            db = sum(v for k, v in mem.items() if k not in ("jacobian_bytes", "preconditioner_bytes"))
            is_cg = solver == cg
            rows.append({
                "problem": prob.name, "kind": kind, "precision": precision, "solver": solver,
                "status": rep.status.value, "total_s": t["total"], "linear_solve_s": t["linear_solve"],
                "lm_s": lm_seconds(rep), "lm_iterations": rep.iterations, "cg_iterations": rep.linear_iterations,
                "linear_s_per_cg_iteration": _ratio(t["linear_solve"], rep.linear_iterations) if is_cg else float("nan"),
                "final_cost": rep.final_cost,
                "rel_cost_to_fp64_direct": ((rep.final_cost - base.final_cost) / base.final_cost
                                            if base is not None and base.final_cost else float("nan")),
                "linear_over_fp32": _ratio(t["linear_solve"], f32.timing["linear_solve"]) if is_cg and f32 else float("nan"),
                "total_over_fp32": _ratio(t["total"], f32.timing["total"]) if is_cg and f32 else float("nan"),
                "linear_over_fp64_same_solver": (_ratio(t["linear_solve"], f64.timing["linear_solve"])
                                                 if is_cg and f64 else float("nan")),
                "total_over_fp64_direct": _ratio(t["total"], base.timing["total"]) if base else float("nan"),
                "jacobian_bytes": jb, "preconditioner_bytes": pb, "direct_solver_bytes": db,
                "memory_bytes": jb + pb + db, "overflows": rep.quantization.get("overflows", 0),
                "fallbacks": rep.quantization.get("fallbacks", 0)})
    return rows


KERNEL_COLUMNS = ["problem", "description", "kernel", "rows", "unknowns",
                  "t_fp64_s", "t_fp32_s", "t_fp16_s", "bytes_fp64", "bytes_fp32", "bytes_fp16",
                  "stored_fp64", "stored_fp32", "stored_fp16", "fp32_over_fp64", "fp16_over_fp32",
                  "bytes_fp32_over_fp64", "bytes_fp16_over_fp32", "gbps_fp64", "gbps_fp32", "gbps_fp16"]


def figure7(ctx: BenchContext) -> FigureResult:
    """Speed ratios mixed vs fp32 vs fp64: (a) per kernel (min-of-repeats time, modelled bytes moved, ratios
    fp16/fp32 and fp32/fp64), (b) end to end (whole solves: time, linear-solve time, final cost relative to
    fp64, memory of the Jacobian and the preconditioner). See the module docstring."""
    from threadpoolctl import threadpool_limits
    cache = _cache(ctx)
    sizes = ctx.config.sizes
    ctx.log("figure 7: compiling / loading kernels")
    _warm()
    # ---- (a) kernels
    krows, fallbacks = [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for i, (short, desc, lin, pattern) in enumerate(kernel_problems(ctx)):
            ctx.log(f"figure 7: kernels on {short} ({desc})")
            res = bench_kernels(lin, pattern, sizes.kernel_repeats, seed=ctx.config.seed * 1000 + i)
            fallbacks += [f"{short}: {f}" for f in res.pop("_fallbacks")]
            for kern, by in res.items():
                row = {"problem": short, "description": desc, "kernel": kern, "rows": int(lin.ia.size),
                       "unknowns": int(lin.size)}
                for fmt in FORMATS:
                    t, nb, st = by[fmt]
                    row[f"t_{fmt}_s"], row[f"bytes_{fmt}"], row[f"stored_{fmt}"] = t, nb, st
                    row[f"gbps_{fmt}"] = nb / t / 1e9
                row["fp32_over_fp64"] = _ratio(row["t_fp32_s"], row["t_fp64_s"])
                row["fp16_over_fp32"] = _ratio(row["t_fp16_s"], row["t_fp32_s"])
                row["bytes_fp32_over_fp64"] = _ratio(row["bytes_fp32"], row["bytes_fp64"])
                row["bytes_fp16_over_fp32"] = _ratio(row["bytes_fp16"], row["bytes_fp32"])
                krows.append(row)
    kcsv = ctx.write_csv("fig7_kernels.csv", krows, KERNEL_COLUMNS)
    # ---- (b) end to end
    erows = _e2e_rows(ctx, "ba") + _e2e_rows(ctx, "pgo")
    ecsv = ctx.write_csv("fig7_end_to_end.csv", erows, E2E_COLUMNS)

    # ---- table and summary
    table, summary = [], {}
    for r in krows:
        if r["problem"] == "ba_bal" and r["kernel"] != "normal_matvec":
            continue  # the BAL file's J·x and Jᵀ·y stay in the CSV (table kept short)
        table.append({"problem": r["problem"], "what": f"kernel {KERNEL_LABELS[r['kernel']]}",
                      "fp32/fp64": _r3(r["fp32_over_fp64"]), "fp16 storage/fp32": _r3(r["fp16_over_fp32"]),
                      "MB fp64": _r3(r["bytes_fp64"] / 1e6), "MB fp32": _r3(r["bytes_fp32"] / 1e6),
                      "MB fp16 storage": _r3(r["bytes_fp16"] / 1e6), "claim mixed/fp32": ""})
        summary[f"kernel_{r['kernel']}_fp16_over_fp32_{r['problem']}"] = round(r["fp16_over_fp32"], 4)
        summary[f"kernel_{r['kernel']}_fp32_over_fp64_{r['problem']}"] = round(r["fp32_over_fp64"], 4)
        summary[f"kernel_{r['kernel']}_bytes_fp16_over_fp32_{r['problem']}"] = round(r["bytes_fp16_over_fp32"], 4)
    e2e = _e2e_summary(erows)
    for kind in ("ba", "pgo"):
        agg = e2e.get(kind)
        if not agg:
            continue
        n = agg["n"]
        for what, key in (("linear solve", "linear"), ("whole solve", "total")):
            table.append({"problem": f"{kind.upper()} ({n} problem{'s' if n > 1 else ''})",
                          "what": f"end to end, {what}", "fp32/fp64": _r3(agg[f"{key}_fp32_over_fp64"]),
                          "mixed(fp16)/fp32": _r3(agg[f"{key}_mixed_over_fp32"]),
                          "MB fp64": _r3(agg["mem_fp64"] / 1e6), "MB fp32": _r3(agg["mem_fp32"] / 1e6),
                          "MB mixed": _r3(agg["mem_mixed"] / 1e6),
                          "claim mixed/fp32": CLAIM_LINEAR_MIXED_OVER_FP32[kind] if key == "linear" else ""})
            for r in ("mixed_over_fp32", "fp32_over_fp64"):
                summary[f"{kind}_{key}_{r}"] = round(agg[f"{key}_{r}"], 4)
        summary[f"{kind}_linear_per_cg_iteration_mixed_over_fp32"] = round(agg["per_it_mixed_over_fp32"], 4)
        summary[f"{kind}_jacobian_bytes_mixed_over_fp32"] = round(agg["jac_mixed_over_fp32"], 4)
        summary[f"{kind}_preconditioner_bytes_mixed_over_fp32"] = round(agg["pre_mixed_over_fp32"], 4)
        summary[f"{kind}_max_rel_cost_mixed"] = agg["max_rel_cost_mixed"]
        summary[f"{kind}_problems"] = n
    kpng = _plot_fig7_kernels(ctx, krows)
    epng = _plot_fig7_e2e(ctx, erows)
    notes = list(cache["notes"]) + [f"Quantization fallback in figure 7(a): {f}." for f in fallbacks]
    notes += _fig7_notes(krows, e2e, summary)
    return FigureResult(7, "Speed ratios mixed vs fp32 vs fp64: per kernel and end to end, with memory",
                        [kpng, epng, kcsv, ecsv], table, summary, notes)


def _e2e_summary(erows: list) -> dict:
    """Per kind: geometric means over the problems of the CG solver's time ratios, memory summed over the
    problems per precision, the largest relative cost difference of mixed to the fp64 direct solve."""
    out = {}
    for kind in ("ba", "pgo"):
        cg = CG_SOLVER[kind]
        rows = [r for r in erows if r["kind"] == kind and r["solver"] == cg]
        names = sorted({r["problem"] for r in rows})
        if not names:
            continue
        by = {(r["problem"], r["precision"]): r for r in rows}
        agg = {"n": len(names)}
        for key, col in (("linear", "linear_solve_s"), ("total", "total_s")):
            agg[f"{key}_mixed_over_fp32"] = _geomean(
                _ratio(by[(p, "mixed")][col], by[(p, "fp32")][col]) for p in names
                if (p, "mixed") in by and (p, "fp32") in by)
            agg[f"{key}_fp32_over_fp64"] = _geomean(
                _ratio(by[(p, "fp32")][col], by[(p, "fp64")][col]) for p in names
                if (p, "fp32") in by and (p, "fp64") in by)
        agg["per_it_mixed_over_fp32"] = _geomean(
            _ratio(by[(p, "mixed")]["linear_s_per_cg_iteration"], by[(p, "fp32")]["linear_s_per_cg_iteration"])
            for p in names if (p, "mixed") in by and (p, "fp32") in by)
        for prec in POLICIES:
            agg[f"mem_{prec}"] = float(sum(r["memory_bytes"] for r in rows if r["precision"] == prec and r["solver"] == CG_SOLVER[r["kind"]]))
            agg[f"jac_{prec}"] = float(sum(r["jacobian_bytes"] for r in rows if r["precision"] == prec and r["solver"] == CG_SOLVER[r["kind"]]))
            agg[f"pre_{prec}"] = float(sum(r["preconditioner_bytes"] for r in rows if r["precision"] == prec and r["solver"] == CG_SOLVER[r["kind"]]))
        agg["jac_mixed_over_fp32"] = _ratio(agg["jac_mixed"], agg["jac_fp32"])
        agg["pre_mixed_over_fp32"] = _ratio(agg["pre_mixed"], agg["pre_fp32"])
        rel = [abs(r["rel_cost_to_fp64_direct"]) for r in rows if r["precision"] == "mixed"
               and math.isfinite(r["rel_cost_to_fp64_direct"])]
        agg["max_rel_cost_mixed"] = float(max(rel)) if rel else float("nan")
        its = {prec: sum(r["cg_iterations"] for r in rows if r["precision"] == prec) for prec in POLICIES}
        agg["cg_iterations"] = its
        out[kind] = agg
    return out


def _fig7_notes(krows: list, e2e: dict, summary: dict) -> list:
    notes = ["fp16 here is storage only: the kernels load binary16 and compute in fp32; "
             f"{fp16_arithmetic_note()}. Kernel rows 'fp16 storage' = fp16 storage, fp32 "
             "vectors and arithmetic. The mixed policies use fp16 for one operand each: BA mixed for the Jacobian "
             "(J·x, Jᵀ·y, JᵀJ·p rows), PGO mixed for the IC factor only (IC solve rows; its Jacobian stays fp32, so "
             "the PGO product rows show what fp16 Jacobian storage would cost, not what mixed runs).",
             "End-to-end ratios are geometric means over the problems of each kind; MB columns: bytes moved per "
             "call (kernel rows, model) or memory held by the Jacobian and the preconditioner summed over the "
             "problems (end-to-end rows; the fp64 column is the fp64 CG solve's). PGO solves start from the "
             "chordal guess, computed once and not timed."]
    notes += _kernel_notes([r for r in krows if r["kernel"] in ("normal_matvec", "ic_solve")], _l3_bytes())
    for kind in ("ba", "pgo"):
        agg = e2e.get(kind)
        if not agg:
            continue
        claim = CLAIM_LINEAR_MIXED_OVER_FP32[kind]
        got = agg["linear_mixed_over_fp32"]
        its = agg["cg_iterations"]
        notes.append(f"{kind.upper()} end to end: mixed/fp32 linear-solve time {got:.2f} (claim {claim:.2f} on "
                     f"the GPU), {agg['per_it_mixed_over_fp32']:.2f} per CG iteration (CG iterations mixed "
                     f"{its['mixed']} vs fp32 {its['fp32']}); the mixed policy halves the "
                     f"{'Jacobian' if kind == 'ba' else 'IC factor'} memory "
                     f"({(agg['jac_mixed_over_fp32'] if kind == 'ba' else agg['pre_mixed_over_fp32']):.2f}x fp32) "
                     "but on this CPU the saved bytes buy little time." if got > claim + 0.1 else
                     f"{kind.upper()} end to end: mixed/fp32 linear-solve time {got:.2f} (claim {claim:.2f}); "
                     f"{agg['per_it_mixed_over_fp32']:.2f} per CG iteration.")
    return notes


def _kernel_notes(rows: list, l3: int) -> list:
    """Whether each kernel's fp16/fp32 time follows its fp16/fp32 bytes, and the cache situation behind it."""
    def item(r):
        return (f"{r['problem']} {KERNEL_LABELS[r['kernel']]} {r['fp16_over_fp32']:.2f}x the time for "
                f"{r['bytes_fp16_over_fp32']:.2f}x the bytes (fp32 working set {r['bytes_fp32'] / 1e6:.1f} MB)")
    notes = []
    follow = [r for r in rows if r["fp16_over_fp32"] <= r["bytes_fp16_over_fp32"] + 0.1]
    if follow:
        notes.append("fp16 storage vs fp32, where the time follows the bytes: " + "; ".join(map(item, follow)) + ".")
    for fits in (True, False):
        sel = [r for r in rows if r not in follow and (r["bytes_fp32"] < l3) == fits]
        if not sel:
            continue
        why = (f"these working sets fit in the {l3 / 2 ** 20:.0f} MiB L3, so the passes run from cache and are "
               "bound by instruction throughput and latency (each fp16 entry costs an extra conversion), not by "
               "memory bandwidth" if fits else
               f"these working sets exceed the {l3 / 2 ** 20:.0f} MiB L3, yet one core does not saturate the "
               "memory bandwidth (per-entry work, scattered index loads and, in the IC solve, the substitution's "
               "dependency chain cap it)")
        notes.append("fp16 storage vs fp32, where the time does not follow the bytes: " + "; ".join(map(item, sel))
                     + f". Why: {why}. The claim's GPU runs these kernels bandwidth-bound, where the time follows "
                     "the bytes: that is where its mixed-precision speed-up comes from, and why it does not show "
                     "on this CPU.")
    return notes


def _plot_fig7_kernels(ctx: BenchContext, krows: list) -> str:
    fig = new_figure((max(8.0, 0.6 * len(krows) + 3.0), 5.0))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(krows))
    w = 0.38
    ax.bar(x - w / 2, [r["fp32_over_fp64"] for r in krows], w, label="fp32 / fp64", color="tab:green")
    ax.bar(x + w / 2, [r["fp16_over_fp32"] for r in krows], w, label="fp16 storage / fp32", color="tab:red")
    ax.plot(x + w / 2, [r["bytes_fp16_over_fp32"] for r in krows], "k_", markersize=12, mew=2,
            label="bytes fp16 / fp32 (model)")
    ax.axhline(1.0, color="k", lw=1)
    ax.axhline(CLAIM_LINEAR_MIXED_OVER_FP32["ba"], color="tab:purple", ls="--", lw=1,
               label=f"claim BA end-to-end linear mixed/fp32 {CLAIM_LINEAR_MIXED_OVER_FP32['ba']}")
    ax.axhline(CLAIM_LINEAR_MIXED_OVER_FP32["pgo"], color="tab:brown", ls=":", lw=1.5,
               label=f"claim PGO end-to-end linear mixed/fp32 {CLAIM_LINEAR_MIXED_OVER_FP32['pgo']}")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['problem']}\n{KERNEL_LABELS[r['kernel']]}" for r in krows], fontsize=7)
    top = max([1.0] + [v for r in krows for v in (r["fp32_over_fp64"], r["fp16_over_fp32"]) if math.isfinite(v)])
    ax.set_ylim(0, 1.45 * top)
    ax.set_ylabel("time ratio (min of repeats)")
    ax.set_title("Per-kernel time ratios (this CPU)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    return save_figure(ctx, fig, "fig7_kernels.png")


def _plot_fig7_e2e(ctx: BenchContext, erows: list) -> str:
    fig = new_figure((11.0, 5.0))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    cg_rows = [r for r in erows if r["solver"] == CG_SOLVER[r["kind"]]]
    names = list(dict.fromkeys(r["problem"] for r in cg_rows))
    by = {(r["problem"], r["precision"]): r for r in cg_rows}
    x = np.arange(len(names))
    w = 0.27
    series = (("fp32/fp64 linear", lambda p: _ratio(by[(p, "fp32")]["linear_solve_s"], by[(p, "fp64")]["linear_solve_s"]),
               "tab:green"),
              ("mixed/fp32 linear", lambda p: _ratio(by[(p, "mixed")]["linear_solve_s"], by[(p, "fp32")]["linear_solve_s"]),
               "tab:red"),
              ("mixed/fp32 whole solve", lambda p: _ratio(by[(p, "mixed")]["total_s"], by[(p, "fp32")]["total_s"]),
               "tab:orange"))
    top = 1.0
    for i, (label, fn, color) in enumerate(series):
        vals = np.array([fn(p) if all((p, q) in by for q in POLICIES) else float("nan") for p in names], float)
        if np.isfinite(vals).any():
            top = max(top, float(np.nanmax(vals)))
        ax1.bar(x + (i - 1) * w, np.nan_to_num(vals, nan=0.0), w, label=label, color=color)
    ax1.set_ylim(0, 1.4 * top)
    claims = [CLAIM_LINEAR_MIXED_OVER_FP32[next(r["kind"] for r in cg_rows if r["problem"] == p)] for p in names]
    ax1.plot(x, claims, "kD", label="claim mixed/fp32 linear (GPU)")
    ax1.axhline(1.0, color="k", lw=1)
    ax1.set_xticks(x)
    ax1.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax1.set_ylabel("time ratio")
    ax1.set_title("End to end (min over repeats)")
    ax1.grid(axis="y", alpha=0.3)
    ax1.legend(fontsize=7, loc="upper left", ncol=2)
    for i, (prec, color) in enumerate((("fp64", "tab:blue"), ("fp32", "tab:green"), ("mixed", "tab:red"))):
        ref = [by[(p, "fp64")]["jacobian_bytes"] + by[(p, "fp64")]["preconditioner_bytes"] if (p, "fp64") in by
               else 0 for p in names]
        jac = [_ratio(by[(p, prec)]["jacobian_bytes"], r) if (p, prec) in by else float("nan")
               for p, r in zip(names, ref)]
        pre = [_ratio(by[(p, prec)]["preconditioner_bytes"], r) if (p, prec) in by else float("nan")
               for p, r in zip(names, ref)]
        jac, pre = np.nan_to_num(jac, nan=0.0), np.nan_to_num(pre, nan=0.0)
        ax2.bar(x + (i - 1) * w, jac, w, color=color, label=f"{prec} Jacobian")
        ax2.bar(x + (i - 1) * w, pre, w, bottom=jac, color=color, alpha=0.45, hatch="//",
                label=f"{prec} preconditioner")
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax2.set_ylabel("memory held / fp64 total")
    ax2.set_ylim(0, 1.3)
    ax2.set_title("Memory of the Jacobian + preconditioner (relative to fp64)")
    ax2.grid(axis="y", alpha=0.3)
    ax2.legend(fontsize=6, ncol=3, loc="upper right")
    return save_figure(ctx, fig, "fig7_end_to_end.png")
