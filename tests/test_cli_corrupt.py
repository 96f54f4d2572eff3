"""`mixslam corrupt`: the graph and its outlier record written, byte-identical per seed, read back, bad input
exits 2 and writes nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mixslam.cli import main
from mixslam.errors import OutputError
from mixslam.io import read_pose_graph, write_g2o
from mixslam.sim.corrupt import corrupt_pose_graph, loop_closure_mask
from mixslam.sim.pose_graph import simulate_pose_graph


@pytest.fixture()
def clean(tmp_path):
    """A small 2D graph with loop closures written to clean.g2o (and nothing else in tmp_path)."""
    path = tmp_path / "clean.g2o"
    write_g2o(simulate_pose_graph("manhattan", 120, seed=3).graph, path)
    return path


def _edge_lines(path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("EDGE")]


def test_corrupt_writes_graph_and_record(clean, tmp_path, capsys):
    out = tmp_path / "bad.g2o"
    args = ["corrupt", str(clean), "-o", str(out), "--outliers", "0.25", "--mode", "group", "--group-size", "4",
            "--seed", "9"]
    assert main(args) == 0
    line = capsys.readouterr().out
    record_path = tmp_path / "bad.outliers.json"
    assert line.count("\n") == 1 and str(out) in line and str(record_path) in line and "seed 9" in line
    graph, bad = read_pose_graph(clean), read_pose_graph(out)
    m, L = graph.num_edges, int(loop_closure_mask(graph).sum())
    n_out = round(0.25 * L / 0.75)
    assert f"added {n_out} group" in line
    record = json.loads(record_path.read_text())
    assert list(record) == ["source", "output", "mode", "outliers_requested", "seed", "group_size",
                            "num_edges_input", "num_loop_closures_input", "num_added", "added_edges"]
    assert record == {
        "source": str(clean),
        "output": str(out),
        "mode": "group",
        "outliers_requested": 0.25,
        "seed": 9,
        "group_size": 4,
        "num_edges_input": m,
        "num_loop_closures_input": L,
        "num_added": n_out,
        "added_edges": list(range(m, m + n_out)),
    }
    # the file reads back: the input's edges first (as the writer writes the input), then the outliers
    assert bad.num_edges == m + n_out and bad.num_poses == graph.num_poses
    write_g2o(graph, tmp_path / "rewritten.g2o")
    assert _edge_lines(out)[:m] == _edge_lines(tmp_path / "rewritten.g2o")
    np.testing.assert_array_equal(bad.edge_i[:m], graph.edge_i)
    np.testing.assert_array_equal(bad.edge_j[:m], graph.edge_j)
    np.testing.assert_allclose(bad.meas_translations[:m], graph.meas_translations, rtol=0, atol=1e-12)
    np.testing.assert_allclose(bad.meas_rotations[:m], graph.meas_rotations, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(bad.information[:m], graph.information)
    assert loop_closure_mask(bad)[record["added_edges"]].all()
    # the library's graph, written by the library's writer: the same bytes
    lib, added = corrupt_pose_graph(graph, 0.25, mode="group", group_size=4, seed=9)
    np.testing.assert_array_equal(added, record["added_edges"])
    write_g2o(lib, tmp_path / "lib.g2o")
    assert out.read_bytes() == (tmp_path / "lib.g2o").read_bytes()


@pytest.mark.parametrize("text,count", [("7", 7), ("1e1", 10), ("1", 1)])
def test_counts_add_exactly_that_many(clean, tmp_path, text, count):
    out = tmp_path / "c.g2o"
    assert main(["corrupt", str(clean), "-o", str(out), "--outliers", text, "--mode", "local", "-q"]) == 0
    record = json.loads((tmp_path / "c.outliers.json").read_text())
    assert record["num_added"] == count and record["outliers_requested"] == count
    assert isinstance(record["outliers_requested"], int)
    bad = read_pose_graph(out)
    assert bad.num_edges == record["num_edges_input"] + count
    k = np.array(record["added_edges"])
    gap = np.abs(bad.edge_i[k] - bad.edge_j[k])
    assert gap.min() >= 2 and gap.max() <= 20


def test_same_seed_same_bytes_other_seed_differs(clean, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths: the records name the same files
    runs = []
    for k, seed in enumerate(("5", "5", "6")):
        folder = tmp_path / str(k)
        folder.mkdir()
        monkeypatch.chdir(folder)
        assert main(["corrupt", "../clean.g2o", "-o", "bad.g2o", "--outliers", "0.3", "--seed", seed, "-q"]) == 0
        runs.append([(folder / name).read_bytes() for name in ("bad.g2o", "bad.outliers.json")])
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0] and runs[0][1] != runs[2][1]


def test_quiet_prints_nothing(clean, tmp_path, capsys):
    assert main(["corrupt", str(clean), "-o", str(tmp_path / "q.g2o"), "--outliers", "3", "-q"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "args,message",
    [
        (["--outliers", "0"], "--outliers must be a fraction in (0, 1)"),
        (["--outliers", "1.0"], "got '1.0'; give counts as integers"),
        (["--outliers", "-4"], "--outliers must be a fraction in (0, 1)"),
        (["--outliers", "abc"], "got 'abc'"),
        (["--outliers", "nan"], "got 'nan'"),
        (["--outliers", "3", "--group-size", "0"], "--group-size must be an integer >= 1, got 0"),
        (["--outliers", "3", "--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_values_exit_2_and_write_nothing(clean, tmp_path, capsys, args, message):
    assert main(["corrupt", str(clean), "-o", str(tmp_path / "o.g2o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixslam: error: ") and message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.g2o"]


def test_fraction_of_a_graph_without_loop_closures_exits_2(tmp_path, capsys):
    path = tmp_path / "odo.g2o"
    write_g2o(simulate_pose_graph("manhattan", 30, seed=0, loop_closure_prob=0.0).graph, path)
    assert main(["corrupt", str(path), "-o", str(tmp_path / "o.g2o"), "--outliers", "0.1"]) == 2
    err = capsys.readouterr().err
    assert f"--outliers 0.1 is a share of the output's loop closures, but {path} has no loop closures" in err
    assert "give a count" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odo.g2o"]
    assert main(["corrupt", str(path), "-o", str(tmp_path / "o.g2o"), "--outliers", "4", "-q"]) == 0


def test_bad_files_exit_2(clean, tmp_path, capsys):
    out = tmp_path / "o.g2o"
    assert main(["corrupt", str(tmp_path / "missing.g2o"), "-o", str(out), "--outliers", "3"]) == 2
    assert "missing.g2o: file not found" in capsys.readouterr().err
    garbage = tmp_path / "garbage.g2o"
    garbage.write_text("EDGE_SE2 0 1 not numbers\n")
    assert main(["corrupt", str(garbage), "-o", str(out), "--outliers", "3"]) == 2
    assert f"mixslam: error: {garbage}:1:" in capsys.readouterr().err
    assert main(["corrupt", str(clean), "-o", str(clean), "--outliers", "3"]) == 2  # never over the input
    assert "is the input file" in capsys.readouterr().err
    assert main(["corrupt", str(clean), "-o", str(tmp_path / "no" / "such" / "o.g2o"), "--outliers", "3"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "o.outliers.json").mkdir()  # the record's path is a folder: refused before any work
    assert main(["corrupt", str(clean), "-o", str(out), "--outliers", "3"]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--outliers", "3", "--mode", "grouped"],
        ["--mode", "random"],
        ["--outliers", "3", "--group-size", "2.5"],
        ["--outliers", "3", "--seed", "x"],
    ],
)
def test_argument_errors_exit_2(clean, tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exc:
        main(["corrupt", str(clean), "-o", str(tmp_path / "o.g2o"), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "mixslam corrupt" in err and "error:" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.g2o"]


def test_failed_record_write_leaves_no_graph(clean, tmp_path, capsys, monkeypatch):
    import mixslam.cli as cli

    def atomic_write_text(path, text):
        raise OutputError(str(path), "could not be written (No space left on device)")

    monkeypatch.setattr(cli, "atomic_write_text", atomic_write_text)
    assert main(["corrupt", str(clean), "-o", str(tmp_path / "o.g2o"), "--outliers", "3"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.g2o"]
