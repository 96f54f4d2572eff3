"""Tests of mixslam.sim.bundle.simulate_window (the sliding-window visual-odometry BA simulator)."""
from __future__ import annotations

import numpy as np
import pytest

from mixslam.lie import so3
from mixslam.problem.bundle import BundleData
from mixslam.problem.camera import pinhole_project
from mixslam.sim.bundle import MAX_DEPTH, MIN_DEPTH, WindowConfig, simulate_window

ARRAYS = ("cameras", "points", "observations", "cam_idx", "pt_idx", "intrinsics", "fixed_cameras", "fixed_points")
OTHER = WindowConfig(keyframes=30, landmarks_per_frame=200, image_size=(752, 480), fx=460.0, speed=0.2,
                     pixel_noise=2.0)


@pytest.fixture(scope="module")
def default():
    return simulate_window(WindowConfig(), seed=0)


def _visible(cameras: np.ndarray, points: np.ndarray, K: np.ndarray, image_size) -> np.ndarray:
    """(nc, npts) brute force: depth in [MIN_DEPTH, MAX_DEPTH] and the projection inside the image."""
    nc, n = len(cameras), len(points)
    ci, pj = np.repeat(np.arange(nc), n), np.tile(np.arange(n), nc)
    pred, depth = pinhole_project(cameras[ci], points[pj], K)
    w, h = image_size
    ok = ((depth >= MIN_DEPTH) & (depth <= MAX_DEPTH) & (pred[:, 0] >= 0) & (pred[:, 0] < w)
          & (pred[:, 1] >= 0) & (pred[:, 1] < h))
    return ok.reshape(nc, n)


def _centres(cameras: np.ndarray) -> np.ndarray:
    R = cameras[:, :9].reshape(-1, 3, 3)
    return -np.einsum("nji,nj->ni", R, cameras[:, 9:12])


def test_deterministic_per_seed():
    cfg = WindowConfig(keyframes=20)
    a, b, c = (simulate_window(cfg, seed=s) for s in (7, 7, 8))
    for x, y in ((a, b),):
        for name in ARRAYS:
            assert np.array_equal(getattr(x.data, name), getattr(y.data, name)), name
        assert np.array_equal(x.truth_cameras, y.truth_cameras)
        assert np.array_equal(x.truth_points, y.truth_points)
        assert x.data.sigma == y.data.sigma and x.data.source == y.data.source
    assert not np.array_equal(a.truth_cameras, c.truth_cameras)
    assert a.truth_points.shape != c.truth_points.shape or not np.array_equal(a.truth_points, c.truth_points)
    assert a.data.source == "simulate_window(seed=7, keyframes=20)"


def test_shapes_and_validity(default):
    data, C, X = default
    nc, n, m = data.num_cameras, data.num_points, data.num_observations
    assert isinstance(data, BundleData) and data.model == "pinhole"
    assert nc == 50 and C.shape == (nc, 12) and data.cameras.shape == (nc, 12)
    assert X.shape == (n, 3) and data.points.shape == (n, 3)
    assert data.observations.shape == (m, 2) and data.cam_idx.shape == (m,) and data.pt_idx.shape == (m,)
    assert data.cam_idx.dtype == np.int64 and data.pt_idx.dtype == np.int64
    assert np.array_equal(data.intrinsics, [400.0, 400.0, 320.0, 240.0])
    assert data.sigma == 1.0
    assert data.source == "simulate_window(seed=0, keyframes=50)"
    assert data.validate() is data and data.warnings == []
    assert 4000 <= m <= 6000 and 50 <= n <= 1000
    # observations sorted by keyframe then point, no duplicate pairs
    key = data.cam_idx * n + data.pt_idx
    assert np.all(np.diff(key) > 0)
    for cams in (C, data.cameras):
        R = cams[:, :9].reshape(-1, 3, 3)
        assert np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max() < 1e-12
        assert np.abs(np.linalg.det(R) - 1.0).max() < 1e-12
    # the camera moves forward ~speed per keyframe, looking roughly along the motion
    c = _centres(C)
    step = np.linalg.norm(np.diff(c, axis=0), axis=1)
    assert np.all(np.abs(step - 0.1) < 0.01)
    forward = C[:, 6:9]                      # third row of R_cw: the optical axis in the world
    motion = np.diff(c, axis=0) / step[:, None]
    assert np.all(np.einsum("ni,ni->n", forward[:-1], motion) > np.cos(np.radians(10)))


@pytest.mark.parametrize("cfg", [WindowConfig(), OTHER], ids=["default", "other"])
def test_visible_landmarks_per_frame(cfg, default):
    data, C, X = default if cfg == WindowConfig() else simulate_window(cfg, seed=1)
    nc = data.num_cameras
    per_frame = np.bincount(data.cam_idx, minlength=nc)
    target = cfg.landmarks_per_frame
    assert abs(per_frame.mean() - target) <= 0.2 * target
    assert per_frame.min() >= 0.5 * target
    # the observations are exactly the visible (keyframe, landmark) pairs of the true scene
    vis = _visible(C, X, data.intrinsics, cfg.image_size)
    obs = np.zeros_like(vis)
    obs[data.cam_idx, data.pt_idx] = True
    assert np.array_equal(vis, obs)


