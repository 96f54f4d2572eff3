"""Tests of mixslam.sim.world (household world, trajectory with loops, keyframe observations, odometry, loops)."""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest

from mixslam.lie import so3
from mixslam.problem.camera import pinhole_project
from mixslam.sim.world import (
    SURFACE_CEILING,
    SURFACE_FLOOR,
    SURFACE_FURNITURE,
    SURFACE_WALL,
    CameraConfig,
    LoopConfig,
    Run,
    TrajectoryConfig,
    World,
    WorldConfig,
    loop_candidates,
    make_world,
    revisit_pairs,
    simulate_run,
    tour,
)

RUN_ARRAYS = ("R_wc", "t_wc", "obs_frame", "obs_landmark", "obs_pixel", "obs_outlier", "odom_R", "odom_t",
              "intrinsics", "distance")
WORLD_ARRAYS = ("landmarks", "walls", "route", "normals", "landmark_surface", "landmark_room", "rooms", "doors",
                "furniture")


@pytest.fixture(scope="module")
def world():
    return make_world(WorldConfig(), seed=0)


@pytest.fixture(scope="module")
def run(world):
    return simulate_run(world, TrajectoryConfig(), CameraConfig(), seed=0)


def _point_segment_distance(p: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """(n,) least distance from 2-D points p to the segments seg (S, 2, 2)."""
    a, b = seg[:, 0], seg[:, 1]
    ab = b - a
    s = np.clip(np.einsum("nsk,sk->ns", p[:, None] - a[None], ab) / np.sum(ab * ab, axis=1), 0.0, 1.0)
    d = p[:, None] - a[None] - s[..., None] * ab[None]
    return np.sqrt(np.min(np.sum(d * d, axis=-1), axis=1))


def _crosses(c: np.ndarray, p: np.ndarray, walls: np.ndarray) -> np.ndarray:
    """(n,) whether the 2-D segment c[k] -> p[k] intersects any wall (parametric form, independent of the
    implementation's orientation tests)."""
    out = np.zeros(len(c), dtype=bool)
    for (a, b) in walls:
        r = p - c
        s = b - a
        den = r[:, 0] * s[1] - r[:, 1] * s[0]
        q = a - c
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (q[:, 0] * s[1] - q[:, 1] * s[0]) / den
            u = (q[:, 0] * r[:, 1] - q[:, 1] * r[:, 0]) / den
        out |= (den != 0) & (t > 0) & (t < 1) & (u >= 0) & (u <= 1)
    return out


def _brute_visible(world: World, run: Run, k: int, cam: CameraConfig) -> np.ndarray:
    """Sorted landmark ids visible from keyframe k, by brute force."""
    X = world.landmarks
    cams = np.repeat(run.cameras()[k:k + 1], len(X), axis=0)
    pred, depth = pinhole_project(cams, X, cam.intrinsics())
    C = run.t_wc[k]
    ok = ((depth >= cam.min_depth) & (depth <= cam.max_range) & (pred[:, 0] >= 0) & (pred[:, 0] < cam.width)
          & (pred[:, 1] >= 0) & (pred[:, 1] < cam.height))
    facing = np.sum(world.normals * (C - X), axis=1) > 0
    ok &= facing | np.all(world.normals == 0, axis=1)
    ids = np.flatnonzero(ok)
    ids = ids[~_crosses(np.repeat(C[None, :2], ids.size, axis=0), X[ids, :2], world.walls)]
    return ids


def _compose(R0, t0, dR, dt):
    R, t = [R0], [t0]
    for k in range(len(dR)):
        t.append(t[-1] + R[-1] @ dt[k])
        R.append(R[-1] @ dR[k])
    return np.array(R), np.array(t)


# -- determinism, shapes -------------------------------------------------------------------------------------
def test_deterministic_per_seed():
    w1, w2, w3 = make_world(WorldConfig(), 5), make_world(WorldConfig(), 5), make_world(WorldConfig(), 6)
    for name in WORLD_ARRAYS:
        assert np.array_equal(getattr(w1, name), getattr(w2, name)), name
    assert w1.landmarks.shape != w3.landmarks.shape or not np.array_equal(w1.landmarks, w3.landmarks)
    assert not np.array_equal(w1.rooms, w3.rooms)
    traj, cam = TrajectoryConfig(keyframes=200), CameraConfig(outlier_fraction=0.05)
    a, b, c = simulate_run(w1, traj, cam, 3), simulate_run(w2, traj, cam, 3), simulate_run(w1, traj, cam, 4)
    for name in RUN_ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.t_wc, c.t_wc)
    assert not np.array_equal(a.odom_t, c.odom_t)
    la, lb, lc = loop_candidates(a, LoopConfig(), 1), loop_candidates(b, LoopConfig(), 1), \
        loop_candidates(a, LoopConfig(false_positive_rate=0.2), 2)
    assert np.array_equal(la, lb)
    assert not np.array_equal(la, lc)


