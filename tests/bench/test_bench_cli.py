"""``mixslam bench --quick``: every figure's files, the report and the failure path (the plumbing)."""
import csv
import json
import math

import pytest

from mixslam.bench import run as bench_run
from mixslam.cli import main


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rc = main(["bench", "--quick", "--out", str(out), "-q"])
    return rc, out, json.loads((out / "report.json").read_text())


def test_quick_bench_makes_every_figure(quick):
    rc, out, rep = quick
    assert rc == 0 and rep["failed"] == {}
    assert [f["number"] for f in rep["figures"]] == list(range(1, 9))
    for f in rep["figures"]:
        pngs = [n for n in f["files"] if n.endswith(".png")]
        csvs = [n for n in f["files"] if n.endswith(".csv")]
        assert pngs and csvs, f"figure {f['number']} lacks a PNG or a CSV"
        for n in pngs:
            assert (out / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for n in csvs:
            rows = list(csv.DictReader(open(out / n)))
            assert rows, f"{n} is empty"
        assert f["table"] and f["summary"], f"figure {f['number']} has no table or summary"
        assert f["seconds"] > 0


def test_quick_bench_numbers_are_finite_and_consistent(quick):
    _, out, rep = quick
    figs = {f["number"]: f for f in rep["figures"]}
    # Figure 2: mixed and fp32 follow fp64 closely even on the tiny quick run; naive fp16 is reported too.
    s2 = figs[2]["summary"]
    assert s2["trajectories"] == 2 and abs(s2["mixed_over_fp64_median"] - 1) < 0.05
    assert math.isfinite(s2["fp16_median_m"])
    # Figure 3: the three stages (VO, pose graph, pose graph + global BA) present for every policy.
    stages = {(r["policy"], r["stage"]) for r in figs[3]["table"]}
    assert len(stages) == 12
    s3 = figs[3]["summary"]
    assert s3["fp64_mean_lc_m"] <= s3["fp64_mean_pgo_m"] * 1.5 and math.isfinite(s3["mixed_mean_pgo_m"])
    # Figure 5: one row per problem in its CSV, finite ATE.
    rows = list(csv.DictReader(open(out / "fig5_pgo_ate.csv")))
    assert len(rows) == figs[5]["summary"]["problems"] == 4
    for r in rows:
        assert all(math.isfinite(float(r[k])) for k in r if k.startswith("ate_"))


def test_report_states_machine_versions_seed_and_figures(quick):
    _, out, rep = quick
    text = (out / "REPORT.md").read_text()
    for needle in ("Machine and versions", "numpy", "numba", "master seed 0", "F16C", "mixslam bench --quick"):
        assert needle in text
    for k in range(1, 9):
        assert f"## Figure {k}." in text
    assert rep["config"]["scale"] == "quick" and rep["machine"]["logical_cpus"] >= 1


def test_a_failing_figure_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(bench_run.FIGURE_FUNCTIONS, 3, ("slam_figures", "no_such_function"))
    rc = main(["bench", "--quick", "--figures", "3,8", "--out", str(tmp_path), "-q"])
    assert rc == 1
    rep = json.loads((tmp_path / "report.json").read_text())
    assert "3" in rep["failed"] and [f["number"] for f in rep["figures"]] == [8]
    assert "figure 3 failed" in capsys.readouterr().err
    assert "Figures that failed" in (tmp_path / "REPORT.md").read_text()


def test_bad_bench_arguments_are_clear_errors(tmp_path, capsys):
    assert main(["bench", "--quick", "--figures", "9", "--out", str(tmp_path)]) == 2
    assert "figure" in capsys.readouterr().err
    assert main(["bench", "--quick", "--figures", "x", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--quick", "--workers", "0", "--out", str(tmp_path)]) == 2
