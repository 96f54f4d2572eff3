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
from .report import IterationRecord, SolveReport, Status

log = logging.getLogger("mixslam")

#: A step whose linear solve stopped above this relative residual cannot declare convergence by the
#: function tolerance (its small decrease may come from the inexact solve, not from the optimum).
LOOSE_SOLVE = 1e-3

#: ... unless this many accepted steps in a row each lowered the cost by less than the function tolerance
#: (the low-precision linearization's noise floor: tighter solves cannot help there).
SMALL_STEPS = 3

#: "No step decreases the cost" counts as converged only if max|g| fell below this fraction of its start.
STALL_GRADIENT = 1e-4


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
        report.reason = "the initial cost is not finite (NaN/inf in poses or measurements)"
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
    for it in range(1, config.max_iterations + 1):
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
        )
        report.history.append(record)
        if config.verbose:
            log.info(
                "[iter %3d] cost %.10g -> %.10g  rel %.2e  |g| %.2e  |dx| %.2e  rho %+.3f  lambda %.1e  "
                "cg %d (res %.1e, %s)%s",
                it,
                cost,
                new_cost,
                (cost - new_cost) / cost if cost else 0.0,
                gnorm_inf,
                step_norm,
                rho,
                lam,
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
            rel = (cost - new_cost) / max(cost, 1e-300)
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
                    status, reason = (
                        Status.CONVERGED,
                        (
                            f"relative cost decrease {rel:.3g} below function_tolerance"
                            + ("" if res.relative_residual <= LOOSE_SOLVE else f" for {small} accepted steps in a row")
                        ),
                    )
                    break
                # A small decrease from a loosely solved step proves little: ask the inner solver for more.
                linear_solver.tighten_tolerance(res.relative_residual)
            if (
                step_norm < config.step_tolerance * (problem.state_norm(state) + config.step_tolerance)
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
    report.status, report.reason = status, reason
    report.iterations = it
    report.final_cost = best_cost
    report.best_iteration = best_iter
    report.quantization = quant
    report.timing = {**timing, **linear_times, "total": time.perf_counter() - t_start}
    report.memory = linear_solver.memory()
    if pre is not None:
        report.preconditioner_stats = pre.stats()
    return best_state, report
