"""Bundle adjustment, end to end: ``optimize_bundle(data, BAConfig(...))``.

Describe -> analyze -> solve, as for pose graphs: :class:`~mixslam.problem.bundle.BundleData` describes the
problem; :class:`BundleProblem` numbers the free cameras and points once; the LM loop of
:mod:`mixslam.solve.lm` does the numeric work with one of two linear solvers:

``schur``
    fp64 landmark elimination + dense Cholesky of the reduced camera system (the accuracy baseline; the
    default of a policy whose linear solve is all fp64, while the reduced system fits ``MAX_DENSE``).
``cg`` (alias ``cgnr``)
    CGNR on the per-observation Jacobian blocks (2 x pc camera block, 2 x 3 point block), block-Jacobi
    preconditioned, never forming JᵀJ; the Jacobian products run in the policy's precision (``mixed``: the
    column-scaled Jacobian is stored in fp16 and the products accumulate in fp32; the right-hand side Jᵀr is
    computed from the fp32 Jacobian, never from the 16-bit copy).

The solve sequence itself (validation, compilation, threads, the finiteness guard, the fp64 costs, the
report) is :func:`mixslam.solve.driver.solve`, shared with the pose graphs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from .backend.choice import check_backend
from .errors import ConfigError, check_config_fields
from .lie import se3
from .linear.choice import LinearStructure
from .linear.config import CGConfig, DirectConfig, ICConfig
from .linear.linearization import Linearization
from .linear.schur import MAX_DENSE, SCHUR_KERNELS, SCHUR_KERNELS_32
from .precision import PrecisionPolicy
from .problem import reprojection
from .problem.bundle import BundleData
from .problem.robust import RobustWeighting
from .solve import driver
from .solve.config import LMConfig, RobustConfig
from .solve.report import DepthCounts, DepthStats, ProblemInfo, SolveReport
from .solve.robust_report import fill_robust_report

__all__ = ["BAConfig", "BundleProblem", "optimize_bundle", "warmup"]


def _default_lm() -> LMConfig:
    # Ceres' rule (the last decrease below 1e-6), not the predicted one: it reproduces Ceres' answers
    return LMConfig(initial_lambda=1e-4, function_tolerance=1e-6, predict_stop=False)


@dataclass(frozen=True)
class BAConfig:
    """Everything that chooses how a bundle-adjustment problem is solved."""

    precision: str | PrecisionPolicy = "fp64"
    """A preset name (``fp64``, ``fp32``, ``mixed``, ``mixed16``, ``fp16``; the ``ba`` presets, where ``mixed``
    stores the Jacobian in fp16) or a :class:`PrecisionPolicy`."""
    solver: str | None = None
    """``schur`` (fp64 landmark elimination, dense reduced camera system) or ``cg`` (alias ``cgnr``: matrix-free
    CGNR, products in the policy's precision). None: the policy's own (``schur`` when its ``factor`` is fp64
    and the reduced camera system fits ``MAX_DENSE`` unknowns, else ``cg``)."""
    preconditioner: str | None = None
    """Preconditioner of ``cg``: ``jacobi`` (block-Jacobi of cameras and points; the default) or ``none``."""
    lm: LMConfig = field(default_factory=_default_lm)
    """Outer-loop settings. BA defaults follow Ceres: initial damping 1e-4 (Ceres' initial trust radius 1e4)
    and function_tolerance 1e-6 (Ceres' default; an fp32 cost cannot resolve decreases much below it)."""
    cg: CGConfig = field(default_factory=CGConfig)
    """Inner CG settings (``cg`` only)."""
    ic: ICConfig = field(default_factory=ICConfig)
    """Unused (bundle adjustment has no incomplete-Cholesky preconditioner); kept so every problem kind's
    configuration has the same solver fields."""
    direct: DirectConfig = field(default_factory=DirectConfig)
    """Mixed-precision direct solve settings (refinement tolerance, factor reuse, ordering), used when the
    policy's ``factor`` is fp32."""
    min_depth: float | None = None
    """Depth guard: |P.z| below this is clamped (counted in the report). None: the kernels' default for the
    residual precision."""
    robust: RobustConfig = field(default_factory=RobustConfig)
    """Robust loss of the reprojection errors (per observation: the 2-vector block) and graduated
    non-convexity (default: plain least squares)."""
    backend: str = "numba"
    """What runs the LM iterations: ``numba`` (the CPU kernels, every solver) or ``jax`` (the device backend,
    :mod:`mixslam.backend`: CG with ``jacobi`` (the default there) or ``none``, no robust loss, no 16-bit
    arithmetic; needs ``pip install "mixslam[jax]"``)."""
    device: str | None = None
    """``jax`` only: ``cpu``, ``gpu``, or None (the GPU when JAX sees one, else the CPU)."""

    def __post_init__(self):
        driver.check_solve_settings(self)
        check_backend(self)
        if self.robust.known_inliers == "odometry":
            raise ConfigError("BAConfig.robust.known_inliers: 'odometry' applies to pose graphs; use 'none'")
        if self.min_depth is not None:
            check_config_fields(self, positive=("min_depth",))


class BundleProblem:
    """The analyzed bundle-adjustment problem: free-variable numbering and the LM callbacks."""

    def __init__(self, data: BundleData, policy: PrecisionPolicy, min_depth: float | None = None, robust=None):
        self.data = data
        self.robust = None if robust is None or robust.loss is None else RobustWeighting(robust.loss, 2)
        self.initial_state = (data.cameras, data.points)
        self.init_seconds = 0.0
        self.fp64_depths: list[DepthCounts] = []
        self.policy = policy
        self.min_depth = min_depth
        self.pc = data.camera_tangent_dim
        self.var_of_cam = np.full(data.num_cameras, -1, dtype=np.int64)
        # BAL cameras carry their intrinsics, which are not part of the gauge: a "fixed" BAL camera keeps its
        # pose (w, t) but its f, k1, k2 are still estimated (fixing them too moves the optimum: 16-22106 then
        # stops at 59100 instead of Ceres' 18033.9). Its pose columns are zeroed in every linearization.
        fixed_c, fixed_p = data.fixed_cameras, data.fixed_points
        assert fixed_c is not None and fixed_p is not None  # arrays since BundleData.__post_init__
        self.frozen_pose = fixed_c.copy() if data.model == "bal" else np.zeros(data.num_cameras, bool)
        free_c = ~fixed_c | self.frozen_pose
        self.var_of_cam[free_c] = np.arange(int(free_c.sum()))
        self.var_of_pt = np.full(data.num_points, -1, dtype=np.int64)
        free_p = ~fixed_p
        self.var_of_pt[free_p] = np.arange(int(free_p.sum()))
        self.nc, self.npts = int(free_c.sum()), int(free_p.sum())
        self.ia = self.var_of_cam[data.cam_idx]
        self.ib = self.var_of_pt[data.pt_idx]
        self.frozen_rows = np.flatnonzero(self.frozen_pose[data.cam_idx])
        self._res_dtype = policy.residual.compute_dtype
        self.depth = {"behind": 0, "clamped": 0}

    def _args(self, state) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """The eight positional arguments of :func:`reprojection.residuals` / ``linearize`` for ``state``."""
        cams, pts = state
        d = self.data
        return (d.model, cams, pts, d.cam_idx, d.pt_idx, d.observations, d.intrinsics, d.sigma)

    def cost(self, state) -> float:
        dt = self.policy.cost.compute_dtype if self.robust is None else np.float64
        r, behind, clamped = reprojection.residuals(*self._args(state), dtype=dt, min_depth=self.min_depth)
        self.depth = {"behind": int(behind), "clamped": int(clamped)}
        if self.robust is not None:  # the robust cost is fp64 whatever the policy
            return self.robust.cost(np.sum(np.square(r, dtype=np.float64), axis=1))
        return 0.5 * float(np.sum(np.square(r, dtype=np.float64)))

    def block_sq_norms(self, state) -> np.ndarray:
        """(observations,) squared whitened reprojection errors in fp64."""
        r, _, _ = reprojection.residuals(*self._args(state), dtype=np.float64, min_depth=self.min_depth)
        return np.sum(np.square(r), axis=1)

    def linearize(self, state) -> Linearization:
        r, A, B, _, _ = reprojection.linearize(*self._args(state), dtype=self._res_dtype, min_depth=self.min_depth)
        if self.frozen_rows.size:
            A[self.frozen_rows, :, :6] = 0.0
        if self.robust is not None:
            self.robust.apply(r, A, B)
        return Linearization(r, A, B, self.ia, self.ib, self.nc, self.pc, self.npts, 3)

    def retract(self, state, delta: np.ndarray):
        cams, pts = state
        dc = delta[: self.nc * self.pc].reshape(self.nc, self.pc)
        dp = delta[self.nc * self.pc :].reshape(self.npts, 3)
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

    # what the driver needs (mixslam.solve.driver.AnalyzedProblem)
    def linear_structure(self) -> LinearStructure:
        return LinearStructure(self.nc, self.pc, self.npts, 3)

    def direct_size(self) -> tuple[int, int]:
        return self.nc * self.pc, MAX_DENSE  # the Schur solver's dense reduced camera system

    def warm(self, specs: frozenset) -> float:
        """The residual kernels in fp64 (the reported cost) and in the policy's residual precision, and
        ``specs`` (the Schur solver lists its kernels as :data:`SCHUR_KERNELS`)."""
        return _warm(self.data.model, specs, (np.dtype(np.float64), np.dtype(self.policy.residual.compute_dtype)))

    def fp64_cost(self, state) -> float:
        """The fp64 cost of ``state``; its depth counts are kept in ``fp64_depths``."""
        r, behind, clamped = reprojection.residuals(*self._args(state), dtype=np.float64, min_depth=self.min_depth)
        self.fp64_depths.append(DepthCounts(int(behind), int(clamped)))
        if self.robust is not None:
            return self.robust.loss_cost(np.sum(np.square(r), axis=1))
        return 0.5 * float(np.sum(np.square(r, dtype=np.float64)))

    def is_finite(self, state) -> bool:
        return bool(np.isfinite(state[0]).all() and np.isfinite(state[1]).all())

    def finish_report(self, report: SolveReport, state) -> None:
        d = self.data
        report.init = "file"
        report.depth = DepthStats(self.fp64_depths[-2], self.fp64_depths[-1])
        report.problem = ProblemInfo(
            d.model, d.num_cameras, d.num_points, d.num_observations, self.nc, self.npts, list(d.warnings)
        )
        if self.robust is not None:
            fill_robust_report(report, self.robust, self.block_sq_norms(state))


def optimize_bundle(data: BundleData, config: BAConfig | None = None, **overrides):
    """Optimize ``data``; returns (BundleData with the optimized cameras and points, :class:`SolveReport`).

    ``overrides`` are BAConfig fields, e.g. ``optimize_bundle(d, precision="mixed")``.
    """
    config = dataclasses.replace(config or BAConfig(), **overrides)

    def analyze(policy: PrecisionPolicy) -> BundleProblem:
        return BundleProblem(data, policy, config.min_depth, config.robust)

    if config.backend == "jax":
        from .backend import jax_solve
        from .backend.jax_lm import device_bundle

        def to_device(problem: BundleProblem, policy: PrecisionPolicy, device):
            return device_bundle(problem.data, policy, device, config.min_depth)

        _, (cams, pts), report = jax_solve.solve("ba", config, data.validate, analyze, to_device)
    else:
        _, (cams, pts), report = driver.solve("ba", config, data.validate, analyze)
    return data.with_state(cams, pts), report


_WARM: set = set()


def warmup(model: str = "bal") -> float:
    """Compile (or load from numba's cache) every kernel a BA solve of ``model`` may call; returns the seconds.

    For the benchmarks, which time every policy; a solve compiles only what it calls
    (:meth:`BundleProblem.warm`). Warmed kernels are remembered: a second call costs nothing.
    """
    from .kernels.warm import ALL

    f64, f32, f16 = np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16)
    schur = {SCHUR_KERNELS, SCHUR_KERNELS_32}
    schur |= {("implicit_schur", st, dt, False) for st, dt in ((f64, f64), (f32, f32), (f16, f32))}
    specs = {s for s in ALL if not s[0].startswith("ic_")} | schur  # BA has no IC preconditioner
    return _warm(model, specs, (np.dtype(np.float64), np.dtype(np.float32)))


def _warm(model: str, specs, residual_dtypes) -> float:
    """Compile the residual kernels in ``residual_dtypes``, the product specializations in ``specs`` and the
    Schur kernels in the dtypes ``specs`` lists them (``("schur", dtype, dtype, False)``)."""
    from .kernels import schur as schur_kernels
    from .kernels.warm import warm_products

    residual_dtypes = tuple(dict.fromkeys(residual_dtypes))
    schur_dtypes = tuple(np.dtype(s[1]) for s in specs if s[0] == "schur")
    implicit = tuple(("implicit", np.dtype(s[1]), np.dtype(s[2])) for s in specs if s[0] == "implicit_schur")
    pc = 9 if model == "bal" else 6
    seconds = warm_products({s for s in specs if s[0] not in ("schur", "implicit_schur")}, (2, pc, 3), two_sets=True)
    jobs = (*residual_dtypes, *(("schur", dt) for dt in schur_dtypes), *implicit)
    todo = [job for job in jobs if (model, job) not in _WARM]
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
    for job in todo:
        if isinstance(job, tuple) and job[0] == "implicit":
            schur_kernels.warm_implicit(pc, job[1], job[2])
        elif isinstance(job, tuple):
            schur_kernels.warm(pc, job[1])
        else:
            reprojection.residuals(model, cams, pts, ci, pi, obs, K, 1.0, dtype=job)
            reprojection.linearize(model, cams, pts, ci, pi, obs, K, 1.0, dtype=job)
    _WARM.update((model, job) for job in todo)
    return seconds + time.perf_counter() - t0
