"""The command line: outputs, report keys, exit codes and messages on bad input."""
import json

import pytest

from mixslam.cli import main
from mixslam.io import write_g2o
from mixslam.sim import simulate_pose_graph


@pytest.fixture(scope="module")
def g2o_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "sim.g2o"
    write_g2o(simulate_pose_graph("manhattan", 150, seed=1).graph, path)
    return path


def test_pgo_writes_outputs_and_report(g2o_file, tmp_path, capsys):
    out, tum, rep = tmp_path / "o.g2o", tmp_path / "o.tum", tmp_path / "r.json"
    rc = main(["pgo", str(g2o_file), "-o", str(out), "--tum", str(tum), "--precision", "mixed", "--solver", "ic",
               "--report", str(rep)])
    assert rc == 0
    data = json.loads(rep.read_text())
    for key in ("initial_cost", "final_cost", "iterations", "status", "converged", "time_s", "precision", "solver",
                "init", "linear_iterations", "timing", "fp16_overflows"):
        assert key in data, key
    assert data["converged"] is True and data["precision"] == "mixed" and data["solver"] == "ic"
    assert data["final_cost"] < data["initial_cost"]
    lines = [ln for ln in tum.read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 150 and len(lines[0].split()) == 8
    assert out.read_text().count("VERTEX_SE2") == 150
    assert "converged" in capsys.readouterr().out


def test_verbose_prints_one_line_per_iteration(g2o_file, capsys):
    assert main(["pgo", str(g2o_file), "-v", "--max-iterations", "3"]) == 0
    err = capsys.readouterr().err
    assert err.count("[iter") == 3


def test_quiet_prints_nothing(g2o_file, capsys):
    assert main(["pgo", str(g2o_file), "-q"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("content, phrase", [
    ("EDGE_SE2 0 1 1 0 0 1 0 0 1\n", "got 9"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 nan 1 0 0 1 0 1\n", ":3:"),
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 -1 0 0 1 0 1\n", "positive definite"),
])
def test_bad_input_exits_2_with_message(tmp_path, capsys, content, phrase):
    bad = tmp_path / "bad.g2o"
    bad.write_text(content)
    assert main(["pgo", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "mixslam: error:" in err and str(bad) in err and phrase in err


def test_missing_file_exits_2(tmp_path, capsys):
    assert main(["pgo", str(tmp_path / "nope.g2o")]) == 2
    assert "nope.g2o" in capsys.readouterr().err
