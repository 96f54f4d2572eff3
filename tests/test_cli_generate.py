"""`mixslam generate ba | pgo`: files written, byte-identical per seed, read back, bad input exits 2."""
from __future__ import annotations

import numpy as np
import pytest

from mixslam.cli import main
from mixslam.errors import OutputError
from mixslam.io import read_bal, read_pose_graph, write_bal, write_g2o
from mixslam.sim import generate_bundle, generate_pose_graph


def test_generate_ba_writes_problem_and_truth(tmp_path, capsys):
    out = tmp_path / "problem.txt"
    assert main(["generate", "ba", str(out), "--cameras", "12", "--points", "200", "--seed", "3"]) == 0
    line = capsys.readouterr().out.strip()
    truth = tmp_path / "problem.truth.txt"
    assert "12 cameras, 200 points" in line and str(out) in line and str(truth) in line and "seed 3" in line
    problem, true = read_bal(out), read_bal(truth)
    assert (problem.num_cameras, problem.num_points) == (12, 200)
    assert f"{problem.num_observations} observations" in line
    np.testing.assert_array_equal(problem.observations, true.observations)
    # the library's problem, written by the library's writer: the same bytes
    initial, ref = generate_bundle(12, 200, seed=3)
    write_bal(tmp_path / "lib.txt", initial)
    write_bal(tmp_path / "lib.truth.txt", ref)
    assert out.read_bytes() == (tmp_path / "lib.txt").read_bytes()
    assert truth.read_bytes() == (tmp_path / "lib.truth.txt").read_bytes()


def test_generate_ba_options_reach_the_config(tmp_path):
    out = tmp_path / "p.txt"
    args = ["generate", "ba", str(out), "--cameras", "4", "--points", "50", "--min-views", "2", "--max-views", "4",
            "--focal", "800", "--pixel-sigma", "0", "-q"]
    assert main(args) == 0
    true = read_bal(tmp_path / "p.truth.txt")
    views = np.bincount(true.pt_idx)
    assert views.min() >= 2 and views.max() <= 4
    assert np.all(true.cameras[:, 6] == 800.0)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    runs = []
    for k, seed in enumerate(("5", "5", "6")):
        folder = tmp_path / str(k)
        folder.mkdir()
        assert main(["generate", "pgo", str(folder / "g.g2o"), "--poses", "200", "--kind", "city", "--seed", seed,
                     "-q"]) == 0
        assert main(["generate", "ba", str(folder / "b.txt"), "--cameras", "10", "--points", "100", "--seed", seed,
                     "-q"]) == 0
        runs.append([(folder / name).read_bytes() for name in ("g.g2o", "g.truth.g2o", "b.txt", "b.truth.txt")])
    assert runs[0] == runs[1]
    assert all(a != b for a, b in zip(runs[0], runs[2]))


@pytest.mark.parametrize("kind,dim", [("grid2d", 2), ("grid3d", 3), ("sphere", 3), ("city", 2)])
def test_generate_pgo_writes_graph_and_truth(tmp_path, capsys, kind, dim):
    out = tmp_path / "graph.g2o"
    assert main(["generate", "pgo", str(out), "--poses", "150", "--kind", kind, "--seed", "2"]) == 0
    line = capsys.readouterr().out
    graph, truth = read_pose_graph(out), read_pose_graph(tmp_path / "graph.truth.g2o")
    assert graph.num_poses == truth.num_poses == 150 and graph.dim == dim
    assert f"{graph.num_edges} edges ({graph.num_edges - 149} loop closures)" in line
    initial, ref = generate_pose_graph(kind, 150, seed=2)
    np.testing.assert_allclose(truth.translations, ref.translations, atol=1e-12)
    np.testing.assert_allclose(graph.translations, initial.translations, atol=1e-12)
    write_g2o(ref, tmp_path / "lib.g2o")
    assert (tmp_path / "graph.truth.g2o").read_bytes() == (tmp_path / "lib.g2o").read_bytes()


def test_quiet_prints_nothing(tmp_path, capsys):
    assert main(["generate", "pgo", str(tmp_path / "g.g2o"), "--poses", "20", "--kind", "grid2d", "-q"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "args,message",
    [
        (["ba", "--cameras", "0", "--points", "10"], "--cameras must be an integer >= 2, got 0"),
        (["ba", "--cameras", "10", "--points", "-3"], "--points must be an integer >= 1, got -3"),
        (["ba", "--cameras", "5", "--points", "10"], "--cameras 5: fewer cameras than --max-views 7"),
        (["ba", "--cameras", "8", "--points", "10", "--max-views", "9"], "--cameras 8: fewer cameras than"),
        (["ba", "--cameras", "10", "--points", "10", "--min-views", "1"], "--min-views 1: BundleGenConfig.min_views"),
        (["ba", "--cameras", "10", "--points", "10", "--min-views", "5", "--max-views", "4"], "--max-views 4:"),
        (["ba", "--cameras", "10", "--points", "10", "--pixel-sigma", "nan"], "--pixel-sigma must be a finite"),
        (["ba", "--cameras", "10", "--points", "10", "--point-noise", "-1"], "--point-noise must be a finite"),
        (["ba", "--cameras", "10", "--points", "10", "--focal", "0"], "--focal 0.0: BundleGenConfig.focal"),
        (["ba", "--cameras", "10", "--points", "10", "--seed", "-1"], "--seed must be an integer >= 0"),
        (["pgo", "--poses", "1", "--kind", "grid2d"], "--poses must be an integer >= 2, got 1"),
        (["pgo", "--poses", "10", "--kind", "sphere", "--rotation-sigma", "-0.1"], "--rotation-sigma must be"),
    ],
)
def test_bad_values_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out.txt"
    assert main(["generate", args[0], str(out), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixslam: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["pgo", "--poses", "10", "--kind", "ring"],
        ["pgo", "--poses", "10"],
        ["ba", "--cameras", "1.5", "--points", "10"],
        ["ba", "--cameras", "10"],
        ["tree"],
    ],
)
def test_argument_errors_exit_2(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exc:
        main(["generate", args[0], str(tmp_path / "o.txt"), *args[1:]])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "mixslam generate" in err and "error:" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_unwritable_paths_exit_2_before_any_work(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "folder" / "p.txt"
    assert main(["generate", "ba", str(missing), "--cameras", "10", "--points", "10"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "g.truth.g2o").mkdir()  # the truth's path is a folder
    assert main(["generate", "pgo", str(tmp_path / "g.g2o"), "--poses", "10", "--kind", "grid2d"]) == 2
    err = capsys.readouterr().err
    assert "truth file" in err and "is a folder" in err
    assert not (tmp_path / "g.g2o").exists()


def test_failed_truth_write_leaves_no_problem_file(tmp_path, capsys, monkeypatch):
    import mixslam.io.bal as bal

    real = bal.write_bal

    def write_bal(path, data):
        if str(path).endswith(".truth.txt"):
            raise OutputError(str(path), "could not be written (No space left on device)")
        real(path, data)

    monkeypatch.setattr(bal, "write_bal", write_bal)
    out = tmp_path / "p.txt"
    assert main(["generate", "ba", str(out), "--cameras", "10", "--points", "20"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
