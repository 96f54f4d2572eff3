"""Tests of mixslam.sim.corrupt: false loop closures appended to a pose graph (Vertigo's modes)."""
from __future__ import annotations

import numpy as np
import pytest

from mixslam.errors import ConfigError
from mixslam.io import read_pose_graph, write_g2o
from mixslam.lie import so2
from mixslam.sim.corrupt import (
    LOCAL_MAX_GAP,
    MODES,
    corrupt_pose_graph,
    loop_closure_mask,
    num_outliers,
    parse_outliers,
    sidecar_path,
)
from mixslam.sim.pose_graph import simulate_pose_graph

EDGE_FIELDS = ("edge_i", "edge_j", "meas_rotations", "meas_translations", "information")


@pytest.fixture(scope="module")
def graphs():
    """Small simulated graphs: 2D Manhattan walk, 3D lattice walk, 3D sphere."""
    return {
        "manhattan": simulate_pose_graph("manhattan", 150, seed=1).graph,
        "grid3d": simulate_pose_graph("grid3d", 150, seed=2).graph,
        "sphere": simulate_pose_graph("sphere", 100, seed=3).graph,
    }


def _odometry_only(n: int = 40):
    return simulate_pose_graph("manhattan", n, seed=0, loop_closure_prob=0.0).graph


@pytest.mark.parametrize("kind", ["manhattan", "grid3d", "sphere"])
@pytest.mark.parametrize("mode", MODES)
def test_count_adds_exactly_that_many_after_the_unchanged_edges(graphs, kind, mode):
    graph = graphs[kind]
    before = graph.copy()
    m = graph.num_edges
    out, added = corrupt_pose_graph(graph, 23, mode=mode, group_size=5, seed=4)
    assert out.num_edges == m + 23
    np.testing.assert_array_equal(added, np.arange(m, m + 23))
    assert added.dtype == np.int64
    for name in EDGE_FIELDS:  # every original edge, bit for bit and in order
        np.testing.assert_array_equal(getattr(out, name)[:m], getattr(graph, name))
        np.testing.assert_array_equal(getattr(graph, name), getattr(before, name))  # the input is untouched
    np.testing.assert_array_equal(out.translations, graph.translations)
    np.testing.assert_array_equal(out.fixed, graph.fixed)
    # the added edges are loop closures between distinct poses at least 2 apart, inside the graph
    i, j = out.edge_i[added], out.edge_j[added]
    assert loop_closure_mask(out)[added].all()
    assert (np.abs(i - j) >= 2).all() and i.min() >= 0 and j.min() >= 0
    assert max(i.max(), j.max()) < graph.num_poses
    # proper rotations, translations inside the trajectory's extent box
    R = out.meas_rotations[added]
    d = graph.dim
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(d), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    half = np.maximum(np.ptp(graph.translations, axis=0), 1.0) / 2
    assert (np.abs(out.meas_translations[added]) <= half).all()
    out.validate()  # finite, positive-definite information, anchored


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5, 0.9])
def test_fraction_is_the_share_of_the_outputs_loop_closures(graphs, fraction):
    graph = graphs["manhattan"]
    L = int(loop_closure_mask(graph).sum())
    assert L > 20
    expected = round(fraction * L / (1 - fraction))
    for mode in MODES:
        out, added = corrupt_pose_graph(graph, fraction, mode=mode, seed=0)
        assert added.size == expected and out.num_edges == graph.num_edges + expected
        loops_out = int(loop_closure_mask(out).sum())
        assert loops_out == L + expected
        assert abs(added.size / loops_out - fraction) <= 0.5 / loops_out + 1e-12


def test_num_outliers_rounds_and_counts():
    assert num_outliers(0.2, 40) == 10
    assert num_outliers(0.2, 10) == round(0.2 * 10 / 0.8)  # 2.5: Python's round (half to even)
    assert num_outliers(0.01, 10) == 0  # rounds to nothing
    assert num_outliers(7, 0) == 7 and num_outliers(np.int64(3), 5) == 3
    assert num_outliers(np.float64(0.5), 4) == 4