def test_streams_independent(world):
    base = simulate_run(world, TrajectoryConfig(keyframes=120), CameraConfig(), 2)
    other = simulate_run(world, TrajectoryConfig(keyframes=120, odometry_noise=(0.02, 0.01)),
                         CameraConfig(outlier_fraction=0.2), 2)
    assert np.array_equal(base.R_wc, other.R_wc) and np.array_equal(base.t_wc, other.t_wc)
    assert np.array_equal(base.obs_landmark, other.obs_landmark)
    inl = ~other.obs_outlier
    assert np.array_equal(base.obs_pixel[inl], other.obs_pixel[inl])   # outliers do not shift the pixel noise
    assert not np.array_equal(base.odom_t, other.odom_t)


def test_shapes_and_dtypes(world, run):
    L = world.num_landmarks
    assert world.landmarks.shape == (L, 3) and world.landmarks.dtype == np.float64
    assert world.normals.shape == (L, 3) and world.landmark_surface.shape == (L,)
    assert world.walls.ndim == 3 and world.walls.shape[1:] == (2, 2) and world.walls.dtype == np.float64
    assert world.rooms.shape == (6, 4) and world.route.shape[1] == 2
    assert set(np.unique(world.landmark_surface)) == {SURFACE_WALL, SURFACE_FURNITURE, SURFACE_FLOOR,
                                                      SURFACE_CEILING}
    assert np.all((world.landmarks[:, 2] >= 0) & (world.landmarks[:, 2] <= world.wall_height))
    n, m = run.num_frames, run.num_observations
    assert n == 300
    assert run.R_wc.shape == (n, 3, 3) and run.t_wc.shape == (n, 3) and run.distance.shape == (n,)
    assert run.odom_R.shape == (n - 1, 3, 3) and run.odom_t.shape == (n - 1, 3)
    assert run.obs_frame.shape == (m,) and run.obs_landmark.shape == (m,) and run.obs_pixel.shape == (m, 2)
    assert run.obs_outlier.shape == (m,) and run.obs_outlier.dtype == bool and not run.obs_outlier.any()
    assert run.obs_frame.dtype == np.int64 and run.obs_landmark.dtype == np.int64
    for name in ("R_wc", "t_wc", "obs_pixel", "odom_R", "odom_t", "intrinsics"):
        assert getattr(run, name).dtype == np.float64, name
    assert np.array_equal(run.intrinsics, [400.0, 400.0, 320.0, 240.0]) and run.pixel_noise == 1.0
    assert run.seed == 0 and run.world is world and run.trajectory_config == TrajectoryConfig()
    assert run.cameras().shape == (n, 12)
    order = np.lexsort((run.obs_landmark, run.obs_frame))
    assert np.array_equal(order, np.arange(m))                    # sorted by frame, then landmark
    key = run.obs_frame * L + run.obs_landmark
    assert np.unique(key).size == m                               # each landmark at most once per frame
    assert run.obs_landmark.max() < L and run.obs_landmark.min() >= 0


@pytest.mark.parametrize("planar", [True, False])
def test_rotations_orthonormal(world, planar):
    r = simulate_run(world, TrajectoryConfig(planar=planar), CameraConfig(), 1)
    for R in (r.R_wc, r.odom_R):
        assert np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max() < 1e-12
        assert np.abs(np.linalg.det(R) - 1.0).max() < 1e-12


@pytest.mark.parametrize("speed,planar", [(0.1, True), (0.25, False)])
def test_keyframe_spacing(world, speed, planar):
    r = simulate_run(world, TrajectoryConfig(keyframes=150, speed=speed, planar=planar), CameraConfig(), 3)
    step = np.linalg.norm(np.diff(r.t_wc, axis=0), axis=1)
    # speed is the arc length between keyframes: the chord is at most 1% shorter on the tightest turns
    assert np.all(step <= speed * (1 + 1e-9)) and np.all(step > 0.99 * speed)
    assert np.mean(step) > 0.999 * speed
    assert np.allclose(r.distance, np.arange(150) * speed)


