"""Each stopping rule of the LM loop gives the status it promises (issue 15, "statuses you can trust"):
``converged`` only where the first-order condition holds; a small decrease with a large gradient is ``stalled``;
an fp64 overflow of the state is ``failed``; a problem without a free variable returns its input, ``converged``
after 0 iterations; an interrupt request ends the loop with ``interrupted`` and the best iterate."""
import dataclasses

import numpy as np
import pytest

from helpers import write_small_bal
from mixslam.ba import optimize_bundle
from mixslam.io.bal import read_bal
from mixslam.linear import Linearization
from mixslam.linear.block_pattern import BlockPattern
from mixslam.linear.cholesky import CholeskySolver
from mixslam.pgo import optimize_pose_graph
from mixslam.precision import PrecisionPolicy
from mixslam.sim import simulate_pose_graph
from mixslam.sim.bundle import WindowConfig, simulate_window
from mixslam.solve import LMConfig, Status
from mixslam.solve.interrupt import handle_interrupts, interrupt_requested, request_interrupt
from mixslam.solve.lm import STALL_GRADIENT, levenberg_marquardt

FP64 = PrecisionPolicy.preset("fp64")
P = 3


@pytest.fixture(scope="module")
def graph():
    return simulate_pose_graph("manhattan", 120, seed=4).graph


# ---- function tolerance: converged only with a small gradient -------------------------------------------------
def test_function_tolerance_with_a_large_gradient_is_stalled(graph):
    """A huge function tolerance stops after the first step, where the gradient is still its starting value."""
    _, rep = optimize_pose_graph(graph, lm=LMConfig(function_tolerance=0.999))
    assert rep.status is Status.STALLED and not rep.converged, rep.reason
    assert rep.iterations == 1
    assert "below function_tolerance" in rep.reason and "1.0e+00 of its start" in rep.reason
    # only the label changed: the iterate is the one a 1-iteration solve returns
    _, one = optimize_pose_graph(graph, lm=LMConfig(max_iterations=1))
    assert rep.final_cost == one.final_cost


def test_function_tolerance_with_a_small_gradient_is_converged(graph):
    _, rep = optimize_pose_graph(graph, lm=LMConfig(predict_stop=False))  # the plain rule
    assert rep.status is Status.CONVERGED, rep.reason
    last = rep.history[-1]
    assert last.gradient_norm <= STALL_GRADIENT * rep.history[0].gradient_norm


def test_predicted_stop_saves_the_confirming_step(graph):
    # the decreases shrink fast: the ones still to come add up to less than the tolerance one step earlier
    cfg = LMConfig()
    _, plain = optimize_pose_graph(graph, lm=LMConfig(predict_stop=False))
    _, rep = optimize_pose_graph(graph)
    assert rep.status is Status.CONVERGED and "still to come add up to" in rep.reason, rep.reason
    assert rep.iterations == plain.iterations - 1
    assert 0 <= rep.final_cost - plain.final_cost <= 2 * cfg.function_tolerance * plain.final_cost
    # the rule's own numbers, from the history: q = rel_k / rel_(k-1) <= 0.5 and rel_k q / (1 - q) < tol
    rel = [(h.cost - h.new_cost) / h.cost for h in rep.history if h.accepted]
    q = rel[-1] / rel[-2]
    assert q <= 0.5 and rel[-1] * q / (1 - q) < cfg.function_tolerance <= rel[-1]


def test_function_tolerance_near_a_close_start_is_converged_by_the_scale_aware_test(tmp_path):
    """A BAL problem that starts near its optimum: Ceres' 1e-6 stops it at the optimum with max|g| still 1.1e-4
    of its (small) start, above STALL_GRADIENT; the residual is orthogonal to every Jacobian column to 1e-5
    (MINPACK's cosine test), so it is converged."""
    data = read_bal(write_small_bal(tmp_path / "p.txt", 4, 60, seed=2))
    _, rep = optimize_bundle(data)
    h = rep.history
    assert h[-1].gradient_norm > STALL_GRADIENT * h[0].gradient_norm
    assert rep.status is Status.CONVERGED and "function_tolerance" in rep.reason, rep.reason


def test_gradient_tolerance_is_converged(graph):
    _, rep = optimize_pose_graph(graph, lm=LMConfig(gradient_tolerance=0.5, function_tolerance=0.0))
    assert rep.status is Status.CONVERGED and "gradient max-norm" in rep.reason, rep.reason


def test_iteration_limit(graph):
    _, rep = optimize_pose_graph(graph, lm=LMConfig(max_iterations=1, function_tolerance=0.0))
    assert rep.status is Status.HIT_ITERATION_LIMIT and rep.iterations == 1


