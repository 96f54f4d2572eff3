"""Levenberg-Marquardt / Gauss-Newton on tiny least-squares problems with known minima, the configurations'
validation, and the inexact-Newton forcing sequence.

The problems have one variable of size 3 (a 3-parameter fit): a zero-residual extended Rosenbrock function
(minimum 0 at (1, 1, 1)) and a linear least-squares fit (minimum from ``numpy.linalg.lstsq``). Tolerances come from
:func:`helpers.tol_for`.
"""
import dataclasses
import logging
import math

import numpy as np
import pytest

from helpers import tol_for
from mixslam.errors import ConfigError
from mixslam.linear import CGConfig, ICConfig, Linearization, LinearStatus, MemoryUse
from mixslam.linear.block_pattern import BlockPattern
from mixslam.linear.cgnr import CGSolver
from mixslam.linear.cholesky import CholeskySolver
from mixslam.linear.config import FORCING_RULES, Forcing
from mixslam.linear.preconditioners import ICPreconditioner, JacobiPreconditioner
from mixslam.precision import Precision, PrecisionPolicy, QuantizationStats
from mixslam.solve import LMConfig, SolveReport, Status
from mixslam.solve.lm import levenberg_marquardt

P = 3
IA, IB = np.zeros(2, np.int64), np.full(2, -1, np.int64)
FP64 = PrecisionPolicy.preset("fp64")


class Rosenbrock:
    """0.5 Σ r² with r = [10(x2 - x1²), 1 - x1, 0 | 10(x3 - x2²), 1 - x2, 0]: two rows of 3 residuals on one
    variable of size 3; the minimum is 0 at (1, 1, 1)."""

    minimum = np.ones(P)

    def residuals(self, x):
        return np.array([[10 * (x[1] - x[0] ** 2), 1 - x[0], 0.0], [10 * (x[2] - x[1] ** 2), 1 - x[1], 0.0]])

    def cost(self, x) -> float:
        return 0.5 * float(np.sum(self.residuals(x) ** 2))

    def linearize(self, x) -> Linearization:
        A = np.zeros((2, 3, P))
        A[0, 0] = [-20 * x[0], 10, 0]
        A[0, 1] = [-1, 0, 0]
        A[1, 0] = [0, -20 * x[1], 10]
        A[1, 1] = [0, -1, 0]
        return Linearization(self.residuals(x), A, np.zeros_like(A), IA, IB, 1, P)

    def retract(self, x, delta):
        return x + delta

    def state_norm(self, x) -> float:
        return float(np.linalg.norm(x))


class LinearFit:
    """0.5 ‖J x - y‖² with rows of 3 residuals: one Gauss-Newton step from anywhere reaches the minimum."""

    def __init__(self, seed=0, rows=5):
        rng = np.random.default_rng(seed)
        self.J = rng.normal(size=(rows, 3, P))
        self.y = rng.normal(size=(rows, 3))
        self.ia, self.ib = np.zeros(rows, np.int64), np.full(rows, -1, np.int64)
        J2 = self.J.reshape(-1, P)
        self.minimum = np.linalg.lstsq(J2, self.y.reshape(-1), rcond=None)[0]
        self.kappa = float(np.linalg.cond(J2))

    def residuals(self, x):
        return self.J @ x - self.y

    def cost(self, x) -> float:
        return 0.5 * float(np.sum(self.residuals(x) ** 2))

    def linearize(self, x) -> Linearization:
        return Linearization(self.residuals(x), self.J, np.zeros_like(self.J), self.ia, self.ib, 1, P)

    def retract(self, x, delta):
        return x + delta

    def state_norm(self, x) -> float:
        return float(np.linalg.norm(x))


START = np.array([-1.2, 1.0, 1.2])
#: Every stopping tolerance off: LM runs until no step lowers the fp64 cost, so the result is limited by the
#: arithmetic alone (the tolerances below are those of fp64, not of LM's stopping rules).
FULL = LMConfig(function_tolerance=0.0, gradient_tolerance=0.0, step_tolerance=0.0, max_iterations=200)


