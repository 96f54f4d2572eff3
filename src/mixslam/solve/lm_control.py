"""The decisions of Levenberg-Marquardt / Gauss-Newton, apart from any problem, solver or device.

:class:`LMControl` is a state machine fed with the scalars of one solve: the initial cost, each
linearization's gradient norms, each damped step's numbers. It owns the damping (Nielsen's gain-ratio
rule), the acceptance test, the stopping rules (gradient, step and function tolerance, iteration limit,
non-finite values, the ``converged`` / ``stalled`` split), the inexact-Newton tolerance requests, the
iteration records and progress lines, the callback and the interrupt checks. The CPU loop
(:func:`mixslam.solve.lm.levenberg_marquardt`) and the device backend (``mixslam.backend.jax_lm`` and
``jax_batch``, one machine per problem) drive the same machine, so both take the same decisions on the same
numbers.

A driver's loop::

    ctl = LMControl(config, solver_default_lambda, next_tolerance=..., tighten_tolerance=...)
    if not ctl.start(cost, state_norm):           # False: the initial state cannot be solved from
        ...
    while ctl.begin():
        if ctl.needs_linearization:
            ...                                   # linearize at the current state
            if not ctl.linearized(max_abs_g, norm2_g, cosine):
                break
        ...                                       # solve with ctl.lam, ctl.eta; retract; trial cost
        if ctl.stepped(StepNumbers(...), quantization_stats):
            state = trial                         # accepted: the trial state is the current one
        ctl.end_iteration()
    ctl.finish(report)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from ..linear.base import LinearStatus
from ..precision import QuantizationStats
from .config import LMConfig
from .interrupt import interrupt_requested
from .report import IterationRecord, SolveReport, Status

__all__ = [
    "LOOSE_SOLVE",
    "SMALL_STEPS",
    "STALL_GRADIENT",
    "STALL_COSINE",
    "StepNumbers",
    "step_is_finite",
    "LMControl",
]

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

#: Second, scale-aware test of a function-tolerance stop (:func:`mixslam.solve.lm.max_cosine`, MINPACK's
#: ``gtol``): the residual is nearly orthogonal to every Jacobian column. Needed because the first test depends
#: on the start: a bundle adjustment that starts near its optimum (a VO window, a small BAL file) stops by
#: Ceres' 1e-6 with max|g| at 1.1e-4 of a start that was already small, at the optimum. Measured at the stops
#: (issue 15): every converged reference solve (intel, MIT, sphere2500, city10000 from file and chordal, fp64
#: Cholesky and mixed IC; problem-16-22106, 49-7776 fp64 Schur and mixed CG) has a cosine of 2.6e-4 or less
#: (PGO 2e-6 or less); stops forced with function tolerances of 0.1-0.999 have 1.4e-2 to 1.8e-1. 1e-3
#: separates the two.
STALL_COSINE = 1e-3

Lazy: TypeAlias = "float | Callable[[], float]"
"""A number, or a function computing it when (and only if) a rule reads it."""


def _value(x: Lazy) -> float:
    return x() if callable(x) else x


def step_is_finite(status: LinearStatus, model_decrease: float) -> bool:
    """Whether a step can be tried (retracted and its cost evaluated): its linear solve ended finite with a
    finite model decrease. Any other step is rejected without a trial cost."""
    return not (status is LinearStatus.NONFINITE or not np.isfinite(model_decrease))


PREDICT_MAX_RATE = 0.5
"""The function-tolerance test also stops when the last two accepted decreases shrink by a factor q of at most
this, and the ones to come (at most rel q / (1 - q) if they keep shrinking so) add up to less than the
tolerance (``LMConfig.predict_stop``)."""


@dataclass
class StepNumbers:
    """What the decisions read of one damped step."""

    iterations: int
    """Linear solver iterations."""
    relative_residual: float
    """The linear solve's relative residual (NaN when it was not finite)."""
    status: LinearStatus
    """How the linear solve ended."""
    model_decrease: float
    """The quadratic model's predicted cost decrease (fp64)."""
    step_norm: float
    """2-norm of the tangent step."""
    new_cost: float
    """The trial state's cost (NaN where the step was not tried: see :func:`step_is_finite`)."""
    xnorm: Lazy
    """The trial state's norm, for the step-tolerance test: read only when the step is accepted."""
    decision: str | None = None
    """The direct solver's choice for this step (``LinearResult.decision``)."""


