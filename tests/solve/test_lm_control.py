"""The LM decisions (:class:`mixslam.solve.lm_control.LMControl`) driven with scripted scalars, apart from any
problem or linear solver: Nielsen's damping on rejected and accepted steps, the function-tolerance stop and
its ``converged`` / ``stalled`` split, the loose-solve rule, the gradient stop, the iteration limit and the
interrupt checks."""

import math

import pytest

from mixslam.linear import LinearStatus
from mixslam.precision import QuantizationStats
from mixslam.solve import LMConfig, SolveReport, Status
from mixslam.solve.lm_control import LOOSE_SOLVE, SMALL_STEPS, LMControl, StepNumbers


def step(new_cost, model_decrease=1.0, relative_residual=0.0, step_norm=0.1, xnorm=10.0, status=LinearStatus.CONVERGED):
    return StepNumbers(3, relative_residual, status, model_decrease, step_norm, new_cost, xnorm)


def started(config, cost=10.0, **kw):
    ctl = LMControl(config, 1e-3, interrupted=lambda: False, **kw)
    assert ctl.start(cost, 5.0)
    assert ctl.begin() and ctl.needs_linearization
    assert ctl.linearized(1.0, 2.0, lambda c: 0.5)
    return ctl


def test_a_rejected_step_raises_the_damping_by_nu_and_doubles_nu():
    ctl = started(LMConfig())
    assert (ctl.lam, ctl.nu) == (1e-3, 2.0)
    assert not ctl.stepped(step(new_cost=11.0), QuantizationStats())  # cost rose: rejected
    assert (ctl.lam, ctl.nu) == (2e-3, 4.0) and not ctl.done
    assert ctl.begin() and not ctl.needs_linearization  # the same linearization is solved again
    assert not ctl.stepped(step(new_cost=10.0))  # no decrease: rejected
    assert (ctl.lam, ctl.nu) == (8e-3, 8.0)
    rec = ctl.history[-1]
    assert (rec.iteration, rec.accepted, rec.lam, rec.gain_ratio) == (2, False, 2e-3, 0.0)


def test_an_accepted_step_lowers_the_damping_by_the_gain_ratio_and_resets_nu():
    ctl = started(LMConfig())
    ctl.stepped(step(new_cost=11.0))
    assert ctl.begin()
    # rho = actual / predicted = 1: lambda * max(1/3, 1 - (2 rho - 1)^3) = lambda / 3
    assert ctl.stepped(step(new_cost=9.0, model_decrease=1.0))
    assert ctl.lam == pytest.approx(2e-3 / 3) and ctl.nu == 2.0
    assert ctl.needs_linearization and (ctl.cost, ctl.best_cost, ctl.best_iteration) == (9.0, 9.0, 2)
    # rho = 0.5: the factor is 1 - 0 = 1, the damping stays
    assert ctl.begin() and ctl.linearized(0.5, 1.0, lambda c: 0.5)
    lam = ctl.lam
    assert ctl.stepped(step(new_cost=8.0, model_decrease=2.0))
    assert ctl.lam == lam and ctl.history[-1].gain_ratio == 0.5


def test_the_function_tolerance_stop_is_converged_where_the_first_order_test_holds():
    costs = []
    ctl = LMControl(LMConfig(function_tolerance=1e-6), 1e-3, interrupted=lambda: False)
    ctl.start(10.0, 5.0)
    ctl.begin()
    ctl.linearized(1.0, 2.0, lambda c: costs.append(c) or 1e-4)  # cosine below STALL_COSINE
    assert ctl.stepped(step(new_cost=10.0 - 1e-6))
    assert ctl.done and ctl.status is Status.CONVERGED
    assert ctl.reason.startswith("relative cost decrease 1e-07 below function_tolerance")
    assert costs == [10.0]  # the cosine is read once, with the cost at its linearization
    assert not ctl.begin()
    rep = ctl.finish(SolveReport(Status.FAILED, "", 10.0, 10.0, 0, 0))
    assert (rep.status, rep.iterations, rep.best_iteration, rep.final_cost) == (Status.CONVERGED, 1, 1, 10.0 - 1e-6)
    assert rep.linear_iterations == 3 and len(rep.history) == 1


def test_the_function_tolerance_stop_is_stalled_with_a_large_gradient_and_cosine():
    ctl = started(LMConfig(function_tolerance=1e-6))  # cosine 0.5, gradient at its start
    assert ctl.stepped(step(new_cost=10.0 - 1e-6))
    assert ctl.status is Status.STALLED and "stopped falling away from a minimum" in ctl.reason


def test_a_loose_solve_tightens_the_tolerance_until_small_steps_in_a_row_stop():
    tightened = []
    ctl = started(
        LMConfig(function_tolerance=1e-6), tighten_tolerance=tightened.append, next_tolerance=lambda g, g0: 0.1
    )
    assert ctl.eta == 0.1
    cost = 10.0
    for k in range(1, SMALL_STEPS + 1):
        if k > 1:
            assert ctl.begin() and ctl.linearized(1e-5, 1e-5, lambda c: 0.5)
        cost -= 1e-7 * cost
        assert ctl.stepped(step(new_cost=cost, relative_residual=0.05))
        assert ctl.done == (k == SMALL_STEPS)
    assert tightened == [0.05] * (SMALL_STEPS - 1)
    assert ctl.status is Status.CONVERGED  # gradient at 1e-5 of its start
    assert ctl.reason.endswith(f"for {SMALL_STEPS} accepted steps in a row")
    assert 0.05 > LOOSE_SOLVE