def cholesky(problem=None):
    ia = IA if problem is None else problem.ia
    ib = IB if problem is None else problem.ib
    return CholeskySolver(BlockPattern(ia, ib, 1, P), FP64)


def cg(policy=FP64, pre="jacobi", config=None):
    pattern = BlockPattern(IA, IB, 1, P)
    pre_obj = JacobiPreconditioner(policy) if pre == "jacobi" else ICPreconditioner(pattern, policy)
    return CGSolver(policy, pre_obj, config)


SOLVERS = {"cholesky": lambda: cholesky(), "cg+jacobi": lambda: cg(), "cg+ic": lambda: cg(pre="ic"),
           "cg+ic mixed": lambda: cg(PrecisionPolicy.preset("mixed"), "ic")}


# ---- the problems' minima --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SOLVERS))
def test_rosenbrock_minimum_is_found(name):
    solver = SOLVERS[name]()
    x, rep = levenberg_marquardt(Rosenbrock(), START, solver, solver.policy, FULL)
    assert rep.status is Status.CONVERGED, rep.reason
    # A zero-residual problem: the fp64 cost resolves the minimizer to u · κ(J(x*)) (κ ≈ 54), whatever
    # precision the linear solves ran in (the gradient Jᵀr vanishes with r).
    kappa = np.linalg.cond(Rosenbrock().linearize(Rosenbrock.minimum).A[:, :2].reshape(-1, P))
    norm = np.linalg.norm(Rosenbrock.minimum)
    assert np.linalg.norm(x - Rosenbrock.minimum) <= tol_for(Precision.FP64, n=P, kappa=kappa) * norm
    assert rep.final_cost <= rep.initial_cost and rep.final_cost == Rosenbrock().cost(x)
    assert rep.final_cost <= tol_for(Precision.FP64, n=P, kappa=kappa) ** 2
    assert rep.best_iteration <= rep.iterations and len(rep.history) == rep.iterations
    assert rep.precision == solver.policy.name and rep.solver == solver.name
    assert rep.preconditioner == (None if solver.preconditioner is None else solver.preconditioner.name)
    assert all(h.linear_status in LinearStatus for h in rep.history)


def test_geodesic_acceleration_shortens_the_rosenbrock_valley():
    # the curved valley geodesic acceleration was made for (mixslam.solve.acceleration); the direct solver can
    # solve again, CG cannot (no correction)
    plain_config = dataclasses.replace(FULL, geodesic_acceleration=False)
    _, plain = levenberg_marquardt(Rosenbrock(), START, cholesky(), FP64, plain_config)
    x, acc = levenberg_marquardt(Rosenbrock(), START, cholesky(), FP64, FULL)
    assert acc.status is Status.CONVERGED and acc.accelerated_steps > 0 and plain.accelerated_steps == 0
    assert np.allclose(x, Rosenbrock.minimum, atol=1e-10)
    assert acc.iterations < plain.iterations
    _, cg_rep = levenberg_marquardt(Rosenbrock(), START, cg(), FP64, FULL)
    assert cg_rep.accelerated_steps == 0


@pytest.mark.parametrize("name", ["cholesky", "cg+jacobi"])
@pytest.mark.parametrize("method", ["lm", "gn"])
def test_linear_least_squares_minimum_is_found(name, method):
    prob = LinearFit()
    solver = cholesky(prob) if name == "cholesky" else cg(config=CGConfig(forcing="fixed", eta_max=1e-14,
                                                                          eta_min=1e-14))
    x, rep = levenberg_marquardt(prob, np.zeros(P), solver, FP64, dataclasses.replace(FULL, method=method))
    assert rep.converged, rep.reason
    tol = tol_for(Precision.FP64, n=prob.y.size, kappa=prob.kappa)
    assert rep.final_cost == pytest.approx(prob.cost(prob.minimum), rel=tol)
    err = np.linalg.norm(x - prob.minimum) / np.linalg.norm(prob.minimum)
    if method == "gn":
        # an undamped exact step lands on the minimum
        assert err <= tol
    elif name == "cholesky":
        # an almost undamped exact step (λ0 = 1e-12) lands within λ0 κ² of the minimum; the fp64 cost cannot
        # see the rest (a step that corrects it lowers the cost by less than an ulp)
        assert err <= tol + 10 * solver.initial_lambda * prob.kappa**2
    else:
        # LM with CG's damping (λ0 = 1e-5) closes in on the minimum step by step; at a non-zero minimum cost a
        # comparison of fp64 costs resolves the minimizer only to about √u (‖J e‖² ≈ u · cost).
        assert err <= math.sqrt(tol)
    if method == "gn":
        assert rep.history[0].lam == 0.0
        assert rep.history[0].accepted and rep.history[0].gain_ratio == pytest.approx(1.0, rel=tol)


