"""Pose-graph optimization end to end on seeded simulated graphs, for every policy and solver."""
import numpy as np
import pytest

from mixslam.pgo import optimize_pose_graph
from mixslam.sim import simulate_pose_graph
from mixslam.solve import LMConfig, Status


@pytest.fixture(scope="module")
def graph3d():
    return simulate_pose_graph("grid3d", 300, seed=3)


@pytest.fixture(scope="module")
def graph2d():
    return simulate_pose_graph("manhattan", 400, seed=5)


@pytest.fixture(scope="module")
def reference(graph3d, graph2d):
    out = {}
    for name, sim in (("3d", graph3d), ("2d", graph2d)):
        res, rep = optimize_pose_graph(sim.graph, precision="fp64", solver="cholesky")
        assert rep.status is Status.CONVERGED, rep.reason
        out[name] = (res, rep)
    return out


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_fp64_cholesky_reaches_a_stationary_point_near_truth(dim, reference, graph3d, graph2d):
    sim = graph3d if dim == "3d" else graph2d
    res, rep = reference[dim]
    assert rep.final_cost < rep.initial_cost
    # The optimum is closer to the truth than the drifting odometry guess.
    err_odo = np.linalg.norm(sim.graph.translations - sim.truth_translations, axis=1).mean()
    err_opt = np.linalg.norm(res.translations - sim.truth_translations, axis=1).mean()
    assert err_opt < 0.5 * err_odo
    # Near a minimum, a Gauss-Newton step from the result changes nothing: re-solving converges at once.
    _, rep2 = optimize_pose_graph(res, precision="fp64", solver="cholesky")
    assert rep2.final_cost == pytest.approx(rep.final_cost, rel=1e-9)


@pytest.mark.parametrize("precision, solver", [("fp64", "ic"), ("fp64", "cgnr"), ("fp32", "ic"), ("fp32", "cgnr"),
                                               ("mixed", "ic"), ("mixed16", "cgnr"), ("mixed16", "ic")])
@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_policies_match_fp64_cost(precision, solver, dim, reference, graph3d, graph2d):
    sim = graph3d if dim == "3d" else graph2d
    _, ref = reference[dim]
    res, rep = optimize_pose_graph(sim.graph, precision=precision, solver=solver)
    assert rep.converged, rep.reason
    assert rep.fp16_overflows == 0
    # Lower is better; a solver may land at most 1e-6 relative above the fp64 direct result.
    assert rep.final_cost <= ref.final_cost * (1 + 1e-6)
    assert np.isfinite(res.translations).all()


def test_naive_fp16_is_honest(graph3d, reference):
    res, rep = optimize_pose_graph(graph3d.graph, precision="fp16", solver="ic")
    # Whatever it reaches, the poses are finite, the cost is the true fp64 cost, and the status says what happened.
    assert np.isfinite(res.translations).all()
    assert rep.final_cost <= rep.initial_cost
    assert rep.final_cost >= reference["3d"][1].final_cost * (1 - 1e-9)
    assert rep.status in (Status.CONVERGED, Status.STALLED, Status.HIT_ITERATION_LIMIT, Status.FAILED)
    assert rep.converged == (rep.status is Status.CONVERGED)


def test_report_contents_and_history(graph2d):
    res, rep = optimize_pose_graph(graph2d.graph, precision="mixed", solver="ic")
    d = rep.as_dict()
    for key in ("initial_cost", "final_cost", "iterations", "status", "converged", "time_s", "precision", "solver",
                "init", "linear_iterations", "timing", "fp16_overflows", "history"):
        assert key in d
    for phase in ("residual", "jacobian", "linear_solve", "update", "total"):
        assert d["timing"][phase] >= 0
    assert len(rep.history) >= rep.iterations - 1
    h = rep.history[0]
    assert h.cost == pytest.approx(rep.initial_cost, rel=1e-6)
    assert h.linear_iterations > 0 and 0 <= h.linear_relative_residual < 1
    accepted = [r for r in rep.history if r.accepted]
    costs = [r.new_cost for r in accepted]
    assert all(b < a for a, b in zip(costs, costs[1:]))