def test_lambda_above_max_lambda_stops_and_gauss_newton_stops_at_its_first_failed_step():
    ctl = started(LMConfig(max_lambda=1e-2))
    ctl.stepped(step(new_cost=11.0))  # 2e-3
    ctl.begin()
    ctl.stepped(step(new_cost=11.0))  # 8e-3
    ctl.begin()
    ctl.stepped(step(new_cost=11.0, status=LinearStatus.NONFINITE))  # NaN solve: (8e-3 * 10) * 8 = 0.64
    assert ctl.lam == pytest.approx(0.64) and ctl.status is Status.STALLED
    assert math.isnan(ctl.history[-1].new_cost)  # a non-finite step has no trial cost
    gn = started(LMConfig(method="gn"))
    assert gn.lam == 0.0 and not gn.stepped(step(new_cost=11.0))
    assert gn.status is Status.STALLED and gn.reason.startswith("Gauss-Newton step did not decrease")


def test_the_gradient_stop_does_not_count_its_iteration_and_the_limit_ends_the_loop():
    ctl = LMControl(LMConfig(gradient_tolerance=1e-3), 1e-3, interrupted=lambda: False)
    ctl.start(10.0, 5.0)
    ctl.begin()
    ctl.linearized(1.0, 1.0, lambda c: 0.0)
    ctl.stepped(step(new_cost=9.0))
    ctl.begin()
    assert not ctl.linearized(1e-4, 1e-4, lambda c: 0.0)
    assert (ctl.status, ctl.iteration) == (Status.CONVERGED, 1)
    limited = started(LMConfig(max_iterations=1))
    limited.stepped(step(new_cost=11.0))
    limited.end_iteration()
    assert not limited.begin() and limited.status is Status.HIT_ITERATION_LIMIT


def test_a_non_finite_start_fails_and_interrupts_stop_before_or_after_an_iteration():
    assert not LMControl(LMConfig(), 1e-3).start(math.inf, 1.0)
    bad = LMControl(LMConfig(), 1e-3)
    assert not bad.start(1.0, lambda: math.inf) and bad.status is Status.FAILED
    ctl = LMControl(LMConfig(), 1e-3, interrupted=lambda: True)
    assert ctl.start(10.0, 5.0) and not ctl.begin()
    assert (ctl.status, ctl.iteration) == (Status.INTERRUPTED, 0)
    signals = iter([False, True])
    ctl = LMControl(LMConfig(), 1e-3, interrupted=lambda: next(signals))
    ctl.start(10.0, 5.0)
    ctl.begin()
    ctl.linearized(1.0, 1.0, lambda c: 0.5)
    assert ctl.stepped(step(new_cost=9.0))
    ctl.end_iteration()
    assert ctl.status is Status.INTERRUPTED and ctl.reason == "interrupted (signal) after 1 iterations"
    assert ctl.best_iteration == 1 and ctl.cost == 9.0  # the iteration's accepted step is kept


def _two_shrinking_steps(cosine, loose=False):
    """Decreases 1e-3 then 1e-8 of the cost (q = 1e-5): the ones to come add up to 1e-13, below 1e-10."""
    ctl = LMControl(LMConfig(function_tolerance=1e-10), 1e-3, interrupted=lambda: False)
    ctl.start(10.0, 5.0)
    ctl.begin()
    ctl.linearized(1.0, 2.0, lambda c: 0.5)
    assert ctl.stepped(step(new_cost=10.0 * (1 - 1e-3))) and not ctl.done
    ctl.begin()
    ctl.linearized(1.0, 2.0, lambda c: cosine)  # the gradient still at its start: only the cosine can pass
    cost = ctl.cost
    ctl.stepped(step(new_cost=cost * (1 - 1e-8), relative_residual=0.5 if loose else 0.0))
    return ctl


def test_the_predicted_stop_when_the_decreases_to_come_add_up_below_the_tolerance():
    ctl = _two_shrinking_steps(cosine=1e-6)
    assert ctl.done and ctl.status is Status.CONVERGED and ctl.iteration == 2
    assert "shrinking 1e-05x per step" in ctl.reason and "add up to 1e-13" in ctl.reason


def test_the_predicted_stop_needs_the_first_order_test_and_an_exact_solve():
    assert not _two_shrinking_steps(cosine=0.5).done  # first-order test fails: LM goes on
    assert not _two_shrinking_steps(cosine=1e-6, loose=True).done  # a loose solve proves little
    ctl = LMControl(LMConfig(function_tolerance=1e-10, predict_stop=False), 1e-3, interrupted=lambda: False)
    ctl.start(10.0, 5.0)
    for new in (10.0 * (1 - 1e-3), 10.0 * (1 - 1e-3) * (1 - 1e-8)):
        ctl.begin()
        ctl.linearized(1.0, 2.0, lambda c: 1e-6)
        ctl.stepped(step(new_cost=new))
    assert not ctl.done  # switched off: only the plain rule
