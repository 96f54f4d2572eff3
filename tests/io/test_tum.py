"""Tests of mixslam.io.tum (TUM trajectory files, as read by evo)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixslam.errors import InputFormatError, MixslamError, NonFiniteError
from mixslam.io import read_tum, write_tum
from mixslam.lie import so2, so3


def _poses3(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return so3.exp(rng.normal(size=(n, 3)) * 2), rng.normal(size=(n, 3)) * 100


def _evo_like_read(path: Path) -> np.ndarray:
    """What evo's ``file_interface.read_tum_trajectory_file`` does: csv with a single-space delimiter,
    lines starting with '#' dropped, exactly 8 columns, every entry a float."""
    with open(path) as f:
        rows = list(csv.reader((line for line in f if not line.startswith("#")), delimiter=" "))
    assert rows and all(len(r) == 8 for r in rows), rows[:3]
    return np.array(rows).astype(float)


def test_round_trip_3d(tmp_path):
    R, t = _poses3()
    stamps = np.array([0.5, 1.25, 3.0, 1e9 + 0.123456, 1e9 + 1, 1e9 + 2])
    p = tmp_path / "traj.tum"
    write_tum(p, R, t, stamps)
    ts, R2, t2 = read_tum(p)
    np.testing.assert_array_equal(ts, stamps)
    np.testing.assert_array_equal(t2, t)
    np.testing.assert_allclose(R2, R, rtol=0, atol=1e-12)
    assert R2.shape == (6, 3, 3) and t2.shape == (6, 3)


def test_evo_compatible_layout(tmp_path):
    R, t = _poses3(4, seed=1)
    p = tmp_path / "traj.txt"
    write_tum(p, R, t)
    text = p.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("#")
    assert all(l == l.strip() and "  " not in l for l in lines)       # single spaces, no trailing space
    assert "" not in lines and text.endswith("\n")
    mat = _evo_like_read(p)
    np.testing.assert_array_equal(mat[:, 0], [0.0, 1.0, 2.0, 3.0])   # default timestamps
    np.testing.assert_array_equal(mat[:, 1:4], t)
    q = mat[:, 4:8]
    assert (q[:, 3] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-15)
    np.testing.assert_allclose(so3.from_quaternion(q), R, atol=1e-12)


def test_2d_poses_are_lifted(tmp_path):
    th = np.array([0.0, 0.5, -2.0, 3.0])
    t = np.array([[0.0, 0], [1, 2], [3, -4], [5, 6]])
    p = tmp_path / "t2.tum"
    write_tum(p, so2.exp(th), t, timestamps=np.array([3, 5, 7, 9]))
    ts, R, t3 = read_tum(p)
    np.testing.assert_array_equal(ts, [3.0, 5.0, 7.0, 9.0])
    np.testing.assert_array_equal(t3[:, :2], t)
    np.testing.assert_array_equal(t3[:, 2], 0.0)
    np.testing.assert_allclose(R, so3.exp(np.stack([0 * th, 0 * th, th], axis=1)), atol=1e-15)


def test_reader_is_lenient_about_spacing(tmp_path):
    p = tmp_path / "a.tum"
    p.write_text("# comment\n\n 1.0\t2 3 4   0 0 0 1  \r\n  # indented comment\n2 0 0 0 0 0 0 2\n")
    ts, R, t = read_tum(p)
    np.testing.assert_array_equal(ts, [1.0, 2.0])
    np.testing.assert_array_equal(t[0], [2, 3, 4])
    np.testing.assert_allclose(R, np.broadcast_to(np.eye(3), (2, 3, 3)), atol=0)


CASES = [
    ("field count", "0 0 0 0 0 0 1\n", 1, ["needs 8 fields", "got 7"]),
    ("field count long", "# h\n0 0 0 0 0 0 0 1\n1 0 0 0 0 0 0 1 5\n", 3, ["needs 8 fields", "got 9"]),
    ("not a number", "0 0 0 0 0 0 0 1\n1 0 zz 0 0 0 0 1\n", 2, ["ty = 'zz'", "not a number"]),
    ("nan", "0 0 0 0 0 0 0 1\n1 0 0 nan 0 0 0 1\n", 2, ["tz = nan", "finite"]),
    ("inf stamp", "inf 0 0 0 0 0 0 1\n", 1, ["timestamp = inf", "finite"]),
    ("zero quaternion", "0 0 0 0 0 0 0 1\n1 0 0 0 0 0 0 0\n", 2, ["quaternion", "norm 0.0"]),
    ("empty", "", None, ["no poses"]),
    ("only comments", "# a\n#b\n\n", None, ["no poses"]),
]


@pytest.mark.parametrize("name,text,line,phrases", CASES, ids=[c[0] for c in CASES])
def test_malformed(tmp_path, name, text, line, phrases):
    p = tmp_path / "bad.tum"
    p.write_text(text)
    with pytest.raises(InputFormatError) as ei:
        read_tum(p)
    assert ei.value.line == line and ei.value.path == str(p)
    for ph in phrases:
        assert ph in str(ei.value), str(ei.value)


def test_file_errors(tmp_path):
    with pytest.raises(InputFormatError, match="file not found"):
        read_tum(tmp_path / "nope.tum")
    p = tmp_path / "bin.tum"
    p.write_bytes(b"0 0 0 0 0 0 0 1\n\x80\x81\n")
    with pytest.raises(InputFormatError, match="not UTF-8") as ei:
        read_tum(p)
    assert ei.value.line == 2


def test_writer_errors(tmp_path):
    R, t = _poses3(3)
    with pytest.raises(ValueError, match="rotations must be"):
        write_tum(tmp_path / "x.tum", R, t[:, :2])
    with pytest.raises(ValueError, match="timestamps"):
        write_tum(tmp_path / "x.tum", R, t, timestamps=[1.0, 2.0])
    t[1, 1] = np.inf
    with pytest.raises(NonFiniteError):
        write_tum(tmp_path / "x.tum", R, t)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_tum")


BASE = "# timestamp tx ty tz qx qy qz qw\n0.0 1 2 3 0 0 0 1\n1.0 1 2 3 0.1 0.2 0.3 0.9\n2.5 -1 0 1e3 0 1 0 0\n"
JUNK = st.one_of(st.sampled_from(["nan", "inf", "1e999", "", "#", "0", "-0", "1e-320", "\x00", "\u0663"]),
                 st.text(max_size=6), st.floats().map(repr))


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), JUNK), max_size=4),
       extra=st.binary(max_size=4), cut=st.integers(0, len(BASE)))
def test_reader_never_raises_foreign_errors(fuzz_dir, ops, extra, cut):
    lines = BASE.split("\n")
    for k, j, junk in ops:
        toks = lines[k % len(lines)].split() or [""]
        toks[j % len(toks)] = junk
        lines[k % len(lines)] = " ".join(toks)
    data = "\n".join(lines).encode()
    data = data[:cut] + extra + data[cut:]
    p = fuzz_dir / "f.tum"
    p.write_bytes(data)
    try:
        ts, R, t = read_tum(p)
    except MixslamError as e:
        assert "please report" not in str(e), str(e)
        return
    assert np.isfinite(ts).all() and np.isfinite(R).all() and np.isfinite(t).all()
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)


def test_ids_fp64_cannot_tell_apart_are_refused_before_the_solve(tmp_path, monkeypatch, capsys):
    """Two vertex ids above 2**53 that round to the same fp64 timestamp: --tum would merge two poses."""
    from mixslam.cli import main
    from mixslam.errors import ConfigError
    from mixslam.io.tum import check_distinct_timestamps, write_tum

    big = 2**53
    with pytest.raises(ConfigError, match="same timestamp"):
        write_tum(tmp_path / "t.tum", np.stack([np.eye(3)] * 2), np.zeros((2, 3)),
                  timestamps=np.array([big, big + 1], dtype=np.int64).astype(float))
    assert not (tmp_path / "t.tum").exists()
    check_distinct_timestamps(np.array([0.0, 1.0, 2.0]), "ok")
    g2o = tmp_path / "big.g2o"
    g2o.write_text(f"VERTEX_SE2 {big} 0 0 0\nVERTEX_SE2 {big + 1} 1 0 0\nFIX {big}\n"
                   f"EDGE_SE2 {big} {big + 1} 1 0 0 1 0 0 1 0 1\n")
    monkeypatch.setattr("mixslam.pgo.optimize_pose_graph", lambda *a, **k: pytest.fail("solved"))
    assert main(["pgo", str(g2o), "--tum", str(tmp_path / "o.tum")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "same timestamp" in err
