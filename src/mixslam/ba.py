"""Bundle adjustment, end to end: ``optimize_bundle(data, BAConfig(...))``.

Describe -> analyze -> solve, as for pose graphs: :class:`~mixslam.problem.bundle.BundleData` describes the
problem; :class:`BundleProblem` numbers the free cameras and points once; the LM loop of
:mod:`mixslam.solve.lm` does the numeric work with one of two linear solvers:

``schur``
    fp64 landmark elimination + dense Cholesky of the reduced camera system (the accuracy baseline).
``cgnr``
    CGNR on the per-observation Jacobian blocks (2 x pc camera block, 2 x 3 point block), block-Jacobi
    preconditioned, never forming JᵀJ; the Jacobian products run in the policy's precision (``mixed``: the
    column-scaled Jacobian is stored in fp16 and the products accumulate in fp32; the right-hand side Jᵀr is
    computed from the fp32 Jacobian, never from the 16-bit copy).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from ._threads import single_threaded_blas
from .errors import ConfigError, NonFiniteError
from .lie import se3
from .linear.solvers import CGNRSolver, Linearization
from .precision import PrecisionPolicy
from .problem.bundle import BundleData
from .problem import reprojection
from .solve.config import CGConfig, LMConfig
from .solve.lm import levenberg_marquardt

SOLVERS = ("schur", "cgnr")


def _default_lm() -> LMConfig:
    return LMConfig(initial_lambda=1e-4, function_tolerance=1e-6)


@dataclass(frozen=True)
class BAConfig:
    """Everything that chooses how a bundle-adjustment problem is solved."""

    precision: str | PrecisionPolicy = "fp64"
    """A preset name (``fp64``, ``fp32``, ``mixed``, ``mixed16``, ``fp16``; the ``ba`` presets, where ``mixed``
    stores the Jacobian in fp16) or a :class:`PrecisionPolicy`."""
    solver: str = "schur"
    """``schur`` (fp64 landmark elimination, dense reduced camera system) or ``cgnr`` (matrix-free CGNR with
    block-Jacobi, products in the policy's precision)."""
    lm: LMConfig = field(default_factory=_default_lm)
    """Outer-loop settings. BA defaults follow Ceres: initial damping 1e-4 (Ceres' initial trust radius 1e4)
    and function_tolerance 1e-6 (Ceres' default; an fp32 cost cannot resolve decreases much below it)."""
    cg: CGConfig = field(default_factory=CGConfig)
    """Inner CG settings (``cgnr`` only)."""
    min_depth: float | None = None
    """Depth guard: |P.z| below this is clamped (counted in the report). None: the kernels' default for the
    residual precision."""


class BundleProblem:
    """The analyzed bundle-adjustment problem: free-variable numbering and the LM callbacks."""

    def __init__(self, data: BundleData, policy: PrecisionPolicy, min_depth: float | None = None):
        self.data = data
        self.policy = policy
        self.min_depth = min_depth
        self.pc = data.camera_tangent_dim
        self.var_of_cam = np.full(data.num_cameras, -1, dtype=np.int64)
        # BAL cameras carry their intrinsics, which are not part of the gauge: a "fixed" BAL camera keeps its
        # pose (w, t) but its f, k1, k2 are still estimated (fixing them too moves the optimum: 16-22106 then
        # stops at 59100 instead of Ceres' 18033.9). Its pose columns are zeroed in every linearization.
        self.frozen_pose = data.fixed_cameras.copy() if data.model == "bal" else np.zeros(data.num_cameras, bool)
        free_c = ~data.fixed_cameras | self.frozen_pose
        self.var_of_cam[free_c] = np.arange(int(free_c.sum()))
        self.var_of_pt = np.full(data.num_points, -1, dtype=np.int64)
        free_p = ~data.fixed_points
        self.var_of_pt[free_p] = np.arange(int(free_p.sum()))
        self.nc, self.npts = int(free_c.sum()), int(free_p.sum())
        self.ia = self.var_of_cam[data.cam_idx]
        self.ib = self.var_of_pt[data.pt_idx]
        self.frozen_rows = np.flatnonzero(self.frozen_pose[data.cam_idx])
        self._res_dtype = policy.residual.compute_dtype
        self.depth = {"behind": 0, "clamped": 0}

    def _args(self, state):
        cams, pts = state
        d = self.data
        return (d.model, cams, pts, d.cam_idx, d.pt_idx, d.observations, d.intrinsics, d.sigma)

    def cost(self, state) -> float:
        dt = self.policy.cost.compute_dtype
        r, behind, clamped = reprojection.residuals(*self._args(state), dtype=dt, min_depth=self.min_depth)
        self.depth = {"behind": int(behind), "clamped": int(clamped)}
        return 0.5 * float(np.sum(np.square(r, dtype=np.float64)))

    def linearize(self, state) -> Linearization:
        r, A, B, _, _ = reprojection.linearize(*self._args(state), dtype=self._res_dtype, min_depth=self.min_depth)
        if self.frozen_rows.size:
            A[self.frozen_rows, :, :6] = 0.0
        return Linearization(r, A, B, self.ia, self.ib, self.nc, self.pc, self.npts, 3)

    def retract(self, state, delta: np.ndarray):
        cams, pts = state
        dc = delta[:self.nc * self.pc].reshape(self.nc, self.pc)
        dp = delta[self.nc * self.pc:].reshape(self.npts, 3)
        fc, fp = self.var_of_cam >= 0, self.var_of_pt >= 0
        cams = cams.copy()
        if self.data.model == "bal":
            step = dc[self.var_of_cam[fc]]
            step[self.frozen_pose[fc], :6] = 0.0  # already zero (decoupled, zero gradient); made exact
            cams[fc] += step
        else:
            R = cams[fc, :9].reshape(-1, 3, 3)
            R2, t2 = se3.retract(R, cams[fc, 9:12], dc[self.var_of_cam[fc]])
            cams[fc, :9] = R2.reshape(-1, 9)
            cams[fc, 9:12] = t2
        pts = pts.copy()
        pts[fp] += dp[self.var_of_pt[fp]]
        return cams, pts

    def state_norm(self, state) -> float:
        return float(np.sqrt(np.sum(state[0] ** 2) + np.sum(state[1] ** 2)))


def make_ba_solver(name: str, problem: BundleProblem, policy: PrecisionPolicy, cg: CGConfig):
    if name == "schur":
        from .linear.schur import SchurSolver
        return SchurSolver(problem.nc, problem.pc, problem.npts)
    if name == "cgnr":
        return CGNRSolver(None, policy, cg, "jacobi")  # block-Jacobi needs no normal-matrix pattern
    raise ConfigError(f"unknown BA solver {name!r}; expected one of {SOLVERS}")


def optimize_bundle(data: BundleData, config: BAConfig | None = None, **overrides):
    """Optimize ``data``; returns (BundleData with the optimized cameras and points, :class:`SolveReport`).

    ``overrides`` are BAConfig fields, e.g. ``optimize_bundle(d, precision="mixed", solver="cgnr")``.
    """
    config = dataclasses.replace(config or BAConfig(), **overrides)
    policy = PrecisionPolicy.preset(config.precision, problem="ba")
    if config.solver not in SOLVERS:
        raise ConfigError(f"unknown BA solver {config.solver!r}; expected one of {SOLVERS}")
    if config.solver == "schur" and policy.uses_16bit:
        raise ConfigError(f"the schur solver is fp64 only; policy {policy.name!r} asks for 16-bit storage or "
                          "arithmetic, which only the 'cgnr' solver has")
    if config.lm.method not in ("lm", "gn"):
        raise ConfigError(f"unknown LM method {config.lm.method!r}; expected 'lm' or 'gn'")
    data.validate()
    compile_s = warmup(data.model, policy, config.solver)
    t1 = time.perf_counter()
    problem = BundleProblem(data, policy, config.min_depth)
    solver = make_ba_solver(config.solver, problem, policy, config.cg)
    t2 = time.perf_counter()
    state0 = (data.cameras, data.points)
    with single_threaded_blas():
        (cams, pts), report = levenberg_marquardt(problem, state0, solver, policy, config.lm, config.cg)
    if not (np.isfinite(cams).all() and np.isfinite(pts).all()):
        raise NonFiniteError("bundle adjustment produced non-finite cameras or points")
    fp64 = BundleProblem(data, PrecisionPolicy.preset("fp64", "ba"), config.min_depth)
    report.initial_cost = fp64.cost(state0)
    depth0 = fp64.depth
    report.final_cost = fp64.cost((cams, pts))
    report.solver = config.solver
    report.init = "file"
    report.timing["setup"] = t2 - t1
    report.timing["total"] += t2 - t1
    report.timing["compile"] = compile_s
    report.extra["memory"] = dict(getattr(solver, "memory", {}))
    report.extra["policy"] = policy.as_dict()
    report.extra["depth"] = {"initial": depth0, "final": fp64.depth}
    report.extra["problem"] = {"model": data.model, "cameras": data.num_cameras, "points": data.num_points,
                               "observations": data.num_observations, "free_cameras": problem.nc,
                               "free_points": problem.npts, "warnings": list(data.warnings)}
    return data.with_state(cams, pts), report


_WARM: set = set()


def warmup(model: str = "bal", policy: "str | PrecisionPolicy | None" = None, solver: str | None = None) -> float:
    """Compile (or load from numba's cache) the kernels a BA solve of ``model`` calls; returns the seconds it took.

    With a ``policy`` and ``solver``, only what that solve calls: the residual kernels in fp64 (the reported
    cost) and in the policy's residual precision, the Schur kernels for ``schur``, and the product
    specializations of :func:`mixslam.kernels.warm.specializations`. Without, everything (the benchmarks).
    Warmed kernels are remembered: a second call costs nothing.
    """
    from .kernels.schur import back_substitute, point_blocks, reduce_cameras
    from .kernels.warm import ALL, specializations, warm_products
    from .linear.schur import group_by_point
    if policy is None:
        specs = {s for s in ALL if not s[0].startswith("ic_")}  # BA has no IC preconditioner
        residual_dtypes, schur = (np.dtype(np.float64), np.dtype(np.float32)), True
    else:
        pol = PrecisionPolicy.preset(policy, problem="ba")
        specs = specializations(pol, solver or "schur")
        residual_dtypes = tuple(dict.fromkeys((np.dtype(np.float64), np.dtype(pol.residual.compute_dtype))))
        schur = (solver or "schur") == "schur"
    pc = 9 if model == "bal" else 6
    seconds = warm_products(specs, (2, pc, 3))
    todo = [job for job in (*residual_dtypes, *(("schur",) if schur else ())) if (model, job) not in _WARM]
    if not todo:
        return seconds
    t0 = time.perf_counter()
    cams = np.zeros((2, 9 if model == "bal" else 12))
    if model == "bal":
        cams[:, 6] = 500.0
    else:
        cams[:, [0, 4, 8]] = 1.0
    pts = np.array([[0.1, 0.2, -3.0], [0.2, -0.1, -4.0]]) * (1 if model == "bal" else -1)
    ci = np.array([0, 1, 1], np.int64)
    pi = np.array([0, 0, 1], np.int64)
    obs = np.zeros((3, 2))
    K = np.array([400.0, 400.0, 320.0, 240.0])
    for dt in residual_dtypes:  # fp64 first: its Jacobian feeds the Schur kernels below
        reprojection.residuals(model, cams, pts, ci, pi, obs, K, 1.0, dtype=dt)
        lin = reprojection.linearize(model, cams, pts, ci, pi, obs, K, 1.0, dtype=dt)
        if dt == np.float64:
            A64, B64 = np.ascontiguousarray(lin[1], np.float64), np.ascontiguousarray(lin[2], np.float64)
    if "schur" in todo:
        ia, ib = np.array([-1, 0, 0], np.int64), np.array([0, 0, 1], np.int64)
        U, Vinv, WT = point_blocks(A64, ia, B64, ib, 1, 2, np.ones((1, pc)), np.ones((2, 3)))
        order, ptr = group_by_point(ib, 2)
        reduce_cameras(U, Vinv, WT, ia, order, ptr, np.zeros((1, pc)), np.zeros((2, 3)))
        back_substitute(Vinv, WT, ia, order, ptr, np.zeros((2, 3)), np.zeros((1, pc)))
    _WARM.update((model, job) for job in todo)
    return seconds + time.perf_counter() - t0