def test_gauss_newton_reaches_the_rosenbrock_minimum():
    # From near the minimum (Gauss-Newton has no damping to survive the curved valley from START).
    x, rep = levenberg_marquardt(Rosenbrock(), np.array([0.9, 0.8, 0.7]), cholesky(), FP64,
                                 dataclasses.replace(FULL, method="gn"))
    assert rep.converged, rep.reason
    assert all(h.lam == 0.0 for h in rep.history)
    kappa = np.linalg.cond(Rosenbrock().linearize(Rosenbrock.minimum).A[:, :2].reshape(-1, P))
    assert np.linalg.norm(x - Rosenbrock.minimum) <= tol_for(Precision.FP64, n=P, kappa=kappa) * math.sqrt(P)


def test_gauss_newton_stops_when_its_step_fails():
    x, rep = levenberg_marquardt(Rosenbrock(), START, cholesky(), FP64, LMConfig(method="gn"))
    assert rep.status is Status.STALLED and rep.iterations == 1 and "Gauss-Newton step" in rep.reason
    assert x is START and rep.final_cost == rep.initial_cost


def test_default_tolerances_converge():
    _, rep = levenberg_marquardt(Rosenbrock(), START, cholesky(), FP64)
    assert rep.converged, rep.reason
    assert rep.final_cost <= 1e-12 * rep.initial_cost


# ---- statuses --------------------------------------------------------------------------------------------------

def test_iteration_limit():
    _, rep = levenberg_marquardt(Rosenbrock(), START, cholesky(), FP64, LMConfig(max_iterations=1))
    assert rep.status is Status.HIT_ITERATION_LIMIT and rep.iterations == 1 and len(rep.history) == 1
    assert "max_iterations=1" in rep.reason
    assert not rep.converged and not rep.failed


def test_zero_iterations_returns_the_start():
    x, rep = levenberg_marquardt(Rosenbrock(), START, cholesky(), FP64, LMConfig(max_iterations=0))
    assert rep.status is Status.HIT_ITERATION_LIMIT and rep.iterations == 0
    assert x is START and rep.final_cost == rep.initial_cost


def test_nan_initial_cost_fails():
    start = START.copy()
    start[1] = np.nan
    x, rep = levenberg_marquardt(Rosenbrock(), start, cholesky(), FP64)
    assert rep.status is Status.FAILED and rep.failed and rep.iterations == 0
    assert "initial cost is not finite" in rep.reason
    assert x is start and "total" in rep.timing


def test_nonfinite_gradient_fails():
    class NaNJacobian(Rosenbrock):
        def linearize(self, x):
            lin = super().linearize(x)
            lin.A[0, 0, 0] = np.nan
            return lin

    x, rep = levenberg_marquardt(NaNJacobian(), START, cholesky(), FP64)
    assert rep.status is Status.FAILED and "gradient is not finite" in rep.reason
    assert x is START


def test_callback_stop_iteration():
    seen = []

    def cb(record):
        seen.append(record.iteration)
        if record.iteration == 2:
            raise StopIteration

    _, rep = levenberg_marquardt(Rosenbrock(), START, cholesky(), FP64, LMConfig(callback=cb, initial_lambda=1e-3))
    assert seen == [1, 2] and rep.iterations == 2
    assert rep.status is Status.CONVERGED and "callback" in rep.reason
    assert not rep.history[1].accepted and rep.final_cost == rep.history[0].new_cost


