"""One :class:`SolveReport` per solve: status, reason, best iterate, per-iteration history, timings, and typed
records of what the linear solver, the preconditioner and the quantizations did."""

from __future__ import annotations

import dataclasses
import enum
import sys
from dataclasses import dataclass, field

import numpy as np

from ..jsonable import to_jsonable
from ..linear.base import DirectStats, LinearStatus, MemoryUse, PreconditionerStats
from ..precision import PrecisionPolicy, QuantizationStats

__all__ = ["Status", "IterationRecord", "DepthCounts", "DepthStats", "ProblemInfo", "SolveReport", "SolveCounters"]


class Status(str, enum.Enum):
    CONVERGED = "converged"
    """The first-order condition holds: max|Jᵀr| fell below ``gradient_tolerance`` of its start, or a step
    test proved it (a step below ``step_tolerance`` from a tight linear solve), or the cost stopped falling
    (a decrease below ``function_tolerance``, or no step decreases it) with the gradient below 1e-4 of its
    initial value (the attainable accuracy of the precision; ``mixslam.solve.lm_control.STALL_GRADIENT``).
    A local minimum: another start (or another damping path) may reach a lower one."""
    STALLED = "stalled"
    """The cost stopped falling (no step decreases it, or the decrease fell below ``function_tolerance``) but
    the gradient is still large: the precision in use (or the linear solver) cannot get closer. Not
    converged."""
    HIT_ITERATION_LIMIT = "hit_iteration_limit"
    """``max_iterations`` was reached before any tolerance."""
    FAILED = "failed"
    """The solve could not proceed (non-finite values, an fp64 overflow of the cost or the state's norm,
    linear solver breakdown); see ``reason``."""
    INTERRUPTED = "interrupted"
    """SIGINT / SIGTERM arrived (inside :func:`mixslam.solve.interrupt.handle_interrupts`): the loop stopped
    at the end of the current iteration; the best iterate so far is returned."""


@dataclass
class IterationRecord:
    """What one LM iteration did. Costs are fp64 values of 0.5 Σ eᵀΩe."""

    iteration: int
    cost: float
    """Cost at the start of the iteration (in the policy's cost precision; fp64 except naive fp16)."""
    new_cost: float
    """Cost at the trial point (NaN if the step was not finite)."""
    gradient_norm: float
    """max-norm of Jᵀr at the start of the iteration."""
    step_norm: float
    """2-norm of the tangent step."""
    gain_ratio: float
    """actual / predicted cost decrease."""
    lam: float
    """Damping used for this step (0 for Gauss-Newton)."""
    accepted: bool
    linear_iterations: int
    linear_relative_residual: float
    """‖b - A x‖ / ‖b‖ of the (scaled, damped) normal equations as the linear solver reported it."""
    linear_status: LinearStatus
    """How the linear solve ended."""
    time_s: float
    linear_decision: str | None = None
    """The direct solver's choice for this step (factor / reuse, see ``LinearResult.decision``)."""

    def as_dict(self) -> dict:
        return to_jsonable(dataclasses.asdict(self))


@dataclass
class DepthCounts:
    """Reprojections behind the camera, and those whose depth was clamped (bundle adjustment)."""

    behind: int = 0
    clamped: int = 0


@dataclass
class DepthStats:
    initial: DepthCounts
    """At the initial state."""
    final: DepthCounts
    """At the returned state."""


@dataclass
class ProblemInfo:
    """Sizes of a bundle-adjustment problem as solved."""

    model: str
    cameras: int
    points: int
    observations: int
    free_cameras: int
    free_points: int
    warnings: list = field(default_factory=list)


