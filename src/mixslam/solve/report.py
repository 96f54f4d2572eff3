"""One :class:`SolveReport` per solve: status, reason, best iterate, per-iteration history, timings."""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

import numpy as np


class Status(str, enum.Enum):
    CONVERGED = "converged"
    """A tolerance was met (function, gradient or step), or no step reduces the cost any further while the
    gradient is below 1e-4 of its initial value (the attainable accuracy of the precision)."""
    STALLED = "stalled"
    """No step decreases the cost any more, but the gradient is still large: the precision in use (or the
    linear solver) cannot get closer. Not converged."""
    HIT_ITERATION_LIMIT = "hit_iteration_limit"
    """``max_iterations`` was reached before any tolerance."""
    FAILED = "failed"
    """The solve could not proceed (non-finite values, linear solver breakdown); see ``reason``."""


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
    linear_status: str
    """How the linear solve ended: converged, max_iterations, stagnated, breakdown, nonfinite, diverged."""
    time_s: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


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
    """Seconds per phase: setup, residual, jacobian, linear_solve, update, total; compile (numba JIT) apart."""
    linear_iterations: int = 0
    precision: str = "fp64"
    solver: str = "cholesky"
    init: str = "file"
    quantization: dict = field(default_factory=dict)
    """Counts summed over every quantization: overflows, underflows, subnormals, fallbacks."""
    extra: dict = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED

    @property
    def fp16_overflows(self) -> int:
        return int(self.quantization.get("overflows", 0))

    def as_dict(self) -> dict:
        """JSON-ready dictionary (the REPORT.json of the command line)."""
        out = {
            "status": self.status.value, "reason": self.reason, "converged": self.converged,
            "initial_cost": self.initial_cost, "final_cost": self.final_cost,
            "iterations": self.iterations, "best_iteration": self.best_iteration,
            "linear_iterations": self.linear_iterations, "precision": self.precision, "solver": self.solver,
            "init": self.init, "time_s": self.timing.get("total", float("nan")), "timing": dict(self.timing),
            "fp16_overflows": self.fp16_overflows, "quantization": dict(self.quantization),
            "history": [h.as_dict() for h in self.history],
        }
        out.update(self.extra)
        return _jsonable(out)

    def summary(self) -> str:
        return (f"{self.status.value}: {self.reason}; cost {self.initial_cost:.9g} -> {self.final_cost:.9g} "
                f"in {self.iterations} iterations ({self.linear_iterations} linear), "
                f"{self.timing.get('total', float('nan')):.3f} s")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, float) and not np.isfinite(x):
        return None if np.isnan(x) else (1e308 if x > 0 else -1e308)
    return x
