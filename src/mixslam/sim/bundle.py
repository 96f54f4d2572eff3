"""Seeded simulator of the visual-odometry sliding-window bundle-adjustment problem, with ground truth.

The world (z up, metres):

* a camera at about 1.5 m height moves forward along a gently curving planar path, ``speed`` metres of arc
  length between keyframes, looking along the path (x right, y down, z forward) up to a small smooth
  yaw/pitch/roll and height wobble (random amplitudes and phases);
* landmarks are scattered along the path, from 1 m behind the first keyframe to 15 m ahead of the last:
  on the ground, on two textured walls 2.5-4 m to the left and right, and in a cluttered volume between
  them (nothing within 1 m of the path's centre line).

The camera model is :class:`mixslam.problem.bundle.BundleData`'s ``"pinhole"``: ``cameras`` rows are
``[R_cw row-major (9), t_cw (3)]`` (world -> camera, the camera looks down +z) and the prediction is
:func:`mixslam.problem.camera.pinhole_project`. A keyframe *sees* a landmark when its true depth is in
[:data:`MIN_DEPTH`, :data:`MAX_DEPTH`] = [0.3, 15] m and its true projection falls inside the image
(``0 <= u < width``, ``0 <= v < height``); every keyframe that sees a landmark observes it (no occlusion).
With ``track_length = (a, b)`` a landmark is instead observed only over a random run of a..b consecutive
keyframes overlapping those that see it (a feature tracker loses features), which gives more, shorter-lived
landmarks for the same number of observations.

Density: candidate landmarks are drawn until those with at least ``min_observations`` observations supply
about 1.25 times ``landmarks_per_frame * keyframes`` observations. A random subset of them is kept whose
observations add up to ``landmarks_per_frame * keyframes`` (to within one landmark), so the mean number of
landmarks observed per keyframe is the target to within about one; the per-keyframe counts vary about it by
roughly +-10% (+-25% with short tracks). The observed depths run from about 1.3 m to 15 m (median near 9 m).

Each observation is the true projection plus N(0, pixel_noise^2) noise per coordinate; ``sigma = pixel_noise``.

Gauge: the ``fixed_frames`` oldest keyframes are held at ground truth (two fix the 7-DoF similarity, scale
included). The initial guess of every other keyframe is the truth perturbed on the right,
``R_cw <- R_cw Exp(w)``, ``w ~ N(0, rot_std^2 I)``, with its camera centre moved by ``N(0, trans_std^2 I)``
(``t_cw`` is recomputed from the perturbed rotation and centre); every point gets ``N(0, point_noise^2 I)``.

Everything is drawn from ``numpy.random.default_rng(seed)``, so a seed reproduces the arrays bit for bit.
Points are ordered along the path; observations by keyframe, then point.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, check_config_fields, check_seed
from ..lie import so3
from ..problem.bundle import BundleData
from ..problem.camera import pinhole_project

__all__ = ["WindowConfig", "SimulatedWindow", "simulate_window", "MIN_DEPTH", "MAX_DEPTH"]

MIN_DEPTH = 0.3
"""Nearest visible depth (m)."""
MAX_DEPTH = 15.0
"""Farthest visible depth (m)."""

_CAMERA_HEIGHT = 1.5  # m above the ground
_BEHIND = 1.0  # landmarks start this far (arc length) behind the first keyframe
_AHEAD = MAX_DEPTH  # ... and end this far ahead of the last one (the newest frame sees a full range)
_WALL_HEIGHT = 3.5
_CLEAR = 1.0  # no clutter within this lateral distance of the path's centre line
_SURFACES = (0.3, 0.5, 0.2)  # fractions of landmarks on the ground, on the walls, in the volume
_GRID_STEP = 0.01  # m, arc-length step of the path's tabulation
_POOL = 1.25  # draw candidates supplying this many times the target observations, then thin
_YIELD = 0.2  # first-round guess of candidates needed per wanted observation
_MAX_ROUNDS = 8  # rounds of drawing more candidates before giving up


def _numbers(v, n: int) -> bool:
    """``v`` is a tuple or list of ``n`` finite real numbers (not bools)."""
    return (
        isinstance(v, (tuple, list))
        and len(v) == n
        and all(isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x) for x in v)
    )


@dataclass(frozen=True)
class WindowConfig:
    """Parameters of :func:`simulate_window` (defaults: a 50-keyframe window, about 5,000 observations)."""

    keyframes: int = 50
    """Number of keyframes (cameras) in the window, oldest first."""
    landmarks_per_frame: int = 100
    """Target mean number of landmarks visible (in front, depth in [0.3, 15] m, inside the image), hence
    observed, per keyframe."""
    pixel_noise: float = 1.0
    """Standard deviation of the Gaussian pixel noise per coordinate (px); 0 gives exact observations (sigma 1)."""
    image_size: tuple = (640, 480)
    """Image (width, height) in pixels."""
    fx: float = 400.0
    """Horizontal focal length (px)."""
    fy: float | None = None
    """Vertical focal length (px); None means the same as ``fx``."""
    cx: float | None = None
    """Principal point x (px); None means the image centre ``width / 2``."""
    cy: float | None = None
    """Principal point y (px); None means the image centre ``height / 2``."""
    speed: float = 0.1
    """Arc length between consecutive keyframes (m); 0.1 is 10 Hz at 1 m/s."""
    pose_noise: tuple = (0.02, 0.01)
    """Initial-guess perturbation of the free keyframes: (camera-centre std per axis (m), rotation std per
    axis (rad))."""
    point_noise: float = 0.05
    """Initial-guess perturbation of the points: std per axis (m)."""
    fixed_frames: int = 10
    """The oldest keyframes held at ground truth (the gauge; two fix the 7-DoF similarity, scale included).
    Default 10, by measurement: with the 2 oldest fixed (a 0.1 m baseline, landmarks at a median 9 m) the
    scale is so weakly observed that the ML estimate's camera-centre error (3-12 cm) exceeds the initial
    perturbation's (3.5 cm); with 10 (1 m of older, already-estimated trajectory, as a sliding window keeps)
    it is 7-10 mm."""
    min_observations: int = 2
    """Landmarks observed by fewer keyframes are dropped."""
    track_length: tuple | None = None
    """None: every keyframe that sees a landmark observes it. (a, b): a landmark is observed only over a
    random run of a..b consecutive keyframes (uniform) overlapping those that see it, and
    ``landmarks_per_frame`` counts the landmarks observed per keyframe."""

    def __post_init__(self):
        check_config_fields(
            self,
            ints={"keyframes": 2, "landmarks_per_frame": 1, "min_observations": 1, "fixed_frames": 0},
            nonnegative=("pixel_noise", "point_noise"),
            positive=("speed", "fx"),
        )
        if self.fy is not None:
            check_config_fields(self, positive=("fy",))
        for name in ("cx", "cy"):
            v = getattr(self, name)
            if v is not None and not _numbers((v,), 1):
                raise ConfigError(f"WindowConfig.{name} must be None or a finite number, got {v!r}")
        if self.fixed_frames > self.keyframes:
            raise ConfigError(
                f"WindowConfig.fixed_frames must be at most keyframes ({self.keyframes}), got {self.fixed_frames}"
            )
        if self.min_observations > self.keyframes:
            raise ConfigError(
                f"WindowConfig.min_observations must be at most keyframes ({self.keyframes}), got "
                f"{self.min_observations}"
            )
        if not _numbers(self.image_size, 2) or min(self.image_size) <= 0:
            raise ConfigError(f"WindowConfig.image_size must be (width, height), both > 0, got {self.image_size!r}")
        tl = self.track_length
        if tl is not None and (
            not _numbers(tl, 2) or any(not isinstance(v, Integral) for v in tl) or not 1 <= tl[0] <= tl[1]
        ):
            raise ConfigError(f"WindowConfig.track_length must be None or integers (a, b) with 1 <= a <= b, got {tl!r}")
        if not _numbers(self.pose_noise, 2) or min(self.pose_noise) < 0:
            raise ConfigError(
                f"WindowConfig.pose_noise must be (translation std, rotation std), both finite and "
                f">= 0, got {self.pose_noise!r}"
            )

    def intrinsics(self) -> np.ndarray:
        """(fx, fy, cx, cy) with the defaults filled in."""
        w, h = self.image_size
        fy = self.fx if self.fy is None else self.fy
        cx = 0.5 * w if self.cx is None else self.cx
        cy = 0.5 * h if self.cy is None else self.cy
        return np.array([self.fx, fy, cx, cy], dtype=np.float64)


class SimulatedWindow(NamedTuple):
    """What :func:`simulate_window` returns (unpacks as ``data, truth_cameras, truth_points``)."""

    data: BundleData
    """The problem, with the perturbed initial guess as its state."""
    truth_cameras: np.ndarray
    """(nc, 12) true poses [R_cw row-major, t_cw]."""
    truth_points: np.ndarray
    """(npts, 3) true landmark positions."""


def simulate_window(config: WindowConfig = WindowConfig(), seed: int = 0) -> SimulatedWindow:
    """Simulate one sliding window of visual odometry; returns ``(data, truth_cameras, truth_points)``.

    ``data`` is a ``"pinhole"`` :class:`BundleData` whose cameras and points are the perturbed initial
    guess (the fixed keyframes excepted) and whose ``fixed_cameras`` marks the ``fixed_frames`` oldest
    keyframes. See the module docstring for the world and the noise.
    """
    cfg = _check(config)
    seed = check_seed(seed, "simulate_window: seed")
    K = cfg.intrinsics()
    width, height = cfg.image_size
    nc = int(cfg.keyframes)
    rng = np.random.default_rng(seed)

    # -- trajectory
    path = _Path(rng, s_min=-_BEHIND - 1.0, s_max=(nc - 1) * cfg.speed + _AHEAD + 1.0)
    s_cam = np.arange(nc) * cfg.speed
    R_cw, t_cw, centres = _camera_poses(path, s_cam, rng)
    cams = np.concatenate([R_cw.reshape(nc, 9), t_cw], axis=1)
    # farthest a visible point can be from the camera centre: MAX_DEPTH at the image corner farthest off-axis
    reach = MAX_DEPTH * math.hypot(1.0, max(K[2], width - K[2]) / K[0], max(K[3], height - K[3]) / K[1])

    # -- landmarks: draw candidates until the eligible ones supply _POOL times the target, then thin
    s_lo, s_hi = -_BEHIND, (nc - 1) * cfg.speed + _AHEAD
    walls = rng.uniform(2.5, 4.0, 2)  # right, left wall distances
    target = float(cfg.landmarks_per_frame) * nc
    want = _POOL * target
    n_draw = int(math.ceil(want * _YIELD))
    pts_s = np.zeros(0)
    pts = np.zeros((0, 3))
    vis_c = np.zeros(0, dtype=np.int64)  # observed pairs (camera, candidate)
    vis_p = np.zeros(0, dtype=np.int64)
    for _ in range(_MAX_ROUNDS):
        s_new, p_new = _landmarks(path, walls, s_lo, s_hi, n_draw, rng)
        c_new, j_new = _visible(cams, centres, p_new, reach, K, width, height)
        if cfg.track_length is not None:
            c_new, j_new = _tracked(c_new, j_new, n_draw, cfg.track_length, rng)
        vis_c = np.concatenate([vis_c, c_new])
        vis_p = np.concatenate([vis_p, j_new + len(pts)])
        pts_s = np.concatenate([pts_s, s_new])
        pts = np.concatenate([pts, p_new])
        count = np.bincount(vis_p, minlength=len(pts))
        pool = int(count[count >= cfg.min_observations].sum())
        if pool >= want:
            break
        per_candidate = pool / len(pts)
        n_draw = 4 * n_draw if per_candidate == 0.0 else int(math.ceil(1.2 * (want - pool) / per_candidate)) + 16
    else:
        if pool < target:
            raise ValueError(
                f"simulate_window: the scene cannot supply {cfg.landmarks_per_frame} landmarks per "
                f"keyframe with this configuration ({pool / nc:.1f} observed per keyframe after "
                f"{_MAX_ROUNDS} rounds); check image_size, fx and min_observations"
            )
    # thin: a random subset of the eligible candidates whose observations add up to the target
    eligible = np.flatnonzero(count >= cfg.min_observations)
    eligible = eligible[rng.permutation(eligible.size)]
    total = np.cumsum(count[eligible])
    k = int(np.searchsorted(total, target))  # total[k] >= target > total[k - 1]
    if k > 0 and target - total[k - 1] < total[k] - target:
        k -= 1
    keep = eligible[: k + 1]

    old_ids = keep[np.argsort(pts_s[keep], kind="stable")]
    new_id = np.full(len(pts), -1, dtype=np.int64)
    new_id[old_ids] = np.arange(old_ids.size)
    truth_points = pts[old_ids]
    sel = new_id[vis_p] >= 0
    cam_idx, pt_idx = vis_c[sel], new_id[vis_p[sel]]
    obs_order = np.lexsort((pt_idx, cam_idx))
    cam_idx, pt_idx = cam_idx[obs_order], pt_idx[obs_order]

    # -- measurements
    pred, _ = pinhole_project(cams[cam_idx], truth_points[pt_idx], K)
    noise = float(cfg.pixel_noise)
    observations = pred + rng.normal(0.0, 1.0, pred.shape) * noise

    # -- initial guess
    fixed = np.zeros(nc, dtype=bool)
    fixed[: cfg.fixed_frames] = True
    trans_std, rot_std = (float(v) for v in cfg.pose_noise)
    w = rng.normal(0.0, 1.0, (nc, 3)) * rot_std
    dc = rng.normal(0.0, 1.0, (nc, 3)) * trans_std
    R0 = R_cw @ so3.exp(w)
    centre = -np.einsum("nji,nj->ni", R_cw, t_cw) + dc
    t0 = -np.einsum("nij,nj->ni", R0, centre)
    guess = np.concatenate([R0.reshape(nc, 9), t0], axis=1)
    guess[fixed] = cams[fixed]
    points0 = truth_points + rng.normal(0.0, 1.0, truth_points.shape) * float(cfg.point_noise)

    data = BundleData(
        model="pinhole",
        cameras=guess,
        points=points0,
        observations=observations,
        cam_idx=cam_idx,
        pt_idx=pt_idx,
        intrinsics=K,
        sigma=noise if noise > 0 else 1.0,
        fixed_cameras=fixed,
        source=_source(cfg, seed),
    )
    data.validate()  # e.g. a free keyframe left without observations by a tiny landmarks_per_frame
    return SimulatedWindow(data, cams, truth_points)


# -- configuration -----------------------------------------------------------------------------------------
def _check(cfg: WindowConfig) -> WindowConfig:
    if not isinstance(cfg, WindowConfig):
        raise TypeError(f"config must be a WindowConfig, got {type(cfg).__name__}")
    return cfg  # the values were validated when it was constructed (WindowConfig.__post_init__)


def _source(cfg: WindowConfig, seed) -> str:
    parts = [f"seed={seed}", f"keyframes={cfg.keyframes}"]
    default = WindowConfig()
    for f in dataclasses.fields(cfg):
        if f.name != "keyframes" and getattr(cfg, f.name) != getattr(default, f.name):
            parts.append(f"{f.name}={getattr(cfg, f.name)!r}")
    return f"simulate_window({', '.join(parts)})"


# -- world ---------------------------------------------------------------------------------------------------
class _Path:
    """A planar path on the ground (z = 0) parametrised by arc length s, through the origin at s = 0."""

    def __init__(self, rng: np.random.Generator, s_min: float, s_max: float):
        # heading: random start, a slow sweep and a faster wiggle (curvature at most ~0.1 /m)
        self.yaw0 = rng.uniform(-np.pi, np.pi)
        self.amp = rng.uniform(0.15, 0.35, 2) * np.array([1.0, 0.3])
        self.wavelength = rng.uniform([25.0, 8.0], [40.0, 14.0])
        self.phase = rng.uniform(0.0, 2.0 * np.pi, 2)
        n = int(math.ceil((s_max - s_min) / _GRID_STEP)) + 1
        self.s = s_min + _GRID_STEP * np.arange(n)
        yaw = self.heading(self.s)
        step = (
            0.5
            * _GRID_STEP
            * (np.stack([np.cos(yaw), np.sin(yaw)], axis=1)[1:] + np.stack([np.cos(yaw), np.sin(yaw)], axis=1)[:-1])
        )
        xy = np.concatenate([np.zeros((1, 2)), np.cumsum(step, axis=0)])
        xy -= np.array([np.interp(0.0, self.s, xy[:, 0]), np.interp(0.0, self.s, xy[:, 1])])
        self.xy = xy

    def heading(self, s: np.ndarray) -> np.ndarray:
        arg = 2.0 * np.pi * np.asarray(s)[..., None] / self.wavelength + self.phase
        return self.yaw0 + np.sum(self.amp * np.sin(arg), axis=-1)

    def point(self, s: np.ndarray) -> np.ndarray:
        """(n, 3) ground points of the path at arc lengths s."""
        return np.stack(
            [np.interp(s, self.s, self.xy[:, 0]), np.interp(s, self.s, self.xy[:, 1]), np.zeros(np.shape(s))], axis=-1
        )

    def frame(self, s: np.ndarray, lateral: np.ndarray, up: np.ndarray) -> np.ndarray:
        """World points at arc length s, ``lateral`` metres to the left of the path and ``up`` above ground."""
        yaw = self.heading(s)
        left = np.stack([-np.sin(yaw), np.cos(yaw), np.zeros_like(yaw)], axis=-1)
        return self.point(s) + lateral[:, None] * left + np.asarray(up)[:, None] * np.array([0.0, 0.0, 1.0])


# camera axes in the body frame (x forward, y left, z up): x_cam = right, y_cam = down, z_cam = forward
_R_BODY_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _camera_poses(path: _Path, s: np.ndarray, rng: np.random.Generator):
    """(R_cw (n,3,3), t_cw (n,3), centres (n,3)) of cameras at arc lengths s, with a small smooth
    yaw/pitch/roll/height wobble."""
    amp = rng.uniform(0.5, 1.0, 4) * np.array([0.05, 0.03, 0.02, 0.05])  # yaw, pitch, roll (rad), height (m)
    freq = rng.uniform(0.1, 0.3, 4) * 2.0 * np.pi  # rad per metre of path
    phase = rng.uniform(0.0, 2.0 * np.pi, 4)
    wob = amp * np.sin(s[:, None] * freq + phase)
    yaw = path.heading(s) + wob[:, 0]
    R_wb = so3.from_euler(wob[:, 2], wob[:, 1], yaw)
    R_wc = R_wb @ _R_BODY_CAM
    centre = path.point(s) + np.array([0.0, 0.0, 1.0]) * (_CAMERA_HEIGHT + wob[:, 3:4])
    R_cw = np.swapaxes(R_wc, 1, 2)
    return R_cw, -np.einsum("nij,nj->ni", R_cw, centre), centre


def _landmarks(path: _Path, walls: np.ndarray, s_lo: float, s_hi: float, n: int, rng: np.random.Generator):
    """n random landmarks (arc length (n,), world points (n, 3)) on the ground, the walls and in between."""
    s = rng.uniform(s_lo, s_hi, n)
    kind = rng.choice(3, size=n, p=_SURFACES)
    u = rng.random((n, 3))
    right, left = walls
    lateral = np.empty(n)
    up = np.empty(n)
    g, w, v = kind == 0, kind == 1, kind == 2
    # ground: anywhere between the walls, a few centimetres of relief
    lateral[g] = -right + (right + left) * u[g, 0]
    up[g] = 0.03 * u[g, 1]
    # walls: textured (+-0.3 m of depth relief), floor to _WALL_HEIGHT
    side = u[w, 2] < 0.5
    lateral[w] = np.where(side, left, -right) + 0.3 * (2.0 * u[w, 0] - 1.0)
    up[w] = _WALL_HEIGHT * u[w, 1]
    # clutter: between the walls, clear of the centre line
    side = u[v, 2] < 0.5
    lateral[v] = np.where(side, _CLEAR + (left - _CLEAR) * u[v, 0], -_CLEAR - (right - _CLEAR) * u[v, 0])
    up[v] = 3.0 * u[v, 1]
    return s, path.frame(s, lateral, up)


def _visible(
    cams: np.ndarray, centres: np.ndarray, pts: np.ndarray, reach: float, K: np.ndarray, width: float, height: float
):
    """(camera, point) of the pairs with depth in [MIN_DEPTH, MAX_DEPTH] and the projection inside the
    image, sorted by camera then point. Only points within ``reach`` of a camera centre are projected."""
    from scipy.spatial import cKDTree

    near = cKDTree(pts).query_ball_point(centres, reach, return_sorted=True)
    counts = np.array([len(ix) for ix in near], dtype=np.int64)
    ci = np.repeat(np.arange(len(centres), dtype=np.int64), counts)
    pj = np.concatenate([np.asarray(ix, dtype=np.int64) for ix in near]) if ci.size else ci.copy()
    pred, depth = pinhole_project(cams[ci], pts[pj], K)
    ok = (
        (depth >= MIN_DEPTH)
        & (depth <= MAX_DEPTH)
        & (pred[:, 0] >= 0.0)
        & (pred[:, 0] < width)
        & (pred[:, 1] >= 0.0)
        & (pred[:, 1] < height)
    )
    return ci[ok], pj[ok]


def _tracked(ci: np.ndarray, pj: np.ndarray, n: int, track_length: tuple, rng: np.random.Generator):
    """The pairs inside each point's track: ``length`` keyframes from ``birth``, with ``length`` uniform in
    ``track_length`` and the birth uniform over the runs that overlap the keyframes that see the point."""
    length = rng.integers(track_length[0], track_length[1] + 1, n)
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, -1)
    np.minimum.at(first, pj, ci)
    np.maximum.at(last, pj, ci)
    first = np.where(last >= 0, first, 0)  # points seen by no keyframe: no pairs, any birth
    span = np.maximum(last - first + length, 1)
    birth = first - length + 1 + np.floor(rng.random(n) * span).astype(np.int64)
    ok = (ci >= birth[pj]) & (ci < birth[pj] + length[pj])
    return ci[ok], pj[ok]
