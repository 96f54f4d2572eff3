"""Geodesic acceleration of LM steps (mixslam.solve.acceleration): the correction against a dense reference,
the second solve of each linear solver, the problem's residuals, and what it does to whole solves."""
import numpy as np
import pytest

from helpers import tol_for
from mixslam.io import read_pose_graph
from mixslam.linear.base import Damping
from mixslam.linear.block_pattern import BlockPattern
from mixslam.linear.cholesky import SOLVE_AGAIN_TOLERANCE, CholeskySolver
from mixslam.pgo import PGOConfig, PoseGraphProblem, optimize_pose_graph
from mixslam.precision import PrecisionPolicy
from mixslam.problem.robust import RobustLoss, RobustWeighting
from mixslam.sim.corrupt import corrupt_pose_graph
from mixslam.sim.generate import generate_pose_graph
from mixslam.solve import LMConfig
from mixslam.solve.acceleration import geodesic_correction
from mixslam.solve.config import RobustConfig

FP64 = PrecisionPolicy.preset("fp64")
MIXED = PrecisionPolicy.preset("mixed")


def dense_jacobian(lin):
    m, k, p = lin.A.shape
    J = np.zeros((m * k, lin.size))
    for blocks, idx in ((lin.A, lin.ia), (lin.B, lin.ib)):
        for e in np.nonzero(idx >= 0)[0]:
            J[e * k:(e + 1) * k, idx[e] * p:(idx[e] + 1) * p] += blocks[e]
    return J


def problem_and_step(kind="grid3d", n=40, policy=FP64, seed=1):
    graph, _ = generate_pose_graph(kind, n, seed=seed, rotation_sigma=0.05)  # the odometry-composed guess
    problem = PoseGraphProblem(graph, policy)
    state = problem.initial_state
    lin = problem.linearize(state)
    J = dense_jacobian(lin)
    lam = 1e-3
    H = J.T @ J + lam * np.diag(np.diag(J.T @ J))
    v = -np.linalg.solve(H, J.T @ lin.r.ravel().astype(np.float64))
    return problem, state, lin, J, H, v


@pytest.mark.parametrize("kind", ["grid2d", "grid3d"])
def test_correction_is_the_second_derivative_of_the_residuals_along_the_step(kind):
    problem, state, lin, J, H, v = problem_and_step(kind)
    h = 1e-4  # a small step: the finite difference then is the second derivative to O(h)

    def solve(b):
        return np.linalg.solve(H, b)

    a = geodesic_correction(problem.residuals, problem.retract, state, lin, v, solve, h)
    # reference: the central second difference of the residuals along v, a = -H⁻¹ Jᵀ r''
    eps = 1e-3

    def r(s):
        return problem.residuals(problem.retract(state, s * v)).ravel()

    rpp = (r(eps) - 2 * r(0.0) + r(-eps)) / eps**2
    ref = -np.linalg.solve(H, J.T @ rpp)
    assert np.linalg.norm(ref) > 1e-6 * np.linalg.norm(v)  # the path curves: the test means something
    assert np.linalg.norm(a - ref) <= 1e-2 * np.linalg.norm(ref)


@pytest.mark.parametrize("policy", [FP64, MIXED], ids=["fp64", "mixed"])
def test_cholesky_solves_again_with_the_damped_system_of_its_last_solve(policy):
    problem, state, lin, J, H, v = problem_and_step(policy=policy)
    solver = CholeskySolver(BlockPattern(lin.ia, lin.ib, lin.nv, lin.p), policy)
    assert solver.solve_again(np.ones(lin.size)) is None  # nothing solved yet
    damping = Damping(1e-3, 1e-6, 1e32)
    solver.solve(lin, damping)
    colsq = lin.column_sq_norms()
    Hd = dense_jacobian(lin).T @ dense_jacobian(lin) + np.diag(damping.diagonal(colsq))
    b = np.random.default_rng(0).normal(size=lin.size)
    x = solver.solve_again(b)
    kappa = np.linalg.cond(Hd)
    if policy is FP64:
        assert np.linalg.norm(Hd @ x - b) <= tol_for("fp64", n=lin.size, kappa=kappa) * np.linalg.norm(b)
    else:  # refined with the fp32 factor to SOLVE_AGAIN_TOLERANCE (the J of the test is fp32-rounded)
        ref = np.linalg.solve(Hd, b)
        assert np.linalg.norm(Hd @ x - b) <= 10 * SOLVE_AGAIN_TOLERANCE * np.linalg.norm(b)
        assert np.linalg.norm(x - ref) <= 10 * SOLVE_AGAIN_TOLERANCE * kappa * np.linalg.norm(ref)


def test_cg_cannot_solve_again():
    from mixslam.linear.cgnr import CGSolver
    from mixslam.linear.preconditioners import JacobiPreconditioner

    solver = CGSolver(FP64, JacobiPreconditioner(FP64))
    assert not solver.can_solve_again and solver.solve_again(np.ones(3)) is None


@pytest.mark.parametrize("policy", [FP64, MIXED], ids=["fp64", "mixed"])
def test_pose_graph_residuals_are_the_linearization_rows(policy):
    problem, state, lin, *_ = problem_and_step(policy=policy)
    r = problem.residuals(state)
    assert r.dtype == lin.r.dtype
    u = np.finfo(r.dtype).eps
    assert np.allclose(r, lin.r, rtol=0, atol=100 * u * np.abs(lin.r).max())


