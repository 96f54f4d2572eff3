"""Cross-checks against the peers (skipped when the optional `peers` extra is not installed).

g2o's own chi2 at our poses must equal 2 x our cost (the cost convention of the README), and g2o's LM
started at our optimum must not find anything lower.
"""
import numpy as np
import pytest

from mixslam.io import write_g2o
from mixslam.pgo import optimize_pose_graph
from mixslam.sim import simulate_pose_graph


def _g2o_chi2(path, iterations=0):
    g2o = pytest.importorskip("g2opy")
    opt = g2o.SparseOptimizer()
    opt.set_algorithm(g2o.OptimizationAlgorithmLevenberg(g2o.BlockSolverX(g2o.LinearSolverEigenX())))
    assert opt.load(str(path))
    opt.initialize_optimization()
    opt.compute_active_errors()
    before = opt.chi2()
    if iterations:
        opt.optimize(iterations)
    return before, opt.chi2()


@pytest.mark.parametrize("kind", ["manhattan", "sphere"])
def test_g2o_chi2_equals_twice_our_cost(kind, tmp_path):
    pytest.importorskip("g2opy")
    graph = simulate_pose_graph(kind, 200, seed=11).graph
    result, rep = optimize_pose_graph(graph)
    path = tmp_path / "opt.g2o"
    write_g2o(result, path)
    chi2_at_ours, chi2_after_g2o = _g2o_chi2(path, iterations=20)
    assert chi2_at_ours == pytest.approx(2 * rep.final_cost, rel=1e-9)
    assert chi2_after_g2o >= 2 * rep.final_cost * (1 - 1e-9)
    # And at a non-optimal point too (the initial guess): the objective itself agrees, not just its minimum.
    write_g2o(graph, path)
    assert _g2o_chi2(path)[0] == pytest.approx(2 * rep.file_cost, rel=1e-9)  # the file's guess, not the chordal start


def test_gtsam_reads_the_same_graph(tmp_path):
    gtsam = pytest.importorskip("gtsam")
    graph = simulate_pose_graph("sphere", 100, seed=2).graph
    path = tmp_path / "g.g2o"
    write_g2o(graph, path)
    factors, values = gtsam.readG2o(str(path), True)
    assert factors.size() == graph.num_edges and values.size() == graph.num_poses
    p = values.atPose3(5)
    np.testing.assert_allclose(p.translation(), graph.translations[5], atol=1e-12)
