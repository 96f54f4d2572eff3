"""Pose-graph optimization, end to end: ``optimize_pose_graph(graph, PGOConfig(...))``.

Describe -> analyze -> solve: the graph describes the problem; :class:`PoseGraphProblem` analyzes it once
(variable numbering, square-root information, the block pattern of JᵀJ, the solver's symbolic work); the
LM loop then only does numeric work per iteration.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from .backend.choice import check_backend
from .errors import ConfigError, InformationMatrixError, NonFiniteError, SolverError, check_config_fields
from .lie import se2, se3
from .linear.block_pattern import BlockPattern
from .linear.choice import LinearStructure
from .linear.config import CGConfig, DirectConfig, ICConfig
from .linear.linearization import Linearization
from .linear.ordering import shared_orderings
from .precision import Precision, PrecisionPolicy
from .problem.between import cost as fp64_cost
from .problem.between import edge_errors, quadratic_forms, sqrt_information, whitened
from .problem.pose_graph import PoseGraph
from .problem.robust import RobustWeighting
from .solve import driver
from .solve.config import LMConfig, RobustConfig
from .solve.gnc import MAX_FACTOR_FLOPS_PER_ENTRY
from .solve.report import SolveReport
from .solve.robust_report import fill_robust_report, known_inlier_edges

__all__ = [
    "PGOConfig",
    "PoseGraphProblem",
    "INITS",
    "initial_guess",
    "choose_initial_guess",
    "optimize_pose_graph",
    "warmup",
]

INITS = ("auto", "file", "odometry", "chordal")
"""The values of :attr:`PGOConfig.init`."""


@dataclass(frozen=True)
class PGOConfig:
    """Everything that chooses how a pose graph is solved."""

    precision: str | PrecisionPolicy = "fp64"
    """A preset name (``fp64``, ``fp32``, ``mixed``, ``mixed16``, ``fp16``) or a :class:`PrecisionPolicy`."""
    solver: str | None = None
    """Linear solver: ``cholesky`` (sparse Cholesky in the policy's ``factor`` format: fp64, or fp32 refined
    to fp64) or ``cg`` (CGNR in the policy's precisions); the aliases ``ic`` (= ``cg`` + ``ic``) and ``cgnr``
    (= ``cg`` + ``jacobi``) of earlier releases still work. None: the policy's own
    (:func:`mixslam.linear.choice.default_linear_solver`: ``cholesky`` when its ``factor`` is fp64 or fp32,
    else ``cg`` + ``ic``; a preconditioner given alone means ``cg``)."""
    preconditioner: str | None = None
    """Preconditioner of ``cg``: ``ic`` (static block incomplete Cholesky IC(k), k = ``ic.fill_level``,
    default 2), ``jacobi`` (block-Jacobi) or ``none``. None: ``ic`` (or the one the solver alias names)."""
    init: str = "auto"
    """Initial guess: ``auto`` (the default: the chordal relaxation and the file's guess, whichever has the
    lower cost; :func:`choose_initial_guess`), ``file`` (as read; edges-only files get a spanning-tree
    guess), ``odometry`` (compose measurements along a spanning tree preferring odometry edges) or
    ``chordal``."""
    lm: LMConfig = field(default_factory=LMConfig)
    """Outer-loop settings."""
    cg: CGConfig = field(default_factory=CGConfig)
    """Inner CG settings (``cg`` only)."""
    ic: ICConfig = field(default_factory=ICConfig)
    """Incomplete-Cholesky preconditioner settings (``ic`` only)."""
    direct: DirectConfig = field(default_factory=DirectConfig)
    """Mixed-precision direct solve settings (refinement tolerance, factor reuse, ordering), used when the
    policy's ``factor`` is fp32."""
    robust: RobustConfig = field(default_factory=RobustConfig)
    """Robust loss of the edges and graduated non-convexity (default: plain least squares)."""
    backend: str = "numba"
    """What runs the LM iterations: ``numba`` (the CPU kernels, every solver) or ``jax`` (the device backend,
    :mod:`mixslam.backend`: CG with ``jacobi`` (the default there) or ``none``, no robust loss, no 16-bit
    arithmetic; needs ``pip install "mixslam[jax]"``)."""
    device: str | None = None
    """``jax`` only: ``cpu``, ``gpu``, or None (the GPU when JAX sees one, else the CPU)."""

    def __post_init__(self):
        check_config_fields(self, choices={"init": INITS})
        driver.check_solve_settings(self)
        check_backend(self)


class PoseGraphProblem:
    """The analyzed pose graph: variable numbering, whitening and the normal-matrix pattern."""

    def __init__(
        self,
        graph: PoseGraph,
        policy: PrecisionPolicy,
        file_graph: PoseGraph | None = None,
        init_seconds: float = 0.0,
        robust: RobustConfig | None = None,
    ):
        """``graph``: the graph with the initial guess; ``file_graph``: the graph as read (for the report's
        ``file_cost``), if another initialization produced ``graph``; ``robust``: the edges' robust loss."""
        self.graph = graph
        self.robust = robust_weighting(graph, robust)
        self.file_graph = file_graph
        self.init_seconds = init_seconds
        self.initial_state = (graph.rotations, graph.translations)
        self.policy = policy
        self.p = graph.tangent_dim
        free = ~graph.fixed
        self.var_of_pose = np.full(graph.num_poses, -1, dtype=np.int64)
        self.var_of_pose[free] = np.arange(int(free.sum()))
        self.nv = int(free.sum())
        self._ia_all = self.var_of_pose[graph.edge_i]
        self._ib_all = self.var_of_pose[graph.edge_j]
        self.ia, self.ib = self._ia_all, self._ib_all
        self.active: np.ndarray | None = None
        """Edges in the normal matrix's pattern (None: all); :meth:`restrict_blocks`."""
        self.W = sqrt_information(graph.information)  # fp64, Wᵀ W = Ω
        # no free pose: nothing to solve (the driver returns the input); a pattern needs one variable
        self._pattern = BlockPattern(self.ia, self.ib, self.nv, self.p) if self.nv else None
        self._res_dtype = policy.residual.compute_dtype
        self._W_res = self.W.astype(self._res_dtype)
        self._retract = se2.retract if graph.dim == 2 else se3.retract

    def restrict_blocks(self, active: np.ndarray | None) -> None:
        """Keep only the ``active`` edges (None: all) in the linear systems: the others are linearized as
        edges between fixed poses (no Jacobian blocks, no entries in the normal matrix), and the pattern is
        rebuilt without them. Exact for edges whose robust weight is zero (TLS under GNC rejects edges with
        weight exactly 0): they add nothing to the gradient or the normal matrix, only fill to its factor
        (measured on city10000 with 10% random false loop closures: 118x the clean factor's flops). The cost
        still counts every edge."""
        if active is None or bool(np.all(active)):
            self.active, self.ia, self.ib = None, self._ia_all, self._ib_all
        else:
            self.active = np.asarray(active, dtype=bool).copy()
            self.ia = np.where(self.active, self._ia_all, -1)
            self.ib = np.where(self.active, self._ib_all, -1)
        if self.nv:
            self._pattern = BlockPattern(self.ia, self.ib, self.nv, self.p)

    @property
    def pattern(self) -> BlockPattern:
        """The normal matrix's block pattern (a graph with a free pose only)."""
        if self._pattern is None:
            raise ValueError("a pose graph without a free pose has no block pattern")
        return self._pattern

    # state = (rotations, translations), fp64
    def block_sq_norms(self, state) -> np.ndarray:
        """(edges,) eᵀΩe of every edge in fp64."""
        e = edge_errors(self.graph, state[0], state[1], dtype=np.float64)
        return quadratic_forms(e, self.graph.information)

    def cost(self, state) -> float:
        R, t = state
        if self.robust is not None:  # the robust cost is fp64 whatever the policy (issue: GTSAM #1129)
            return self.robust.cost(self.block_sq_norms(state))
        if self.policy.cost is Precision.FP64:
            return fp64_cost(self.graph, R, t)
        dt = self.policy.cost.compute_dtype
        e = edge_errors(self.graph, R, t, dtype=dt)
        we = np.einsum("mij,mj->mi", self._W_res if self._res_dtype == dt else self.W.astype(dt), e)
        return 0.5 * float(np.sum(we * we, dtype=dt))

    def linearize(self, state) -> Linearization:
        R, t = state
        r, A, B = whitened(self.graph, R, t, self._W_res, dtype=self._res_dtype)
        if self.robust is not None:
            self.robust.apply(r, A, B)
        return Linearization(r, A, B, self.ia, self.ib, self.nv, self.p)

    def residuals(self, state) -> np.ndarray | None:
        """Whitened residuals (m, k) at ``state`` in the linearization's precision and rows (robust weights
        included), without Jacobians; None in a robust loss's loss mode, whose row weights move with the
        residuals (LM's geodesic acceleration then does without)."""
        weights = None if self.robust is None else self.robust.weights
        if self.robust is not None and weights is None:
            return None
        R, t = state
        e = edge_errors(self.graph, R, t, dtype=self._res_dtype)
        r = np.einsum("mij,mj->mi", self._W_res, e)
        if weights is not None:  # fixed weights, as linearize's robust.apply scales the rows
            r *= np.sqrt(weights.astype(r.dtype))[:, None]
        return r

    def retract(self, state, delta: np.ndarray):
        R, t = state
        d = np.zeros((self.graph.num_poses, self.p))
        free = self.var_of_pose >= 0
        d[free] = delta.reshape(self.nv, self.p)[self.var_of_pose[free]]
        return self._retract(R, t, d)

    def state_norm(self, state) -> float:
        return float(np.linalg.norm(state[1]))

    # what the driver needs (mixslam.solve.driver.AnalyzedProblem)
    def linear_structure(self) -> LinearStructure:
        return LinearStructure(self.nv, self.p, pattern=self._pattern)

    def direct_size(self) -> tuple[int, int] | None:
        return None  # the sparse Cholesky has no size limit

    def warm(self, specs: frozenset) -> float:
        from .kernels.between import warm_between
        from .kernels.warm import warm_products

        return warm_products(specs, (self.p, self.p, self.p)) + warm_between()

    def fp64_cost(self, state) -> float:
        if self.robust is not None:
            return self.robust.loss_cost(self.block_sq_norms(state))
        return fp64_cost(self.graph, *state)

    def is_finite(self, state) -> bool:
        return bool(np.isfinite(state[0]).all() and np.isfinite(state[1]).all())

    def finish_report(self, report: SolveReport, state) -> None:
        g = self.file_graph
        report.file_cost = report.initial_cost if g is None else fp64_cost(g, g.rotations, g.translations)
        if self.robust is not None:
            fill_robust_report(report, self.robust, self.block_sq_norms(state))


def robust_weighting(graph: PoseGraph, robust: RobustConfig | None) -> RobustWeighting | None:
    """The robust part of the cost for ``robust`` (None: plain least squares). Known inliers: ``odometry`` =
    edges between consecutive vertex ids (``auto``: with GNC)."""
    if robust is None or robust.loss is None:
        return None
    mode = robust.known_inliers
    if mode == "auto":
        mode = "odometry" if robust.gnc else "none"
    mask = known_inlier_edges(graph.ids[graph.edge_i], graph.ids[graph.edge_j]) if mode == "odometry" else None
    return RobustWeighting(robust.loss, graph.tangent_dim, mask)


def choose_initial_guess(graph: PoseGraph, robust: RobustConfig | None = None) -> tuple[PoseGraph, str]:
    """The ``auto`` rule: the chordal relaxation's guess unless the file's guess has a lower (fp64) cost.

    Measured on the 12 shared graphs (``docs/pgo_results.md``): from the chordal guess LM reaches the best
    known optimum on every one, from the file's guess it stops in a poor minimum on MIT (chi2 770.7 vs
    41.16), torus3D and cubicle and hits the iteration limit on ais2klinik; the chordal guess costs less
    than the file's on all of them. A file that already holds a (near-)optimal solution, e.g. the output of
    an earlier solve, costs less than its chordal relaxation and is kept, so re-optimizing does not move
    it. Returns (graph with the chosen poses, ``"chordal"`` or ``"file"``; the file with the reason when the
    chordal relaxation cannot be solved).

    With a robust loss (``robust``) the odometry guess (measurements composed along a spanning tree that
    prefers consecutive ids) is a third candidate and the candidates are compared by the robust cost: the
    chordal relaxation weighs every edge alike, so false loop closures bend it, while odometry ignores them.
    The chordal candidate is then left out when its factor would fill (more than
    :data:`~mixslam.solve.gnc.MAX_FACTOR_FLOPS_PER_ENTRY` flops per matrix entry): city10000 with 30% random
    false loop closures spent 10 s of a 45 s GNC solve on it, and lost to odometry.
    """
    rw = robust_weighting(graph, robust)
    candidates: list[tuple[str, PoseGraph]] = [("file", graph)]
    try:
        if rw is None:
            candidates.append(("chordal", initial_guess(graph, "chordal")))
        else:  # false loop closures may fill the chordal systems' factor: then odometry and the file compete
            from .init.chordal import chordal_initialization

            candidates.append(
                ("chordal", chordal_initialization(graph, max_flops_per_entry=MAX_FACTOR_FLOPS_PER_ENTRY))
            )
    except SolverError as exc:  # a chordal system the file's guess does not need (e.g. singular rotations)
        if rw is None:
            return graph, f"file; chordal failed: {exc}"
    if rw is not None:
        candidates.append(("odometry", initial_guess(graph, "odometry")))

    def score(g: PoseGraph) -> float:
        if rw is None:
            return fp64_cost(g, g.rotations, g.translations)
        e = edge_errors(g, g.rotations, g.translations)
        return rw.loss_cost(quadratic_forms(e, g.information))

    costs = [score(g) for _, g in candidates]
    # ties and NaN favour the earlier candidate: the file, then chordal
    best = 0
    for i in range(1, len(candidates)):
        if costs[i] < costs[best] or not np.isfinite(costs[best]):
            best = i
    return candidates[best][1], candidates[best][0]


def initial_guess(graph: PoseGraph, init: str) -> PoseGraph:
    """Apply an initialization method and return the graph with the new poses."""
    if init == "auto":
        return choose_initial_guess(graph)[0]
    if init == "file":
        return graph
    if init == "odometry":
        from .init.spanning_tree import spanning_tree_guess

        return spanning_tree_guess(graph)
    if init == "chordal":
        from .init.chordal import chordal_initialization

        return chordal_initialization(graph)
    raise ConfigError(f"unknown init {init!r}; expected one of {list(INITS)}")


def optimize_pose_graph(graph: PoseGraph, config: PGOConfig | None = None, **overrides):
    """Optimize ``graph``; returns (graph with optimized poses, :class:`SolveReport`).

    ``overrides`` are PGOConfig fields, e.g. ``optimize_pose_graph(g, precision="mixed")``.
    """
    config = dataclasses.replace(config or PGOConfig(), **overrides)
    chosen = [config.init]

    def analyze(policy: PrecisionPolicy) -> PoseGraphProblem:
        t0 = time.perf_counter()
        if config.init == "auto":
            start, chosen[0] = choose_initial_guess(graph, config.robust)
        else:
            start = initial_guess(graph, config.init)
        if not (np.isfinite(start.rotations).all() and np.isfinite(start.translations).all()):
            raise NonFiniteError(f"{graph.source}: the initial guess ({config.init}) has NaN/inf poses")
        init_s = time.perf_counter() - t0
        try:
            return PoseGraphProblem(start, policy, None if start is graph else graph, init_s, config.robust)
        except np.linalg.LinAlgError as exc:
            raise InformationMatrixError(
                f"{graph.source}: an information matrix is not positive definite ({exc})"
            ) from None

    with shared_orderings():  # the chordal solves and the LM's factor order the same graph once
        if config.backend == "jax":
            from .backend import jax_solve
            from .backend.jax_lm import device_pose_graph

            def to_device(problem: PoseGraphProblem, policy: PrecisionPolicy, device):
                return device_pose_graph(problem.graph, policy, device)

            problem, (R, t), report = jax_solve.solve("pgo", config, graph.validate, analyze, to_device)
        else:
            problem, (R, t), report = driver.solve("pgo", config, graph.validate, analyze)
    report.init = config.init if config.init != "auto" else f"auto ({chosen[0]})"
    return problem.graph.with_poses(R, t), report


def warmup(dims=(2, 3)) -> float:
    """Compile (or load from numba's cache) every kernel specialization a pose-graph solve may call, for the
    pose dimensions in ``dims`` (2: SE(2), 3: SE(3)); returns the seconds it took. For the benchmarks, which
    time every policy; a solve compiles only what it calls (:mod:`mixslam.kernels.warm`). Warmed
    specializations are remembered: a second call costs nothing.
    """
    from .kernels.between import warm_between
    from .kernels.supernodal import warm as supernodal_warm
    from .kernels.warm import ALL, warm_products

    seconds = supernodal_warm() + warm_between()
    for d in dims:
        p = 3 if d == 2 else 6  # the kernels specialize on the block size: SE(2) and SE(3) poses
        seconds += warm_products(ALL, (p, p, p))
    return seconds
