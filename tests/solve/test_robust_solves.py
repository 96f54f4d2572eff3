"""Robust pose-graph and bundle-adjustment solves: false loop closures found and the outlier-free optimum
recovered by GNC (fp64 and mixed), plain least squares bent by them, the report's robust fields, the config
rules."""

from __future__ import annotations

import numpy as np
import pytest

from mixslam.ba import BAConfig, optimize_bundle
from mixslam.errors import ConfigError
from mixslam.pgo import optimize_pose_graph
from mixslam.sim.bundle import WindowConfig, simulate_window
from mixslam.sim.pose_graph import simulate_pose_graph
from mixslam.solve.config import RobustConfig


def _with_false_loops(graph, count, seed):
    """``count`` random pose pairs with random measurements (information copied from an existing edge)."""
    rng = np.random.default_rng(seed)
    n, d = graph.num_poses, graph.dim
    i = rng.integers(0, n, 4 * count)
    j = rng.integers(0, n, 4 * count)
    keep = np.abs(i - j) > 1
    i, j = i[keep][:count], j[keep][:count]
    g = graph.copy()
    m0 = graph.num_edges
    if d == 2:
        th = rng.uniform(-np.pi, np.pi, count)
        R = np.stack([np.stack([np.cos(th), -np.sin(th)], 1), np.stack([np.sin(th), np.cos(th)], 1)], 1)
    else:
        from scipy.spatial.transform import Rotation

        R = Rotation.random(count, random_state=seed).as_matrix()
    ext = np.ptp(graph.translations, axis=0) + 1.0
    g.edge_i, g.edge_j = np.concatenate([g.edge_i, i]), np.concatenate([g.edge_j, j])
    g.meas_rotations = np.concatenate([g.meas_rotations, R])
    g.meas_translations = np.concatenate([g.meas_translations, rng.uniform(-0.5, 0.5, (count, d)) * ext])
    g.information = np.concatenate([g.information, np.repeat(g.information[-1:], count, 0)])
    g.edge_lines = None
    return g, np.arange(m0, m0 + count)


@pytest.fixture(scope="module")
def corrupted():
    sim = simulate_pose_graph("manhattan", 300, seed=3)
    clean, _ = optimize_pose_graph(sim.graph)
    bad, added = _with_false_loops(sim.graph, 12, seed=5)
    return sim.graph, clean, bad, added


def _rmse(a, b):
    return float(np.sqrt(np.mean(np.sum((a.translations - b.translations) ** 2, axis=1))))


def _extent(g):
    t = g.translations - g.translations.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(t * t, axis=1))))


@pytest.mark.parametrize("precision", ["fp64", "mixed", "mixed16"])
def test_gnc_tls_finds_the_false_loop_closures(corrupted, precision):
    """Scale 5: the simulated inliers' whitened errors are χ²(3)-distributed, and the default scale (the 99%
    quantile) would reject 1% of them (real datasets' information matrices are far more conservative)."""
    _, clean, bad, added = corrupted
    plain, _ = optimize_pose_graph(bad, precision=precision)
    res, rep = optimize_pose_graph(bad, precision=precision, robust=RobustConfig("tls:5", gnc=True))
    assert set(rep.rejected_edges) == set(added.tolist())
    assert rep.edge_weights.shape == (bad.num_edges,)
    assert np.all(rep.edge_weights[added] < 0.5)
    assert rep.robust["loss"] == "tls" and rep.robust["gnc_iterations"] >= 1 and rep.robust["known_inliers"] > 0
    ext = _extent(clean)
    assert _rmse(res, clean) <= 1e-3 * ext
    assert _rmse(plain, clean) > 10 * _rmse(res, clean) + 1e-3 * ext  # the damage without a robust loss
    assert rep.fp16_overflows == 0  # mixed16: the rejected edges' rows are exact zeros in fp16 storage
    data = rep.as_dict()
    assert data["rejected_edges"] == sorted(added.tolist()) and len(data["edge_weights"]) == bad.num_edges


def test_mixed_equals_fp64_under_gnc(corrupted):
    _, clean, bad, _ = corrupted
    r64, _ = optimize_pose_graph(bad, robust=RobustConfig("tls:5", gnc=True))
    r16, _ = optimize_pose_graph(bad, precision="mixed", robust=RobustConfig("tls:5", gnc=True))
    assert _rmse(r64, r16) <= 1e-6 * _extent(clean)