@pytest.mark.parametrize("cfg", [WindowConfig(), OTHER], ids=["default", "other"])
def test_noise_model_at_truth(cfg, default):
    data, C, X = default if cfg == WindowConfig() else simulate_window(cfg, seed=1)
    assert data.sigma == cfg.pixel_noise
    pred, depth = pinhole_project(C[data.cam_idx], X[data.pt_idx], data.intrinsics)
    r = (pred - data.observations) / data.sigma
    rms = np.sqrt(np.mean(r * r))
    assert 0.9 <= rms <= 1.1, rms
    assert np.abs(r.mean(axis=0)).max() < 0.1
    assert np.all(depth > 0)
    assert np.all((depth >= MIN_DEPTH) & (depth <= MAX_DEPTH))


def test_gauge_and_initial_guess(default):
    data, C, X = default
    cfg = WindowConfig()
    fixed = data.fixed_cameras
    assert fixed.dtype == bool and np.array_equal(np.flatnonzero(fixed), np.arange(cfg.fixed_frames))
    assert np.array_equal(data.cameras[fixed], C[fixed])
    assert not data.fixed_points.any()
    free = ~fixed
    trans_std, rot_std = cfg.pose_noise
    R_true = C[free, :9].reshape(-1, 3, 3)
    R_guess = data.cameras[free, :9].reshape(-1, 3, 3)
    w = so3.log(np.swapaxes(R_true, 1, 2) @ R_guess)
    assert 0.75 * rot_std <= np.sqrt(np.mean(w * w)) <= 1.25 * rot_std
    dc = _centres(data.cameras[free]) - _centres(C[free])
    assert 0.75 * trans_std <= np.sqrt(np.mean(dc * dc)) <= 1.25 * trans_std
    dx = data.points - X
    assert 0.85 * cfg.point_noise <= np.sqrt(np.mean(dx * dx)) <= 1.15 * cfg.point_noise


def test_other_gauge_and_exact_guess():
    cfg = WindowConfig(keyframes=12, fixed_frames=5, pose_noise=(0.0, 0.0), point_noise=0.0, pixel_noise=0.0)
    data, C, X = simulate_window(cfg, seed=2)
    assert np.array_equal(np.flatnonzero(data.fixed_cameras), np.arange(5))
    assert np.array_equal(data.cameras[:5], C[:5])
    assert np.allclose(data.cameras, C, atol=1e-12) and np.array_equal(data.points, X)
    assert data.sigma == 1.0
    pred, _ = pinhole_project(C[data.cam_idx], X[data.pt_idx], data.intrinsics)
    assert np.array_equal(pred, data.observations)


@pytest.mark.parametrize("min_obs", [2, 5])
def test_min_observations(min_obs, default):
    cfg = WindowConfig(keyframes=20, min_observations=min_obs)
    data = default.data if min_obs == 2 else simulate_window(cfg, seed=3).data
    counts = np.bincount(data.pt_idx, minlength=data.num_points)
    assert counts.min() >= min_obs


def test_track_length_option():
    cfg = WindowConfig(track_length=(5, 15))
    data, C, X = simulate_window(cfg, seed=4)
    per_frame = np.bincount(data.cam_idx, minlength=data.num_cameras)
    assert abs(per_frame.mean() - 100) <= 20
    first = np.full(data.num_points, 10 ** 9)
    last = np.full(data.num_points, -1)
    np.minimum.at(first, data.pt_idx, data.cam_idx)
    np.maximum.at(last, data.pt_idx, data.cam_idx)
    assert np.all(last - first + 1 <= 15)
    assert np.bincount(data.pt_idx).min() >= 2
    # every observation is a visible pair; shorter tracks need more landmarks
    pred, depth = pinhole_project(C[data.cam_idx], X[data.pt_idx], data.intrinsics)
    assert np.all((depth >= MIN_DEPTH) & (depth <= MAX_DEPTH))
    assert data.num_points > 1.5 * simulate_window(WindowConfig(), seed=4).data.num_points


@pytest.mark.parametrize("kwargs", [dict(keyframes=1), dict(fixed_frames=60), dict(pixel_noise=-1.0),
                                    dict(track_length=(5, 2)), dict(speed=0.0), dict(pose_noise=(0.1,)),
                                    dict(landmarks_per_frame=0), dict(min_observations=51)])
def test_invalid_config(kwargs):
    with pytest.raises(ValueError):
        simulate_window(WindowConfig(**kwargs))