def test_callback_stop_keeps_the_accepted_step_of_its_iteration():
    def cb(record):
        if record.iteration == 3:
            raise StopIteration

    # the plain LM path (acceleration off), on which iteration 3's step is accepted
    config = LMConfig(callback=cb, initial_lambda=1e-3, geodesic_acceleration=False)
    x, rep = levenberg_marquardt(Rosenbrock(), START, cholesky(), FP64, config)
    assert rep.iterations == 3 and rep.history[2].accepted
    assert rep.final_cost == rep.history[2].new_cost == Rosenbrock().cost(x) and rep.best_iteration == 3


def test_verbose_logs_one_line_per_iteration(caplog):
    with caplog.at_level(logging.INFO, logger="mixslam"):
        _, rep = levenberg_marquardt(Rosenbrock(), START, cholesky(), FP64, LMConfig(max_iterations=3, verbose=True))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[iter")]
    assert len(lines) == rep.iterations == 3


# ---- damping ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,expect", [("cholesky", 1e-12), ("cg+jacobi", 1e-5)])
def test_initial_lambda_comes_from_the_solver_unless_set(name, expect):
    solver = SOLVERS[name]()
    assert solver.initial_lambda == expect
    _, rep = levenberg_marquardt(Rosenbrock(), START, solver, FP64, LMConfig(max_iterations=1))
    assert rep.history[0].lam == expect
    _, rep = levenberg_marquardt(Rosenbrock(), START, SOLVERS[name](), FP64,
                                 LMConfig(max_iterations=1, initial_lambda=1e-3))
    assert rep.history[0].lam == 1e-3


def test_a_rejected_step_raises_lambda_and_resolves_the_same_linearization():
    # From (-1.2, 1, 1.2) a nearly undamped step overshoots the curved valley: with λ tiny the first step is
    # rejected and λ grows by ν = 2, 4, ... until a step is accepted.
    _, rep = levenberg_marquardt(Rosenbrock(), np.array([-1.2, 1.0, 1.0]), cholesky(), FP64,
                                 LMConfig(initial_lambda=1e-12, max_iterations=50))
    lams = [h.lam for h in rep.history]
    rejected = [i for i, h in enumerate(rep.history) if not h.accepted]
    assert rejected, "expected at least one rejected step"
    for i in rejected:
        if i + 1 < len(lams):
            assert lams[i + 1] > lams[i]
            assert rep.history[i + 1].cost == rep.history[i].cost  # same linearization point


# ---- the report of the loop ------------------------------------------------------------------------------------

def test_report_of_a_cg_ic_solve():
    mixed = PrecisionPolicy.preset("mixed")
    solver = cg(mixed, "ic")
    _, rep = levenberg_marquardt(Rosenbrock(), START, solver, mixed, LMConfig(max_iterations=200))
    assert isinstance(rep, SolveReport) and rep.converged, rep.reason
    assert rep.solver == "cg" and rep.preconditioner == "ic" and rep.solver_label == "cg+ic"
    assert isinstance(rep.quantization, QuantizationStats) and rep.quantization.count > 0
    assert rep.quantization.fallbacks == 0 and rep.fp16_overflows == 0
    assert isinstance(rep.memory, MemoryUse) and rep.memory.jacobian_bytes > 0 and rep.memory.preconditioner_bytes > 0
    st = rep.preconditioner_stats
    assert st.factorizations >= 1 and st.escalated is False and st.ordering == "natural"
    for key in ("residual", "jacobian", "linear_solve", "update", "total", "products_s", "products_calls",
                "preconditioner_s", "preconditioner_calls", "cg_s", "cg_calls", "ic_factor", "quantize"):
        assert key in rep.timing, key
    assert rep.timing["cg_calls"] >= rep.iterations
    assert rep.linear_iterations == sum(h.linear_iterations for h in rep.history)


def test_report_of_a_direct_solve():
    _, rep = levenberg_marquardt(Rosenbrock(), START, cholesky(), FP64)
    assert rep.solver == "cholesky" and rep.preconditioner is None and rep.solver_label == "cholesky"
    assert rep.preconditioner_stats is None
    assert rep.quantization == QuantizationStats()
    assert "assemble" in rep.timing and "factor_solve" in rep.timing and "products_s" not in rep.timing
    assert rep.linear_iterations == rep.iterations


# ---- configuration validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cls,fields,name", [
    (LMConfig, {"max_iterations": -1}, "LMConfig.max_iterations"),
    (LMConfig, {"max_iterations": 2.5}, "LMConfig.max_iterations"),
    (LMConfig, {"max_iterations": True}, "LMConfig.max_iterations"),
    (LMConfig, {"method": "newton"}, "LMConfig.method"),
    (LMConfig, {"initial_lambda": 0.0}, "LMConfig.initial_lambda"),
    (LMConfig, {"initial_lambda": float("nan")}, "LMConfig.initial_lambda"),
    (LMConfig, {"initial_lambda": True}, "LMConfig.initial_lambda"),
    (LMConfig, {"min_lambda": 0.0}, "LMConfig.min_lambda"),
    (LMConfig, {"max_lambda": float("inf")}, "LMConfig.max_lambda"),
    (LMConfig, {"min_lambda": 1.0, "max_lambda": 0.5}, "LMConfig.min_lambda"),
    (LMConfig, {"min_diagonal": 1.0, "max_diagonal": 0.5}, "LMConfig.min_diagonal"),
    (LMConfig, {"function_tolerance": -1e-3}, "LMConfig.function_tolerance"),
    (LMConfig, {"gradient_tolerance": float("nan")}, "LMConfig.gradient_tolerance"),
    (LMConfig, {"step_tolerance": "0"}, "LMConfig.step_tolerance"),
    (LMConfig, {"callback": 3}, "LMConfig.callback"),
    (LMConfig, {"verbose": "yes"}, "LMConfig.verbose"),
    (CGConfig, {"max_iterations": 0}, "CGConfig.max_iterations"),
    (CGConfig, {"forcing": "newton"}, "CGConfig.forcing"),
    (CGConfig, {"eta_max": 0.0}, "CGConfig.eta_max"),
    (CGConfig, {"eta_min": float("nan")}, "CGConfig.eta_min"),
    (LMConfig, {"acceleration_ratio": 0.0}, "LMConfig.acceleration_ratio"),
    (LMConfig, {"acceleration_step": 0.0}, "LMConfig.acceleration_step"),
    (LMConfig, {"acceleration_step": 1.5}, "LMConfig.acceleration_step"),
    (LMConfig, {"geodesic_acceleration": "yes"}, "LMConfig.geodesic_acceleration"),
    (LMConfig, {"acceleration_min_ratio": -1e-3}, "LMConfig.acceleration_min_ratio"),
    (CGConfig, {"eta_min": 0.5, "eta_max": 0.1}, "CGConfig.eta_min"),
    (CGConfig, {"ew_gamma": -1.0}, "CGConfig.ew_gamma"),
    (CGConfig, {"ew_alpha": 0}, "CGConfig.ew_alpha"),
    (CGConfig, {"refresh_every": -1}, "CGConfig.refresh_every"),
    (CGConfig, {"stagnation_window": 0}, "CGConfig.stagnation_window"),
    (ICConfig, {"shift": 0.0}, "ICConfig.shift"),
    (ICConfig, {"fill_level": -1}, "ICConfig.fill_level"),
    (ICConfig, {"fill_level": 1.5}, "ICConfig.fill_level"),
    (ICConfig, {"fill_level": "full"}, "ICConfig.fill_level"),
    (ICConfig, {"fill_level": True}, "ICConfig.fill_level"),
    (ICConfig, {"ordering": "amd"}, "ICConfig.ordering"),
    (ICConfig, {"damped": "yes"}, "ICConfig.damped"),
    (ICConfig, {"escalate": None}, "ICConfig.escalate"),
    (ICConfig, {"escalate_residual": 0.0}, "ICConfig.escalate_residual"),
    (ICConfig, {"max_fill_level": -2}, "ICConfig.max_fill_level"),
    (ICConfig, {"shift_tolerance": -1e-4}, "ICConfig.shift_tolerance"),
    (ICConfig, {"refactor": "sometimes"}, "ICConfig.refactor"),
])
def test_configs_refuse_bad_values_naming_the_field(cls, fields, name):
    with pytest.raises(ConfigError) as exc:
        cls(**fields)
    assert name in str(exc.value)
    assert repr(next(iter(fields.values()))) in str(exc.value)