def test_laps_when_keyframes_none(world):
    L = float(np.sum(np.linalg.norm(np.diff(tour(world.route), axis=0), axis=1)))
    r = simulate_run(world, TrajectoryConfig(keyframes=None, laps=1.5), CameraConfig(), 0)
    assert abs((r.num_frames - 1) * 0.1 - 1.5 * L) < 0.05 * 1.5 * L


def test_route_clear_of_walls_and_loops_exist():
    for seed in range(4):
        w = make_world(WorldConfig(), seed)
        r = simulate_run(w, TrajectoryConfig(), CameraConfig(), seed)
        assert _point_segment_distance(r.t_wc[:, :2], w.walls).min() >= 0.4
        x0, y0 = w.rooms[:, :2].min(axis=0)
        x1, y1 = w.rooms[:, 2:].max(axis=0)
        assert np.all((r.t_wc[:, 0] > x0) & (r.t_wc[:, 0] < x1) & (r.t_wc[:, 1] > y0) & (r.t_wc[:, 1] < y1))
        for lo, hi in w.furniture:                               # clear of the furniture footprints
            d = np.maximum(np.maximum(lo[:2] - r.t_wc[:, :2], r.t_wc[:, :2] - hi[:2]), 0.0)
            assert np.sqrt(np.sum(d * d, axis=1)).min() >= 0.4
        pairs = revisit_pairs(r)
        assert pairs.shape[0] > 0 and np.unique(pairs[:, 1]).size >= 20   # the default run closes loops


# -- visibility ---------------------------------------------------------------------------------------------
def test_visible_per_frame_in_band():
    means = []
    for seed in range(3):
        w = make_world(WorldConfig(), seed)
        r = simulate_run(w, TrajectoryConfig(), CameraConfig(), seed)
        count = np.bincount(r.obs_frame, minlength=r.num_frames)
        means.append(count.mean())
        assert 80 <= count.mean() <= 150, (seed, count.mean())
        assert count.min() >= 30, (seed, count.min())


def test_visibility_matches_brute_force(world, run):
    cam = run.camera_config
    for k in range(0, run.num_frames, 23):
        got = run.obs_landmark[run.obs_frame == k]
        assert np.array_equal(got, _brute_visible(world, run, k, cam)), k


def test_observations_in_front_and_inside_image(world, run):
    pred, depth = pinhole_project(run.cameras()[run.obs_frame], world.landmarks[run.obs_landmark],
                                  run.intrinsics)
    assert np.all((depth >= 0.2) & (depth <= 8.0))
    assert np.all((pred >= 0) & (pred < [640, 480]))
    C = run.t_wc[run.obs_frame, :2]
    assert not _crosses(C, world.landmarks[run.obs_landmark, :2], world.walls).any()


def test_no_observation_through_a_wall():
    # a loop in front of one wall x = 5, y in [2, 8]; landmarks (seen from any side) on both sides of it
    yy, zz = np.meshgrid(np.linspace(0.25, 9.75, 40), np.linspace(0.2, 2.3, 8))
    behind = np.stack([np.full(yy.size, 7.0), yy.ravel(), zz.ravel()], axis=1)
    front = np.stack([np.full(yy.size, 4.5), yy.ravel(), zz.ravel()], axis=1)
    pts = np.concatenate([behind, front])
    route = np.array([[1.0, 3.0], [3.5, 3.0], [3.5, 7.0], [1.0, 7.0]])
    wall = np.array([[[5.0, 2.0], [5.0, 8.0]]])
    walled = World(landmarks=pts, walls=wall, route=route)
    open_ = World(landmarks=pts, walls=np.zeros((0, 2, 2)), route=route)
    traj = TrajectoryConfig(keyframes=None, laps=1.0)
    r = simulate_run(walled, traj, CameraConfig(), 0)
    r0 = simulate_run(open_, traj, CameraConfig(), 0)
    assert np.array_equal(r.t_wc, r0.t_wc)
    nb = len(behind)
    seen_behind = r.obs_landmark < nb
    # every observation of a landmark behind the wall passes beside it (never through it)
    C = r.t_wc[r.obs_frame, :2]
    X = pts[r.obs_landmark, :2]
    assert not _crosses(C, X, wall).any()
    assert seen_behind.sum() > 0                    # some are seen around the wall's ends
    assert (r0.obs_landmark < nb).sum() > 3 * seen_behind.sum()   # the wall hides most of them
    # the occluded observations are exactly those the wall blocks
    blocked = _crosses(r0.t_wc[r0.obs_frame, :2], pts[r0.obs_landmark, :2], wall)
    assert blocked.any()
    keep = ~blocked
    assert np.array_equal(r.obs_frame, r0.obs_frame[keep]) and np.array_equal(r.obs_landmark, r0.obs_landmark[keep])