@pytest.mark.parametrize("loss", ["huber", "cauchy", "tukey", "geman-mcclure", "tls"])
def test_every_loss_solves_a_clean_graph(corrupted, loss):
    """With a scale far above the inliers' errors every loss is least squares: the plain optimum; with the
    default scale a different (robust) objective, whose reported cost never exceeds the plain one."""
    graph, clean, _, _ = corrupted
    res, rep = optimize_pose_graph(graph, robust=RobustConfig(f"{loss}:1000"))
    assert rep.converged, rep.reason
    assert _rmse(res, clean) <= 1e-6 * _extent(clean)
    assert rep.rejected_edges == [] and rep.robust["loss"] == loss and rep.robust["scale"] == 1000
    res, rep = optimize_pose_graph(graph, robust=RobustConfig(loss))
    if loss in ("huber", "cauchy"):  # convex / non-redescending: a unique-enough optimum near the plain one
        assert rep.converged, rep.reason
        assert _rmse(res, clean) <= 2e-2 * _extent(clean)
    else:  # redescending losses without GNC: IRLS may crawl (the documented reason to use --gnc)
        assert not rep.failed, rep.reason
    assert rep.final_cost <= rep.robust["plain_final_cost"] * (1 + 1e-12)


def test_robust_config_rules():
    with pytest.raises(ConfigError, match="gnc needs"):
        RobustConfig("huber", gnc=True)
    with pytest.raises(ConfigError, match="gnc needs"):
        RobustConfig(None, gnc=True)
    with pytest.raises(ConfigError, match="known_inliers"):
        RobustConfig("tls", known_inliers="some")
    with pytest.raises(ConfigError, match="gnc_factor"):
        RobustConfig("tls", gnc=True, gnc_factor=1.0)
    with pytest.raises(ConfigError, match="gnc_inner_tolerance"):
        RobustConfig("tls", gnc=True, gnc_inner_tolerance=-1e-5)
    with pytest.raises(ConfigError, match="gnc_inner_tolerance"):
        RobustConfig("tls", gnc=True, gnc_inner_tolerance=2.0)
    with pytest.raises(ConfigError, match="odometry"):
        BAConfig(robust=RobustConfig("cauchy", known_inliers="odometry"))


def test_bundle_adjustment_downweights_a_wrong_match():
    import dataclasses

    data, _, _ = simulate_window(WindowConfig(keyframes=6, landmarks_per_frame=40, fixed_frames=2), seed=1)
    clean, _ = optimize_bundle(data)
    obs = np.array(data.observations, copy=True)
    obs[7] += 60.0 * data.sigma  # a wrong match: 60 sigma off
    bad = dataclasses.replace(data, observations=obs)
    res, rep = optimize_bundle(bad, robust=RobustConfig("cauchy"))
    assert 7 in rep.rejected_edges and len(rep.rejected_edges) <= 0.03 * data.num_observations + 1  # χ²(2) tail
    assert rep.edge_weights.shape == (data.num_observations,)
    res_plain, _ = optimize_bundle(bad)
    # (median over points: a low-parallax point of this window drifts along its ray in every solve)
    err_r = np.median(np.abs(res.points - clean.points).max(axis=1))
    err_p = np.median(np.abs(res_plain.points - clean.points).max(axis=1))
    assert err_r < 0.2 * err_p
    res_gnc, rep_gnc = optimize_bundle(bad, robust=RobustConfig("tls", gnc=True))
    assert 7 in rep_gnc.rejected_edges


def test_measured_scale_rule():
    from mixslam.solve.gnc import AUTO_SCALE_FACTOR, measured_scale

    q = np.array([0.01, 0.02, 0.03, 5.0])  # median 0.025
    assert measured_scale(q, 3.37) == pytest.approx(np.sqrt(AUTO_SCALE_FACTOR * 0.025))
    assert measured_scale(q * 1e4, 3.37) == 3.37  # never looser than the χ² default
    assert measured_scale(np.zeros(0), 3.37) == 3.37 and measured_scale(np.zeros(3), 3.37) == 3.37
    assert measured_scale(np.array([np.nan, 1.0, np.nan]), 2.0) == 2.0


