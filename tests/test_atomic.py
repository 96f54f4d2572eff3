"""Nothing lost, nothing half-written: every output goes through mixslam.atomic (temp file, fsync, replace), and
the command line checks its output paths before any work."""
import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import mixslam.atomic as atomic
from helpers import write_small_bal
from mixslam.atomic import atomic_write, atomic_write_bytes, atomic_write_text, check_folder, check_writable
from mixslam.cli import main
from mixslam.errors import MixslamError, OutputError
from mixslam.io import read_pose_graph, write_g2o, write_tum
from mixslam.sim import simulate_pose_graph


@pytest.fixture(scope="module")
def g2o_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("atomic") / "sim.g2o"
    write_g2o(simulate_pose_graph("manhattan", 60, seed=3).graph, path)
    return path


def enospc_on_fsync(monkeypatch):
    """The disk fills up when the temporary file is synced (after every byte was handed to the OS)."""

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", fsync)


def enospc_midway(monkeypatch):
    """The disk fills up in the middle of the write: half the text reaches the temporary file, then ENOSPC."""
    real_fdopen = os.fdopen

    class Half:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            self._f.write(data[: len(data) // 2])
            self._f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, *a, **k: Half(real_fdopen(fd, *a, **k)))


def only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------------------
# the helper
# ---------------------------------------------------------------------------------------------------------
def test_writes_and_replaces(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "one\n")
    assert p.read_text() == "one\n"
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two" and only(tmp_path) == ["a.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask  # what open(p, "w") would give, not mkstemp's 0600
    p.chmod(0o640)
    atomic_write_text(p, "three")
    assert stat.S_IMODE(p.stat().st_mode) == 0o640  # an existing file keeps its permissions


@pytest.mark.parametrize("inject", [enospc_on_fsync, enospc_midway])
def test_failed_write_keeps_previous_bytes_and_leaves_no_temp_file(tmp_path, monkeypatch, inject):
    p = tmp_path / "graph.g2o"
    p.write_bytes(b"previous content\n")
    inject(monkeypatch)
    with pytest.raises(OutputError) as exc:
        atomic_write_text(p, "new content " * 1000)
    assert exc.value.errno == errno.ENOSPC and isinstance(exc.value, OSError)
    assert str(p) in str(exc.value) and "No space left" in str(exc.value)
    assert p.read_bytes() == b"previous content\n"
    assert only(tmp_path) == ["graph.g2o"]


def test_error_in_the_writing_code_passes_through_and_cleans_up(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("old")
    with pytest.raises(ZeroDivisionError), atomic_write(p) as f:
        f.write("partial")
        raise ZeroDivisionError("an error in the code writing the file")
    assert p.read_text() == "old" and only(tmp_path) == ["x.csv"]


def test_library_writers_keep_the_previous_file(tmp_path, monkeypatch):
    g = simulate_pose_graph("manhattan", 20, seed=0).graph
    paths = {"g2o": tmp_path / "g.g2o", "tum": tmp_path / "t.tum", "bal": tmp_path / "b.txt"}
    for p in paths.values():
        p.write_bytes(b"keep me")
    write_small_bal(tmp_path / "src.txt", 3, 10, 0)
    from mixslam.io.bal import read_bal, write_bal

    bal = read_bal(tmp_path / "src.txt")
    enospc_midway(monkeypatch)
    with pytest.raises(OutputError):
        write_g2o(g, paths["g2o"])
    with pytest.raises(OutputError):
        write_tum(paths["tum"], g.rotations, g.translations)
    with pytest.raises(OutputError):
        write_bal(paths["bal"], bal)
    assert all(p.read_bytes() == b"keep me" for p in paths.values())
    assert only(tmp_path) == ["b.txt", "g.g2o", "src.txt", "t.tum"]


def test_png_and_csv_keep_the_previous_file(tmp_path, monkeypatch):
    from mixslam.slam import plots

    png, csv = tmp_path / "h.png", tmp_path / "h.csv"
    values = {"fp64": [1.0, 2.0, 3.0]}
    plots.plot_cumulative_histograms(png, values)
    plots.write_cumulative_csv(csv, values)
    before = png.read_bytes(), csv.read_bytes()
    assert before[0].startswith(b"\x89PNG")
    enospc_on_fsync(monkeypatch)
    with pytest.raises(OutputError):
        plots.plot_cumulative_histograms(png, {"fp32": [5.0]})
    with pytest.raises(OutputError):
        plots.write_cumulative_csv(csv, {"fp32": [5.0]})
    assert (png.read_bytes(), csv.read_bytes()) == before and only(tmp_path) == ["h.csv", "h.png"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_dev_full(tmp_path, monkeypatch):
    """A real ENOSPC from the kernel: /dev/full written directly (a device is written in place, never
    replaced), then a regular file whose temporary file is /dev/full underneath."""
    with pytest.raises(OutputError) as exc:
        atomic_write_text("/dev/full", "x" * 100_000)
    assert exc.value.errno == errno.ENOSPC
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # still the device

    p = tmp_path / "out.g2o"
    p.write_text("old\n")
    real_fdopen = os.fdopen

    def to_dev_full(fd, mode, **kw):
        os.close(fd)
        return real_fdopen(os.open("/dev/full", os.O_WRONLY), mode, **kw)

    monkeypatch.setattr(atomic.os, "fdopen", to_dev_full)
    with pytest.raises(OutputError) as exc:
        write_g2o(simulate_pose_graph("manhattan", 20, seed=0).graph, p)
    assert exc.value.errno == errno.ENOSPC
    assert p.read_text() == "old\n" and only(tmp_path) == ["out.g2o"]


def test_symlink_is_written_through(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_check_writable_and_check_folder(tmp_path, monkeypatch):
    check_writable(tmp_path / "new.g2o", "-o")  # writes nothing
    assert only(tmp_path) == []
    with pytest.raises(OutputError, match=r"-o .*: cannot be written: folder .*missing does not exist"):
        check_writable(tmp_path / "missing" / "x.g2o", "-o")
    with pytest.raises(OutputError, match="is a folder"):
        check_writable(tmp_path, "--report")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is not a folder"):
        check_writable(tmp_path / "file" / "x.json", "--report")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        check_folder(tmp_path / "file", "--out")
    with pytest.raises(OutputError, match="is not a folder"):
        check_folder(tmp_path / "file" / "sub", "--out")
    check_folder(tmp_path / "a" / "b", "--out")  # creatable: fine, and not created
    assert not (tmp_path / "a").exists()

    # a read-only folder (root writes anywhere, so the probe is made to fail as it would for a user)
    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match=r"folder .* is not writable \(Permission denied\)"):
        check_writable(tmp_path / "x.g2o", "-o")
    with pytest.raises(OutputError, match="not writable"):
        check_folder(tmp_path / "new", "--out")
    assert issubclass(OutputError, MixslamError) and issubclass(OutputError, OSError)


# ---------------------------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------------------------
def test_pgo_in_place_with_a_failing_write_leaves_the_input_byte_identical(g2o_file, tmp_path, monkeypatch, capsys):
    x = tmp_path / "x.g2o"
    x.write_bytes(g2o_file.read_bytes())
    before = x.read_bytes()
    enospc_midway(monkeypatch)
    rc = main(["pgo", str(x), "-o", str(x), "-q"])
    assert rc == 2
    assert x.read_bytes() == before
    assert only(tmp_path) == ["x.g2o"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(x) in err[0] and "No space left on device" in err[0]
    read_pose_graph(x)  # still the valid input


def test_pgo_in_place_succeeds(g2o_file, tmp_path):
    x = tmp_path / "x.g2o"
    x.write_bytes(g2o_file.read_bytes())
    assert main(["pgo", str(x), "-o", str(x), "-q"]) == 0
    g = read_pose_graph(x)
    assert g.num_poses == 60 and only(tmp_path) == ["x.g2o"]


def _no_solve(monkeypatch):
    import mixslam.ba
    import mixslam.pgo

    def boom(*a, **k):
        raise AssertionError("the solve must not start")

    monkeypatch.setattr(mixslam.pgo, "optimize_pose_graph", boom)
    monkeypatch.setattr(mixslam.ba, "optimize_bundle", boom)


@pytest.mark.parametrize("option", ["-o", "--tum", "--report"])
def test_pgo_bad_output_path_exits_2_before_the_solve(g2o_file, tmp_path, monkeypatch, capsys, option):
    _no_solve(monkeypatch)
    bad = tmp_path / "no such folder" / "out"
    assert main(["pgo", str(g2o_file), option, str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0] and "does not exist" in err[0]


def test_ba_bad_output_path_exits_2_before_the_solve(tmp_path, monkeypatch, capsys):
    _no_solve(monkeypatch)
    src = tmp_path / "p.txt"
    write_small_bal(src, 3, 10, 0)
    assert main(["ba", str(src), "-o", str(tmp_path)]) == 2  # a folder
    assert "is a folder" in capsys.readouterr().err


def test_bad_report_leaves_output_unwritten(g2o_file, tmp_path, capsys):
    out = tmp_path / "o.g2o"
    rc = main(["pgo", str(g2o_file), "-o", str(out), "--report", str(tmp_path / "nope" / "r.json"), "-q"])
    assert rc == 2 and not out.exists()
    assert "--report" in capsys.readouterr().err


def test_report_written_atomically(g2o_file, tmp_path):
    rep = tmp_path / "r.json"
    rep.write_text("stale")
    assert main(["pgo", str(g2o_file), "--report", str(rep), "-q"]) == 0
    assert json.loads(rep.read_text())["converged"] is True and only(tmp_path) == ["r.json"]


def test_other_commands_check_outputs_first(tmp_path, monkeypatch, capsys):
    import mixslam.demo
    import mixslam.eval
    import mixslam.slam.study

    def boom(*a, **k):
        raise AssertionError("no work may start")

    monkeypatch.setattr(mixslam.demo, "run_demo", boom)
    monkeypatch.setattr(mixslam.slam.study, "run_study", boom)
    monkeypatch.setattr(mixslam.eval, "evaluate_files", boom)
    blocker = tmp_path / "a file"
    blocker.write_text("")
    bad_file = str(tmp_path / "missing" / "x.json")
    for argv in (
        ["demo", "--out", str(blocker)],
        ["sim", "--out", str(blocker / "sub"), "-q"],
        ["sim", "--report", bad_file, "-q"],
        ["eval", "ref.tum", "est.tum", "--json", bad_file],
        ["bench", "--quick", "--out", str(blocker), "-q"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mixslam: error:"), (argv, err)


def test_numbers_round_trip_unchanged(tmp_path):
    """The atomic writers produce the same bytes as before (shortest round-trip floats, LF line ends)."""
    g = simulate_pose_graph("sphere", 30, seed=2).graph
    p = tmp_path / "s.g2o"
    write_g2o(g, p)
    data = p.read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    h = read_pose_graph(p)
    np.testing.assert_array_equal(h.translations, g.translations)
