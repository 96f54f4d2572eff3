"""Figures 6-7 (where the work goes; speed ratios per kernel and end to end) on the quick preset, and the
pieces they are built from: the CG timings of a solve's report and the analytic work model."""
import csv
import math

import pytest

from mixslam.bench import BenchContext, TaskRunner, bench_config
from mixslam.bench.fig6_work_shares import FIG6_COLUMNS, figure6, work_rows
from mixslam.bench.fig7_end_to_end import E2E_COLUMNS
from mixslam.bench.fig7_kernels import KERNEL_COLUMNS
from mixslam.bench.fig7_speed import figure7
from mixslam.bench.problems import Problem
from mixslam.bench.work_model import iteration_work, problem_dims


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _finite(rows, columns):
    for r in rows:
        for c in columns:
            assert math.isfinite(float(r[c])), (c, r)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("work")
    ctx = BenchContext(bench_config("quick", progress=False), out, TaskRunner("process", 1))
    return out, figure6(ctx), figure7(ctx)


def test_figure6_files_csv_and_summary(results):
    out, fig6, _ = results
    assert fig6.number == 6
    assert fig6.files == ["fig6_work_shares.png", "fig6_work_shares.csv"]
    for f in fig6.files:
        assert (out / f).stat().st_size > 0
    assert (out / "fig6_work_shares.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = _read(out / "fig6_work_shares.csv")
    assert list(rows[0]) == FIG6_COLUMNS
    quantities = {(r["kind"], r["quantity"], r["policy"]) for r in rows}
    for pol in ("fp64", "fp32", "mixed"):
        assert ("ba", "jacobian_products_share_of_cg_iteration", pol) in quantities
        assert ("pgo", "ic_triangular_solves_share_of_linear_solve", pol) in quantities
        for kind in ("ba", "pgo"):
            assert (kind, "jacobian_share_of_lm", pol) in quantities
            assert (kind, "linear_solve_share_of_lm", pol) in quantities
    _finite(rows, ["time_share", "numerator_s", "denominator_s"])
    counted = [r for r in rows if "share_of_lm" not in r["quantity"]]
    _finite(counted, ["counted_flops_share", "counted_bytes_share"])
    for r in rows:
        for c in ("time_share", "counted_flops_share", "counted_bytes_share"):
            v = float(r[c])
            assert math.isnan(v) or 0.0 <= v <= 1.0, (c, r)
    for key in ("ba_products_mixed_flops_share", "ba_products_mixed_bytes_share", "ba_products_mixed_time_share",
                "pgo_ic_solve_mixed_flops_share", "pgo_ic_solve_mixed_time_share", "ba_jacobian_mixed_time_share",
                "ba_linear_mixed_time_share", "pgo_jacobian_fp64_time_share", "pgo_linear_fp32_time_share"):
        assert math.isfinite(fig6.summary[key]), key
    assert 0 < len(fig6.table) <= 15 and fig6.notes


def test_figure7_files_csv_and_summary(results):
    out, _, fig7 = results
    assert fig7.number == 7
    assert set(fig7.files) == {"fig7_kernels.png", "fig7_end_to_end.png", "fig7_kernels.csv",
                               "fig7_end_to_end.csv"}
    for f in fig7.files:
        assert (out / f).stat().st_size > 0
    k = _read(out / "fig7_kernels.csv")
    assert list(k[0]) == KERNEL_COLUMNS
    assert {r["problem"] for r in k} == {"ba", "pgo3d", "pgo2d"}
    assert {(r["problem"], r["kernel"]) for r in k} >= {("ba", "normal_matvec"), ("pgo3d", "ic_solve"),
                                                         ("pgo2d", "ic_solve"), ("pgo2d", "jac_rmatvec")}
    _finite(k, [c for c in KERNEL_COLUMNS if c not in ("problem", "description", "kernel")])
    for r in k:  # the bytes model: narrower storage moves fewer bytes
        assert float(r["bytes_fp16"]) < float(r["bytes_fp32"]) < float(r["bytes_fp64"])
    e = _read(out / "fig7_end_to_end.csv")
    assert list(e[0]) == E2E_COLUMNS
    pairs = {(r["kind"], r["precision"], r["solver"]) for r in e}
    assert pairs == {("ba", "fp64", "schur"), ("ba", "fp64", "cgnr"), ("ba", "fp32", "cgnr"), ("ba", "mixed", "cgnr"),
                     ("pgo", "fp64", "cholesky"), ("pgo", "fp64", "ic"), ("pgo", "fp32", "ic"), ("pgo", "mixed", "ic")}
    _finite(e, ["total_s", "linear_solve_s", "final_cost", "rel_cost_to_fp64_direct"])
    # Memory is known for every CG solve and the Schur solve; the sparse-Cholesky backend does not report its
    # factor size, which is then NaN, never a fake 0.
    _finite([r for r in e if r["solver"] != "cholesky"], ["memory_bytes"])
    for r in e:
        assert abs(float(r["rel_cost_to_fp64_direct"])) < 1e-5, r
    mem = {(r["kind"], r["precision"], r["solver"]): r for r in e}
    assert int(mem[("ba", "mixed", "cgnr")]["jacobian_bytes"]) * 2 == int(mem[("ba", "fp32", "cgnr")]["jacobian_bytes"])
    assert (int(mem[("pgo", "mixed", "ic")]["preconditioner_bytes"]) * 2
            == int(mem[("pgo", "fp32", "ic")]["preconditioner_bytes"]))
    s = fig7.summary
    for key in ("ba_linear_mixed_over_fp32", "pgo_linear_mixed_over_fp32", "ba_linear_fp32_over_fp64",
                "kernel_normal_matvec_fp16_over_fp32_ba", "kernel_ic_solve_fp16_over_fp32_pgo3d",
                "ba_jacobian_bytes_mixed_over_fp32", "pgo_preconditioner_bytes_mixed_over_fp32"):
        assert math.isfinite(s[key]) and s[key] > 0, key
    assert s["ba_jacobian_bytes_mixed_over_fp32"] == pytest.approx(0.5)
    assert 0 < len(fig7.table) <= 16 and fig7.notes


def test_solve_report_times_the_cg_pieces():
    # Figure 6's measured shares come from these timings of one ordinary solve.
    from mixslam.pgo import PGOConfig, optimize_pose_graph
    from mixslam.sim.pose_graph import simulate_pose_graph
    g = simulate_pose_graph("sphere", 64, seed=1).graph
    _, rep = optimize_pose_graph(g, PGOConfig(precision="mixed", solver="ic", init="chordal"))
    t = rep.timing
    assert rep.linear_iterations > 0 and t["cg_calls"] >= len(rep.history)
    assert t["products_calls"] >= rep.linear_iterations and t["preconditioner_calls"] >= rep.linear_iterations
    assert 0 < t["products_s"] + t["preconditioner_s"] < t["cg_s"] <= t["linear_solve"]


def test_iteration_work_counts():
    from mixslam.sim.pose_graph import simulate_pose_graph
    g = simulate_pose_graph("manhattan", 30, seed=0).graph
    d = problem_dims(Problem("pgo", "t", g, True))
    p = 3
    assert d["p"] == p and d["n"] == d["nv"] * p and d["Et"] == 2 * g.num_edges * p * p
    w = iteration_work(d, 4.0, 4.0, 2.0, nnzb=d["pattern"].nnzb)
    assert w["products"][0] == 4 * d["E"]
    nnzb, nv = d["pattern"].nnzb, d["nv"]
    assert w["preconditioner"][0] == 2 * (2 * p * p * (nnzb - nv) + p * (p + 1) * nv) + 2 * d["n"]
    # halving the stored Jacobian's bytes lowers the products' bytes by E * 2
    w16 = iteration_work(d, 2.0, 4.0, 2.0, nnzb=nnzb)
    assert w["products"][1] - w16["products"][1] == pytest.approx(2.0 * d["E"])


def test_work_rows_follow_an_escalated_ic_factor():
    # A CG cap of 2 iterations forces the escalation to the complete minimum-degree factor; the work model
    # must count that factor's blocks (it used to read the fill level as an integer and fail).
    from mixslam.pgo import optimize_pose_graph
    from mixslam.sim import simulate_pose_graph
    from mixslam.solve import CGConfig, LMConfig
    graph = simulate_pose_graph("manhattan", 200, seed=2).graph
    _, rep = optimize_pose_graph(graph, precision="mixed", solver="ic", cg=CGConfig(max_iterations=2),
                                 lm=LMConfig(max_iterations=5))
    assert rep.preconditioner_stats.escalated is True
    prob = Problem("pgo", "sim", graph, True)
    dims = problem_dims(prob)
    rows = work_rows(prob, "mixed", rep, dims)
    from mixslam.linear.ordering import minimum_degree_order
    pat = dims["pattern"]
    complete_md = pat.with_order(minimum_degree_order(pat.block_rows, pat.indices, pat.nv)).with_fill(pat.nv)
    blocks = {r["ic_blocks"] for r in rows if "ic_blocks" in r}
    assert blocks == {complete_md.nnzb}
    assert complete_md.nnzb != pat.with_fill(pat.nv).nnzb  # the order matters: the natural one fills more
    # The reported factor memory is the escalated factor's: 2 bytes (fp16) per stored entry.
    assert rep.memory.preconditioner_bytes == complete_md.nnzb * pat.p * pat.p * 2
    assert all(r["ic_fill_level"] == "complete" for r in rows if "ic_fill_level" in r)