def test_auto_scale_measures_underconfident_information(corrupted):
    """Information matrices 1000x underconfident (the shared files' condition): tls:auto runs GNC again with
    c² = 100 x the median of the accepted loop closures, finds every false one and keeps every true one."""
    _, clean, bad, added = corrupted
    weak = bad.copy()
    weak.information = bad.information * 1e-3
    res, rep = optimize_pose_graph(weak, robust=RobustConfig("tls:auto", gnc=True))
    r = rep.robust
    assert r["first_scale"] == pytest.approx(3.3682, abs=1e-3) and r["scale"] < 0.5 * r["first_scale"]
    assert r["gnc_iterations"] > r["first_gnc_iterations"] >= 1
    assert set(rep.rejected_edges) == set(added.tolist())
    assert _rmse(res, clean) <= 1e-3 * _extent(clean)


def test_auto_scale_needs_gnc():
    from mixslam.problem.robust import RobustLoss

    assert RobustLoss.parse("tls:auto").scale == "auto" and RobustLoss.parse("tls:auto").resolved(3) > 3
    with pytest.raises(ConfigError, match="auto"):
        RobustConfig("tls:auto")
    with pytest.raises(ConfigError, match="auto"):
        RobustLoss.parse("tls:automatic")


def test_gnc_leaves_zero_weight_blocks_out_of_the_factor(corrupted, monkeypatch):
    """The false loop closures' blocks, once their TLS weight is exactly zero, leave the linear systems (a new
    analysis without them): the same answer as with every block kept, to the solver's accuracy, at least one
    re-analysis, and the problem's full pattern back afterwards."""
    from mixslam import pgo
    from mixslam.solve import gnc

    _, clean, bad, added = corrupted
    seen = []
    orig = pgo.PoseGraphProblem.restrict_blocks

    def spy(self, active):
        seen.append(None if active is None else int(np.count_nonzero(~np.asarray(active))))
        orig(self, active)

    monkeypatch.setattr(pgo.PoseGraphProblem, "restrict_blocks", spy)
    monkeypatch.setattr(gnc, "REANALYZE_FRACTION", 1e-9)  # re-analyze whenever one more block reaches zero
    res, rep = optimize_pose_graph(bad, robust=RobustConfig("tls:5", gnc=True))
    assert rep.robust["gnc_reanalyses"] >= 1
    assert max(n for n in seen if n is not None) >= len(added)  # every false loop left out at the end
    assert seen[-1] is None  # the full pattern restored
    assert set(rep.rejected_edges) == set(added.tolist())
    monkeypatch.setattr(gnc, "REANALYZE_FRACTION", 2.0)  # never worth it: only a weight coming back rebuilds
    monkeypatch.setattr(pgo.PoseGraphProblem, "restrict_blocks", lambda self, active: None)
    kept, rep2 = optimize_pose_graph(bad, robust=RobustConfig("tls:5", gnc=True))
    assert _rmse(res, kept) <= 1e-9 * _extent(clean)
    assert rep2.rejected_edges == rep.rejected_edges


def test_loose_intermediate_solves_end_at_the_tight_answer(corrupted):
    """Intermediate weighted solves stop at ``gnc_inner_tolerance``; the final solve with the settled weights
    runs to the LM tolerance: the same rejected edges and the same optimum as tight solves throughout, in no
    more LM iterations."""
    _, clean, bad, added = corrupted
    loose, rep = optimize_pose_graph(bad, robust=RobustConfig("tls:5", gnc=True))
    tight, rep0 = optimize_pose_graph(bad, robust=RobustConfig("tls:5", gnc=True, gnc_inner_tolerance=0.0))
    assert rep.robust["gnc_final_solve_iterations"] >= 1 and rep0.robust["gnc_final_solve_iterations"] == 0
    assert set(rep.rejected_edges) == set(rep0.rejected_edges) == set(added.tolist())
    assert _rmse(loose, tight) <= 1e-6 * _extent(clean)
    # (with geodesic acceleration both take about two LM iterations per weighted solve on this small graph)
    assert rep.iterations <= rep0.iterations
    assert rep.converged, rep.reason
    # tight solves cut at one LM iteration each: the last one is repeated with LM's own limit
    cut, rep1 = optimize_pose_graph(
        bad, robust=RobustConfig("tls:5", gnc=True, gnc_inner_tolerance=0.0, gnc_inner_iterations=1)
    )
    assert rep1.robust["gnc_final_solve_iterations"] > 1
    assert rep1.converged, rep1.reason
    assert set(rep1.rejected_edges) == set(added.tolist())