def test_config_defaults_are_valid():
    assert LMConfig().initial_lambda is None and LMConfig().method == "lm"
    assert CGConfig().forcing == "superlinear"
    assert ICConfig().fill_level == 2 and ICConfig(fill_level="complete").fill_level == "complete"
    assert ICConfig(shift_tolerance=0.0).shift_tolerance == 0.0


def test_solver_configs_are_reexported():
    import mixslam.linear as linear
    import mixslam.linear.config as config
    import mixslam.solve as solve
    assert solve.CGConfig is linear.CGConfig is config.CGConfig
    assert solve.ICConfig is linear.ICConfig is config.ICConfig


# ---- the forcing sequence --------------------------------------------------------------------------------------

def test_forcing_rules_are_the_documented_ones():
    assert FORCING_RULES == ("superlinear", "eisenstat-walker", "fixed")


def test_superlinear_forcing():
    f = Forcing(CGConfig())
    assert f.next(1.0, 1.0) == 0.1                       # capped at eta_max
    assert f.next(1e-4, 1.0) == pytest.approx(1e-2)       # sqrt(‖g‖/‖g0‖)
    assert f.next(1e-30, 1.0) == 1e-10                    # floored at eta_min
    assert Forcing(CGConfig(eta_max=0.5)).next(0.04, 1.0) == pytest.approx(0.2)


