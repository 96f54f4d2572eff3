"""Tests of mixslam.io.g2o (g2o / TORO reader and g2o writer) and mixslam.init.spanning_tree."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixslam.data import data_dir as find_data_dir
from mixslam.errors import GaugeError, InformationMatrixError, InputFormatError, MixslamError
from mixslam.init.spanning_tree import spanning_tree_guess
from mixslam.io import read_pose_graph, write_g2o
from mixslam.lie import se2, se3, so2, so3
from mixslam.problem.pose_graph import PoseGraph

# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
I2 = "1 0 0 1 0 1"                      # EDGE_SE2 identity information (upper triangle)
I3 = " ".join("1" if r == c else "0" for r in range(6) for c in range(r, 6))  # 21 entries
E2 = f"0 0 0 {I2}"                       # zero measurement + information
E3 = f"0 0 0 0 0 0 1 {I3}"


def write(tmp_path: Path, text: str | bytes, name: str = "g.g2o") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def random_graph(dim: int, n: int = 7, seed: int = 0, ids=None) -> PoseGraph:
    """A random, connected graph: an odometry chain plus a few loop closures, random SPD information."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n) * 3 + 5 if ids is None else np.asarray(ids)
    if dim == 2:
        R = so2.exp(rng.uniform(-np.pi, np.pi, n))
        ZR = so2.exp(rng.uniform(-np.pi, np.pi, n + 2))
    else:
        R = so3.exp(rng.normal(size=(n, 3)))
        ZR = so3.exp(rng.normal(size=(n + 2, 3)))
    t = rng.normal(size=(n, dim)) * 10
    ei = np.r_[np.arange(n - 1), [0, 2, n - 1]]
    ej = np.r_[np.arange(1, n), [n - 1, n - 2, 1]]
    m = ei.size
    k = 3 if dim == 2 else 6
    B = rng.normal(size=(m, k, k))
    info = B @ np.swapaxes(B, 1, 2) + k * np.eye(k)
    info = 0.5 * (info + np.swapaxes(info, 1, 2))
    fixed = np.zeros(n, dtype=bool)
    fixed[[0, 3]] = True
    return PoseGraph(dim=dim, ids=ids.astype(np.int64), rotations=R, translations=t, edge_i=ei, edge_j=ej,
                     meas_rotations=ZR[:m], meas_translations=rng.normal(size=(m, dim)), information=info,
                     fixed=fixed)