def test_too_filled_rule():
    from types import SimpleNamespace

    from mixslam.linear.block_pattern import BlockPattern
    from mixslam.solve import gnc

    pattern = BlockPattern(np.array([0, 1, 2]), np.array([1, 2, 3]), 4, 3)  # a chain: 4 + 3 stored blocks
    entries = pattern.nnzb * 3 * 3
    limit = gnc.MAX_FACTOR_FLOPS_PER_ENTRY * entries
    assert gnc.too_filled(limit * 1.01, SimpleNamespace(pattern=pattern))
    assert not gnc.too_filled(limit, SimpleNamespace(pattern=pattern))
    assert not gnc.too_filled(None, SimpleNamespace(pattern=pattern))  # a backend without an estimate
    assert not gnc.too_filled(1e30, SimpleNamespace(pattern=None))  # no pattern: no direct factor


@pytest.mark.parametrize("precision", ["fp64", "mixed"])
def test_gnc_solves_on_cg_where_the_factor_fills(corrupted, monkeypatch, precision):
    """With every factor counted as filled, GNC's weighted solves run on CG + IC (the report counts them) and
    still find every false loop closure and the direct solve's answer (to the LM tolerance)."""
    from mixslam.solve import gnc

    _, clean, bad, added = corrupted
    direct, rep_d = optimize_pose_graph(bad, precision=precision, robust=RobustConfig("tls:5", gnc=True))
    assert set(rep_d.robust["gnc_solvers"]) == {"cholesky"}
    monkeypatch.setattr(gnc, "MAX_FACTOR_FLOPS_PER_ENTRY", 0.0)
    res, rep = optimize_pose_graph(bad, precision=precision, robust=RobustConfig("tls:5", gnc=True))
    assert set(rep.robust["gnc_solvers"]) == {"cg+ic"}
    assert set(rep.rejected_edges) == set(added.tolist())
    assert _rmse(res, direct) <= 1e-5 * _extent(clean)
    assert not rep.failed, rep.reason
    named, rep_n = optimize_pose_graph(
        bad, precision=precision, solver="cholesky", robust=RobustConfig("tls:5", gnc=True)
    )
    assert set(rep_n.robust["gnc_solvers"]) == {"cholesky"}  # a solver the user named is kept


def test_fallback_ic_never_grows_back_to_the_filled_factor():
    from mixslam.linear.config import ICConfig
    from mixslam.solve.gnc import fallback_ic

    cfg = fallback_ic(None)
    assert cfg.escalate is False and cfg.max_fill_level == cfg.fill_level == ICConfig().fill_level
    cfg = fallback_ic(ICConfig(fill_level=4, shift=1e-3))
    assert (cfg.fill_level, cfg.max_fill_level, cfg.shift, cfg.escalate) == (4, 4, 1e-3, False)
    assert fallback_ic(ICConfig(fill_level="complete")).fill_level == ICConfig().fill_level


def test_robust_start_skips_a_filled_chordal_relaxation(corrupted, monkeypatch):
    """With a robust loss the chordal candidate is left out when its factor would fill (here: any factor)."""
    from mixslam import pgo
    from mixslam.errors import SolverError
    from mixslam.init.chordal import chordal_initialization

    _, _, bad, _ = corrupted
    with pytest.raises(SolverError, match="per matrix entry"):
        chordal_initialization(bad, max_flops_per_entry=0.0)
    _, how = pgo.choose_initial_guess(bad, RobustConfig("tls:5", gnc=True))
    assert how in ("chordal", "odometry", "file")
    monkeypatch.setattr(pgo, "MAX_FACTOR_FLOPS_PER_ENTRY", 0.0)
    _, how = pgo.choose_initial_guess(bad, RobustConfig("tls:5", gnc=True))
    assert how in ("odometry", "file")
    _, how = pgo.choose_initial_guess(bad)  # plain least squares: chordal is always computed
    assert how in ("chordal", "file")