def test_a_fraction_that_rounds_to_zero_adds_nothing(graphs):
    graph = graphs["sphere"]
    out, added = corrupt_pose_graph(graph, 1e-6, seed=0)
    assert added.size == 0 and out.num_edges == graph.num_edges


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_bytes_other_seed_differs(graphs, tmp_path, mode):
    graph = graphs["grid3d"]
    files = []
    for k, seed in enumerate((7, 7, 8)):
        out, _ = corrupt_pose_graph(graph, 0.3, mode=mode, group_size=4, seed=seed)
        path = tmp_path / f"{k}.g2o"
        write_g2o(out, path)
        files.append(path.read_bytes())
    assert files[0] == files[1]
    assert files[0] != files[2]


def test_group_mode_runs_share_one_transform(graphs):
    graph = graphs["manhattan"]
    m = graph.num_edges
    out, added = corrupt_pose_graph(graph, 23, mode="group", group_size=5, seed=11)
    sizes = [5, 5, 5, 5, 3]  # the last group is shorter
    start = m
    firsts = []
    for size in sizes:
        k = np.arange(start, start + size)
        np.testing.assert_array_equal(np.diff(out.edge_i[k]), 1)  # i..i+K-1
        np.testing.assert_array_equal(np.diff(out.edge_j[k]), 1)  # j..j+K-1
        assert abs(int(out.edge_i[start]) - int(out.edge_j[start])) >= 2
        for name in ("meas_rotations", "meas_translations"):
            values = getattr(out, name)[k]
            assert (values == values[0]).all(), name
        firsts.append(out.meas_translations[start])
        start += size
    assert start == m + added.size
    assert len({tuple(t) for t in firsts}) == len(sizes)  # one transform per group, a new one for each


def test_random_mode_gives_each_outlier_its_own_transform(graphs):
    out, added = corrupt_pose_graph(graphs["manhattan"], 30, mode="random", seed=2)
    assert len({tuple(t) for t in out.meas_translations[added]}) == 30


def test_local_mode_stays_in_the_neighbourhood_random_does_not(graphs):
    graph = graphs["manhattan"]
    out, added = corrupt_pose_graph(graph, 400, mode="local", seed=5)
    gap = np.abs(out.edge_i[added] - out.edge_j[added])
    assert gap.min() >= 2 and gap.max() <= LOCAL_MAX_GAP
    assert gap.max() == LOCAL_MAX_GAP and gap.min() == 2  # the whole window is used
    assert (out.edge_i[added] > out.edge_j[added]).any() and (out.edge_i[added] < out.edge_j[added]).any()
    out, added = corrupt_pose_graph(graph, 400, mode="random", seed=5)
    assert np.abs(out.edge_i[added] - out.edge_j[added]).max() > 3 * LOCAL_MAX_GAP


def test_local_mode_on_a_tiny_graph():
    graph = simulate_pose_graph("manhattan", 3, seed=0, loop_closure_prob=0.0).graph
    out, added = corrupt_pose_graph(graph, 10, mode="local", seed=0)
    pairs = set(zip(out.edge_i[added].tolist(), out.edge_j[added].tolist()))
    assert pairs <= {(0, 2), (2, 0)}


def test_rotations_are_spread_over_the_whole_circle(graphs):
    out, added = corrupt_pose_graph(graphs["manhattan"], 2000, seed=0)
    theta = so2.log(out.meas_rotations[added])
    assert theta.min() < -3.0 and theta.max() > 3.0
    assert abs(np.mean(np.cos(theta))) < 0.1  # uniform: E[cos] = 0