class LMControl:
    """Every decision of one LM / Gauss-Newton solve, fed with its scalars.

    ``initial_lambda`` is the solver's default damping (``config.initial_lambda`` overrides it);
    ``next_tolerance(gnorm, g0norm)`` gives the inexact-Newton tolerance of a new linearization with gradient
    2-norm ``gnorm`` (``g0norm`` at the start) and ``tighten_tolerance(relative_residual)`` asks later solves
    for less (both: :class:`~mixslam.linear.base.LinearSolver`'s methods, or a
    :class:`~mixslam.linear.config.Forcing`'s ``next`` / ``tighten``; default: exact solves);
    ``interrupted()`` says whether a signal asks the loop to stop (default:
    :func:`~mixslam.solve.interrupt.interrupt_requested`).

    Use: :meth:`start`; per iteration :meth:`begin` (False: the loop ends), when :attr:`needs_linearization`
    :meth:`linearized` (False: a gradient test stopped the solve), the step with :attr:`lam` and :attr:`eta`,
    :meth:`stepped` (True: take the trial state), :meth:`end_iteration`; :meth:`finish` fills the report.
    :attr:`done` once stopped (:meth:`stop` ends it from outside).
    """

    def __init__(
        self,
        config: LMConfig,
        initial_lambda: float,
        *,
        next_tolerance: Callable[[float, float], float] | None = None,
        tighten_tolerance: Callable[[float], None] | None = None,
        interrupted: Callable[[], bool] | None = None,
    ):
        self.config = config
        self._next_tolerance = next_tolerance or (lambda gnorm, g0norm: 0.0)
        self._tighten_tolerance = tighten_tolerance or (lambda relative_residual: None)
        self._interrupted = interrupted or interrupt_requested
        lam0 = initial_lambda if config.initial_lambda is None else config.initial_lambda
        self.lam = lam0 if config.method == "lm" else 0.0
        """The damping of the next step (0 for Gauss-Newton)."""
        self.nu = 2.0
        self.eta = math.nan
        """The inexact-Newton tolerance of the current linearization's solves."""
        self.status, self.reason = Status.HIT_ITERATION_LIMIT, f"reached max_iterations={config.max_iterations}"
        self.done = False
        self.iteration = 0
        self.needs_linearization = True
        self.cost = math.nan
        """The current state's cost."""
        self.best_cost = math.nan
        self.best_iteration = 0
        self.g0norm = self.g0norm2 = math.nan  # the gradient's max- and 2-norm at the first linearization
        self.gnorm_inf = self.gnorm = math.nan  # ... at the current linearization
        self.small = 0  # accepted steps in a row below the function tolerance
        self._last_rel = math.nan  # the relative decrease of the last accepted step
        self.history: list[IterationRecord] = []
        self.linear_iterations = 0
        self.quantization = QuantizationStats()
        self._cosine: Callable[[float], float] = lambda cost: math.nan
        self._lin_cost = math.nan  # the cost at the current linearization
        self._looping = False
        self._t_it = time.perf_counter()

    def stop(self, status: Status, reason: str) -> None:
        """End the solve with ``status`` and ``reason``."""
        self.status, self.reason, self.done = status, reason, True

    def start(self, cost: float, xnorm0: Lazy) -> bool:
        """The initial state's cost and norm; False (status ``failed``) when either is not finite: the
        caller returns the initial state."""
        self.cost = self.best_cost = cost
        if not math.isfinite(cost):
            self.stop(
                Status.FAILED, "the initial cost is not finite (NaN/inf in poses or measurements, or an fp64 overflow)"
            )
            return False
        norm0 = _value(xnorm0)
        if not math.isfinite(norm0):
            self.stop(
                Status.FAILED,
                f"the initial state's norm overflows fp64 ({norm0}): a coordinate is too large (near 1e308) for "
                "the step and convergence tests; rescale the problem",
            )
            return False
        return True

    def begin(self) -> bool:
        """Start the next iteration; False when the loop ends (stopped, interrupted before the first
        iteration, or the iteration limit reached: status ``hit_iteration_limit``)."""
        if self.done:
            return False
        if not self._looping:
            self._looping = True
            if self._interrupted():
                self.stop(Status.INTERRUPTED, "interrupted (signal) before the first iteration")
                return False
        if self.iteration >= self.config.max_iterations:
            self.done = True
            return False
        self.iteration += 1
        self._t_it = time.perf_counter()
        return True

    def linearized(self, gnorm_inf: float, gnorm: float, cosine: Callable[[float], float]) -> bool:
        """A new linearization at the current state: its gradient's max-norm and 2-norm, and ``cosine(cost)``,
        the max cosine between the residual and a Jacobian column at this linearization whose cost is
        ``cost`` (read only by a function-tolerance stop). False when the gradient stops the solve."""
        self.needs_linearization = False
        self.gnorm_inf, self.gnorm = gnorm_inf, gnorm
        if math.isnan(self.g0norm):
            self.g0norm = max(gnorm_inf, 1e-300)
            self.g0norm2 = max(gnorm, 1e-300)
        if not np.isfinite(gnorm):
            self.iteration -= 1
            self.stop(Status.FAILED, "the gradient is not finite")
            return False
        if gnorm_inf <= self.config.gradient_tolerance * self.g0norm:
            self.iteration -= 1
            self.stop(Status.CONVERGED, f"gradient max-norm {gnorm_inf:.3g} below tolerance")
            return False
        self.eta = self._next_tolerance(gnorm, self.g0norm2)
        self._cosine, self._lin_cost = cosine, self.cost
        return True

    def stepped(self, step: StepNumbers, stats: QuantizationStats | None = None, time_s: float | None = None) -> bool:
        """The damped step's numbers (``stats``: its quantizations; ``time_s``: the iteration's seconds, by
        default since :meth:`begin`); records, reports and decides it. True when the trial state becomes the
        current one (accepted with a finite norm)."""
        cfg = self.config
        if stats is not None:
            self.quantization = self.quantization.merge(stats)
        self.linear_iterations += step.iterations
        cost, lam, it = self.cost, self.lam, self.iteration
        new_cost = float("nan")
        if not step_is_finite(step.status, step.model_decrease):
            accepted, rho = False, float("nan")
        else:
            new_cost = step.new_cost
            actual = cost - new_cost
            pred = step.model_decrease
            rho = actual / pred if pred > 0 else (-1.0 if actual <= 0 else 1.0)
            accepted = bool(np.isfinite(new_cost) and actual > 0 and rho > 0)
        record = IterationRecord(
            it,
            cost,
            new_cost,
            self.gnorm_inf,
            step.step_norm,
            float(rho),
            lam,
            accepted,
            step.iterations,
            step.relative_residual,
            step.status,
            time.perf_counter() - self._t_it if time_s is None else time_s,
            step.decision,
        )
        self.history.append(record)
        if cfg.verbose:
            log.info(
                "[iter %3d] cost %.10g -> %.10g  rel %.2e  |g| %.2e  |dx| %.2e  rho %+.3f  lambda %.1e  "
                "%s %d (res %.1e, %s)%s",
                it,
                cost,
                new_cost,
                (cost - new_cost) / cost if cost else 0.0,
                self.gnorm_inf,
                step.step_norm,
                rho,
                lam,
                step.decision or "cg",
                step.iterations,
                step.relative_residual,
                step.status.value,
                "" if accepted else "  rejected",
            )
        if cfg.callback is not None:
            try:
                cfg.callback(record)
            except StopIteration:
                if accepted:
                    self._take(new_cost)
                self.stop(Status.CONVERGED, "stopped by the callback")
                return accepted
        if accepted:
            xnorm = _value(step.xnorm)
            if not math.isfinite(xnorm):  # an fp64 overflow: no test on this state means anything
                self.stop(
                    Status.FAILED,
                    f"the state's norm overflows fp64 after the step of iteration {it} ({xnorm}); "
                    "the best finite iterate is returned",
                )
                return False
            rel = (cost - new_cost) / max(cost, 1e-300)
            self._take(new_cost)
            self.needs_linearization = True
            if cfg.method == "lm":
                self.lam = max(cfg.min_lambda, lam * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3))
                self.nu = 2.0
            # Decreases shrinking by a factor q <= PREDICT_MAX_RATE per step add up to at most rel q / (1 - q)
            # more: below the tolerance, the step that would only confirm it is saved. Taken only with an exact
            # solve and where the first-order test already holds at the last linearization (the label
            # `converged` stays honest); otherwise LM goes on.
            q = rel / self._last_rel if self._last_rel > 0 else math.inf
            ahead = rel * q / (1.0 - q) if q <= PREDICT_MAX_RATE else math.inf
            self._last_rel = rel
            if cfg.predict_stop and rel >= cfg.function_tolerance and ahead < cfg.function_tolerance:
                if step.relative_residual <= LOOSE_SOLVE:
                    if self._first_order()[0]:
                        self.stop(
                            Status.CONVERGED,
                            f"relative cost decrease {rel:.3g}, shrinking {q:.2g}x per step: the decreases still to "
                            f"come add up to {ahead:.2g}, below function_tolerance",
                        )
                        return True
            self.small = self.small + 1 if rel < cfg.function_tolerance else 0
            if rel < cfg.function_tolerance:
                if step.relative_residual <= LOOSE_SOLVE or self.small >= SMALL_STEPS:
                    holds, rel_g, cosine = self._first_order()
                    why = f"relative cost decrease {rel:.3g} below function_tolerance" + (
                        "" if step.relative_residual <= LOOSE_SOLVE else f" for {self.small} accepted steps in a row"
                    )
                    if holds:
                        self.stop(Status.CONVERGED, why)
                    else:
                        self.stop(
                            Status.STALLED,
                            f"{why}, but the gradient is still {rel_g:.1e} of its start (above {STALL_GRADIENT:g}) "
                            f"and at a cosine {cosine:.1e} with a Jacobian column (above {STALL_COSINE:g}): the cost "
                            "stopped falling away from a minimum",
                        )
                    return True
                # A small decrease from a loosely solved step proves little: ask the inner solver for more.
                self._tighten_tolerance(step.relative_residual)
            if (
                step.step_norm < cfg.step_tolerance * (xnorm + cfg.step_tolerance)
                and step.relative_residual <= LOOSE_SOLVE
            ):
                self.stop(Status.CONVERGED, f"step norm {step.step_norm:.3g} below step_tolerance")
            return True
        if cfg.method == "gn":
            rel_g = self.gnorm_inf / self.g0norm
            status = Status.CONVERGED if rel_g <= STALL_GRADIENT else Status.STALLED
            self.stop(status, f"Gauss-Newton step did not decrease the cost (gradient at {rel_g:.1e} of its start)")
            return False
        if step.status is LinearStatus.NONFINITE:
            self.lam = max(self.lam, 1e-8) * 10.0
        self.lam = max(self.lam, cfg.min_lambda) * self.nu
        self.nu *= 2.0
        if self.lam > cfg.max_lambda:
            rel_g = self.gnorm_inf / self.g0norm
            if rel_g <= STALL_GRADIENT:
                self.stop(
                    Status.CONVERGED,
                    f"no step decreases the cost (lambda above {cfg.max_lambda:g}) with the "
                    f"gradient at {rel_g:.1e} of its start: the attainable accuracy is reached",
                )
            else:
                self.stop(
                    Status.STALLED,
                    f"no step decreases the cost (lambda above {cfg.max_lambda:g}) but the "
                    f"gradient is still {rel_g:.1e} of its start (last linear solve: "
                    f"{step.status.value}); this precision or solver cannot get closer",
                )
        return False

    def _first_order(self) -> tuple[bool, float, float]:
        """(holds, gradient max-norm / its start, max cosine) at the last linearization: the first-order test
        of a cost that stopped falling (the cosine is read only when the gradient test fails; NaN then)."""
        rel_g = self.gnorm_inf / self.g0norm
        if rel_g <= STALL_GRADIENT:
            return True, rel_g, math.nan
        cosine = self._cosine(self._lin_cost)
        return cosine <= STALL_COSINE, rel_g, cosine

    def _take(self, new_cost: float) -> None:
        """The trial state becomes the current one."""
        self.cost = new_cost
        if new_cost < self.best_cost:
            self.best_cost, self.best_iteration = new_cost, self.iteration

    def end_iteration(self) -> None:
        """After an iteration: a pending signal stops the loop (the iteration's accepted step is kept)."""
        if not self.done and self._interrupted():
            self.stop(Status.INTERRUPTED, f"interrupted (signal) after {self.iteration} iterations")

    def finish(self, report: SolveReport) -> SolveReport:
        """Write the solve's status, reason, iterations, best cost and iteration, history, linear iterations and
        quantizations into ``report`` (costs in the LM's cost precision); returns it."""
        report.status, report.reason = self.status, self.reason
        report.iterations = self.iteration
        report.final_cost = self.best_cost
        report.best_iteration = self.best_iteration
        report.history = self.history
        report.linear_iterations = self.linear_iterations
        report.quantization = self.quantization
        return report
