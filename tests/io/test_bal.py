"""Tests of mixslam.io.bal (BAL bundle-adjustment reader and writer)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mixslam.data import data_dir as find_data_dir
from mixslam.errors import ConfigError, GaugeError, InputFormatError, MixslamError, NonFiniteError
from mixslam.io import read_bal, write_bal
from mixslam.io.bal import _fast_parse, _scan
from mixslam.io.text import read_text
from mixslam.problem.bundle import BundleData

# ---------------------------------------------------------------------------------------------------------
# a small valid file: 2 cameras, 3 points, 5 observations, one parameter per line (like the real files)
#   line 1: header; lines 2-6: observations; lines 7-15: camera 0; 16-24: camera 1; 25-33: points 0-2
# ---------------------------------------------------------------------------------------------------------
OBS = [(0, 0, -385.99, 387.12), (1, 0, -38.44, 492.12), (0, 1, 383.88, -15.29999),
       (1, 2, 559.75, -106.15), (0, 2, 591.55, 136.44)]
CAM = [[0.0157, -0.0128, -0.0044, -0.0341, -0.1075, 1.1202, 399.75, -3.17e-07, 5.88e-13],
       [0.0159, -0.0252, -0.0094, -0.0085, -0.1186, 0.8394, 402.00, -3.8e-07, 9.3e-13]]
PTS = [[-0.612, 0.572, -1.847], [1.717, 0.155, -1.451], [1.429, 0.214, -1.442]]


def small_lines() -> list[str]:
    lines = ["2 3 5"]
    lines += [f"{c} {p}     {x:.6e} {y:.6e}" for c, p, x, y in OBS]
    lines += [f"{v:.16e}" for row in CAM for v in row]
    lines += [f"{v:.16e}" for row in PTS for v in row]
    return lines


def small_text() -> str:
    return "\n".join(small_lines()) + "\n"


def write(tmp_path: Path, text: str | bytes, name: str = "p.txt") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8", newline="")
    return p


def edit(i: int, new: str | None) -> str:
    """The small file with line ``i`` (1-based) replaced (``None``: deleted)."""
    lines = small_lines()
    if new is None:
        del lines[i - 1]
    else:
        lines[i - 1] = new
    return "\n".join(lines) + "\n"


def assert_raises_at(path, etype, line, *phrases, **kw):
    with pytest.raises(etype) as ei:
        read_bal(path, **kw)
    e = ei.value
    msg = str(e)
    if issubclass(etype, InputFormatError):
        assert e.path == str(path)
        assert e.line == line, msg
        assert msg.startswith(f"{path}:{line}: " if line is not None else f"{path}: "), msg
    assert str(path) in msg
    for ph in phrases:
        assert ph in msg, f"{ph!r} not in {msg!r}"
    return e


def random_problem(seed=0, nc=4, npt=12, m=40) -> BundleData:
    rng = np.random.default_rng(seed)
    cam = np.r_[np.arange(nc), rng.integers(0, nc, m - nc)]
    pt = np.r_[np.arange(npt), rng.integers(0, npt, m - npt)]
    cameras = rng.normal(size=(nc, 9)) * rng.choice([1e-12, 1e-3, 1.0, 1e3], size=(nc, 9))
    cameras[0, :3] = [5e-324, -0.0, 1.7976931348623157e308]       # subnormal, negative zero, DBL_MAX
    points = rng.normal(size=(npt, 3)) * 10
    obs = rng.uniform(-1000, 1000, size=(m, 2))
    obs[0] = [np.nextafter(1.0, 2.0), 1 / 3]
    return BundleData(model="bal", cameras=cameras, points=points, observations=obs, cam_idx=cam, pt_idx=pt)


# ---------------------------------------------------------------------------------------------------------
# valid input
# ---------------------------------------------------------------------------------------------------------
def test_small_file(tmp_path):
    p = write(tmp_path, small_text())
    d = read_bal(p)
    assert d.model == "bal" and d.source == str(p)
    assert (d.num_cameras, d.num_points, d.num_observations) == (2, 3, 5)
    np.testing.assert_array_equal(d.cam_idx, [o[0] for o in OBS])
    np.testing.assert_array_equal(d.pt_idx, [o[1] for o in OBS])
    assert d.cam_idx.dtype == np.int64 and d.pt_idx.dtype == np.int64
    np.testing.assert_array_equal(d.observations, [o[2:] for o in OBS])
    np.testing.assert_array_equal(d.cameras, CAM)
    np.testing.assert_array_equal(d.points, PTS)
    assert d.cameras.shape == (2, 9) and d.points.shape == (3, 3)
    assert d.fixed_cameras.tolist() == [True, False]
    assert d.fixed_points.tolist() == [False] * 3
    assert d.warnings == ["1 point(s) are seen by one camera only: their depth is held by damping alone"]


def test_layout_variants_read_the_same(tmp_path):
    ref = read_bal(write(tmp_path, small_text()))
    lines = small_lines()
    variants = {
        "crlf": "\r\n".join(lines) + "\r\n",
        "no final newline": "\n".join(lines),
        "blank lines (GTSAM style)": "\n".join([lines[0], ""] + lines[1:6] + ["", ""] + lines[6:] + ["", ""]),
        "tabs and spaces": "\n".join(" \t" + ln.replace(" ", "\t ") + "  " for ln in lines),
        "parameters several per line": "\n".join(lines[:6] + [" ".join(lines[6:10]), " ".join(lines[10:29]),
                                                              *lines[29:]]),
        "parameters all on one line": "\n".join(lines[:6] + [" ".join(lines[6:])]),
        "utf-8 bom": "\ufeff" + "\n".join(lines),
    }
    for name, text in variants.items():
        d = read_bal(write(tmp_path, text, "v.txt"))
        for attr in ("cameras", "points", "observations", "cam_idx", "pt_idx"):
            np.testing.assert_array_equal(getattr(d, attr), getattr(ref, attr), err_msg=name)


def test_fixed_cameras(tmp_path):
    p = write(tmp_path, small_text())
    assert read_bal(p, fixed_cameras=()).fixed_cameras.tolist() == [False, False]
    assert read_bal(p, fixed_cameras=[1]).fixed_cameras.tolist() == [False, True]
    assert read_bal(p, fixed_cameras=np.array([0, 1])).fixed_cameras.tolist() == [True, True]
    assert read_bal(p, fixed_cameras=1).fixed_cameras.tolist() == [False, True]
    assert read_bal(p, fixed_cameras=None).fixed_cameras.tolist() == [True, False]
    with pytest.raises(ConfigError, match=r"camera 2 does not exist.*2 camera\(s\) \(indices 0\.\.1\)") as ei:
        read_bal(p, fixed_cameras=(0, 2))
    assert str(p) in str(ei.value)
    with pytest.raises(ConfigError, match="negative"):
        read_bal(p, fixed_cameras=[-1])
    with pytest.raises(ConfigError, match="not a mask"):
        read_bal(p, fixed_cameras=[True, False])
    with pytest.raises(ConfigError, match="integer camera indices"):
        read_bal(p, fixed_cameras=["0"])


def test_validate_gauge(tmp_path):
    # camera 2 is declared but never observed: free -> GaugeError; fixed -> fine; validate=False -> read
    lines = small_lines()
    text = "\n".join(["3 3 5", *lines[1:24], *map(repr, (np.arange(9.0) + 1).tolist()), *lines[24:]]) + "\n"
    p = write(tmp_path, text)
    with pytest.raises(GaugeError, match="camera 2") as ei:
        read_bal(p)
    assert ei.value.unconstrained == ["camera 2"]
    assert read_bal(p, fixed_cameras=(0, 2)).num_cameras == 3
    d = read_bal(p, validate=False)
    np.testing.assert_array_equal(d.cameras[2], np.arange(9.0) + 1)


def test_duplicate_observation_warning(tmp_path):
    p = write(tmp_path, edit(5, "0 0 1.0 2.0"))    # (0, 0) is already observation 0
    d = read_bal(p)
    assert any("1 observation(s) repeat a (camera, point) pair" in w for w in d.warnings)


# ---------------------------------------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_bit_exact(tmp_path, seed):
    d = random_problem(seed)
    p = tmp_path / "rt.txt"
    write_bal(p, d)
    e = read_bal(p)
    for attr in ("cameras", "points", "observations"):
        a, b = getattr(d, attr), getattr(e, attr)
        assert a.tobytes() == b.tobytes(), attr      # bit-exact, -0.0 and subnormals included
    np.testing.assert_array_equal(e.cam_idx, d.cam_idx)
    np.testing.assert_array_equal(e.pt_idx, d.pt_idx)
    # layout of the originals: header, one observation per line, one parameter per line
    lines = p.read_text().split("\n")
    assert lines[0] == f"{d.num_cameras} {d.num_points} {d.num_observations}" and lines[-1] == ""
    assert all(len(ln.split()) == 4 for ln in lines[1:1 + d.num_observations])
    assert len(lines) == 1 + d.num_observations + 9 * d.num_cameras + 3 * d.num_points + 1
    assert all(len(ln.split()) == 1 for ln in lines[1 + d.num_observations:-1])
    # writing what was read gives the same bytes
    q = tmp_path / "rt2.txt"
    write_bal(q, e)
    assert q.read_bytes() == p.read_bytes()


def test_write_rejects(tmp_path):
    d = random_problem()
    pin = BundleData(model="pinhole", cameras=np.zeros((1, 12)), points=np.zeros((1, 3)),
                     observations=np.zeros((1, 2)), cam_idx=[0], pt_idx=[0], intrinsics=[1, 1, 0, 0])
    with pytest.raises(ValueError, match="'pinhole'"):
        write_bal(tmp_path / "x.txt", pin)
    bad = d.with_state(d.cameras, d.points)
    bad.points[3, 1] = np.nan
    with pytest.raises(NonFiniteError, match="points"):
        write_bal(tmp_path / "x.txt", bad)
    bad = d.with_state(d.cameras, d.points)
    bad.pt_idx = bad.pt_idx.copy()
    bad.pt_idx[0] = d.num_points
    with pytest.raises(ValueError, match="out of range"):
        write_bal(tmp_path / "x.txt", bad)
    assert not (tmp_path / "x.txt").exists()


# ---------------------------------------------------------------------------------------------------------
# malformed input: type, path, 1-based line, reason
# ---------------------------------------------------------------------------------------------------------
S = small_lines()
CASES = [
    # name, text, error type, line, phrases
    ("empty", "", InputFormatError, None, ["file is empty"]),
    ("blank only", "\n  \n\t\n", InputFormatError, None, ["file is empty"]),
    ("header 2 fields", edit(1, "2 3"), InputFormatError, 1, ["header needs 3 integers", "got 2"]),
    ("header 4 fields", edit(1, "2 3 5 7"), InputFormatError, 1, ["header needs 3 integers", "got 4"]),
    ("header obs on first line", edit(1, "2 3 5 " + S[1]), InputFormatError, 1, ["got 7"]),
    ("header after blank lines", "\n\n" + edit(1, "2 x 5"), InputFormatError, 3, ["num_points = 'x'",
                                                                                 "not an integer"]),
    ("header float", edit(1, "2.0 3 5"), InputFormatError, 1, ["num_cameras = '2.0'", "not an integer"]),
    ("header negative", edit(1, "2 -3 5"), InputFormatError, 1, ["num_points = -3", "negative"]),
    ("header zero", edit(1, "2 3 0"), InputFormatError, 1, ["num_observations = 0", "at least one"]),
    ("header underscore", edit(1, "2 3 0_5"), InputFormatError, 1, ["'0_5'", "not an integer"]),
    ("obs 5 fields", edit(4, S[3] + " 1.0"), InputFormatError, 4, ["observation 2", "needs 4 fields", "got 5"]),
    ("obs 3 fields", edit(3, "1 0 -38.44"), InputFormatError, 3, ["observation 1", "got 3"]),
    ("obs x not a number", edit(3, "1 0 abc 492.12"), InputFormatError, 3, ["observation 1: x = 'abc'",
                                                                           "not a number"]),
    ("obs camera not int", edit(2, "0.0 0 1 2"), InputFormatError, 2, ["camera index = '0.0'", "not an integer"]),
    ("obs camera out of range", edit(5, "2 2 1 2"), InputFormatError, 5,
     ["observation 3: camera index 2 is out of range", "2 camera(s)", "0..1"]),
    ("obs point out of range", edit(6, "0 -1 1 2"), InputFormatError, 6,
     ["point index -1 is out of range", "3 point(s)", "0..2"]),
    ("obs huge index", edit(6, "0 99999999999999999999999 1 2"), InputFormatError, 6,
     ["point index 99999999999999999999999 is out of range"]),
    ("obs nan", edit(3, "1 0 nan 492.12"), InputFormatError, 3, ["observation 1: x = 'nan'", "finite"]),
    ("obs inf", edit(3, "1 0 1 -inf"), InputFormatError, 3, ["y = '-inf'", "finite"]),
    ("camera nan", edit(7 + 9 + 6, "NaN"), InputFormatError, 22, ["camera 1 f = 'NaN'", "finite"]),
    ("point overflow", edit(33, "1e999"), InputFormatError, 33, ["point 2 Z = '1e999' (inf)", "finite"]),
    ("param not a number", edit(8, "0x1p3"), InputFormatError, 8, ["camera 0 w_y = '0x1p3'", "not a number"]),
    ("param underscore", edit(27, "1_000.5"), InputFormatError, 27, ["point 0 Z = '1_000.5'", "not a number"]),
    # U+001C is whitespace to str.split (not to bytes.split): refused as a separator, like in the g2o reader
    ("control char", edit(9, "1.0\x1c"), InputFormatError, 9, ["character U+001C", "ASCII spaces or tabs"]),
    ("non-ascii", edit(12, "\u00a01.0"), InputFormatError, 12, ["non-ASCII character U+00A0", "column 1"]),
    ("fullwidth digit", edit(2, "０ 0 1 2"), InputFormatError, 2, ["non-ASCII character U+FF10"]),
    ("earliest line wins", edit(6, "0 7 1 2").replace("-38.44", "nan", 1).replace(S[2], "1 0 nan 1", 1),
     InputFormatError, 3, ["observation 1: x = 'nan'"]),
    ("truncated in parameters", "\n".join(S[:30]) + "\n", InputFormatError, 30,
     ["truncated", "point 2 X is missing", "calls for 50 numbers", "holds 47"]),
    ("truncated in cameras", "\n".join(S[:10]) + "\n", InputFormatError, 10,
     ["truncated", "camera 0 t_y is missing", "calls for 50 numbers", "holds 27"]),
    ("truncated in observations", "\n".join(S[:3]) + "\n\n", InputFormatError, 3,
     ["truncated", "after 2 of the 5 observation lines", "holds 11"]),
    ("truncated after header", "2 3 5\n", InputFormatError, 1, ["truncated", "after the header", "holds 3"]),
    ("truncated mid observation", "\n".join(S[:3]) + "\n1 2 5", InputFormatError, 4,
     ["got 3", "last line", "looks truncated", "holds 14"]),
    ("huge observation count", edit(1, "2 3 99999999999999999999"), InputFormatError, 7,
     ["got 1", "num_observations = 99999999999999999999"]),
    ("huge point count", edit(1, "2 99999999999999999999 5"), InputFormatError, 33,
     ["truncated", "point 3 X is missing", "holds 50"]),
    ("extra trailing number", small_text() + "1.0\n", InputFormatError, 34,
     ["extra numbers", "calls for 50 numbers", "holds 51", "'1.0'"]),
    ("header counts too few observations", edit(1, "2 3 4"), InputFormatError, 30,
     ["extra numbers", "calls for 46 numbers", "holds 50"]),
    ("header counts too many observations", edit(1, "2 3 6"), InputFormatError, 7,
     ["observation 5", "got 1", "num_observations = 6", "only 5 observation line(s)"]),
    ("header counts too many points", edit(1, "2 4 5"), InputFormatError, 33,
     ["truncated", "point 3 X is missing", "calls for 53 numbers", "holds 50"]),
]


@pytest.mark.parametrize("name,text,etype,line,phrases", CASES, ids=[c[0] for c in CASES])
def test_malformed(tmp_path, name, text, etype, line, phrases):
    p = write(tmp_path, text)
    assert_raises_at(p, etype, line, *phrases)
    if text.isascii():
        assert _fast_parse(text) is None       # the fast path refuses every bad file on its own


def test_not_utf8(tmp_path):
    p = write(tmp_path, small_text().encode()[:40] + b"\xff\xfe" + small_text().encode()[40:])
    assert_raises_at(p, InputFormatError, 2, "not UTF-8", "column 35")


def test_not_found_and_directory(tmp_path):
    assert_raises_at(tmp_path / "missing.txt", InputFormatError, None, "file not found")
    assert_raises_at(tmp_path, InputFormatError, None, "directory")


def test_truncation_fuzz(tmp_path):
    """Cut a valid file anywhere before its last token: always InputFormatError, never anything else."""
    text = small_text()
    last_start = text.rstrip().rfind("\n") + 1
    cuts = sorted(set(range(0, last_start, 3)) | {i for i, ch in enumerate(text[:last_start]) if ch in " \n"})
    p = tmp_path / "cut.txt"
    for cut in cuts:
        p.write_text(text[:cut])
        with pytest.raises(InputFormatError) as ei:
            read_bal(p)
        assert ei.value.path == str(p)
        assert ei.value.line is None or 1 <= ei.value.line <= text[:cut].count("\n") + 1, (cut, str(ei.value))


def test_mutation_fuzz(tmp_path):
    """Random byte edits: the reader returns a problem or raises a MixslamError, nothing else."""
    rng = np.random.default_rng(7)
    base = bytearray(small_text().encode())
    alphabet = b"0123456789 \n\t.-+eE_xnaif\x00\xff#"
    p = tmp_path / "m.txt"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        b = bytearray(base)
        for _ in range(rng.integers(1, 4)):
            k = int(rng.integers(0, len(b)))
            op = rng.integers(0, 3)
            if op == 0:
                b[k] = alphabet[rng.integers(0, len(alphabet))]
            elif op == 1:
                del b[k]
            else:
                b.insert(k, alphabet[rng.integers(0, len(alphabet))])
        p.write_bytes(bytes(b))
        try:
            read_bal(p)
            outcomes["ok"] += 1
        except MixslamError as e:
            assert "mixslam bug" not in str(e)
            outcomes["error"] += 1
        if b.isascii():   # the fast path and the line-by-line scan accept exactly the same files
            text = bytes(b).decode("ascii")
            try:
                _scan(str(p), text)
                scan_ok = True
            except InputFormatError:
                scan_ok = False
            assert scan_ok == (_fast_parse(text) is not None), text
    assert outcomes["error"] > 50 and outcomes["ok"] > 0


# ---------------------------------------------------------------------------------------------------------
# the real files (shared/data/ba; skipped when absent)
# ---------------------------------------------------------------------------------------------------------
EXPECTED = {   # SOURCES.md: cameras, points, observations
    "problem-16-22106-pre.txt": (16, 22106, 83718),
    "problem-49-7776-pre.txt": (49, 7776, 31843),
    "bal-ladybug-problem-49-7776-pre-shrink-1800.txt": (49, 1800, 10863),
    "dubrovnik-3-7-pre.txt": (3, 7, 19),
    "dubrovnik-3-7-18-pre.txt": (3, 7, 18),
    "dubrovnik-1-1-pre.txt": (1, 1, 1),
}
_DATA = find_data_dir()
_BA = (_DATA / "ba") if _DATA is not None else None
_FILES = sorted(p.name for p in _BA.iterdir() if p.suffix == ".txt") if _BA and _BA.is_dir() else []
needs_data = pytest.mark.skipif(not _FILES, reason="shared data folder not found (set MIXSLAM_DATA)")


def _need(name: str) -> Path:
    p = _BA / name
    if not p.exists():
        pytest.skip(f"{name} absent")
    return p


@pytest.mark.data
@needs_data
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_data_file_counts(name):
    p = _need(name)
    d = read_bal(p)
    assert (d.num_cameras, d.num_points, d.num_observations) == EXPECTED[name]
    assert d.source == str(p)
    assert d.fixed_cameras.tolist() == [True] + [False] * (d.num_cameras - 1)
    # the first observation and the last number, as text in the file
    text = p.read_text()
    first_obs = text.split("\n", 1)[1].split()[:4]
    assert (d.cam_idx[0], d.pt_idx[0], *d.observations[0]) == (int(first_obs[0]), int(first_obs[1]),
                                                               float(first_obs[2]), float(first_obs[3]))
    assert d.points[-1, 2] == float(text.split()[-1])


@pytest.mark.data
@needs_data
def test_data_files_agree_with_scan():
    """The line-by-line scan (the error path) accepts every real file: the two paths apply the same rules."""
    for name in ("dubrovnik-3-7-pre.txt", "bal-ladybug-problem-49-7776-pre-shrink-1800.txt"):
        p = _need(name)
        shown, text = read_text(p)
        _scan(shown, text)
        assert _fast_parse(text) is not None


@pytest.mark.data
@needs_data
def test_data_speed_16_22106():
    p = _need("problem-16-22106-pre.txt")
    t0 = time.perf_counter()
    d = read_bal(p)
    dt = time.perf_counter() - t0
    assert d.num_observations == 83718
    assert dt < 2.0, f"read_bal took {dt:.2f} s"


@pytest.mark.data
@needs_data
def test_data_subsets_consistent():
    """SOURCES.md: shrink-1800 is Ladybug-49 restricted to points 0..1799; 3-7-18 is 3-7 minus obs (0, 6)."""
    full, sub = read_bal(_need("problem-49-7776-pre.txt")), read_bal(_need(
        "bal-ladybug-problem-49-7776-pre-shrink-1800.txt"))
    np.testing.assert_array_equal(sub.cameras, full.cameras)
    np.testing.assert_array_equal(sub.points, full.points[:1800])
    keep = full.pt_idx < 1800
    np.testing.assert_array_equal(sub.observations, full.observations[keep])
    np.testing.assert_array_equal(sub.cam_idx, full.cam_idx[keep])
    a, b = read_bal(_need("dubrovnik-3-7-pre.txt")), read_bal(_need("dubrovnik-3-7-18-pre.txt"))
    drop = (a.cam_idx == 0) & (a.pt_idx == 6)
    assert drop.sum() == 1
    np.testing.assert_array_equal(b.observations, a.observations[~drop])
    np.testing.assert_array_equal(b.cameras, a.cameras)


@pytest.mark.data
@needs_data
def test_data_round_trip(tmp_path):
    d = read_bal(_need("bal-ladybug-problem-49-7776-pre-shrink-1800.txt"))
    write_bal(tmp_path / "out.txt", d)
    e = read_bal(tmp_path / "out.txt")
    for attr in ("cameras", "points", "observations", "cam_idx", "pt_idx"):
        assert getattr(d, attr).tobytes() == getattr(e, attr).tobytes(), attr