def test_information_copied_from_the_loop_closures():
    graph = simulate_pose_graph("manhattan", 120, seed=6).graph
    loops = np.flatnonzero(loop_closure_mask(graph))
    scale = np.arange(1, loops.size + 1, dtype=float)[::-1]  # every loop closure its own weight
    graph.information[loops] *= scale[:, None, None]
    graph.information[~loop_closure_mask(graph)] *= 1000.0  # odometry much heavier
    out, added = corrupt_pose_graph(graph, 10, seed=0)
    trace = np.trace(graph.information[loops], axis1=1, axis2=2)
    median = loops[np.argsort(trace, kind="stable")[(loops.size - 1) // 2]]
    for k in added:
        np.testing.assert_array_equal(out.information[k], graph.information[median])
    assert any(np.array_equal(out.information[added[0]], graph.information[k]) for k in loops)


def test_information_from_the_odometry_without_loop_closures():
    graph = _odometry_only(30)
    graph.information *= np.arange(1, 30, dtype=float)[:, None, None]
    out, added = corrupt_pose_graph(graph, 5, mode="group", group_size=2, seed=0)
    assert added.size == 5
    np.testing.assert_array_equal(out.information[added], np.broadcast_to(graph.information[14], (5, 3, 3)))


def test_written_file_reads_back(graphs, tmp_path):
    graph = graphs["sphere"]
    out, added = corrupt_pose_graph(graph, 0.25, mode="group", group_size=3, seed=1)
    write_g2o(out, tmp_path / "bad.g2o")
    back = read_pose_graph(tmp_path / "bad.g2o")
    assert back.num_edges == out.num_edges and back.num_poses == graph.num_poses
    np.testing.assert_array_equal(back.edge_i, out.edge_i)
    np.testing.assert_array_equal(back.edge_j, out.edge_j)
    np.testing.assert_allclose(back.meas_translations, out.meas_translations, atol=1e-12)
    np.testing.assert_allclose(back.meas_rotations, out.meas_rotations, atol=1e-12)
    np.testing.assert_allclose(back.information, out.information, rtol=1e-15)


def test_sidecar_path():
    assert str(sidecar_path("a/bad.g2o")) == "a/bad.outliers.json"
    assert str(sidecar_path("out")) == "out.outliers.json"
    with pytest.raises(ConfigError, match="names no file"):
        sidecar_path("a/..")


@pytest.mark.parametrize(
    "text,value",
    [("0.2", 0.2), ("7", 7), ("1e-1", 0.1), ("1e3", 1000), (" 12 ", 12), (".5", 0.5), ("0.999", 0.999)],
)
def test_parse_outliers(text, value):
    parsed = parse_outliers(text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text", ["0", "1.0", "2.5", "-3", "-0.2", "abc", "nan", "inf", "", "0.0", "1.5e1"])
def test_parse_outliers_refuses(text):
    with pytest.raises(ConfigError, match=r"--outliers must be a fraction in \(0, 1\).* or a count"):
        parse_outliers(text)


def test_fraction_without_loop_closures_is_refused_count_is_not():
    graph = _odometry_only()
    with pytest.raises(ConfigError, match="has no loop closures.*give a count") as exc:
        corrupt_pose_graph(graph, 0.2)
    assert isinstance(exc.value, ValueError)
    out, added = corrupt_pose_graph(graph, 4)
    assert added.size == 4


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"outliers": 0}, "outliers must be a fraction in (0, 1)"),
        ({"outliers": -2}, "outliers must be a fraction"),
        ({"outliers": 1.0}, "got 1.0; give counts as integers"),
        ({"outliers": 1.5}, "got 1.5"),
        ({"outliers": 0.0}, "got 0.0"),
        ({"outliers": float("nan")}, "got nan"),
        ({"outliers": True}, "got True"),
        ({"outliers": "0.2"}, "got '0.2'"),
        ({"outliers": 5, "mode": "grouped"}, "mode must be one of random, local, group, got 'grouped'"),
        ({"outliers": 5, "group_size": 0}, "group_size must be an integer >= 1, got 0"),
        ({"outliers": 5, "group_size": 2.0}, "group_size must be an integer >= 1, got 2.0"),
        ({"outliers": 5, "seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_bad_values_raise_value_errors(graphs, kwargs, message):
    with pytest.raises(ConfigError) as exc:
        corrupt_pose_graph(graphs["manhattan"], **kwargs)
    assert isinstance(exc.value, ValueError)
    assert message in str(exc.value) and str(exc.value).startswith("corrupt_pose_graph: ")


def test_graphs_too_small_are_refused():
    two = simulate_pose_graph("manhattan", 2, seed=0).graph
    with pytest.raises(ConfigError, match="needs at least 3 poses"):
        corrupt_pose_graph(two, 1)
    eight = _odometry_only(8)
    with pytest.raises(ConfigError, match="group_size=7 needs at least 9 poses.*has 8"):
        corrupt_pose_graph(eight, 20, mode="group", group_size=7)
    out, added = corrupt_pose_graph(eight, 20, mode="group", group_size=6, seed=0)  # 6 <= 8 - 2
    assert added.size == 20
    out, added = corrupt_pose_graph(eight, 3, mode="group", group_size=10, seed=0)  # one group of 3
    assert added.size == 3
