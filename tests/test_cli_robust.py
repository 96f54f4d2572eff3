"""`mixslam pgo/ba --robust LOSS[:SCALE] [--gnc] [--known-inliers]`: the report's robust fields, every edge
kept in -o, the outliers the corruption tool added found, bad combinations exit 2."""
from __future__ import annotations

import json

import pytest

from mixslam.cli import main
from mixslam.io import write_g2o
from mixslam.sim.pose_graph import simulate_pose_graph


@pytest.fixture()
def corrupted(tmp_path):
    clean = tmp_path / "clean.g2o"
    write_g2o(simulate_pose_graph("manhattan", 200, seed=4).graph, clean)
    bad = tmp_path / "bad.g2o"
    assert main(["corrupt", str(clean), "-o", str(bad), "--outliers", "10", "--seed", "2", "-q"]) == 0
    added = json.loads((tmp_path / "bad.outliers.json").read_text())["added_edges"]
    return bad, added


def test_pgo_gnc_report_and_output(corrupted, tmp_path, capsys):
    bad, added = corrupted
    rep, out = tmp_path / "r.json", tmp_path / "out.g2o"
    assert main(["pgo", str(bad), "--robust", "tls:5", "--gnc", "--report", str(rep), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "robust tls (scale 5" in text and "GNC" in text
    data = json.loads(rep.read_text())
    assert data["robust"]["loss"] == "tls" and data["robust"]["scale"] == 5.0 and data["robust"]["known_inliers"] > 0
    assert data["rejected_edges"] == sorted(added)
    edges_in = [ln for ln in bad.read_text().splitlines() if ln.startswith("EDGE")]
    assert len(data["edge_weights"]) == len(edges_in)
    assert len([ln for ln in out.read_text().splitlines() if ln.startswith("EDGE")]) == len(edges_in)


def test_pgo_robust_without_gnc_and_known_inliers_none(corrupted, tmp_path):
    bad, _ = corrupted
    rep = tmp_path / "r.json"
    args = ["pgo", str(bad), "--robust", "cauchy", "--known-inliers", "none", "--report", str(rep), "-q"]
    assert main(args) in (0, 1)
    data = json.loads(rep.read_text())
    assert data["robust"]["known_inliers"] == 0 and "gnc_iterations" not in data["robust"]


@pytest.mark.parametrize(
    "extra,msg",
    [
        (["--gnc"], "need a loss"),
        (["--robust", "huber", "--gnc"], "geman-mcclure or tls"),
        (["--robust", "l2"], "unknown loss"),
        (["--robust", "tls:-2"], "positive number"),
        (["--robust", "tls:auto"], "add --gnc"),
        (["--known-inliers", "odometry"], "need a loss"),
    ],
)
def test_bad_robust_options_exit_2(corrupted, extra, msg, capsys):
    bad, _ = corrupted
    assert main(["pgo", str(bad), *extra]) == 2
    assert msg in capsys.readouterr().err


def test_ba_robust(tmp_path, capsys):
    prob = tmp_path / "p.txt"
    assert main(["generate", "ba", str(prob), "--cameras", "8", "--points", "150", "--seed", "1", "-q"]) == 0
    rep = tmp_path / "r.json"
    assert main(["ba", str(prob), "--robust", "huber", "--report", str(rep), "-q"]) in (0, 1)
    data = json.loads(rep.read_text())
    assert data["robust"]["loss"] == "huber" and len(data["edge_weights"]) > 0
    assert main(["ba", str(prob), "--robust", "cauchy", "--gnc"]) == 2