def test_landmarks_on_far_side_of_room_wall_not_seen(world, run):
    # a wall landmark is seen only from the room its face looks into (or through a door into it)
    wall_lm = world.landmark_surface[run.obs_landmark] == SURFACE_WALL
    n = world.normals[run.obs_landmark[wall_lm]]
    d = run.t_wc[run.obs_frame[wall_lm]] - world.landmarks[run.obs_landmark[wall_lm]]
    assert np.all(np.sum(n * d, axis=1) > 0)


# -- measurement noise ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", [1.0, 2.5])
def test_pixel_noise_statistics(world, noise):
    r = simulate_run(world, TrajectoryConfig(), CameraConfig(pixel_noise=noise, outlier_fraction=0.1), 4)
    pred, _ = pinhole_project(r.cameras()[r.obs_frame], world.landmarks[r.obs_landmark], r.intrinsics)
    z = (r.obs_pixel - pred) / noise
    inl = ~r.obs_outlier
    rms = np.sqrt(np.mean(z[inl] ** 2))
    assert abs(rms - 1.0) < 0.03
    assert np.abs(z[inl].mean(axis=0)).max() < 0.03
    exact = simulate_run(world, TrajectoryConfig(keyframes=50), CameraConfig(pixel_noise=0.0), 4)
    pred, _ = pinhole_project(exact.cameras()[exact.obs_frame], world.landmarks[exact.obs_landmark],
                              exact.intrinsics)
    assert np.array_equal(exact.obs_pixel, pred)


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3])
def test_outlier_fraction(world, fraction):
    r = simulate_run(world, TrajectoryConfig(keyframes=100), CameraConfig(outlier_fraction=fraction), 6)
    m = r.num_observations
    assert r.obs_outlier.sum() == round(fraction * m)
    out = r.obs_pixel[r.obs_outlier]
    assert np.all((out >= 0) & (out < [640, 480]))
    if fraction:
        pred, _ = pinhole_project(r.cameras()[r.obs_frame], world.landmarks[r.obs_landmark], r.intrinsics)
        err = np.linalg.norm(r.obs_pixel - pred, axis=1)
        assert np.median(err[r.obs_outlier]) > 50.0 and np.median(err[~r.obs_outlier]) < 2.0


# -- odometry ----------------------------------------------------------------------------------------------
def test_exact_odometry_composes_to_truth(world):
    r = simulate_run(world, TrajectoryConfig(planar=False, odometry_noise=(0.0, 0.0)), CameraConfig(), 2)
    R, t = _compose(r.R_wc[0], r.t_wc[0], r.odom_R, r.odom_t)
    assert np.abs(R - r.R_wc).max() < 1e-9 and np.abs(t - r.t_wc).max() < 1e-9


def test_odometry_noise_model(world):
    a, b = 0.03, 0.02
    r = simulate_run(world, TrajectoryConfig(keyframes=2000, odometry_noise=(a, b)), CameraConfig(), 1)
    R_rel = np.swapaxes(r.R_wc[:-1], 1, 2) @ r.R_wc[1:]
    t_rel = np.einsum("nji,nj->ni", r.R_wc[:-1], r.t_wc[1:] - r.t_wc[:-1])
    d = np.linalg.norm(t_rel, axis=1)
    assert np.allclose(d, 0.1, rtol=5e-3)
    v = (r.odom_t - t_rel) / (a * d)[:, None]
    w = so3.log(np.swapaxes(R_rel, 1, 2) @ r.odom_R) / (b * d)[:, None]
    assert abs(v.std() - 1.0) < 0.05 and abs(w.std() - 1.0) < 0.05