def test_callback_can_stop(graph2d):
    seen = []

    def cb(record):
        seen.append(record.iteration)
        if record.iteration == 2:
            raise StopIteration

    _, rep = optimize_pose_graph(graph2d.graph, lm=LMConfig(callback=cb))
    assert seen == [1, 2] and rep.iterations == 2 and "callback" in rep.reason


def test_iteration_limit_is_reported(graph3d):
    _, rep = optimize_pose_graph(graph3d.graph, lm=LMConfig(max_iterations=1))
    assert rep.status is Status.HIT_ITERATION_LIMIT and rep.iterations == 1


def test_gauss_newton_method(graph2d, reference):
    _, rep = optimize_pose_graph(graph2d.graph, lm=LMConfig(method="gn"))
    assert rep.final_cost == pytest.approx(reference["2d"][1].final_cost, rel=1e-6)


@pytest.mark.parametrize("init", ["odometry", "chordal"])
def test_initializations_reach_the_same_optimum(init, graph3d, reference):
    _, rep = optimize_pose_graph(graph3d.graph, init=init)
    assert rep.converged
    assert rep.final_cost == pytest.approx(reference["3d"][1].final_cost, rel=1e-6)


def test_fixed_poses_do_not_move(graph2d):
    res, _ = optimize_pose_graph(graph2d.graph)
    np.testing.assert_array_equal(res.translations[0], graph2d.graph.translations[0])
    np.testing.assert_array_equal(res.rotations[0], graph2d.graph.rotations[0])


def test_bad_graphs_and_configs_get_clear_errors(graph2d):
    from mixslam.errors import ConfigError, GaugeError, NonFiniteError, PrecisionPolicyError

    g = graph2d.graph.copy()
    keep = (g.edge_i != 7) & (g.edge_j != 7)  # cut every edge of pose 7: nothing anchors it
    for name in ("edge_i", "edge_j", "meas_rotations", "meas_translations", "information"):
        setattr(g, name, getattr(g, name)[keep])
    g.edge_lines = None
    with pytest.raises(GaugeError, match="vertex ids 7") as exc:
        optimize_pose_graph(g)
    assert exc.value.unconstrained == [7]
    g = graph2d.graph.copy()
    g.translations[3, 0] = np.nan
    with pytest.raises(NonFiniteError, match="NaN"):
        optimize_pose_graph(g)
    with pytest.raises(ConfigError, match="factors in fp64 or fp32"):
        optimize_pose_graph(graph2d.graph, precision="fp16", solver="cholesky")
    with pytest.raises(ConfigError, match="unknown solver"):
        optimize_pose_graph(graph2d.graph, solver="qr")
    with pytest.raises(ConfigError, match=r"PGOConfig\.init must be one of .* got 'magic'"):
        optimize_pose_graph(graph2d.graph, init="magic")
    with pytest.raises(PrecisionPolicyError, match="bf16"):
        from mixslam.precision import PrecisionPolicy
        PrecisionPolicy("b", jacobian_storage="bf16", jacobian_accumulate="fp32")


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_fp16_factor_refined_reaches_the_fp64_optimum(dim, reference, graph3d, graph2d):
    """mixed16 with the named Cholesky: the fp32 factor kept in fp16 panels, refined with fp64 residuals, ends
    at the fp64 direct optimum (the refinement's fp64 tolerance decides, not the factor's precision)."""
    sim = graph3d if dim == "3d" else graph2d
    _, ref = reference[dim]
    _, rep = optimize_pose_graph(sim.graph, precision="mixed16", solver="cholesky")
    assert rep.status is Status.CONVERGED, rep.reason
    assert abs(rep.final_cost - ref.final_cost) <= 1e-9 * ref.final_cost
    assert rep.quantization.count > 0 and rep.quantization.overflows == 0
    assert rep.direct is not None and rep.direct.factor == "fp16"
    assert any("fp16 panels" in (it.linear_decision or "") for it in rep.history)


def test_fp16_factor_refused_with_16_bit_arithmetic(graph2d):
    from mixslam.errors import ConfigError

    with pytest.raises(ConfigError, match="fp32 arithmetic"):
        optimize_pose_graph(graph2d.graph, precision="fp16", solver="cholesky")
