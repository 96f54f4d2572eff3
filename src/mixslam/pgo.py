"""Pose-graph optimization, end to end: ``optimize_pose_graph(graph, PGOConfig(...))``.

Describe -> analyze -> solve: the graph describes the problem; :class:`PoseGraphProblem` analyzes it once
(variable numbering, square-root information, the block pattern of JᵀJ, the solver's symbolic work); the
LM loop then only does numeric work per iteration.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ._threads import single_threaded_blas
from .errors import ConfigError, InformationMatrixError, NonFiniteError
from .lie import se2, se3
from .linear.block_pattern import BlockPattern
from .linear.solvers import Linearization, make_linear_solver
from .precision import Precision, PrecisionPolicy
from .problem.between import cost as fp64_cost
from .problem.between import linearize, sqrt_information
from .problem.pose_graph import PoseGraph
from .solve.config import CGConfig, LMConfig
from .solve.lm import levenberg_marquardt


@dataclass(frozen=True)
class PGOConfig:
    """Everything that chooses how a pose graph is solved."""

    precision: str | PrecisionPolicy = "fp64"
    """A preset name (``fp64``, ``fp32``, ``mixed``, ``mixed16``, ``fp16``) or a :class:`PrecisionPolicy`."""
    solver: str = "cholesky"
    """``cholesky`` (fp64 direct), ``cgnr`` (CGNR + block-Jacobi) or ``ic`` (CGNR + static block IC(k), k = ``cg.ic_fill_level``, default 2)."""
    init: str = "file"
    """Initial guess: ``file`` (as read; edges-only files get a spanning-tree guess), ``odometry``
    (compose measurements along a spanning tree preferring odometry edges) or ``chordal``."""
    lm: LMConfig = field(default_factory=LMConfig)
    """Outer-loop settings."""
    cg: CGConfig = field(default_factory=CGConfig)
    """Inner CG settings (CG solvers only)."""


class PoseGraphProblem:
    """The analyzed pose graph: variable numbering, whitening and the normal-matrix pattern."""

    def __init__(self, graph: PoseGraph, policy: PrecisionPolicy):
        self.graph = graph
        self.policy = policy
        self.p = graph.tangent_dim
        free = ~graph.fixed
        self.var_of_pose = np.full(graph.num_poses, -1, dtype=np.int64)
        self.var_of_pose[free] = np.arange(int(free.sum()))
        self.nv = int(free.sum())
        self.ia = self.var_of_pose[graph.edge_i]
        self.ib = self.var_of_pose[graph.edge_j]
        self.W = sqrt_information(graph.information)  # fp64, Wᵀ W = Ω
        self.pattern = BlockPattern(self.ia, self.ib, self.nv, self.p)
        self._res_dtype = policy.residual.compute_dtype
        self._W_res = self.W.astype(self._res_dtype)
        self._retract = se2.retract if graph.dim == 2 else se3.retract

    # state = (rotations, translations), fp64
    def cost(self, state) -> float:
        R, t = state
        if self.policy.cost is Precision.FP64:
            return fp64_cost(self.graph, R, t)
        dt = self.policy.cost.compute_dtype
        e = linearize(self.graph, R, t, dtype=dt, jacobians=False)[0]
        we = np.einsum("mij,mj->mi", self._W_res if self._res_dtype == dt else self.W.astype(dt), e)
        return 0.5 * float(np.sum(we * we, dtype=dt))

    def linearize(self, state) -> Linearization:
        R, t = state
        e, Ji, Jj = linearize(self.graph, R, t, dtype=self._res_dtype)
        W = self._W_res
        r = np.einsum("mij,mj->mi", W, e)
        A = W @ Ji
        B = W @ Jj
        return Linearization(r, A, B, self.ia, self.ib, self.nv, self.p)

    def retract(self, state, delta: np.ndarray):
        R, t = state
        d = np.zeros((self.graph.num_poses, self.p))
        free = self.var_of_pose >= 0
        d[free] = delta.reshape(self.nv, self.p)[self.var_of_pose[free]]
        return self._retract(R, t, d)

    def state_norm(self, state) -> float:
        return float(np.linalg.norm(state[1]))


def initial_guess(graph: PoseGraph, init: str) -> PoseGraph:
    """Apply an initialization method and return the graph with the new poses."""
    if init == "file":
        return graph
    if init == "odometry":
        from .init.spanning_tree import spanning_tree_guess
        return spanning_tree_guess(graph)
    if init == "chordal":
        from .init.chordal import chordal_initialization
        return chordal_initialization(graph)
    raise ConfigError(f"unknown init {init!r}; expected 'file', 'odometry' or 'chordal'")


def optimize_pose_graph(graph: PoseGraph, config: PGOConfig | None = None, **overrides):
    """Optimize ``graph``; returns (graph with optimized poses, :class:`SolveReport`).

    ``overrides`` are PGOConfig fields, e.g. ``optimize_pose_graph(g, precision="mixed", solver="ic")``.
    """
    import dataclasses
    config = dataclasses.replace(config or PGOConfig(), **overrides)
    policy = PrecisionPolicy.preset(config.precision, problem="pgo")
    if config.solver not in ("cholesky", "cgnr", "ic"):
        raise ConfigError(f"unknown solver {config.solver!r}; expected 'cholesky', 'cgnr' or 'ic'")
    if config.solver == "cholesky" and policy.uses_16bit:
        raise ConfigError(f"the cholesky solver is fp64 only; policy {policy.name!r} asks for 16-bit storage or "
                          "arithmetic, which only the CG solvers ('cgnr', 'ic') have")
    if config.lm.method not in ("lm", "gn"):
        raise ConfigError(f"unknown LM method {config.lm.method!r}; expected 'lm' or 'gn'")
    if config.cg.forcing not in ("superlinear", "eisenstat-walker", "fixed"):
        raise ConfigError(f"unknown forcing {config.cg.forcing!r}; expected 'superlinear', 'eisenstat-walker' or 'fixed'")
    graph.validate()
    compile_s = warmup(policy, config.solver, dims=(graph.dim,))
    t1 = time.perf_counter()
    start = initial_guess(graph, config.init)
    if not (np.isfinite(start.rotations).all() and np.isfinite(start.translations).all()):
        raise NonFiniteError(f"{graph.source}: the initial guess ({config.init}) has NaN/inf poses")
    t2 = time.perf_counter()
    try:
        problem = PoseGraphProblem(start, policy)
    except np.linalg.LinAlgError as exc:
        raise InformationMatrixError(f"{graph.source}: an information matrix is not positive definite ({exc})") from None
    solver = make_linear_solver(config.solver, problem.pattern, policy, config.cg)
    t3 = time.perf_counter()
    with single_threaded_blas():  # see _threads.py: spinning BLAS threads steal the numba core
        (R, t), report = levenberg_marquardt(problem, (start.rotations, start.translations), solver, policy,
                                             config.lm, config.cg)
    # The returned poses must be finite whatever the precision did; LM keeps the best finite iterate.
    if not (np.isfinite(R).all() and np.isfinite(t).all()):
        raise NonFiniteError("optimization produced non-finite poses")
    report.final_cost = fp64_cost(start, R, t)
    report.initial_cost = fp64_cost(start, start.rotations, start.translations)
    report.init = config.init
    report.solver = config.solver
    report.timing["init"] = t2 - t1
    report.timing["setup"] = t3 - t2
    report.timing["total"] += (t3 - t1)
    report.timing["compile"] = compile_s
    report.extra["memory"] = dict(getattr(solver, "memory", {}))
    report.extra["file_cost"] = fp64_cost(graph, graph.rotations, graph.translations) if config.init != "file" else report.initial_cost
    report.extra["policy"] = policy.as_dict()
    if getattr(solver, "ic", None) is not None:
        report.extra["ic"] = {**solver.ic.factor_stats, "factorizations": solver.ic_factorizations}
    return start.with_poses(R, t), report


def warmup(policy: "str | PrecisionPolicy | None" = None, solver: str | None = None, dims=(2, 3)) -> float:
    """Compile (or load from numba's cache) the kernels a pose-graph solve calls; returns the seconds it took.

    With a ``policy`` and ``solver``, only the specializations that solve calls (:mod:`mixslam.kernels.warm`),
    for the pose dimensions in ``dims`` (2: SE(2), 3: SE(3)); without, every specialization (the benchmarks,
    which time every policy). Warmed specializations are remembered: a second call costs nothing.
    """
    from .kernels.warm import ALL, specializations, warm_products
    specs = ALL if policy is None else specializations(PrecisionPolicy.preset(policy, problem="pgo"),
                                                        solver or "cholesky")
    seconds = 0.0
    for d in dims:
        p = 3 if d == 2 else 6  # the kernels specialize on the block size: SE(2) and SE(3) poses
        seconds += warm_products(specs, (p, p, p))
    return seconds
