"""Levenberg-Marquardt / Gauss-Newton over any problem that can evaluate, linearize and retract.

The loop keeps the state in fp64 and decides with an fp64 (or fp32, if the policy says so) cost; the
linear solver and the linearization run in the precisions of the policy. The decisions (Nielsen's gain-ratio
damping, acceptance, stopping rules, forcing requests, callback, interrupts) are
:class:`~mixslam.solve.lm_control.LMControl`'s, the same machine the device backend drives; this module feeds
it with the CPU problem and linear solver. Rejected steps re-solve the same linearization with more damping.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Protocol

import numpy as np

from ..linear.base import Damping, LinearSolver
from ..linear.linearization import model_decrease
from ..precision import PrecisionPolicy
from .acceleration import geodesic_correction
from .config import LMConfig
from .interrupt import interrupt_requested
from .lm_control import LOOSE_SOLVE, SMALL_STEPS, STALL_COSINE, STALL_GRADIENT, LMControl, StepNumbers, step_is_finite
from .report import SolveReport, Status

__all__ = [
    "LOOSE_SOLVE",
    "SMALL_STEPS",
    "STALL_GRADIENT",
    "STALL_COSINE",
    "max_cosine",
    "LeastSquaresProblem",
    "levenberg_marquardt",
]


def max_cosine(lin, g: np.ndarray, cost: float) -> float:
    """max_i |cos ∠(J_i, r)| = |g_i| / (‖J_i‖ ‖r‖): MINPACK's scale-invariant first-order test (``gtol`` of
    lmder). Unchanged by scaling the cost or any one variable; 0 exactly at a stationary point."""
    if g.size == 0 or cost <= 0.0:
        return 0.0
    colsq = lin.column_sq_norms()
    denom = np.sqrt(np.maximum(colsq, 1e-300) * (2.0 * cost))
    return float(np.max(np.abs(g) / denom))


class LeastSquaresProblem(Protocol):
    def cost(self, state) -> float: ...
    def linearize(self, state): ...
    def retract(self, state, delta: np.ndarray): ...
    def state_norm(self, state) -> float: ...


def _state_norm(problem: LeastSquaresProblem, state) -> float:
    with np.errstate(over="ignore"):  # an overflow is a decision of the loop (inf), not a warning
        return problem.state_norm(state)


def levenberg_marquardt(
    problem: LeastSquaresProblem,
    state,
    linear_solver: LinearSolver,
    policy: PrecisionPolicy,
    config: LMConfig | None = None,
):
    """Minimize ``problem.cost`` from ``state``; returns (best state, :class:`SolveReport`).

    The linear solver supplies the initial damping (unless ``config.initial_lambda`` is set) and the
    inexact-Newton tolerance of each linearization (:meth:`LinearSolver.next_tolerance`); the numeric entries
    of each linear solve's ``times`` are summed into the report's ``timing``.
    """
    config = config or LMConfig()
    timing = {"residual": 0.0, "jacobian": 0.0, "linear_solve": 0.0, "update": 0.0}
    t_start = time.perf_counter()
    residuals = getattr(problem, "residuals", None)
    # a problem whose residuals are not a function of the state alone (a robust loss in loss mode) says None
    accelerate = bool(
        config.geodesic_acceleration
        and linear_solver.can_solve_again
        and residuals is not None
        and residuals(state) is not None
    )
    if accelerate:
        timing["acceleration"] = 0.0

    t0 = time.perf_counter()
    cost = problem.cost(state)
    timing["residual"] += time.perf_counter() - t0
    pre = linear_solver.preconditioner
    report = SolveReport(
        Status.FAILED,
        "",
        cost,
        cost,
        0,
        0,
        precision=policy.name,
        solver=linear_solver.name,
        preconditioner=None if pre is None else pre.name,
    )
    ctl = LMControl(
        config,
        linear_solver.initial_lambda,
        next_tolerance=linear_solver.next_tolerance,
        tighten_tolerance=linear_solver.tighten_tolerance,
        interrupted=interrupt_requested,
    )
    if not ctl.start(cost, functools.partial(_state_norm, problem, state)):
        report.status, report.reason = ctl.status, ctl.reason
        report.timing = {**timing, "total": time.perf_counter() - t_start}
        return state, report

    best_state = state
    lin = None
    linear_times: dict = {}
    while ctl.begin():
        if ctl.needs_linearization:
            t0 = time.perf_counter()
            lin = problem.linearize(state)
            g = lin.gradient(np.float64)  # counted with the Jacobian: it is the Jacobian's first product
            timing["jacobian"] += time.perf_counter() - t0
            gnorm_inf = float(np.max(np.abs(g))) if g.size else 0.0
            gnorm = float(np.linalg.norm(g))
            if not ctl.linearized(gnorm_inf, gnorm, functools.partial(max_cosine, lin, g)):
                break
        t0 = time.perf_counter()
        res = linear_solver.solve(lin, Damping(ctl.lam, config.min_diagonal, config.max_diagonal), ctl.eta)
        timing["linear_solve"] += time.perf_counter() - t0
        for key, value in res.times.items():
            linear_times[key] = linear_times.get(key, 0) + value
        delta, predicted, decision = res.delta, res.model_decrease, res.decision
        step_norm = float(np.linalg.norm(delta))
        trial, new_cost = None, float("nan")
        if accelerate and step_is_finite(res.status, res.model_decrease) and step_norm > 0:
            t0 = time.perf_counter()
            assert lin is not None and residuals is not None
            a = geodesic_correction(
                residuals, problem.retract, state, lin, delta, linear_solver.solve_again, config.acceleration_step
            )
            ratio = 2.0 * float(np.linalg.norm(a)) / step_norm if a is not None else math.nan
            if ratio < config.acceleration_min_ratio:  # converging: corrections this small change nothing
                accelerate = False
            if np.isfinite(ratio) and ratio <= config.acceleration_ratio:
                assert a is not None
                delta = delta + 0.5 * a
                predicted = model_decrease(lin, g, delta)
                step_norm = float(np.linalg.norm(delta))
                decision = f"{decision or 'cg'} + accel"
                report.accelerated_steps += 1
            timing["acceleration"] += time.perf_counter() - t0
        if step_is_finite(res.status, predicted):
            t0 = time.perf_counter()
            trial = problem.retract(state, delta)
            timing["update"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            new_cost = problem.cost(trial)
            timing["residual"] += time.perf_counter() - t0
        step = StepNumbers(
            res.iterations,
            res.relative_residual,
            res.status,
            predicted,
            step_norm,
            new_cost,
            functools.partial(_state_norm, problem, trial),
            decision,
        )
        if ctl.stepped(step, res.stats):
            state = trial
            if ctl.best_iteration == ctl.iteration:
                best_state = state
        ctl.end_iteration()
    ctl.finish(report)
    report.timing = {**timing, **linear_times, "total": time.perf_counter() - t_start}
    report.memory = linear_solver.memory()
    if pre is not None:
        report.preconditioner_stats = pre.stats()
    report.direct = linear_solver.direct_stats()
    return best_state, report
