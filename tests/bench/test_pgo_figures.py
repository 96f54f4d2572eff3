"""Figures 4-5 (PGO on a long trajectory) on the quick preset, the long-trajectory graph and its prefixes, and
``ICConfig(refactor="always")``."""
import csv
import math

import numpy as np
import pytest

from mixslam.bench import BenchContext, TaskRunner, bench_config
from mixslam.bench.pgo_figures import (
    ATE_POLICIES,
    VARIANTS,
    _solve_problem,
    figure4,
    figure5,
    long_trajectory_graph,
    loop_keyframes,
    prefix_graph,
    problem_sizes,
)
from mixslam.errors import ConfigError
from mixslam.pgo import PGOConfig, optimize_pose_graph
from mixslam.solve import ICConfig, LMConfig


@pytest.fixture(scope="module")
def long_graph():
    return long_trajectory_graph(300, 3)


def _ctx(tmp_path):
    cfg = bench_config("quick", progress=False)
    return BenchContext(cfg, tmp_path, TaskRunner("process", 1))


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _finite(rows, columns):
    for r in rows:
        for c in columns:
            assert math.isfinite(float(r[c])), (c, r[c])


def test_long_trajectory_is_seeded_and_slam_like(long_graph):
    g, R, t = long_graph
    g.validate()
    assert g.num_poses == 300 and R.shape == (300, 3, 3) and t.shape == (300, 3)
    assert np.array_equal(g.edge_i[:299], np.arange(299)) and np.array_equal(g.edge_j[:299], np.arange(1, 300))
    loops = loop_keyframes(g)
    assert loops.size > 5 and np.all(np.diff(g.edge_j[299:]) >= 0)
    step = np.linalg.norm(np.diff(t, axis=0), axis=1)
    assert np.allclose(step, 0.25, atol=0.01)  # keyframe spacing
    g2, R2, t2 = long_trajectory_graph(300, 3)
    assert np.array_equal(g2.meas_translations, g.meas_translations) and np.array_equal(t2, t)


def test_prefix_graph_keeps_poses_and_edges_below_n(long_graph):
    g = long_graph[0]
    n = int(loop_keyframes(g)[2]) + 1
    p = prefix_graph(g, n)
    assert p.num_poses == n and p.edge_i.max() < n and p.edge_j.max() < n
    keep = (g.edge_i < n) & (g.edge_j < n)
    assert p.num_edges == int(keep.sum()) and p.num_edges > n - 1
    assert np.array_equal(p.information, g.information[keep])
    assert p.fixed[0] and g.num_poses == 300  # the original is untouched
    with pytest.raises(ValueError):
        prefix_graph(g, 301)
    sizes = problem_sizes(g, 4)
    assert sizes.size == 4 and np.all(np.isin(sizes - 1, loop_keyframes(g)))
    assert sizes[0] == loop_keyframes(g)[0] + 1 and sizes[-1] == loop_keyframes(g)[-1] + 1


def test_ic_refactor_always_refactors_at_every_linearization(long_graph):
    g = prefix_graph(long_graph[0], 200)
    counts = {}
    for mode in ("never", "always"):
        cfg = PGOConfig(precision="mixed", solver="ic", init="chordal", ic=ICConfig(refactor=mode),
                        lm=LMConfig(max_iterations=30))
        _, rep = optimize_pose_graph(g, cfg)
        # a new linearization is solved at the first iteration and after every accepted step
        lins = sum(1 for k, rec in enumerate(rep.history) if k == 0 or rep.history[k - 1].accepted)
        counts[mode] = (rep.preconditioner_stats.factorizations, lins)
        assert rep.converged
    assert counts["never"][0] == 1
    assert counts["always"][0] == counts["always"][1] > 1
    with pytest.raises(ConfigError, match="ICConfig.refactor"):
        optimize_pose_graph(g, PGOConfig(solver="ic", precision="fp32", ic=ICConfig(refactor="sometimes")))


def test_solve_problem_row(long_graph):
    n = int(loop_keyframes(long_graph[0])[0]) + 1
    row = _solve_problem(300, 3, 0, n)
    assert row["keyframes"] == n and row["loop_closures"] >= 1
    for name, _, _ in ATE_POLICIES:
        assert 0 < row[f"ate_{name}_m"] < row["ate_odometry_m"] + 1.0
        assert row[f"status_{name}"] == "converged"
    assert row["cost_mixed"] == pytest.approx(row["cost_fp64"], rel=1e-4)


def test_figures_4_and_5_quick(tmp_path):
    ctx = _ctx(tmp_path)
    r4 = figure4(ctx)
    assert r4.number == 4 and {"fig4_pgo_time.csv", "fig4_pgo_time.png"} <= set(r4.files)
    for f in r4.files:
        assert (tmp_path / f).stat().st_size > 0
    rows = _read(tmp_path / "fig4_pgo_time.csv")
    sizes = ctx.config.sizes.pgo_keyframes
    timed = {int(r["keyframes"]) for r in rows}  # sizes before the first loop closure are skipped
    assert timed and timed <= set(sizes) and len(rows) == len(timed) * len(VARIANTS)
    assert all(int(r["loop_closures"]) > 0 for r in rows)
    assert {r["variant"] for r in rows} == {v[0] for v in VARIANTS}
    _finite(rows, ["keyframes", "solve_s", "linear_solve_s", "lm_iterations", "cg_iterations", "final_cost",
                   "cost_rel_fp64_cholesky", "fp16_overflows"])
    assert len(r4.table) == len(VARIANTS)
    for key in ("largest_keyframes", "mixed_ic_over_fp32_ic_linear", "refactor_over_reuse_mixed",
                "refactor_over_reuse_fp32", "mixed_ic_over_fp32_ic_time", "fp16_overflows"):
        assert key in r4.summary
    assert r4.summary["largest_keyframes"] == max(sizes)
    refac = [r for r in rows if r["ic_refactor"] == "always"]
    assert all(int(r["ic_factorizations"]) >= 1 for r in refac)

    r5 = figure5(ctx)
    assert r5.number == 5
    assert {"fig5_pgo_ate.csv", "fig5_pgo_ate_cdf.csv", "fig5_pgo_ate_cdf.png"} <= set(r5.files)
    rows = _read(tmp_path / "fig5_pgo_ate.csv")
    assert 1 <= len(rows) <= ctx.config.sizes.pgo_problems
    _finite(rows, ["keyframes", "ate_odometry_m"] + [f"{c}_{p}" for p, _, _ in ATE_POLICIES
                                                     for c in ("cost", "lm_iterations")]
            + [f"ate_{p}_m" for p, _, _ in ATE_POLICIES])
    cdf = _read(tmp_path / "fig5_pgo_ate_cdf.csv")
    assert {r["policy"] for r in cdf} == {"fp64", "fp32", "mixed", "odometry"}
    _finite(cdf, ["value", "cdf"])
    assert {t["policy"] for t in r5.table} == {"fp64", "fp32", "mixed", "odometry"}
    for key in ("mixed_median_ratio_to_fp64", "mixed_max_ratio_to_fp64", "fp32_median_ratio_to_fp64",
                "fp32_max_ratio_to_fp64", "mixed_worse_than_fp64_by_1pct", "mixed_worse_than_fp64_by_5pct",
                "problems"):
        assert key in r5.summary