@dataclass
class SolveReport:
    """The outcome of one nonlinear solve."""

    status: Status
    reason: str
    initial_cost: float
    final_cost: float
    """fp64 cost of the returned (best) iterate."""
    iterations: int
    best_iteration: int
    history: list = field(default_factory=list)
    timing: dict = field(default_factory=dict)
    """Seconds per phase: setup, residual, jacobian, linear_solve, update, total; compile (numba JIT) apart;
    and the linear solver's own parts summed over the solve (``products_s``, ``preconditioner_s``, ``cg_s``,
    ``ic_factor``, ..., with ``*_calls`` counts)."""
    linear_iterations: int = 0
    precision: str = "fp64"
    """Name of the precision policy."""
    solver: str = "cholesky"
    """Linear solver: ``cholesky``, ``schur`` or ``cg``."""
    preconditioner: str | None = None
    """Preconditioner of ``cg`` (``jacobi``, ``ic``, ``none``); None for the direct solvers."""
    init: str = "file"
    quantization: QuantizationStats = field(default_factory=QuantizationStats)
    """Counts summed over every quantization: overflows, underflows, subnormals, fallbacks."""
    memory: MemoryUse = field(default_factory=MemoryUse)
    """Bytes the linear solver held at its last step."""
    preconditioner_stats: PreconditionerStats | None = None
    direct: DirectStats | None = None
    """The direct solver's counts: factorizations, factor reuses, refinement and PCG iterations."""
    """The incomplete-Cholesky factor's shift, fill, ordering, escalation and factorizations (``ic`` only)."""
    policy: PrecisionPolicy | None = None
    """The precision policy of the solve, field by field."""
    file_cost: float | None = None
    """Pose graphs: the fp64 cost of the file's own poses (differs from ``initial_cost`` with another init)."""
    depth: DepthStats | None = None
    """Bundle adjustment: depth guard counts."""
    problem: ProblemInfo | None = None
    """Bundle adjustment: the problem's sizes."""
    peak_rss_bytes: int | None = None
    """The process's peak resident set at the end of the solve, measured (``getrusage``'s ``ru_maxrss``; None
    where the platform has no such counter). It is the process's high-water mark, earlier work included: to
    compare policies, solve each in its own process (``benchmarks/ba_large.py``)."""
    robust: dict | None = None
    """Robust solves: ``loss``, ``scale``, ``known_inliers`` (count) and, with GNC, ``gnc_iterations``,
    ``gnc_mu`` (μ per iteration), ``gnc_finished``; ``plain_final_cost`` (0.5 Σ eᵀΩe over every block). The
    costs of a robust solve (``initial_cost``, ``final_cost``) are the robust cost 0.5 Σ ρ(eᵀΩe) in fp64."""
    edge_weights: np.ndarray | None = None
    """Robust solves: the final weight of every residual block (pose-graph edge in file order, or
    observation), in [0, 1]."""
    rejected_edges: list | None = None
    """Robust solves: 0-based indices (file order) of the blocks whose final weight is below 0.5."""
    accelerated_steps: int = 0
    """Steps that took the geodesic-acceleration correction (:mod:`mixslam.solve.acceleration`)."""
    backend: str = "numba"
    """What ran the LM iterations: ``numba`` (the CPU kernels) or ``jax:cpu`` / ``jax:gpu`` (the device
    backend, :mod:`mixslam.backend`, on that JAX platform)."""

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED

    @property
    def failed(self) -> bool:
        return self.status is Status.FAILED

    @property
    def fp16_overflows(self) -> int:
        return int(self.quantization.overflows)

    @property
    def solver_label(self) -> str:
        """``cholesky`` or ``cg+ic``."""
        return self.solver if self.preconditioner is None else f"{self.solver}+{self.preconditioner}"

    def as_dict(self) -> dict:
        """JSON-ready dictionary (the REPORT.json of the command line)."""
        q = self.quantization
        out = {
            "status": self.status,
            "reason": self.reason,
            "converged": self.converged,
            "initial_cost": self.initial_cost,
            "final_cost": self.final_cost,
            "iterations": self.iterations,
            "best_iteration": self.best_iteration,
            "linear_iterations": self.linear_iterations,
            "accelerated_steps": self.accelerated_steps,
            "precision": self.precision,
            "solver": self.solver,
            "preconditioner": self.preconditioner,
            "init": self.init,
            "backend": self.backend,
            "time_s": self.timing.get("total", float("nan")),
            "timing": dict(self.timing),
            "fp16_overflows": self.fp16_overflows,
            "quantization": {
                "overflows": q.overflows,
                "underflows": q.underflows,
                "subnormals": q.subnormals,
                "fallbacks": q.fallbacks,
            },
            "memory": self.memory,
            "peak_rss_bytes": self.peak_rss_bytes,
            "history": self.history,
        }
        if self.robust is not None:
            out["robust"] = self.robust
            out["edge_weights"] = [] if self.edge_weights is None else [float(w) for w in self.edge_weights]
            out["rejected_edges"] = list(self.rejected_edges or [])
        for name in ("policy", "file_cost", "depth", "problem"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.preconditioner_stats is not None:
            out["ic"] = self.preconditioner_stats
        if self.direct is not None:
            out["direct"] = self.direct
        return to_jsonable(out)

    def summary(self) -> str:
        return (
            f"{self.status.value}: {self.reason}; cost {self.initial_cost:.9g} -> {self.final_cost:.9g} "
            f"in {self.iterations} iterations ({self.linear_iterations} linear), "
            f"{self.timing.get('total', float('nan')):.3f} s"
        )


@dataclass
class SolveCounters:
    """Sums over a series of solves: the VO windows, the pose-graph re-solves and the global-BA rounds of a SLAM
    run all count their solves with this one type."""

    solves: int = 0
    iterations: int = 0
    """LM iterations."""
    linear_iterations: int = 0
    """CG iterations (1 per direct solve)."""
    overflows: int = 0
    """16-bit overflows (``SolveReport.fp16_overflows``)."""
    fallbacks: int = 0
    """Stores redone in a wider format."""
    not_converged: int = 0
    """Solves whose status is not ``converged``."""
    seconds: float = 0.0
    """Wall time of the solves as the caller measured it (:meth:`add`)."""
    statuses: dict = field(default_factory=dict)
    """Status value -> count."""
    solve_seconds: list = field(default_factory=list)
    """Each solve's wall time (``seconds`` is their sum): the VO windows' time distribution."""

    def add(self, report: SolveReport, seconds: float = 0.0) -> None:
        """Count one solve."""
        self.solve_seconds.append(float(seconds))
        self.solves += 1
        self.iterations += report.iterations
        self.linear_iterations += report.linear_iterations
        self.overflows += report.fp16_overflows
        self.fallbacks += report.quantization.fallbacks
        self.not_converged += 0 if report.converged else 1
        self.seconds += seconds
        self.statuses[report.status.value] = self.statuses.get(report.status.value, 0) + 1

    def as_dict(self) -> dict:
        return to_jsonable(dataclasses.asdict(self))


def peak_rss_bytes() -> int | None:
    """This process's peak resident set size in bytes (Linux reports KiB, macOS bytes); None without
    ``resource`` (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024


def time_stats(seconds, budget_s: float) -> dict | None:
    """Median, 99th percentile and maximum of solve times (seconds), and how many exceeded ``budget_s`` (the
    real-time budget of a VO window); None for no solves."""
    t = np.asarray(seconds, dtype=float)
    if t.size == 0:
        return None
    return {
        "median": float(np.median(t)),
        "p99": float(np.percentile(t, 99)),
        "max": float(t.max()),
        "count": int(t.size),
        "budget": float(budget_s),
        "over_budget": int(np.sum(t > budget_s)),
    }
