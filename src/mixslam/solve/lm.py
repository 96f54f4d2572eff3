"""Levenberg-Marquardt / Gauss-Newton over any problem that can evaluate, linearize and retract.

The loop keeps the state in fp64 and decides with an fp64 (or fp32, if the policy says so) cost; the
linear solver and the linearization run in the precisions of the policy. Damping follows Nielsen's
gain-ratio rule; rejected steps re-solve the same linearization with more damping.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Protocol

import numpy as np

from ..linear.base import Damping, LinearSolver, LinearStatus
from ..precision import PrecisionPolicy, QuantizationStats
from .config import LMConfig
from .interrupt import interrupt_requested
from .report import IterationRecord, SolveReport, Status

log = logging.getLogger("mixslam")

#: A step whose linear solve stopped above this relative residual cannot declare convergence by the
#: function tolerance (its small decrease may come from the inexact solve, not from the optimum).
LOOSE_SOLVE = 1e-3

#: ... unless this many accepted steps in a row each lowered the cost by less than the function tolerance
#: (the low-precision linearization's noise floor: tighter solves cannot help there).
SMALL_STEPS = 3

#: A stop that only shows the cost no longer falls -- no step decreases it (lambda above ``max_lambda``) or an
#: accepted step lowered it by less than the function tolerance -- is ``converged`` only if the first-order
#: condition also holds; else ``stalled``. A small decrease alone proves nothing: heavy damping, a loose inner
#: solve or a low-precision cost give one far from any minimum. First test: max|g| (at the start of the last
#: step) fell below this fraction of its start (1e-4: the attainable accuracy of a fp16/fp32 linear solve;
#: tighter would call the low-precision optima stalled).
STALL_GRADIENT = 1e-4

#: Second, scale-aware test of a function-tolerance stop (:func:`max_cosine`, MINPACK's ``gtol``): the residual
#: is nearly orthogonal to every Jacobian column. Needed because the first test depends on the start: a bundle
#: adjustment that starts near its optimum (a VO window, a small BAL file) stops by Ceres' 1e-6 with max|g| at
#: 1.1e-4 of a start that was already small, at the optimum. Measured at the stops (issue 15): every converged
#: reference solve (intel, MIT, sphere2500, city10000 from file and chordal, fp64 Cholesky and mixed IC;
#: problem-16-22106, 49-7776 fp64 Schur and mixed CG) has a cosine of 2.6e-4 or less (PGO 2e-6 or less);
#: stops forced with function tolerances of 0.1-0.999 have 1.4e-2 to 1.8e-1. 1e-3 separates the two.
STALL_COSINE = 1e-3


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
    quant = QuantizationStats()
    t_start = time.perf_counter()

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
    if not math.isfinite(cost):
        report.reason = "the initial cost is not finite (NaN/inf in poses or measurements, or an fp64 overflow)"
        report.timing = {**timing, "total": time.perf_counter() - t_start}
        return state, report
    with np.errstate(over="ignore"):
        xnorm0 = problem.state_norm(state)
    if not math.isfinite(xnorm0):
        report.reason = (
            f"the initial state's norm overflows fp64 ({xnorm0}): a coordinate is too large (near 1e308) for "
            "the step and convergence tests; rescale the problem"
        )
        report.timing = {**timing, "total": time.perf_counter() - t_start}
        return state, report

    lam0 = linear_solver.initial_lambda if config.initial_lambda is None else config.initial_lambda
    lam = lam0 if config.method == "lm" else 0.0
    nu = 2.0
    best_state, best_cost, best_iter = state, cost, 0
    g0norm = g0norm2 = math.nan  # the gradient's max- and 2-norm at the first linearization
    small = 0
    lin = None
    linear_times: dict = {}
    status, reason = Status.HIT_ITERATION_LIMIT, f"reached max_iterations={config.max_iterations}"
    it = 0
    last = config.max_iterations
    if interrupt_requested():
        status, reason, last = Status.INTERRUPTED, "interrupted (signal) before the first iteration", 0
    for it in range(1, last + 1):
        t_it = time.perf_counter()
        if lin is None:
            t0 = time.perf_counter()
            lin = problem.linearize(state)
            g = lin.gradient(np.float64)  # counted with the Jacobian: it is the Jacobian's first product
            timing["jacobian"] += time.perf_counter() - t0
            gnorm_inf = float(np.max(np.abs(g))) if g.size else 0.0
            gnorm = float(np.linalg.norm(g))
            if math.isnan(g0norm):
                g0norm = max(gnorm_inf, 1e-300)
                g0norm2 = max(gnorm, 1e-300)
            if not np.isfinite(gnorm):
                status, reason = Status.FAILED, "the gradient is not finite"
                it -= 1
                break
            if gnorm_inf <= config.gradient_tolerance * g0norm:
                status, reason = Status.CONVERGED, f"gradient max-norm {gnorm_inf:.3g} below tolerance"
                it -= 1
                break
            eta = linear_solver.next_tolerance(gnorm, g0norm2)
        t0 = time.perf_counter()
        res = linear_solver.solve(lin, Damping(lam, config.min_diagonal, config.max_diagonal), eta)
        timing["linear_solve"] += time.perf_counter() - t0
        quant = quant.merge(res.stats)
        for key, value in res.times.items():
            linear_times[key] = linear_times.get(key, 0) + value
        report.linear_iterations += res.iterations
        step_norm = float(np.linalg.norm(res.delta))
        new_cost = float("nan")
        if res.status is LinearStatus.NONFINITE or not np.isfinite(res.model_decrease):
            accepted, rho = False, float("nan")
        else:
            t0 = time.perf_counter()
            trial = problem.retract(state, res.delta)
            timing["update"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            new_cost = problem.cost(trial)
            timing["residual"] += time.perf_counter() - t0
            actual = cost - new_cost
            pred = res.model_decrease
            rho = actual / pred if pred > 0 else (-1.0 if actual <= 0 else 1.0)
            accepted = bool(np.isfinite(new_cost) and actual > 0 and rho > 0)
        record = IterationRecord(
            it,
            cost,
            new_cost,
            gnorm_inf,
            step_norm,
            float(rho),
            lam,
            accepted,
            res.iterations,
            res.relative_residual,
            res.status,
            time.perf_counter() - t_it,
            res.decision,
        )
        report.history.append(record)
        if config.verbose:
            log.info(
                "[iter %3d] cost %.10g -> %.10g  rel %.2e  |g| %.2e  |dx| %.2e  rho %+.3f  lambda %.1e  "
                "%s %d (res %.1e, %s)%s",
                it,
                cost,
                new_cost,
                (cost - new_cost) / cost if cost else 0.0,
                gnorm_inf,
                step_norm,
                rho,
                lam,
                res.decision or "cg",
                res.iterations,
                res.relative_residual,
                res.status.value,
                "" if accepted else "  rejected",
            )
        if config.callback is not None:
            try:
                config.callback(record)
            except StopIteration:
                if accepted:
                    state, cost = trial, new_cost
                    if cost < best_cost:
                        best_state, best_cost, best_iter = state, cost, it
                status, reason = Status.CONVERGED, "stopped by the callback"
                break
        if accepted:
            with np.errstate(over="ignore"):
                xnorm = problem.state_norm(trial)
            if not math.isfinite(xnorm):  # an fp64 overflow: no test on this state means anything
                status, reason = (
                    Status.FAILED,
                    f"the state's norm overflows fp64 after the step of iteration {it} ({xnorm}); "
                    "the best finite iterate is returned",
                )
                break
            rel = (cost - new_cost) / max(cost, 1e-300)
            step_lin, step_cost = lin, cost  # the linearization the step came from (for the stopping tests)
            state, cost = trial, new_cost
            lin = None
            if cost < best_cost:
                best_state, best_cost, best_iter = state, cost, it
            if config.method == "lm":
                lam = max(config.min_lambda, lam * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3))
                nu = 2.0
            small = small + 1 if rel < config.function_tolerance else 0
            if rel < config.function_tolerance:
                if res.relative_residual <= LOOSE_SOLVE or small >= SMALL_STEPS:
                    rel_g = gnorm_inf / g0norm
                    cosine = max_cosine(step_lin, g, step_cost)
                    why = f"relative cost decrease {rel:.3g} below function_tolerance" + (
                        "" if res.relative_residual <= LOOSE_SOLVE else f" for {small} accepted steps in a row"
                    )
                    if rel_g <= STALL_GRADIENT or cosine <= STALL_COSINE:
                        status, reason = Status.CONVERGED, why
                    else:
                        status, reason = (
                            Status.STALLED,
                            f"{why}, but the gradient is still {rel_g:.1e} of its start (above {STALL_GRADIENT:g}) "
                            f"and at a cosine {cosine:.1e} with a Jacobian column (above {STALL_COSINE:g}): the cost "
                            "stopped falling away from a minimum",
                        )
                    break
                # A small decrease from a loosely solved step proves little: ask the inner solver for more.
                linear_solver.tighten_tolerance(res.relative_residual)
            if (
                step_norm < config.step_tolerance * (xnorm + config.step_tolerance)
                and res.relative_residual <= LOOSE_SOLVE
            ):
                status, reason = Status.CONVERGED, f"step norm {step_norm:.3g} below step_tolerance"
                break
        else:
            if config.method == "gn":
                rel_g = gnorm_inf / g0norm
                status = Status.CONVERGED if rel_g <= STALL_GRADIENT else Status.STALLED
                reason = f"Gauss-Newton step did not decrease the cost (gradient at {rel_g:.1e} of its start)"
                break
            if res.status is LinearStatus.NONFINITE:
                lam = max(lam, 1e-8) * 10.0
            lam = max(lam, config.min_lambda) * nu
            nu *= 2.0
            if lam > config.max_lambda:
                rel_g = gnorm_inf / g0norm
                if rel_g <= STALL_GRADIENT:
                    status, reason = (
                        Status.CONVERGED,
                        f"no step decreases the cost (lambda above {config.max_lambda:g}) with the "
                        f"gradient at {rel_g:.1e} of its start: the attainable accuracy is reached",
                    )
                else:
                    status, reason = (
                        Status.STALLED,
                        f"no step decreases the cost (lambda above {config.max_lambda:g}) but the "
                        f"gradient is still {rel_g:.1e} of its start (last linear solve: "
                        f"{res.status.value}); this precision or solver cannot get closer",
                    )
                break
        if interrupt_requested():  # checked once the iteration is complete: its accepted step is kept
            status, reason = Status.INTERRUPTED, f"interrupted (signal) after {it} iterations"
            break
    report.status, report.reason = status, reason
    report.iterations = it
    report.final_cost = best_cost
    report.best_iteration = best_iter
    report.quantization = quant
    report.timing = {**timing, **linear_times, "total": time.perf_counter() - t_start}
    report.memory = linear_solver.memory()
    if pre is not None:
        report.preconditioner_stats = pre.stats()
    report.direct = linear_solver.direct_stats()
    return best_state, report