def test_fixed_forcing():
    f = Forcing(CGConfig(forcing="fixed", eta_max=0.05))
    assert [f.next(g, 1.0) for g in (1.0, 1e-3, 1e-9)] == [0.05, 0.05, 0.05]


def test_eisenstat_walker_forcing():
    f = Forcing(CGConfig(forcing="eisenstat-walker"))
    assert f.next(1.0, 1.0) == 0.1                       # first: eta_max
    assert f.next(0.1, 1.0) == pytest.approx(0.9 * 0.1 ** 2)  # gamma (‖g_k‖/‖g_k-1‖)^alpha
    assert f.next(0.1, 1.0) == 0.1                       # no decrease: capped at eta_max
    # Safeguard: when gamma eta_(k-1)^alpha > 0.1, eta does not drop below it.
    g = Forcing(CGConfig(forcing="eisenstat-walker", eta_max=0.9))
    assert g.next(1.0, 1.0) == 0.9
    assert g.next(0.01, 1.0) == pytest.approx(0.9 * 0.9 ** 2)
    # Floored at eta_min.
    h = Forcing(CGConfig(forcing="eisenstat-walker", eta_min=1e-6))
    h.next(1.0, 1.0)
    assert h.next(1e-9, 1.0) == 1e-6


@pytest.mark.parametrize("rule", FORCING_RULES)
def test_tighten_caps_later_tolerances(rule):
    f = Forcing(CGConfig(forcing=rule))
    f.next(1.0, 1.0)
    f.tighten(0.5)
    assert f.cap == pytest.approx(0.005)
    assert f.next(1.0, 1.0) == pytest.approx(0.005)
    f.tighten(1.0)  # never loosens
    assert f.cap == pytest.approx(0.005)
    f.tighten(1e-20)  # never below eta_min
    assert f.cap == 1e-10 and f.next(1.0, 1.0) == 1e-10


def test_solvers_forward_the_forcing_sequence():
    solver = cg(config=CGConfig(forcing="fixed", eta_max=0.2))
    assert solver.next_tolerance(1.0, 1.0) == 0.2
    solver.tighten_tolerance(1.0)
    assert solver.next_tolerance(1.0, 1.0) == pytest.approx(0.01)
    direct = cholesky()
    assert direct.next_tolerance(1.0, 1.0) == 0.0
    direct.tighten_tolerance(1e-3)
    assert direct.next_tolerance(1e-3, 1.0) == 0.0