def euler_from_matrix(R):
    """Inverse of so3.from_euler: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    pitch = -np.arcsin(np.clip(R[..., 2, 0], -1, 1))
    roll = np.arctan2(R[..., 2, 1], R[..., 2, 2])
    yaw = np.arctan2(R[..., 1, 0], R[..., 0, 0])
    return roll, pitch, yaw


def assert_raises_at(path, exc_type, line, *phrases, **kw):
    with pytest.raises(exc_type) as ei:
        read_pose_graph(path, **kw)
    e = ei.value
    if exc_type is InputFormatError:
        assert e.line == line, str(e)
        assert e.path == str(path)
    else:
        if line is not None:
            assert f"line {line}" in str(e), str(e)
    for ph in phrases:
        assert ph in str(e), f"{ph!r} not in {str(e)!r}"
    return e


# ---------------------------------------------------------------------------------------------------------
# malformed input: type, line and a key phrase of the reason
# ---------------------------------------------------------------------------------------------------------
V2 = "VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\n"
CASES = [
    # (name, text, error type, line, phrases)
    ("field count", "VERTEX_SE2 0 0 0\n", InputFormatError, 1, ["needs 4 fields", "got 3"]),
    ("field count edge", V2 + "EDGE_SE2 0 1 1 0 0 1 0 0 1 0\n", InputFormatError, 3, ["needs 11 fields", "got 10"]),
    ("field count 3d", "EDGE_SE3:QUAT 0 1 " + E3 + " 7\n", InputFormatError, 1, ["needs 30 fields", "got 31"]),
    ("not a number", "VERTEX_SE2 0 0 abc 0\n" + "EDGE_SE2 0 0 " + E2, InputFormatError, 1,
     ["y = 'abc'", "not a number"]),
    ("not a number edge", V2 + "EDGE_SE2 0 1 1 0 0 1 0 0 x1 0 1\n", InputFormatError, 3,
     ["I22 = 'x1'", "not a number"]),
    ("float id", "VERTEX_SE2 1.5 0 0 0\n", InputFormatError, 1, ["id = '1.5'", "non-negative integer"]),
    ("negative id", V2 + "EDGE_SE2 -1 1 " + E2 + "\n", InputFormatError, 3, ["i = -1", "non-negative integer"]),
    ("huge id", "EDGE_SE2 0 99999999999999999999999 " + E2 + "\n", InputFormatError, 1, ["out of range"]),
    ("nan pose", V2 + "VERTEX_SE2 2 nan 0 0\n", InputFormatError, 3, ["x = nan", "finite"]),
    ("inf meas", V2 + "EDGE_SE2 0 1 1 inf 0 " + I2 + "\n", InputFormatError, 3, ["dy = inf", "finite"]),
    ("overflow meas", V2 + "EDGE_SE2 0 1 1e999 0 0 " + I2 + "\n", InputFormatError, 3, ["dx = inf", "finite"]),
    ("duplicate vertex", V2 + "VERTEX_SE2 7 0 0 0\nVERTEX_SE2 1 5 5 5\n", InputFormatError, 4,
     ["duplicate vertex id 1", "line 2"]),
    ("missing vertex", V2 + "EDGE_SE2 0 1 " + E2 + "\nEDGE_SE2 1 9 " + E2 + "\n", InputFormatError, 4,
     ["edge 1->9", "vertex 9", "no vertex line"]),
    ("self loop", V2 + "EDGE_SE2 1 1 " + E2 + "\n", InputFormatError, 3, ["self-loop", "1->1"]),
    ("mixed dims", V2 + "VERTEX_SE3:QUAT 2 0 0 0 0 0 0 1\n", InputFormatError, 3,
     ["3D tag VERTEX_SE3:QUAT in a 2D file", "line 1"]),
    ("mixed dims toro", "EDGE3 0 1 0 0 0 0 0 0 " + I3 + "\nEDGE2 1 2 " + E2 + "\n", InputFormatError, 2,
     ["2D tag EDGE2", "3D file"]),
    ("fix unknown", V2 + "EDGE_SE2 0 1 " + E2 + "\nFIX 4\n", InputFormatError, 4, ["FIX names vertex 4"]),
    ("fix unknown no vertices", "EDGE_SE2 0 1 " + E2 + "\nFIX 4\n", InputFormatError, 2, ["FIX names vertex 4"]),
    ("fix empty", V2 + "FIX\n", InputFormatError, 3, ["FIX needs at least one vertex id"]),
    ("fix not int", V2 + "EDGE_SE2 0 1 " + E2 + "\nFIX 0 a\n", InputFormatError, 4, ["'a'", "non-negative integer"]),
    ("empty", "", InputFormatError, None, ["empty"]),
    ("blank and comments", "\n  \n# comment\n#VERTEX_SE2 0 0 0 0\n", InputFormatError, None, ["empty"]),
    ("vertices only", V2, InputFormatError, None, ["no edges", "2 vertex line"]),
    ("unknown only", "EQUIV 1 2\nFOO\n", InputFormatError, None, ["no edges", "EQUIV"]),
    ("zero quaternion", "VERTEX_SE3:QUAT 0 0 0 0 0 0 0 0\n", InputFormatError, 1, ["quaternion", "norm 0.0"]),
    ("tiny quaternion edge", "EDGE_SE3:QUAT 0 1 0 0 0 1e-9 0 0 1e-9 " + I3 + "\n", InputFormatError, 1,
     ["quaternion", "norm"]),
    ("huge quaternion", "VERTEX_SE3:QUAT 0 0 0 0 1e300 1e300 0 0\n", InputFormatError, 1,
     ["vertex 0: qx = 1e+300", "square overflows"]),
    ("nan info", V2 + "EDGE_SE2 0 1 1 0 0 1 0 0 nan 0 1\n", InformationMatrixError, 3, ["edge 0->1", "NaN/inf"]),
    ("indefinite info", V2 + "EDGE_SE2 0 1 " + E2 + "\nEDGE_SE2 1 0 1 0 0 1 5 0 1 0 1\n",
     InformationMatrixError, 4, ["not positive definite", "edge 1->0"]),
    ("zero info", V2 + "EDGE_SE2 0 1 1 0 0 0 0 0 0 0 0\n", InformationMatrixError, 3, ["not positive definite"]),
    ("earliest line wins", "EDGE_SE2 0 1 zz 0 0 " + I2 + "\nVERTEX_SE2 0 nan 0 0\nVERTEX_SE2 1 0 0 0\n",
     InputFormatError, 1, ["dx = 'zz'"]),
    ("toro indefinite", "VERTEX2 0 0 0 0\nVERTEX2 1 0 0 0\nEDGE2 0 1 1 0 0 1 0 1 -1 0 0\n",
     InformationMatrixError, 3, ["not positive definite"]),
]


@pytest.mark.parametrize("name,text,etype,line,phrases", CASES, ids=[c[0] for c in CASES])
def test_malformed(tmp_path, name, text, etype, line, phrases):
    p = write(tmp_path, text)
    assert_raises_at(p, etype, line, *phrases)


def test_not_found(tmp_path):
    p = tmp_path / "missing.g2o"
    assert_raises_at(p, InputFormatError, None, "file not found")


def test_directory(tmp_path):
    assert_raises_at(tmp_path, InputFormatError, None, "directory")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_not_readable(tmp_path):
    p = write(tmp_path, V2 + "EDGE_SE2 0 1 " + E2 + "\n")
    p.chmod(0)
    try:
        assert_raises_at(p, InputFormatError, None, "not readable")
    finally:
        p.chmod(0o644)


def test_not_utf8(tmp_path):
    p = write(tmp_path, (V2 + "EDGE_SE2 0 1 \xff 0 0 " + I2 + "\n").encode("latin-1"))
    assert_raises_at(p, InputFormatError, 3, "not UTF-8", "0xff", "column 14")


def test_not_a_path():
    with pytest.raises(InputFormatError, match="not a file path"):
        read_pose_graph(3.5)


def test_disconnected_gauge(tmp_path):
    text = "VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 0 0 0\nVERTEX_SE2 2 0 0 0\nVERTEX_SE2 3 0 0 0\n" \
           "EDGE_SE2 0 1 " + E2 + "\nEDGE_SE2 2 3 " + E2 + "\n"
    p = write(tmp_path, text)
    with pytest.raises(GaugeError) as ei:
        read_pose_graph(p)
    assert ei.value.unconstrained == [2, 3]
    assert "2, 3" in str(ei.value)
    g = read_pose_graph(p, validate=False)          # the check is skipped ...
    assert g.num_poses == 4
    g = read_pose_graph(p, fixed=[0, 2])            # ... or the gauge fixed
    assert g.fixed.tolist() == [True, False, True, False]


def test_fixed_argument_errors(tmp_path):
    p = write(tmp_path, V2 + "EDGE_SE2 0 1 " + E2 + "\n")
    with pytest.raises(InputFormatError, match="vertex id 5 is not in the file"):
        read_pose_graph(p, fixed=[5])
    with pytest.raises(InputFormatError, match="integer vertex ids"):
        read_pose_graph(p, fixed=["a"])
    with pytest.raises(GaugeError, match="no pose is fixed"):
        read_pose_graph(p, fixed=[])
    with pytest.raises(MixslamError, match="not a repair method"):
        read_pose_graph(p, repair="magic")


# ---------------------------------------------------------------------------------------------------------
# well-formed input
# ---------------------------------------------------------------------------------------------------------
def test_basic_2d_sorted_ids_and_lines(tmp_path):
    text = ("# a comment\n\nVERTEX_SE2 10 1 2 0.5\r\nVERTEX_SE2 3 0 0 0\r\n"
            "EDGE_SE2 10 3 1 2 0.25 1 0.1 0.2 2 0.3 3\n   \nEDGE_SE2 3 10 0 0 0 1 0 0 1 0 1\n")
    g = read_pose_graph(write(tmp_path, "\ufeff" + text))
    assert g.dim == 2 and g.ids.tolist() == [3, 10]
    assert g.has_initial_guess
    np.testing.assert_allclose(g.translations, [[0, 0], [1, 2]])
    np.testing.assert_allclose(so2.log(g.rotations), [0, 0.5])
    assert g.edge_i.tolist() == [1, 0] and g.edge_j.tolist() == [0, 1]
    assert g.edge_lines.tolist() == [5, 7]
    np.testing.assert_array_equal(g.information[0], [[1, 0.1, 0.2], [0.1, 2, 0.3], [0.2, 0.3, 3]])
    np.testing.assert_allclose(g.meas_translations[0], [1, 2])
    np.testing.assert_allclose(so2.log(g.meas_rotations[0]), 0.25)
    assert g.fixed.tolist() == [True, False]      # lowest id by default
    assert g.warnings == {}
    assert g.source == str(tmp_path / "g.g2o")


def test_fix_lines_and_override(tmp_path):
    text = "VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nVERTEX_SE2 2 2 0 0\n" \
           "EDGE_SE2 0 1 " + E2 + "\nEDGE_SE2 1 2 " + E2 + "\nFIX 1\nFIX 2\n"
    p = write(tmp_path, text)
    assert read_pose_graph(p).fixed.tolist() == [False, True, True]
    assert read_pose_graph(p, fixed=[0]).fixed.tolist() == [True, False, False]
    assert read_pose_graph(p, fixed=np.array([2])).fixed.tolist() == [False, False, True]


def test_quaternion_normalized_and_counted(tmp_path):
    text = "VERTEX_SE3:QUAT 0 0 0 0 0 0 0 2\nVERTEX_SE3:QUAT 1 1 2 3 0 0 1 1\n" \
           "EDGE_SE3:QUAT 0 1 1 2 3 0 0 0.7071067811865476 0.7071067811865476 " + I3 + "\n"
    g = read_pose_graph(write(tmp_path, text))
    np.testing.assert_allclose(g.rotations[0], np.eye(3), atol=1e-15)
    np.testing.assert_allclose(g.rotations[1], so3.exp(np.array([0, 0, np.pi / 2])), atol=1e-15)
    assert g.warnings["nonunit_quaternions"] == 2   # the vertices (norm 2 and sqrt 2), not the edge


def test_unknown_tags_counted_and_logged(tmp_path, caplog):
    text = V2 + "EQUIV 0 1\nEDGE_SE2 0 1 " + E2 + "\nEQUIV 1 0\nVERTEX_XY 7 1 2\n# c\n"
    with caplog.at_level(logging.WARNING, logger="mixslam.io"):
        g = read_pose_graph(write(tmp_path, text))
    assert g.warnings["unknown_tags"] == {"EQUIV": 2, "VERTEX_XY": 1}
    recs = [r for r in caplog.records if r.name == "mixslam.io"]
    assert len(recs) == 1 and "EQUIV x2" in recs[0].getMessage() and "3 line(s)" in recs[0].getMessage()
    assert g.num_poses == 2 and g.num_edges == 1


def test_toro_2d_information_order(tmp_path):
    # EDGE2 i j dx dy dth I_xx I_xy I_yy I_tt I_xt I_yt
    text = "VERTEX2 0 0 0 0\nVERTEX2 1 1 0 0.1\nEDGE2 0 1 1 0 0.1 10 1 20 30 2 3\n"
    g = read_pose_graph(write(tmp_path, text, "g.graph"))
    np.testing.assert_array_equal(g.information[0], [[10, 1, 2], [1, 20, 3], [2, 3, 30]])
    # same matrix from the g2o tag (order x, y, theta)
    text2 = "VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0.1\nEDGE_SE2 0 1 1 0 0.1 10 1 2 20 3 30\n"
    g2 = read_pose_graph(write(tmp_path, text2))
    np.testing.assert_array_equal(g.information, g2.information)
    np.testing.assert_array_equal(g.rotations, g2.rotations)


def test_toro_3d_euler_and_information_scaling(tmp_path):
    rng = np.random.default_rng(3)
    A = rng.normal(size=(6, 6))
    Om = A @ A.T + 6 * np.eye(6)
    Om = 0.5 * (Om + Om.T)
    iu = np.triu_indices(6)
    rpy = [0.1, -0.2, 0.3]
    text = (f"VERTEX3 0 0 0 0 0 0 0\nVERTEX3 1 1 2 3 {rpy[0]} {rpy[1]} {rpy[2]}\n"
            f"EDGE3 0 1 1 2 3 {rpy[0]} {rpy[1]} {rpy[2]} " + " ".join(repr(float(v)) for v in Om[iu]) + "\n")
    g = read_pose_graph(write(tmp_path, text, "g.graph"))
    R = so3.from_euler(*rpy)
    np.testing.assert_allclose(g.rotations[1], R, atol=1e-15)
    np.testing.assert_allclose(g.meas_rotations[0], R, atol=1e-15)
    np.testing.assert_allclose(g.translations[1], [1, 2, 3])
    S = np.diag([1.0, 1, 1, 2, 2, 2])
    np.testing.assert_allclose(g.information[0], S @ Om @ S, rtol=1e-14)
    np.testing.assert_allclose(g.information[0][3:, 3:], 4 * Om[3:, 3:], rtol=1e-14)
    np.testing.assert_allclose(g.information[0][:3, 3:], 2 * Om[:3, 3:], rtol=1e-14)
    np.testing.assert_allclose(g.information[0][:3, :3], Om[:3, :3], rtol=1e-14)


def test_euler_convention_is_rz_ry_rx():
    r, p, y = 0.3, -0.4, 1.1
    Rx = so3.exp(np.array([r, 0, 0]))
    Ry = so3.exp(np.array([0, p, 0]))
    Rz = so3.exp(np.array([0, 0, y]))
    np.testing.assert_allclose(so3.from_euler(r, p, y), Rz @ Ry @ Rx, atol=1e-15)
    np.testing.assert_allclose(euler_from_matrix(so3.from_euler(r, p, y)), (r, p, y), atol=1e-14)


@pytest.mark.parametrize("repair", ["nearest", "isotropic"])
def test_repair(tmp_path, repair):
    text = V2 + "EDGE_SE2 0 1 " + E2 + "\nEDGE_SE2 1 0 1 0 0 1 5 0 1 0 1\n"
    p = write(tmp_path, text)
    g = read_pose_graph(p, repair=repair)
    assert g.warnings["repaired_information"] == (1 if repair == "nearest" else 1)
    assert np.linalg.eigvalsh(g.information).min() > 0
    np.testing.assert_array_equal(g.information[0], np.eye(3))  # the good one untouched
    # NaN information is not repaired: it is an error either way
    p2 = write(tmp_path, V2 + "EDGE_SE2 0 1 1 0 0 1 0 0 inf 0 1\n", "nan.g2o")
    assert_raises_at(p2, InformationMatrixError, 3, "NaN/inf", repair=repair)


# ---------------------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [2, 3])
def test_round_trip(tmp_path, dim):
    g = random_graph(dim, n=9, seed=dim)
    p = tmp_path / "rt.g2o"
    write_g2o(g, p)
    h = read_pose_graph(p)
    np.testing.assert_array_equal(h.ids, g.ids)
    np.testing.assert_array_equal(h.edge_i, g.edge_i)
    np.testing.assert_array_equal(h.edge_j, g.edge_j)
    np.testing.assert_array_equal(h.fixed, g.fixed)
    np.testing.assert_array_equal(h.information, g.information)
    np.testing.assert_allclose(h.rotations, g.rotations, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h.translations, g.translations, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h.meas_rotations, g.meas_rotations, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(h.meas_translations, g.meas_translations)
    assert h.has_initial_guess and h.dim == dim
    # a second round trip is (nearly) a fixed point
    write_g2o(h, tmp_path / "rt2.g2o")
    k = read_pose_graph(tmp_path / "rt2.g2o")
    np.testing.assert_allclose(k.rotations, h.rotations, rtol=0, atol=1e-15)
    if dim == 3:
        qw = [float(l.split()[8]) for l in p.read_text().splitlines() if l.startswith("VERTEX")]
        assert min(qw) >= 0


def test_write_pose_override_and_errors(tmp_path):
    g = random_graph(3, n=5, seed=11)
    R = so3.exp(np.random.default_rng(1).normal(size=(5, 3)))
    t = np.arange(15.0).reshape(5, 3)
    write_g2o(g, tmp_path / "o.g2o", rotations=R, translations=t)
    h = read_pose_graph(tmp_path / "o.g2o")
    np.testing.assert_allclose(h.rotations, R, atol=1e-12)
    np.testing.assert_array_equal(h.translations, t)
    np.testing.assert_allclose(g.translations, random_graph(3, n=5, seed=11).translations)  # untouched
    with pytest.raises(ValueError, match="shapes"):
        write_g2o(g, tmp_path / "x.g2o", translations=t[:3])
    bad = t.copy()
    bad[0, 0] = np.nan
    with pytest.raises(MixslamError, match="NaN"):
        write_g2o(g, tmp_path / "x.g2o", translations=bad)


# ---------------------------------------------------------------------------------------------------------
# edge-only files: spanning-tree initial guess
# ---------------------------------------------------------------------------------------------------------
def _noise_free_edges(dim, n, seed):
    rng = np.random.default_rng(seed)
    if dim == 2:
        R = so2.exp(rng.uniform(-np.pi, np.pi, n))
        between = se2.between
    else:
        R = so3.exp(rng.normal(size=(n, 3)))
        between = se3.between
    t = rng.normal(size=(n, dim)) * 5
    pairs = [(k, k + 1) for k in range(n - 1)] + [(0, n - 1), (n - 2, 1), (3, 7), (9, 2)]
    pairs = [(j, i) if s else (i, j) for (i, j), s in zip(pairs, rng.random(len(pairs)) < 0.3)]  # some reversed
    ZR, Zt = between(R[[i for i, _ in pairs]], t[[i for i, _ in pairs]], R[[j for _, j in pairs]],
                     t[[j for _, j in pairs]])
    return R, t, pairs, ZR, Zt


@pytest.mark.parametrize("fmt", ["g2o2", "g2o3", "toro2", "toro3"])
def test_edges_only_spanning_tree_reproduces_measurements(tmp_path, fmt):
    dim = 3 if fmt.endswith("3") else 2
    n = 12
    R, t, pairs, ZR, Zt = _noise_free_edges(dim, n, seed=len(fmt) + dim)
    ids = np.arange(n) * 2 + 100            # non-contiguous ids
    lines = []
    for (i, j), zr, zt in zip(pairs, ZR, Zt):
        ts = " ".join(repr(float(v)) for v in zt)
        if fmt == "g2o2":
            lines.append(f"EDGE_SE2 {ids[i]} {ids[j]} {ts} {float(so2.log(zr))!r} {I2}")
        elif fmt == "toro2":
            lines.append(f"EDGE2 {ids[i]} {ids[j]} {ts} {float(so2.log(zr))!r} 1 0 1 1 0 0")
        elif fmt == "g2o3":
            q = " ".join(repr(float(v)) for v in so3.to_quaternion(zr))
            lines.append(f"EDGE_SE3:QUAT {ids[i]} {ids[j]} {ts} {q} {I3}")
        else:
            rpy = " ".join(repr(float(v)) for v in euler_from_matrix(zr))
            lines.append(f"EDGE3 {ids[i]} {ids[j]} {ts} {rpy} {I3}")
    g = read_pose_graph(write(tmp_path, "\n".join(lines) + "\n"))
    assert not g.has_initial_guess
    assert g.ids.tolist() == ids.tolist()
    assert g.fixed.tolist() == [True] + [False] * (n - 1)
    np.testing.assert_allclose(g.rotations[0], np.eye(dim), atol=0)
    between = se2.between if dim == 2 else se3.between
    BR, Bt = between(g.rotations[g.edge_i], g.translations[g.edge_i], g.rotations[g.edge_j],
                     g.translations[g.edge_j])
    np.testing.assert_allclose(BR, g.meas_rotations, atol=1e-12)
    np.testing.assert_allclose(Bt, g.meas_translations, atol=1e-12)
    # = the true poses expressed in the root's frame
    R0, t0 = between(R[0], t[0], R, t)
    np.testing.assert_allclose(g.rotations, R0, atol=1e-12)
    np.testing.assert_allclose(g.translations, t0, atol=1e-11)


def test_spanning_tree_prefers_odometry_and_root():
    # exact odometry chain, a wildly wrong loop closure 0->4: the guess must follow the odometry
    n = 5
    ids = np.arange(n)
    ZR = so2.exp(np.array([0.1, 0.2, 0.3, 0.4, 2.0]))
    Zt = np.array([[1.0, 0], [1, 0], [1, 0], [1, 0], [50, 50]])
    ei = np.array([0, 1, 2, 3, 0])
    ej = np.array([1, 2, 3, 4, 4])
    # put the loop closure first in the file: the tree must still prefer |i-j| = 1
    order = [4, 0, 1, 2, 3]
    g = PoseGraph(dim=2, ids=ids, rotations=np.broadcast_to(np.eye(2), (n, 2, 2)).copy(),
                  translations=np.zeros((n, 2)), edge_i=ei[order], edge_j=ej[order],
                  meas_rotations=ZR[order], meas_translations=Zt[order],
                  information=np.broadcast_to(np.eye(3), (n, 3, 3)).copy(), fixed=np.eye(n, dtype=bool)[0])
    h = spanning_tree_guess(g)
    np.testing.assert_allclose(so2.log(h.rotations), np.cumsum([0, 0.1, 0.2, 0.3, 0.4]), atol=1e-14)
    assert g.rotations[4, 0, 0] == 1.0            # the input is not modified
    # rooted elsewhere, the root keeps its pose and the rest follows backwards
    g.rotations[2] = so2.exp(np.array(1.0))
    g.translations[2] = [5, 5]
    h2 = spanning_tree_guess(g, root=2)
    np.testing.assert_array_equal(h2.translations[2], [5, 5])
    BR, Bt = se2.between(h2.rotations[ei[:4]], h2.translations[ei[:4]], h2.rotations[ej[:4]],
                         h2.translations[ej[:4]])
    np.testing.assert_allclose(so2.log(BR), [0.1, 0.2, 0.3, 0.4], atol=1e-14)
    np.testing.assert_allclose(Bt, Zt[:4], atol=1e-13)
    with pytest.raises(GaugeError, match="not a vertex id"):
        spanning_tree_guess(g, root=77)


def test_spanning_tree_disconnected_components():
    g = random_graph(2, n=4, seed=5)
    g.edge_i, g.edge_j = np.array([0, 2]), np.array([1, 3])
    g.meas_rotations, g.meas_translations = g.meas_rotations[:2], g.meas_translations[:2]
    g.information = g.information[:2]
    h = spanning_tree_guess(g)
    assert h.warnings["spanning_tree_components"] == 2
    np.testing.assert_array_equal(h.translations[2], g.translations[2])   # component root keeps its pose
    assert np.isfinite(h.translations).all()


# ---------------------------------------------------------------------------------------------------------
# property test: no input bytes make the reader raise anything but MixslamError
# ---------------------------------------------------------------------------------------------------------
BASES = [
    "VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0.1\nVERTEX_SE2 2 2 0 0.2\nEDGE_SE2 0 1 1 0 0.1 1 0 0 1 0 1\n"
    "EDGE_SE2 1 2 1 0 0.1 2 0.1 0 2 0 3\nEDGE_SE2 2 0 -2 0 -0.2 1 0 0 1 0 1\nFIX 0\n",
    "# header\nVERTEX_SE3:QUAT 0 0 0 0 0 0 0 1\nVERTEX_SE3:QUAT 5 1 0 0 0 0 0.1 0.995\n"
    f"EDGE_SE3:QUAT 0 5 1 0 0 0 0 0.1 0.995 {I3}\nEDGE_SE3:QUAT 5 0 -1 0 0 0 0 -0.1 0.995 {I3}\n",
    "VERTEX2 0 0 0 0\nVERTEX2 1 1 0 0\nEDGE2 0 1 1 0 0 1 0 1 1 0 0\nEQUIV 0 1\nEDGE2 1 0 -1 0 0 1 0 1 1 0 0\n",
    f"EDGE3 0 1 1 0 0 0.1 0.2 0.3 {I3}\nEDGE3 1 2 1 0 0 0 0 0 {I3}\nEDGE3 2 0 0 1 0 0 0 0 {I3}\n",
    f"EDGE_SE2 3 4 1 0 0 {I2}\nEDGE_SE2 4 9 1 0 0 {I2}\nEDGE_SE2 9 3 1 0 0 {I2}\n",
    "VERTEX3 0 0 0 0 0 0 0\nVERTEX3 1 1 0 0 0.1 0 0\n" f"EDGE3 0 1 1 0 0 0.1 0 0 {I3}\n",
]
JUNK = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "1e999", "-1e999", "1e308", "-1e308", "0", "-1", "1.5", "9" * 25,
                     "", "#", "FIX", "EDGE_SE2", "VERTEX_SE3:QUAT", "EDGE3", "VERTEX2", "\x00", "\t", "\r",
                     "1e-320", "0x1p3", "1_0", "\u0663", "+", "."]),
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-2 ** 70, max_value=2 ** 70).map(str),
)


@st.composite
def mangled(draw):
    lines = draw(st.sampled_from(BASES)).split("\n")
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["delete", "duplicate", "truncate", "token", "swap", "insert", "tag"]))
        if not lines:
            lines = [""]
        k = draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            del lines[k]
        elif op == "duplicate":
            lines.insert(k, lines[k])
        elif op == "truncate":
            lines[k] = lines[k][:draw(st.integers(0, max(len(lines[k]), 0)))]
        elif op == "swap":
            k2 = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[k2] = lines[k2], lines[k]
        elif op == "insert":
            lines.insert(k, " ".join(draw(st.lists(JUNK, max_size=12))))
        elif op == "tag":
            toks = lines[k].split()
            lines[k] = " ".join([draw(st.sampled_from(["VERTEX_SE2", "EDGE_SE2", "EDGE_SE3:QUAT", "EDGE2",
                                                       "VERTEX3", "FIX", "EQUIV"])), *toks[1:]])
        else:
            toks = lines[k].split() or [""]
            toks[draw(st.integers(0, len(toks) - 1))] = draw(JUNK)
            lines[k] = " ".join(toks)
    data = "\n".join(lines).encode("utf-8")
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(min_size=1, max_size=6)) + data[pos:]
    return data


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=mangled(), repair=st.sampled_from([None, "nearest", "isotropic"]), validate=st.booleans())
def test_reader_never_raises_foreign_errors(fuzz_dir, data, repair, validate):
    p = fuzz_dir / "fuzz.g2o"
    p.write_bytes(data)
    try:
        g = read_pose_graph(p, repair=repair, validate=validate)
    except MixslamError as e:
        assert "please report" not in str(e), str(e)   # the reader's own safety net must not be needed
        if isinstance(e, InputFormatError):
            assert e.line is None or 1 <= e.line <= data.count(b"\n") + 1
        return
    assert isinstance(g, PoseGraph)
    assert g.num_edges >= 1 and g.num_poses >= 2
    assert np.isfinite(g.rotations).all() and np.isfinite(g.translations).all()
    assert np.isfinite(g.information).all()


# ---------------------------------------------------------------------------------------------------------
# data.py
# ---------------------------------------------------------------------------------------------------------
def test_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MIXSLAM_DATA", str(tmp_path))
    assert find_data_dir() == tmp_path.resolve()
    monkeypatch.setenv("MIXSLAM_DATA", str(tmp_path / "absent"))
    assert find_data_dir() is None


# ---------------------------------------------------------------------------------------------------------
# the real benchmark files (skipped when the shared data folder is absent)
# ---------------------------------------------------------------------------------------------------------
# file: (dim, poses, edges, odometry edges |i-j| = 1, has vertex lines); from SOURCES.md
EXPECTED = {
    "sphere2500.g2o": (3, 2500, 4949, 2499, True),
    "torus3D.g2o": (3, 5000, 9048, 4999, True),
    "parking-garage.g2o": (3, 1661, 6275, 1660, True),
    "smallGrid3D.g2o": (3, 125, 297, 124, True),
    "tinyGrid3D.g2o": (3, 9, 11, 8, True),
    "gtsam_sphere2500.txt": (3, 2500, 4949, 2499, False),
    "gtsam_sphere2500_groundtruth.txt": (3, 2500, 4949, 2499, False),
    "gtsam_pose3example-grid.g2o": (3, 27, 44, 26, True),
    "input_M3500_g2o.g2o": (2, 3500, 5453, 3499, True),
    "input_M3500b_g2o.g2o": (2, 3500, 5453, 3499, True),
    "city10000.g2o": (2, 10000, 20687, 9999, True),
    "CSAIL.g2o": (2, 1045, 1172, 1044, False),
    "CSAIL_P_toro.graph": (2, 1045, 1172, 1044, True),
    "intel.g2o": (2, 1728, 2512, 1727, True),
    "input_INTEL_g2o.g2o": (2, 1228, 1483, 1227, True),
    "MIT.g2o": (2, 808, 827, 807, True),
    "ais2klinik.g2o": (2, 15115, 16727, 15113, True),
    "gtsam_w100.graph": (2, 100, 300, 99, True),
    "kitti_00.g2o": (2, 4541, 4677, 4540, False),
}
_DATA = find_data_dir()
_PGO = (_DATA / "pgo") if _DATA is not None else None
_FILES = sorted(p.name for p in _PGO.iterdir() if p.suffix != ".md") if _PGO and _PGO.is_dir() else []
needs_data = pytest.mark.skipif(not _FILES, reason="shared data folder not found (set MIXSLAM_DATA)")


@pytest.mark.data
@needs_data
@pytest.mark.parametrize("name", [f for f in _FILES if f != "cubicle.g2o"])
def test_data_file_counts(name):
    g = read_pose_graph(_PGO / name)
    if name not in EXPECTED:      # a file added after these tests were written: it must at least read
        return
    dim, n, m, odo, has_v = EXPECTED[name]
    assert (g.dim, g.num_poses, g.num_edges, g.has_initial_guess) == (dim, n, m, has_v)
    assert int(np.count_nonzero(np.abs(g.ids[g.edge_i] - g.ids[g.edge_j]) == 1)) == odo
    assert g.ids.tolist() == list(range(n))
    assert g.fixed.tolist() == [True] + [False] * (n - 1)
    if name == "gtsam_w100.graph":
        assert g.warnings["unknown_tags"] == {"EQUIV": 40}
    else:
        assert "unknown_tags" not in g.warnings


@pytest.mark.data
@needs_data
def test_data_cubicle_indefinite():
    p = _PGO / "cubicle.g2o"
    if not p.exists():
        pytest.skip("cubicle.g2o absent")
    with pytest.raises(InformationMatrixError, match="not positive definite") as ei:
        read_pose_graph(p)
    assert "5021 of 16869" in str(ei.value) and "(line " in str(ei.value)
    g = read_pose_graph(p, repair="nearest")
    assert (g.num_poses, g.num_edges) == (5750, 16869)
    assert g.warnings["repaired_information"] == 5021


@pytest.mark.data
@needs_data
def test_data_conventions_cross_checked():
    """The same graph in two formats agrees: EDGE3 Euler angles and x4 information, TORO EDGE2 order."""
    a, b = _PGO / "gtsam_sphere2500.txt", _PGO / "sphere2500.g2o"
    if a.exists() and b.exists():
        ga, gb = read_pose_graph(a), read_pose_graph(b)
        oa, ob = np.lexsort((ga.edge_j, ga.edge_i)), np.lexsort((gb.edge_j, gb.edge_i))
        np.testing.assert_array_equal(ga.edge_i[oa], gb.edge_i[ob])
        np.testing.assert_allclose(ga.meas_rotations[oa], gb.meas_rotations[ob], atol=1e-5)
        ratio = np.diagonal(ga.information, axis1=1, axis2=2)[oa] / np.diagonal(gb.information, axis1=1, axis2=2)[ob]
        assert np.abs(ratio - 1).max() < 0.05   # rotation block x4 brings 100/100/25 to ~400/400/100
        # the spanning-tree guess is the odometry chain, which is the g2o file's initial guess
        np.testing.assert_allclose(ga.translations, gb.translations, atol=1e-3)
    c, t = _PGO / "CSAIL.g2o", _PGO / "CSAIL_P_toro.graph"
    if c.exists() and t.exists():
        gc, gt = read_pose_graph(c), read_pose_graph(t)
        np.testing.assert_array_equal(gc.information[:, 2, 2], gt.information[:, 2, 2])   # I_tt -> (2, 2)
        np.testing.assert_allclose(gc.translations, gt.translations, atol=1e-5)
        # the TORO file's translation block is the g2o one rotated by the measured angle (see SOURCES.md)
        Rz = gc.meas_rotations
        np.testing.assert_allclose(Rz @ gc.information[:, :2, :2] @ np.swapaxes(Rz, 1, 2),
                                   gt.information[:, :2, :2], rtol=1e-5, atol=1e-2)