def test_residuals_carry_fixed_robust_weights_and_none_in_loss_mode():
    graph, _ = generate_pose_graph("grid2d", 30, seed=0)
    problem = PoseGraphProblem(graph, FP64, robust=RobustConfig(loss="cauchy"))
    assert problem.residuals(problem.initial_state) is None  # weights move with the residuals
    w = np.random.default_rng(1).uniform(0, 1, graph.num_edges)
    problem.robust.fix(w)
    lin = problem.linearize(problem.initial_state)
    r = problem.residuals(problem.initial_state)
    assert np.allclose(r, lin.r, rtol=1e-12, atol=1e-12)
    plain = PoseGraphProblem(graph, FP64).residuals(problem.initial_state)
    assert np.allclose(r, plain * np.sqrt(w)[:, None], rtol=1e-12, atol=1e-12)
    assert isinstance(problem.robust, RobustWeighting) and isinstance(problem.robust.loss, RobustLoss)


@pytest.mark.parametrize("kind", ["grid2d", "grid3d", "sphere", "city"])
def test_accelerated_solves_reach_the_same_optimum_in_no_more_iterations(kind):
    graph, _ = generate_pose_graph(kind, 100, seed=0, rotation_sigma=0.05)
    _, plain = optimize_pose_graph(graph, init="file", lm=LMConfig(geodesic_acceleration=False))
    _, acc = optimize_pose_graph(graph, init="file")  # the default: on
    assert plain.converged and acc.converged, (plain.reason, acc.reason)
    assert plain.accelerated_steps == 0 and acc.accelerated_steps > 0
    assert acc.iterations <= plain.iterations
    # each stops within the function tolerance (1e-10) of the optimum
    assert abs(acc.final_cost - plain.final_cost) <= 2e-10 * plain.final_cost
    assert acc.as_dict()["accelerated_steps"] == acc.accelerated_steps
    assert "acceleration" in acc.timing and "acceleration" not in plain.timing


def test_acceleration_stops_once_its_correction_is_negligible():
    graph, _ = generate_pose_graph("grid3d", 100, seed=0, rotation_sigma=0.05)
    _, every = optimize_pose_graph(graph, init="file", lm=LMConfig(acceleration_min_ratio=0.0))
    _, default = optimize_pose_graph(graph, init="file")
    assert every.converged and default.converged
    # every step is corrected where 2‖a‖ <= 0.75‖v‖ (by zero where r'' is rounding noise) ...
    assert every.accelerated_steps >= every.iterations - 1
    # ... by default not after the ratio fell below 1e-3, before the end
    assert 0 < default.accelerated_steps < min(default.iterations, every.accelerated_steps)
    assert abs(every.final_cost - default.final_cost) <= 1e-10 * default.final_cost


def test_cg_solves_and_robust_loss_mode_run_without_acceleration():
    graph, _ = generate_pose_graph("grid2d", 60, seed=0)
    _, cg = optimize_pose_graph(graph, solver="ic")
    assert cg.converged and cg.accelerated_steps == 0
    _, rob = optimize_pose_graph(graph, robust=RobustConfig(loss="huber"))
    assert rob.converged and rob.accelerated_steps == 0


def test_gnc_weighted_solves_are_accelerated():
    # fixed weights: the weighted residuals are a function of the state, so each weighted solve accelerates
    graph, _ = generate_pose_graph("grid2d", 60, seed=0, rotation_sigma=0.05)
    corrupted = corrupt_pose_graph(graph, 0.2, "random", seed=0).graph
    _, rep = optimize_pose_graph(corrupted, robust=RobustConfig(loss="tls", gnc=True))
    assert rep.converged and rep.robust["gnc_iterations"] > 1
    assert rep.accelerated_steps > rep.robust["gnc_iterations"]  # summed over the weighted solves


@pytest.mark.data
@pytest.mark.parametrize("policy", ["fp64", "mixed"])
def test_parking_garage_hinge_converges_in_a_quarter_of_the_iterations(policy, data_dir):
    # parking-garage's chordal start is 3° off about its first poses. LM as it was (damping from 1e-8, no
    # acceleration) creeps 20 iterations along the arc; the acceleration alone takes 8-9, the smaller
    # initial damping alone 8, both 4-5 (measured), to the same optimum
    graph = read_pose_graph(data_dir / "pgo" / "parking-garage.g2o")
    old = LMConfig(geodesic_acceleration=False, initial_lambda=1e-8)
    _, before = optimize_pose_graph(graph, PGOConfig(precision=policy, lm=old))
    _, accel = optimize_pose_graph(graph, PGOConfig(precision=policy, lm=LMConfig(initial_lambda=1e-8)))
    _, now = optimize_pose_graph(graph, precision=policy)
    assert before.converged and accel.converged and now.converged
    assert before.iterations >= 15 and accel.iterations <= 10 and now.iterations <= 6, (
        before.iterations, accel.iterations, now.iterations)
    for rep in (accel, now):
        assert abs(rep.final_cost - before.final_cost) <= 1e-9 * before.final_cost
