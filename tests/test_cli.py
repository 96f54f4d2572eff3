"""The command line: outputs, report keys, exit codes and messages on bad input."""
import json

import pytest

from helpers import write_small_bal
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
    assert data["converged"] is True and data["precision"] == "mixed" and data["solver"] == "cg"
    assert data["preconditioner"] == "ic"
    assert data["final_cost"] < data["initial_cost"]
    lines = [ln for ln in tum.read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 150 and len(lines[0].split()) == 8
    assert out.read_text().count("VERTEX_SE2") == 150
    assert "converged" in capsys.readouterr().out


def test_ic_ordering_fill_and_refactor_options(g2o_file, tmp_path):
    rep = tmp_path / "r.json"
    rc = main(["pgo", str(g2o_file), "--precision", "mixed", "--solver", "ic", "--ic-ordering", "min-degree",
               "--ic-fill", "complete", "--ic-refactor", "always", "--report", str(rep), "-q"])
    assert rc == 0
    data = json.loads(rep.read_text())
    assert data["converged"] is True
    assert data["ic"]["fill_level"] == "complete" and data["ic"]["ordering"] == "min-degree"
    assert data["ic"]["factorizations"] >= 2  # 'always': one per accepted linearization


def test_acceleration_is_on_by_default_and_can_be_turned_off(g2o_file, tmp_path, capsys):
    rep = tmp_path / "r.json"
    assert main(["pgo", str(g2o_file), "--init", "file", "-v", "--report", str(rep)]) == 0
    on = json.loads(rep.read_text())
    assert on["accelerated_steps"] > 0 and "+ accel" in capsys.readouterr().err
    assert main(["pgo", str(g2o_file), "--init", "file", "--no-acceleration", "--report", str(rep), "-q"]) == 0
    off = json.loads(rep.read_text())
    assert off["accelerated_steps"] == 0 and off["converged"]
    assert abs(off["final_cost"] - on["final_cost"]) <= 1e-9 * off["final_cost"]


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_bad_ic_fill_exits_2(g2o_file, capsys, value):
    with pytest.raises(SystemExit) as exc:
        main(["pgo", str(g2o_file), "--solver", "ic", "--ic-fill", value])
    assert exc.value.code == 2
    assert "non-negative integer or 'complete'" in capsys.readouterr().err


def test_verbose_prints_one_line_per_iteration(g2o_file, capsys):
    # from the file's guess (the chordal one of `auto` converges in fewer): not converged in 3 iterations
    assert main(["pgo", str(g2o_file), "-v", "--init", "file", "--max-iterations", "2"]) == 3
    err = capsys.readouterr().err
    assert err.count("[iter") == 2


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


@pytest.fixture(scope="module")
def bal_file(tmp_path_factory):
    """A small synthetic BAL problem (4 cameras, 60 points, noisy pixels, perturbed start)."""
    return write_small_bal(tmp_path_factory.mktemp("cli") / "problem-4-60.txt", 4, 60, seed=2)


@pytest.mark.parametrize("precision,solver", [("fp64", None), ("mixed", "cgnr")])
def test_ba_writes_outputs_and_report(bal_file, tmp_path, capsys, precision, solver):
    from mixslam.io.bal import read_bal
    out, rep = tmp_path / "o.txt", tmp_path / "r.json"
    args = ["ba", str(bal_file), "-o", str(out), "--precision", precision, "--report", str(rep)]
    rc = main(args + (["--solver", solver] if solver else []))
    assert rc == 0
    data = json.loads(rep.read_text())
    for key in ("initial_cost", "final_cost", "iterations", "status", "converged", "time_s", "precision", "solver",
                "init", "linear_iterations", "timing", "fp16_overflows", "history", "depth", "num_observations"):
        assert key in data, key
    # "cgnr" is the earlier spelling of CG with block-Jacobi; the report gives the canonical names
    assert data["solver"] == {"cgnr": "cg", None: "schur"}.get(solver, solver) and data["precision"] == precision
    assert data["preconditioner"] == (None if data["solver"] == "schur" else "jacobi")
    assert data["final_cost"] < data["initial_cost"] and data["fp16_overflows"] == 0
    assert read_bal(out).num_observations == 240
    assert "240 observations" in capsys.readouterr().out


def test_ba_bad_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1 1\n0 3 1.0 2.0\n" + "0\n" * 12)
    assert main(["ba", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.txt:2" in err and "point" in err
    assert main(["ba", str(tmp_path / "missing.txt")]) == 2
    assert main(["ba", str(bad), "--fix", "x"]) == 2


# -- sim / demo / bench / eval: bad option values exit 2 with one line, no traceback ---------------------------
# (the configuration validation; the pgo/ba tests are above)
BAD_OPTIONS = [
    (["sim", "--keyframes", "1"], "TrajectoryConfig.keyframes"),
    (["sim", "--keyframes", "-5"], "--keyframes -5"),
    (["sim", "--keyframes", "2"], "StudyConfig.trajectory.keyframes"),
    (["sim", "--seed", "-1"], "--seed"),
    (["sim", "--trajectories", "0"], "--trajectories"),
    (["sim", "--workers", "0"], "--workers"),
    (["sim", "--window", "1"], "VOConfig.window"),
    (["sim", "--window", "1", "--workers", "2"], "--window 1"),
    (["sim", "--seed", "-1", "--workers", "2"], "--seed"),
    (["sim", "--precision", "fp64,fp8"], "--precision"),
    (["demo", "--seed", "-1"], "--seed"),
    (["bench", "--quick", "--workers", "0"], "--workers"),
    (["bench", "--quick", "--seed", "-1"], "--seed"),
    (["bench", "--quick", "--figures", "9"], "--figures"),
    (["bench", "--quick", "--figures", "x"], "--figures"),
    (["bench", "--quick", "--scheduler", "tcp://localhost:8786"], "scheduler"),
]


@pytest.mark.parametrize("argv,phrase", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_exits_2_with_one_line(argv, phrase, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")] if argv[0] in ("demo", "bench") else []
    assert main(argv + out + ["-q"]) == 2
    cap = capsys.readouterr()
    lines = cap.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mixslam: error: ") and phrase in lines[0], cap.err
    assert "Traceback" not in cap.err and cap.out == ""
    assert not (tmp_path / "out").exists()


def test_eval_bad_max_difference_exits_2(tmp_path, capsys):
    tum = tmp_path / "t.tum"
    tum.write_text("".join(f"{k} {k} 0 0 0 0 0 1\n" for k in range(4)))
    for value in ("-1", "nan"):
        assert main(["eval", str(tum), str(tum), "--max-difference", value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--max-difference" in err


def test_library_error_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    import mixslam.cli as cli
    from mixslam.errors import ConfigError

    def boom(args):
        raise ConfigError("first line\nsecond line")
    monkeypatch.setattr(cli, "cmd_demo", boom)
    assert main(["demo"]) == 2
    assert capsys.readouterr().err == "mixslam: error: first line second line\n"

    def bug(args):
        raise ValueError("not a library error: a bug, which must not pass for bad input")
    monkeypatch.setattr(cli, "cmd_demo", bug)
    with pytest.raises(ValueError, match="a bug"):
        main(["demo"])


def test_no_traceback_from_worker_processes():
    # the real console script, two workers: the error is found before any worker starts
    import subprocess
    import sys
    for argv in (["sim", "--keyframes", "1", "--workers", "2"], ["sim", "--seed", "-1", "--workers", "2"]):
        p = subprocess.run([sys.executable, "-m", "mixslam", *argv], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr


@pytest.mark.parametrize("argv", [["pgo", "x.g2o", "--ic-fill", "-1"], ["pgo"], ["sim", "--keyframes", "x"],
                                  ["frob"], ["ba", "x.txt", "--solver", "ic"]])
def test_argument_errors_are_one_line_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and "--help" in err and "Traceback" not in err, err


# ---- exit codes (issue 15): 0 converged, 1 failed, 3 not converged, 130 interrupted; -q never hides the reason --
def test_exit_codes_are_the_documented_ones():
    from mixslam import cli
    assert (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_BAD_INPUT, cli.EXIT_NOT_CONVERGED, cli.EXIT_INTERRUPTED) == (
        0, 1, 2, 3, 130)


def test_converged_exits_0_and_quiet_prints_nothing_at_all(g2o_file, capsys):
    assert main(["pgo", str(g2o_file), "-q"]) == 0
    assert capsys.readouterr() == ("", "")


def test_iteration_limit_exits_3_with_the_reason_even_when_quiet(g2o_file, tmp_path, capsys):
    rep = tmp_path / "r.json"
    assert main(["pgo", str(g2o_file), "-q", "--max-iterations", "1", "--report", str(rep)]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "mixslam pgo: hit_iteration_limit: reached max_iterations=1\n"
    assert json.loads(rep.read_text())["status"] == "hit_iteration_limit"


def test_ba_overflowing_point_exits_1_with_the_reason(tmp_path, capsys):
    import dataclasses

    from mixslam.io.bal import read_bal, write_bal
    data = read_bal(write_small_bal(tmp_path / "small.txt", 4, 20, 0))
    points = data.points.copy()
    points[3] = [1e308, 0.0, 0.0]
    big = tmp_path / "big.txt"
    write_bal(big, dataclasses.replace(data, points=points))
    assert main(["ba", str(big), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mixslam ba: failed: ") and "overflows fp64" in err and err.count("\n") == 1


FAILING_G2O = """VERTEX_SE2 0 0 0 0
VERTEX_SE2 1 1e153 0 0
VERTEX_SE2 2 2 0 0
EDGE_SE2 0 1 1 0 0 1e6 0 0 1e6 0 1e6
EDGE_SE2 1 2 1 0 0 1e6 0 0 1e6 0 1e6
FIX 0
"""
"""Every value is accepted by the reader (squares below the fp64 limit), but the cost overflows fp64: failed."""


def test_failed_pose_graph_solve_writes_no_output_but_its_report(tmp_path, capsys):
    """A robot pipeline must not consume a failed answer: -o and --tum are not written (a file already there
    stays as it was), the report is, and -q still prints the reason and that nothing was written."""
    graph = tmp_path / "overflow.g2o"
    graph.write_text(FAILING_G2O)
    out, tum, rep = tmp_path / "o.g2o", tmp_path / "o.tum", tmp_path / "r.json"
    out.write_text("previous answer\n")
    args = ["pgo", str(graph), "--init", "file", "-o", str(out), "--tum", str(tum), "--report", str(rep), "-q"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("mixslam pgo: failed: ") and captured.err.count("\n") == 1
    assert captured.err.endswith(f"; no output written (-o {out}, --tum {tum}: a failed solve writes no result); "
                                 f"report written to {rep}\n")
    assert out.read_text() == "previous answer\n" and not tum.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.g2o", "overflow.g2o", "r.json"]  # no temporary left
    data = json.loads(rep.read_text())
    assert data["status"] == "failed" and data["converged"] is False and "not finite" in data["reason"]
    assert data["reason"] in captured.err


def test_failed_bundle_adjustment_writes_no_output_but_its_report(tmp_path, capsys):
    import dataclasses

    from mixslam.io.bal import read_bal, write_bal
    data = read_bal(write_small_bal(tmp_path / "small.txt", 4, 20, 0))
    points = data.points.copy()
    points[3] = [1e308, 0.0, 0.0]
    big, out, rep = tmp_path / "big.txt", tmp_path / "o.txt", tmp_path / "r.json"
    write_bal(big, dataclasses.replace(data, points=points))
    assert main(["ba", str(big), "-o", str(out), "--report", str(rep), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mixslam ba: failed: ") and "overflows fp64" in err and err.count("\n") == 1
    assert f"no output written (-o {out}: a failed solve writes no result); report written to {rep}" in err
    assert not out.exists()
    assert json.loads(rep.read_text())["status"] == "failed"


def test_not_converged_solve_still_writes_its_best_iterate(g2o_file, tmp_path, capsys):
    """Only a failed solve withholds -o / --tum: exit 3 (iteration limit) writes them as before."""
    out, tum = tmp_path / "o.g2o", tmp_path / "o.tum"
    assert main(["pgo", str(g2o_file), "-q", "--max-iterations", "1", "-o", str(out), "--tum", str(tum)]) == 3
    assert capsys.readouterr().err == "mixslam pgo: hit_iteration_limit: reached max_iterations=1\n"
    assert out.read_text().count("VERTEX_SE2") == 150 and tum.stat().st_size > 0


def test_interrupted_solve_exits_130_with_one_line(g2o_file, tmp_path, monkeypatch, capsys):
    from mixslam.solve import interrupt
    monkeypatch.setattr(interrupt, "interrupt_requested", lambda: True)  # as if Ctrl-C came at once
    import mixslam.solve.lm as lm
    monkeypatch.setattr(lm, "interrupt_requested", lambda: True)
    out = tmp_path / "o.g2o"
    assert main(["pgo", str(g2o_file), "-o", str(out), "-q"]) == 130
    assert capsys.readouterr().err == f"mixslam: interrupted after 0 iterations; best iterate written to {out}\n"
    assert out.read_text().count("VERTEX_SE2") == 150


def test_keyboard_interrupt_outside_a_solve_exits_130_without_traceback(monkeypatch, capsys):
    from mixslam import cli

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_demo", interrupted)
    assert main(["demo"]) == 130
    err = capsys.readouterr().err
    assert err == "mixslam: interrupted (demo); nothing more written\n"


@pytest.mark.parametrize("command,extra", [("pgo", ()), ("ba", ()), ("pgo", ("--tum",))])
def test_same_path_for_two_outputs_is_refused_before_the_solve(
    g2o_file, bal_file, tmp_path, monkeypatch, capsys, command, extra
):
    import mixslam.cli as cli

    def no_solve(*a, **k):
        raise AssertionError("solved although two outputs share a file")

    monkeypatch.setattr("mixslam.solve.driver.solve", no_solve)
    source = g2o_file if command == "pgo" else bal_file
    out = tmp_path / "same.txt"
    first = list(extra) or ["-o"]
    argv = [command, str(source), *first, str(out), "--report", str(tmp_path / "." / "same.txt")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--report" in err and "same file" in err and first[0] in err
    assert not out.exists()
    # devices may be shared (/dev/null swallows both)
    monkeypatch.undo()
    assert cli.main([command, str(source), "-q", "-o", "/dev/null", "--report", "/dev/null"]) == 0
