"""``mixslam pgo|ba --backend jax --device cpu``: runs and says so in the JSON report; bad combinations exit 2."""

from __future__ import annotations

import json

import pytest

from mixslam.cli import main


def _exit_code(argv) -> int:
    """main's return value, or the status argparse exits with (bad option values)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from mixslam.io import write_g2o
    from mixslam.io.bal import write_bal
    from mixslam.sim.generate import generate_bundle, generate_pose_graph

    d = tmp_path_factory.mktemp("cli_backend")
    g2o, bal = d / "g.g2o", d / "b.txt"
    write_g2o(generate_pose_graph("grid2d", 40, seed=1).initial, str(g2o))
    write_bal(str(bal), generate_bundle(8, 40, seed=2).initial)
    return {"pgo": str(g2o), "ba": str(bal), "dir": d}


@pytest.mark.parametrize("command", ["pgo", "ba"])
def test_backend_jax_runs_and_reports_it(files, command, capsys):
    pytest.importorskip("jax")
    report = files["dir"] / f"{command}.json"
    extra = ["--init", "file"] if command == "pgo" else []
    code = main([command, files[command], "--backend", "jax", "--device", "cpu", "--report", str(report), *extra])
    assert code == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["backend"] == "jax:cpu" and data["solver"] == "cg" and data["preconditioner"] == "jacobi"
    assert "backend jax:cpu" in capsys.readouterr().out


def test_pgo_cholesky_on_the_device_reports_the_factor(files, capsys):
    pytest.importorskip("jax")
    report = files["dir"] / "pgo-chol.json"
    argv = ["pgo", files["pgo"], "--backend", "jax", "--device", "cpu", "--solver", "cholesky", "--precision", "mixed"]
    code = main([*argv, "--report", str(report)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["backend"] == "jax:cpu" and data["preconditioner"] == "cholesky"
    assert data["direct"]["factor"] == "fp32" and data["direct"]["factorizations"] >= 1


@pytest.mark.parametrize(
    "args",
    [
        ["--backend", "jax", "--solver", "ic"],
        ["--backend", "jax", "--preconditioner", "ic"],
        ["--backend", "jax", "--precision", "fp16"],
        ["--backend", "jax", "--robust", "tls"],
        ["--device", "gpu"],
        ["--backend", "jax", "--device", "tpu"],
        ["--backend", "cuda"],
    ],
)
def test_bad_combinations_exit_2(files, args, capsys):
    assert _exit_code(["pgo", files["pgo"], "-q", *args]) == 2
    assert "error" in capsys.readouterr().err


def test_jax_missing_exits_2(files, monkeypatch, capsys):
    from mixslam.backend import choice

    monkeypatch.setattr(choice, "jax_installed", lambda: False)
    assert main(["ba", files["ba"], "--backend", "jax"]) == 2
    assert "needs jax" in capsys.readouterr().err


def test_gpu_without_a_gpu_exits_2(files, capsys):
    pytest.importorskip("jax")
    from mixslam.backend.jax_device import gpu_visible

    if gpu_visible():
        pytest.skip("a GPU is visible")
    assert main(["pgo", files["pgo"], "--backend", "jax", "--device", "gpu"]) == 2
    assert "sees no GPU" in capsys.readouterr().err