# ---- lambda above max_lambda ----------------------------------------------------------------------------------
class LinearFit:
    """0.5 ‖J x - y‖² on one variable of size 3; ``flip`` negates the Jacobian it reports (every step then goes
    uphill: no step decreases the cost); ``overflow`` makes the state's norm overflow once x leaves the start."""

    def __init__(self, flip=False, overflow=False):
        rng = np.random.default_rng(0)
        self.J = rng.normal(size=(5, 3, P))
        self.y = rng.normal(size=(5, 3))
        self.flip, self.overflow = flip, overflow
        self.ia, self.ib = np.zeros(5, np.int64), np.full(5, -1, np.int64)

    def cost(self, x) -> float:
        return 0.5 * float(np.sum((self.J @ x - self.y) ** 2))

    def linearize(self, x) -> Linearization:
        J = -self.J if self.flip else self.J
        return Linearization(self.J @ x - self.y, J, np.zeros_like(J), self.ia, self.ib, 1, P)

    def retract(self, x, delta):
        return x + delta

    def state_norm(self, x) -> float:
        return float("inf") if self.overflow and x.any() else float(np.linalg.norm(x))


def _solver(prob):
    return CholeskySolver(BlockPattern(prob.ia, prob.ib, 1, P), FP64)


def test_no_decreasing_step_with_a_large_gradient_is_stalled():
    prob = LinearFit(flip=True)
    x, rep = levenberg_marquardt(prob, np.zeros(P), _solver(prob), FP64, LMConfig(max_lambda=1e3))
    assert rep.status is Status.STALLED and "lambda above" in rep.reason, rep.reason
    assert np.array_equal(x, np.zeros(P)) and rep.final_cost == prob.cost(np.zeros(P))


# ---- fp64 overflow --------------------------------------------------------------------------------------------
def test_state_norm_overflow_after_a_step_fails_and_keeps_the_best_finite_iterate():
    prob = LinearFit(overflow=True)
    x, rep = levenberg_marquardt(prob, np.zeros(P), _solver(prob), FP64, LMConfig())
    assert rep.status is Status.FAILED and "overflows fp64" in rep.reason, rep.reason
    assert np.array_equal(x, np.zeros(P)) and rep.iterations == 1


@pytest.fixture(scope="module")
def bal(tmp_path_factory):
    return read_bal(write_small_bal(tmp_path_factory.mktemp("bal") / "small.txt", 4, 20, 0))


def test_ba_point_at_1e308_fails(bal):
    """The state's norm overflows at the start (it once made the step test pass: 'converged')."""
    pts = bal.points.copy()
    pts[3] = [1e308, 0.0, 0.0]
    out, rep = optimize_bundle(dataclasses.replace(bal, points=pts))
    assert rep.status is Status.FAILED and "overflows fp64" in rep.reason, rep.reason
    assert rep.iterations == 0 and np.array_equal(out.points, pts)


# ---- no free variable -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_pose_graph_with_every_pose_fixed_is_returned_unchanged(graph, solver):
    fixed = dataclasses.replace(graph, fixed=np.ones(graph.num_poses, bool))
    out, rep = optimize_pose_graph(fixed, solver=solver)
    assert rep.status is Status.CONVERGED and rep.iterations == 0, rep.reason
    assert np.array_equal(out.rotations, graph.rotations) and np.array_equal(out.translations, graph.translations)
    assert rep.final_cost == rep.initial_cost > 0


@pytest.mark.parametrize("precision", ["fp64", "mixed"])
def test_bundle_with_every_camera_and_point_fixed_is_returned_unchanged(precision):
    data = simulate_window(WindowConfig(), seed=0).data  # pinhole: a fixed camera has no free intrinsics
    fixed = dataclasses.replace(data, fixed_cameras=np.ones(data.num_cameras, bool),
                                fixed_points=np.ones(data.num_points, bool))
    out, rep = optimize_bundle(fixed, precision=precision)
    assert rep.status is Status.CONVERGED and rep.iterations == 0, rep.reason
    assert np.array_equal(out.cameras, data.cameras) and np.array_equal(out.points, data.points)
    assert rep.final_cost == rep.initial_cost and rep.depth is not None


# ---- interrupts -----------------------------------------------------------------------------------------------
def test_interrupt_before_the_first_iteration(graph):
    with handle_interrupts():
        request_interrupt()
        out, rep = optimize_pose_graph(graph, init="file")
    assert rep.status is Status.INTERRUPTED and rep.iterations == 0
    assert np.array_equal(out.translations, graph.translations)  # the start is the best iterate
    assert not interrupt_requested()  # cleared on exit


def test_interrupt_ends_the_loop_after_the_iteration_with_the_best_iterate(graph):
    def callback(record):
        if record.iteration == 2:
            request_interrupt()

    with handle_interrupts():  # the plain stopping rule: this graph converges in 2 iterations with the predicted one
        out, rep = optimize_pose_graph(graph, lm=LMConfig(callback=callback, predict_stop=False))
    assert rep.status is Status.INTERRUPTED and rep.iterations == 2, rep.reason
    _, two = optimize_pose_graph(graph, lm=LMConfig(max_iterations=2))
    assert rep.final_cost == two.final_cost  # the same iterate as a 2-iteration solve
    from mixslam.problem.between import cost
    assert cost(out, out.rotations, out.translations) == rep.final_cost


def test_the_flag_is_ignored_outside_the_context(graph):
    _, rep = optimize_pose_graph(graph)
    assert rep.status is Status.CONVERGED