def test_odometry_drift_grows_with_distance(world):
    n = 300
    quarter, full = [], []
    for seed in range(8):
        r = simulate_run(world, TrajectoryConfig(keyframes=n), CameraConfig(), seed)
        R, t = _compose(r.R_wc[0], r.t_wc[0], r.odom_R, r.odom_t)
        err = np.linalg.norm(t - r.t_wc, axis=1)
        quarter.append(err[n // 4])
        full.append(err[-1])
    assert np.mean(full) > 2.0 * np.mean(quarter) > 0.0
    # twice the noise, twice the drift (same seed: the same normal draws, scaled)
    r1 = simulate_run(world, TrajectoryConfig(odometry_noise=(0.01, 0.005)), CameraConfig(), 0)
    r2 = simulate_run(world, TrajectoryConfig(odometry_noise=(0.02, 0.01)), CameraConfig(), 0)
    e1 = np.linalg.norm(_compose(r1.R_wc[0], r1.t_wc[0], r1.odom_R, r1.odom_t)[1][-1] - r1.t_wc[-1])
    e2 = np.linalg.norm(_compose(r2.R_wc[0], r2.t_wc[0], r2.odom_R, r2.odom_t)[1][-1] - r2.t_wc[-1])
    assert 1.8 < e2 / e1 < 2.2


# -- loop closures -----------------------------------------------------------------------------------------
def _pair_geometry(run, pairs):
    dist = np.linalg.norm(run.t_wc[pairs[:, 0]] - run.t_wc[pairs[:, 1]], axis=1)
    ang = np.degrees(np.linalg.norm(so3.log(np.swapaxes(run.R_wc[pairs[:, 0]], 1, 2) @ run.R_wc[pairs[:, 1]]),
                                    axis=1))
    return dist, ang


def test_revisit_pairs_match_brute_force(run):
    cfg = LoopConfig()
    n = run.num_frames
    i, j = np.triu_indices(n, 1)
    allp = np.stack([i, j], axis=1)
    allp = allp[j - i > cfg.min_separation]
    dist, ang = _pair_geometry(run, allp)
    want = allp[(dist <= cfg.max_distance) & (ang <= cfg.max_angle + 1e-9)]
    got = revisit_pairs(run, cfg)
    assert got.shape[0] > 0
    assert set(map(tuple, got)) == set(map(tuple, want))


def test_loop_candidates_rules(run):
    cfg = LoopConfig(false_positive_rate=0.05)
    c = loop_candidates(run, cfg, 0)
    assert c.ndim == 2 and c.shape[1] == 3 and c.dtype == np.int64
    assert np.all(c[:, 0] < c[:, 1] - cfg.min_separation)
    assert np.array_equal(np.lexsort((c[:, 0], c[:, 1])), np.arange(len(c)))
    true, false = c[c[:, 2] == 1], c[c[:, 2] == 0]
    assert len(true) > 0 and len(false) > 0
    dist, ang = _pair_geometry(run, true[:, :2])
    assert np.all((dist <= cfg.max_distance) & (ang <= cfg.max_angle + 1e-9))
    dist, ang = _pair_geometry(run, false[:, :2])
    assert not np.any((dist <= cfg.max_distance) & (ang <= cfg.max_angle + 1e-9))
    assert np.unique(true[:, 1]).size == len(true)              # at most one true candidate per keyframe
    assert np.unique(c[:, :2], axis=0).shape[0] == len(c)
    # other separations / thresholds are respected
    cfg2 = LoopConfig(min_separation=120, max_distance=0.5, max_angle=10.0, recall=1.0)
    c2 = loop_candidates(run, cfg2, 0)
    assert np.all(c2[:, 1] - c2[:, 0] > 120)
    t2 = c2[c2[:, 2] == 1]
    dist, ang = _pair_geometry(run, t2[:, :2])
    assert np.all((dist <= 0.5) & (ang <= 10.0 + 1e-9))


def test_loop_candidates_recall_and_false_rate(run):
    js = np.unique(revisit_pairs(run)[:, 1])
    all_true = loop_candidates(run, LoopConfig(recall=1.0, false_positive_rate=0.0), 0)
    assert np.array_equal(all_true[:, 1], js) and np.all(all_true[:, 2] == 1)
    assert loop_candidates(run, LoopConfig(recall=0.0, false_positive_rate=0.0), 0).shape == (0, 3)
    recall, fpr, seeds = 0.5, 0.03, 20
    n_true = n_false = 0
    for s in range(seeds):
        c = loop_candidates(run, LoopConfig(recall=recall, false_positive_rate=fpr), s)
        n_true += int(c[:, 2].sum())
        n_false += int((c[:, 2] == 0).sum())
    trials = seeds * js.size
    assert abs(n_true / trials - recall) < 4.0 * math.sqrt(recall * (1 - recall) / trials)
    eligible = seeds * (run.num_frames - LoopConfig().min_separation - 1)
    assert abs(n_false / eligible - fpr) < 4.0 * math.sqrt(fpr * (1 - fpr) / eligible)


# -- trajectory kinds, configs, timing --------------------------------------------------------------------
def test_planar_vs_free_motion(world):
    flat = simulate_run(world, TrajectoryConfig(planar=True), CameraConfig(), 7)
    free = simulate_run(world, TrajectoryConfig(planar=False), CameraConfig(), 7)

    def tilt(r):     # elevation of the forward axis and of the right axis (deg)
        return np.degrees(np.arcsin(np.abs(r.R_wc[:, 2, 2]))), np.degrees(np.arcsin(np.abs(r.R_wc[:, 2, 0])))

    pitch_f, roll_f = tilt(flat)
    pitch_3, _ = tilt(free)
    assert pitch_f.max() <= 2.0 and roll_f.max() <= 2.0
    assert np.all((flat.t_wc[:, 2] >= 1.0) & (flat.t_wc[:, 2] <= 1.3))
    assert free.t_wc[:, 2].std() > 5.0 * flat.t_wc[:, 2].std()
    assert np.ptp(free.t_wc[:, 2]) > 0.4 and pitch_3.max() > 10.0 and pitch_3.std() > 3.0 * pitch_f.std()
    # the camera looks along the horizontal motion (within the yaw wobble)
    fwd = flat.R_wc[:-1, :2, 2]
    mot = np.diff(flat.t_wc[:, :2], axis=0)
    cosang = np.sum(fwd * mot, axis=1) / np.linalg.norm(fwd, axis=1) / np.linalg.norm(mot, axis=1)
    assert np.degrees(np.arccos(np.clip(cosang, -1, 1))).max() < 10.0


def test_single_room_world():
    w = make_world(WorldConfig(rooms=(1, 1)), 0)
    assert w.rooms.shape == (1, 4) and w.doors.shape == (0, 2, 2)
    r = simulate_run(w, TrajectoryConfig(keyframes=None, laps=2), CameraConfig(), 0)
    assert r.num_observations > 0 and revisit_pairs(r).shape[0] > 0


@pytest.mark.parametrize("bad", [dict(rooms=(1, 3)), dict(rooms=(2.5, 2)), dict(wall_density=-1.0),
                                 dict(room_size=(1.0, 1.5)), dict(extra_door_prob=1.5)])
def test_bad_world_config(bad):
    with pytest.raises(ValueError):
        make_world(WorldConfig(**bad), 0)


@pytest.mark.parametrize("traj,cam", [(dict(keyframes=1), {}), (dict(speed=0.0), {}), (dict(odometry_noise=(0.1,)), {}),
                                      ({}, dict(outlier_fraction=1.5)), ({}, dict(max_range=0.1)),
                                      ({}, dict(pixel_noise=-1.0))])
def test_bad_run_config(world, traj, cam):
    with pytest.raises(ValueError):
        simulate_run(world, TrajectoryConfig(**traj), CameraConfig(**cam), 0)


def test_bad_seed_and_loop_config(world, run):
    with pytest.raises(ValueError):
        make_world(WorldConfig(), -1)
    with pytest.raises(ValueError):
        loop_candidates(run, LoopConfig(recall=2.0), 0)
    with pytest.raises(TypeError):
        simulate_run(world, CameraConfig(), CameraConfig(), 0)


def test_configs_frozen_and_documented():
    import mixslam.sim.world as mod
    src = open(mod.__file__).read()
    for cls in (WorldConfig, CameraConfig, TrajectoryConfig, LoopConfig):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cls(), dataclasses.fields(cls)[0].name, None)
        for f in dataclasses.fields(cls):          # a docstring line follows every field
            line = [ln for ln in src.splitlines() if ln.strip().startswith(f"{f.name}:")]
            assert line, (cls.__name__, f.name)


def test_default_is_fast():
    best = np.inf
    for _ in range(2):
        t0 = time.perf_counter()
        simulate_run(make_world(WorldConfig(), 11), TrajectoryConfig(), CameraConfig(), 11)
        best = min(best, time.perf_counter() - t0)
    assert best < 1.0, best
