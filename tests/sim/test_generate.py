"""Tests of mixslam.sim.generate: seeded BA and pose-graph problems with their ground truth."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mixslam.ba import optimize_bundle
from mixslam.errors import ConfigError
from mixslam.io import read_bal, read_pose_graph, write_bal, write_g2o
from mixslam.pgo import optimize_pose_graph
from mixslam.problem.between import cost as pgo_cost
from mixslam.problem.camera import bal_project
from mixslam.sim import PGO_KINDS, BundleGenConfig, generate_bundle, generate_pose_graph, truth_path
from mixslam.sim.generate import MAX_OFF_AXIS_DEG


def _residuals(b) -> np.ndarray:
    return bal_project(b.cameras[b.cam_idx], b.points[b.pt_idx])[0] - b.observations


def _ba_cost(b) -> float:
    return 0.5 * float(np.sum(_residuals(b) ** 2))


def _chi2_band(dof: int, z: float = 5.0) -> tuple[float, float]:
    half = z * math.sqrt(2.0 * dof)
    return dof - half, dof + half


@pytest.fixture(scope="module")
def bundle():
    return generate_bundle(40, 3000, seed=3)


# -- bundle adjustment -------------------------------------------------------------------------------------
def test_bundle_sizes_views_and_order(bundle):
    initial, truth = bundle
    assert (initial.num_cameras, initial.num_points) == (40, 3000)
    assert initial.model == truth.model == "bal"
    views = np.bincount(truth.pt_idx, minlength=3000)
    assert views.min() >= 3 and views.max() <= 7
    assert abs(views.mean() - 5.0) < 0.15  # uniform in 3..7
    key = truth.cam_idx * truth.num_points + truth.pt_idx
    assert (np.diff(key) > 0).all()  # sorted by camera then point, no pair twice
    for b in (initial, truth):
        assert b.fixed_cameras is not None and b.fixed_cameras.tolist() == [True] + [False] * 39
        b.validate()
        assert not b.warnings  # no point seen by a single camera
    np.testing.assert_array_equal(initial.observations, truth.observations)
    np.testing.assert_array_equal(initial.cam_idx, truth.cam_idx)


def test_every_point_in_front_and_inside_the_image_at_the_truth(bundle):
    _, truth = bundle
    pred, depth = bal_project(truth.cameras[truth.cam_idx], truth.points[truth.pt_idx])
    assert (depth < -4.0).all()  # BAL: in front means P.z < 0; the ring leaves at least ~5 m
    assert np.abs(pred).max() <= 500.0 * math.tan(math.radians(MAX_OFF_AXIS_DEG))
    assert np.unique(truth.cam_idx).size == 40  # every camera observes something


@pytest.mark.parametrize("sigma,k1,k2", [(1.0, 0.0, 0.0), (2.5, -0.05, 0.01)])
def test_observations_reproject_with_the_pixel_noise(sigma, k1, k2):
    _, truth = generate_bundle(30, 3000, seed=5, config=BundleGenConfig(pixel_sigma=sigma, k1=k1, k2=k2))
    assert np.all(truth.cameras[:, 7] == k1) and np.all(truth.cameras[:, 8] == k2)
    ratio = np.mean(_residuals(truth) ** 2) / sigma**2  # ~30,000 squared normals / their count
    assert 0.95 < ratio < 1.05


def test_zero_noise_reprojects_exactly():
    _, truth = generate_bundle(10, 200, seed=1, config=BundleGenConfig(pixel_sigma=0.0))
    assert np.abs(_residuals(truth)).max() < 1e-9


def test_initial_guess_is_the_truth_perturbed(bundle):
    initial, truth = bundle
    np.testing.assert_array_equal(initial.cameras[0], truth.cameras[0])  # the gauge camera
    np.testing.assert_array_equal(initial.cameras[:, 6:], truth.cameras[:, 6:])  # f, k1, k2 start at the truth
    dp = initial.points - truth.points
    assert 0.04 < dp.std() < 0.06  # point_noise 0.05 per axis
    assert np.abs(initial.cameras[1:, :6] - truth.cameras[1:, :6]).min(axis=0).max() > 0
    assert _ba_cost(initial) > 10 * _ba_cost(truth)
    exact = generate_bundle(
        40, 3000, seed=3, config=BundleGenConfig(rotation_noise=0, translation_noise=0, point_noise=0)
    )
    np.testing.assert_allclose(exact.initial.cameras, truth.cameras, atol=1e-12)
    np.testing.assert_array_equal(exact.initial.points, truth.points)


def test_bundle_seed_reproduces_bytes_and_other_seeds_differ(tmp_path):
    files = []
    for k, seed in enumerate((7, 7, 8)):
        initial, truth = generate_bundle(12, 300, seed=seed)
        write_bal(tmp_path / f"p{k}.txt", initial)
        write_bal(tmp_path / f"t{k}.txt", truth)
        files.append(((tmp_path / f"p{k}.txt").read_bytes(), (tmp_path / f"t{k}.txt").read_bytes()))
    assert files[0] == files[1]
    assert files[0][0] != files[2][0] and files[0][1] != files[2][1]


def test_bundle_round_trip_through_the_reader(tmp_path, bundle):
    for b, name in zip(bundle, ("p.txt", "p.truth.txt")):
        write_bal(tmp_path / name, b)
        back = read_bal(tmp_path / name)
        for field in ("cameras", "points", "observations", "cam_idx", "pt_idx", "fixed_cameras"):
            np.testing.assert_array_equal(getattr(back, field), getattr(b, field))


def test_generated_bundle_solves_to_the_noise_floor():
    initial, truth = generate_bundle(20, 500, seed=11)
    result, report = optimize_bundle(initial)
    assert report.converged, report.summary()
    m = initial.num_observations
    truth_cost, final = _ba_cost(truth), _ba_cost(result)
    assert final <= truth_cost  # the truth is one feasible point; LM reaches (about) the optimum below it
    lo, hi = _chi2_band(2 * m)
    assert lo < 2 * truth_cost < hi  # sigma = 1
    # free: 9 per camera, minus camera 0's pose, 3 per point, minus BAL's free scale
    dof = 2 * m - (9 * 20 - 6 + 3 * 500 - 1)
    lo, hi = _chi2_band(dof)
    assert lo < 2 * final < hi


def test_many_cameras_use_a_window_of_the_ring():
    _, truth = generate_bundle(600, 2000, seed=2)  # 60 degrees of 600 cameras: windows of 100
    cams = truth.cam_idx
    first = np.full(2000, 10**9)
    last = np.full(2000, -1)
    np.minimum.at(first, truth.pt_idx, cams)
    np.maximum.at(last, truth.pt_idx, cams)
    span = np.where(last - first > 300, first + 600 - last, last - first)  # windows that wrap past camera 0
    assert span.max() < 100
    assert np.median(span) > 50  # spread over the window: parallax


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(min_views=1), "min_views"),
        (dict(min_views=4, max_views=3), "max_views"),
        (dict(max_views=2.5), "max_views"),
        (dict(pixel_sigma=-1.0), "pixel_sigma"),
        (dict(point_noise=float("nan")), "point_noise"),
        (dict(focal=0.0), "focal"),
        (dict(k1=0.5), "k1"),
        (dict(k2=True), "k2"),
        (dict(view_span_deg=400.0), "view_span_deg"),
    ],
)
def test_config_refuses_bad_fields(kwargs, field):
    with pytest.raises(ConfigError, match=rf"BundleGenConfig\.{field} must"):
        BundleGenConfig(**kwargs)


@pytest.mark.parametrize(
    "cameras,points,seed,match",
    [
        (1, 10, 0, "cameras must be an integer >= 2"),
        (10, 0, 0, "points must be an integer >= 1"),
        (10, 2.0, 0, "points must be an integer"),
        (10, 10, -1, "seed must be an integer >= 0"),
        (5, 10, 0, "fewer than BundleGenConfig.max_views=7"),
    ],
)
def test_generate_bundle_refuses_bad_sizes(cameras, points, seed, match):
    with pytest.raises(ConfigError, match=match):
        generate_bundle(cameras, points, seed=seed)


def test_few_cameras_with_few_views():
    initial, _ = generate_bundle(2, 50, seed=0, config=BundleGenConfig(min_views=2, max_views=2))
    assert initial.num_observations == 100


# -- pose graphs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", PGO_KINDS)
def test_pose_graph_kinds(kind):
    n = 400
    initial, truth = generate_pose_graph(kind, n, seed=4)
    assert initial.num_poses == truth.num_poses == n
    assert initial.dim == (2 if kind in ("grid2d", "city") else 3)
    assert initial.num_edges > n - 1 + n // 10  # odometry plus loop closures
    np.testing.assert_array_equal(initial.edge_i[: n - 1], np.arange(n - 1))
    for name in ("edge_i", "edge_j", "meas_rotations", "meas_translations", "information", "fixed"):
        np.testing.assert_array_equal(getattr(initial, name), getattr(truth, name))
    assert initial.fixed.tolist() == [True] + [False] * (n - 1)
    np.testing.assert_array_equal(initial.rotations[0], truth.rotations[0])
    assert np.abs(initial.translations - truth.translations).max() > 0.1  # the odometry drifts
    initial.validate()
    truth.validate()


def test_city_closes_more_loops_than_grid2d():
    grid = generate_pose_graph("grid2d", 2000, seed=1).initial
    city = generate_pose_graph("city", 2000, seed=1).initial
    np.testing.assert_array_equal(grid.translations.shape, city.translations.shape)
    assert city.num_edges > grid.num_edges


@pytest.mark.parametrize("kind", ["grid2d", "sphere"])
def test_generated_pose_graph_solves_to_the_noise_floor(kind):
    initial, truth = generate_pose_graph(kind, 500, seed=9)
    result, report = optimize_pose_graph(initial)
    assert report.converged, report.summary()
    k = 3 if initial.dim == 2 else 6
    m, n = initial.num_edges, initial.num_poses
    truth_cost, final = pgo_cost(truth), pgo_cost(result)
    assert final <= truth_cost * (1 + 1e-6)
    lo, hi = _chi2_band(k * m)
    assert lo < 2 * truth_cost < hi
    lo, hi = _chi2_band(k * (m - (n - 1)))  # pose 0 fixed
    assert lo < 2 * final < hi


def test_pose_graph_seed_reproduces_bytes_and_round_trips(tmp_path):
    texts = []
    for k, seed in enumerate((3, 3, 4)):
        initial, truth = generate_pose_graph("grid3d", 300, seed=seed)
        write_g2o(initial, tmp_path / f"g{k}.g2o")
        write_g2o(truth, tmp_path / f"g{k}.truth.g2o")
        texts.append(((tmp_path / f"g{k}.g2o").read_bytes(), (tmp_path / f"g{k}.truth.g2o").read_bytes()))
    assert texts[0] == texts[1]
    assert texts[0][0] != texts[2][0] and texts[0][1] != texts[2][1]
    back = read_pose_graph(tmp_path / "g0.truth.g2o")
    ref = generate_pose_graph("grid3d", 300, seed=3).truth
    np.testing.assert_allclose(back.translations, ref.translations, atol=1e-12)
    np.testing.assert_allclose(back.rotations, ref.rotations, atol=1e-12)
    assert back.num_edges == ref.num_edges and back.fixed.tolist() == ref.fixed.tolist()


@pytest.mark.parametrize(
    "args,match",
    [
        (("ring", 10), "kind must be one of grid2d, grid3d, sphere, city"),
        (("grid2d", 1), "poses must be an integer >= 2"),
        (("grid2d", 10.0), "poses must be an integer"),
    ],
)
def test_generate_pose_graph_refuses_bad_values(args, match):
    with pytest.raises(ConfigError, match=match):
        generate_pose_graph(*args)
    with pytest.raises(ConfigError, match="seed"):
        generate_pose_graph("grid2d", 10, seed=-2)


# -- the truth file's name ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path,expected",
    [
        ("problem.txt", "problem.truth.txt"),
        ("a/b/graph.g2o", "a/b/graph.truth.g2o"),
        ("x.y.g2o", "x.y.truth.g2o"),
        ("out", "out.truth"),
    ],
)
def test_truth_path(path, expected):
    assert truth_path(path) == Path(expected)


def test_truth_path_needs_a_file_name():
    with pytest.raises(ConfigError, match="names no file"):
        truth_path(".")
