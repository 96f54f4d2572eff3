"""Seeded synthetic problems of any size, with their ground truth: bundle adjustment (BAL camera model) and
pose graphs (``mixslam generate``).

Bundle adjustment (:func:`generate_bundle`)
    ``cameras`` BAL cameras stand on a horizontal ring of radius :data:`RING_RADIUS` (10 m, +-10% jitter in
    radius, heights uniform in +-1 m), evenly spaced in azimuth in index order (as frames of a video around an
    object), each looking at a point within 0.5 m of the ring's centre (plus a small roll). ``points`` points
    fill a ball of radius :data:`CLOUD_RADIUS` (4 m) around the centre, so every camera sees every point in
    front of it (depth 5-15 m) and inside its image: at most 30 degrees off its optical axis, i.e. within
    ``focal * tan(30 deg)`` = 289 px of the image centre at ``focal=500`` (checked when generating). Each
    point is observed by ``k`` cameras, ``k`` uniform in ``[min_views, max_views]`` (default 3..7, mean 5),
    drawn from the ``W`` cameras of the ring centred on the point's azimuth, ``W`` = the cameras in
    ``view_span_deg`` (60 degrees; at least ``max_views``, at most all): one camera from each of ``k`` equal
    parts of that arc (stratified, so the views are distinct and spread over the arc, which gives the
    triangulation its parallax). Pixels are the true projections (:func:`mixslam.problem.camera.bal_project`,
    ``f = focal``, ``k1``, ``k2``) plus normal noise of ``pixel_sigma`` px per coordinate. Observations are
    sorted by camera, then point, as in the BAL files.

    The truth holds the true cameras and points, the initial guess the same observations with perturbed
    cameras (rotation ``Exp(d) R``, ``d`` normal with ``rotation_noise`` rad per axis; camera centre moved by
    ``translation_noise`` m per axis) and points (``point_noise`` m per axis). ``f``, ``k1``, ``k2`` start at
    the truth, and camera 0, the gauge that :func:`~mixslam.io.bal.read_bal` fixes by default, is not
    perturbed, so a solution is in the truth's frame up to BAL's free scale. With 2,000 cameras and
    1,000,000 points: about 5 million observations, generated in a few seconds with arrays only (the
    projection runs in chunks of :data:`_CHUNK` observations to bound the memory).

Pose graphs (:func:`generate_pose_graph`)
    The kinds of :func:`mixslam.sim.pose_graph.simulate_pose_graph` under the names the command line uses
    (:data:`PGO_KINDS`): ``grid2d`` is its ``manhattan`` world (a 2D walk on a unit grid, loop closures at
    revisits, each candidate kept with probability 0.5, at most 2 per pose), ``city`` the same street-grid
    world with every revisit closed (probability 1, at most 2 per pose: a denser, City10000-like loop
    structure), ``grid3d`` and ``sphere`` its kinds of those names (sphere: one closure from each pose to the
    pose below it on the previous ring). The initial guess is the noisy odometry composed from the true first
    pose (it drifts), the truth the true poses; both share the edges (noisy measurements, information from
    the noise), and pose 0 is fixed.

Files: the truth goes beside the problem, named by :func:`truth_path` (``problem.txt`` ->
``problem.truth.txt``, ``graph.g2o`` -> ``graph.truth.g2o``), in the problem's format. Everything is drawn
from ``numpy.random.default_rng(seed)``: a seed reproduces the problem bit for bit, so the files byte for
byte.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, check_config_fields, check_seed
from ..lie import so3
from ..problem.bundle import BundleData
from ..problem.camera import bal_project
from ..problem.pose_graph import PoseGraph
from .pose_graph import simulate_pose_graph

__all__ = [
    "BundleGenConfig",
    "GeneratedBundle",
    "GeneratedPoseGraph",
    "PGO_KINDS",
    "generate_bundle",
    "generate_pose_graph",
    "truth_path",
]

RING_RADIUS = 10.0
"""Metres from the scene's centre to the camera ring (before the +-10% jitter)."""
CLOUD_RADIUS = 4.0
"""Radius (m) of the ball the points fill."""
MAX_OFF_AXIS_DEG = 30.0
"""No point is further than this from a camera's optical axis (the geometry's bound: 26.4 + 3.2 degrees for a
camera 9 m from the centre looking 0.5 m off it; checked when generating)."""
_LOOK_JITTER = 0.5  # m: a camera looks at a point at most this far from the centre
_ROLL_SIGMA = 0.05  # rad
_CHUNK = 1 << 18  # observations projected at once (bounds the gathered per-observation arrays)

PGO_KINDS = ("grid2d", "grid3d", "sphere", "city")
"""The pose-graph kinds of :func:`generate_pose_graph` (see the module docstring)."""
_PGO_SIM = {
    "grid2d": ("manhattan", None),
    "grid3d": ("grid3d", None),
    "sphere": ("sphere", None),
    "city": ("manhattan", 1.0),
}
"""kind -> (simulate_pose_graph kind, loop_closure_prob; None: the simulator's default)."""


@dataclass(frozen=True)
class BundleGenConfig:
    """How :func:`generate_bundle` builds a problem (the sizes and the seed are its arguments)."""

    min_views: int = 3
    """Fewest cameras observing a point (>= 2: one view leaves the depth unobservable)."""
    max_views: int = 7
    """Most cameras observing a point (>= ``min_views``; the problem needs at least this many cameras). The
    number of views of each point is uniform in [min_views, max_views]: the default's mean is 5."""
    pixel_sigma: float = 1.0
    """Standard deviation (px) of the normal noise added to each pixel coordinate (>= 0)."""
    rotation_noise: float = 0.01
    """Initial guess: standard deviation (rad, per axis) of the rotation error of each camera but camera 0
    (>= 0)."""
    translation_noise: float = 0.05
    """Initial guess: standard deviation (m, per axis) of the error of each camera's centre but camera 0
    (>= 0; the ring's radius is 10 m)."""
    point_noise: float = 0.05
    """Initial guess: standard deviation (m, per axis) of the error of each point (>= 0)."""
    focal: float = 500.0
    """True focal length (px) of every camera (> 0)."""
    k1: float = 0.0
    """True radial distortion k1 of every camera, in [-0.2, 0.2] (keeps the distortion monotonic over the field
    of view)."""
    k2: float = 0.0
    """True radial distortion k2 of every camera, in [-0.2, 0.2]."""
    view_span_deg: float = 60.0
    """Arc of the ring (degrees, in (0, 360]) centred on a point's azimuth from which its cameras are drawn:
    wider gives more parallax and a denser camera graph."""

    def __post_init__(self):
        check_config_fields(
            self,
            ints={"min_views": 2, "max_views": 2},
            nonnegative=("pixel_sigma", "rotation_noise", "translation_noise", "point_noise"),
            positive=("focal", "view_span_deg"),
        )
        if self.max_views < self.min_views:
            raise ConfigError(
                f"BundleGenConfig.max_views must be >= min_views ({self.min_views}), got {self.max_views}"
            )
        for name in ("k1", "k2"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or abs(v) > 0.2:
                raise ConfigError(f"BundleGenConfig.{name} must be a number in [-0.2, 0.2], got {v!r}")
        if self.view_span_deg > 360:
            raise ConfigError(f"BundleGenConfig.view_span_deg must be in (0, 360] degrees, got {self.view_span_deg!r}")


class GeneratedBundle(NamedTuple):
    """What :func:`generate_bundle` returns (unpacks as ``initial, truth``)."""

    initial: BundleData
    """The problem: perturbed cameras and points, noisy observations (what ``OUT.txt`` holds)."""
    truth: BundleData
    """The true cameras and points with the same observations (what ``OUT.truth.txt`` holds)."""


class GeneratedPoseGraph(NamedTuple):
    """What :func:`generate_pose_graph` returns (unpacks as ``initial, truth``)."""

    initial: PoseGraph
    """The graph with the odometry-composed initial guess (what ``OUT.g2o`` holds)."""
    truth: PoseGraph
    """The same edges at the true poses (what ``OUT.truth.g2o`` holds)."""


def truth_path(path) -> Path:
    """Where the ground truth of the problem written to ``path`` goes: the same folder and format, ``.truth``
    before the last suffix (``a/problem.txt`` -> ``a/problem.truth.txt``, ``graph.g2o`` -> ``graph.truth.g2o``,
    ``out`` -> ``out.truth``)."""
    p = Path(os.fspath(path))
    if p.name in ("", ".", ".."):
        raise ConfigError(f"output path {str(path)!r} names no file")
    return p.with_name(f"{p.stem}.truth{p.suffix}" if p.suffix else f"{p.name}.truth")


def _count(value, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
        raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


# -- bundle adjustment -----------------------------------------------------------------------------------
def generate_bundle(cameras: int, points: int, seed: int = 0, config: BundleGenConfig | None = None) -> GeneratedBundle:
    """A seeded BAL problem of ``cameras`` cameras and ``points`` points and its ground truth (see the module
    docstring). Returns ``(initial, truth)``, two :class:`BundleData` (``model="bal"``, camera 0 fixed,
    ``sigma=1``: BAL files carry no noise level) sharing the observations.

    Raises :class:`ConfigError` for counts that are not integers >= 1 (points) / >= 2 (cameras), fewer
    cameras than ``config.max_views``, or a bad seed.
    """
    cfg = BundleGenConfig() if config is None else config
    if not isinstance(cfg, BundleGenConfig):
        raise ConfigError(f"generate_bundle: config must be a BundleGenConfig, got {type(cfg).__name__}")
    nc = _count(cameras, "generate_bundle: cameras", 2)
    npt = _count(points, "generate_bundle: points", 1)
    seed = check_seed(seed, "generate_bundle: seed")
    if nc < cfg.max_views:
        raise ConfigError(
            f"generate_bundle: cameras={nc} is fewer than BundleGenConfig.max_views={cfg.max_views}: a point is "
            f"seen by up to max_views distinct cameras; use at least {cfg.max_views} cameras or lower max_views"
        )
    rng = np.random.default_rng(seed)

    # cameras on the ring, looking at the centre (BAL: world -> camera, the camera looks down -z)
    azimuth = 2.0 * np.pi * np.arange(nc) / nc
    radius = RING_RADIUS * rng.uniform(0.9, 1.1, nc)
    centres = np.stack([radius * np.cos(azimuth), radius * np.sin(azimuth), rng.uniform(-1.0, 1.0, nc)], axis=1)
    target = _in_ball(rng, nc, _LOOK_JITTER)
    R = _look_at(centres, target)
    roll = np.zeros((nc, 3))
    roll[:, 2] = rng.normal(0.0, _ROLL_SIGMA, nc)
    R = so3.exp(roll) @ R
    cams = np.zeros((nc, 9))
    cams[:, 0:3] = so3.log(R)
    cams[:, 3:6] = -np.einsum("cij,cj->ci", R, centres)
    cams[:, 6], cams[:, 7], cams[:, 8] = cfg.focal, cfg.k1, cfg.k2

    # points and the cameras that observe each
    pts = _in_ball(rng, npt, CLOUD_RADIUS)
    views = rng.integers(cfg.min_views, cfg.max_views + 1, npt)
    cam_idx, pt_idx = _choose_views(np.arctan2(pts[:, 1], pts[:, 0]), views, nc, cfg, rng)

    obs, depth, off_axis = _project(cams, pts, cam_idx, pt_idx)
    if not ((depth < 0).all() and off_axis.max() <= math.tan(math.radians(MAX_OFF_AXIS_DEG))):
        raise AssertionError("generate_bundle: a point left a camera's field of view (a bug in the geometry)")
    obs += rng.normal(0.0, 1.0, obs.shape) * cfg.pixel_sigma

    # the initial guess
    start = cams.copy()
    dR = so3.exp(rng.normal(0.0, 1.0, (nc, 3)) * cfg.rotation_noise)
    R0 = dR @ R
    c0 = centres + rng.normal(0.0, 1.0, (nc, 3)) * cfg.translation_noise
    start[:, 0:3] = so3.log(R0)
    start[:, 3:6] = -np.einsum("cij,cj->ci", R0, c0)
    start[0] = cams[0]  # the gauge camera stays at the truth
    pts0 = pts + rng.normal(0.0, 1.0, pts.shape) * cfg.point_noise

    label = f"<generate ba cameras={nc} points={npt} seed={seed}"
    truth = BundleData("bal", cams, pts, obs, cam_idx, pt_idx, source=label + " truth>")
    initial = BundleData("bal", start, pts0, obs, cam_idx, pt_idx, source=label + ">")
    return GeneratedBundle(initial, truth)


def _in_ball(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    """``n`` points uniform in the ball of ``radius`` around the origin."""
    direction = rng.normal(0.0, 1.0, (n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * (radius * np.cbrt(rng.random(n)))[:, None]


def _look_at(centres: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n, 3, 3) world -> camera rotations of cameras at ``centres`` looking at ``targets`` with -z (BAL),
    x to the right and y up (rows: right, up, -forward)."""
    forward = targets - centres
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    up = np.cross(right, forward)
    return np.stack([right, up, -forward], axis=1)


def _choose_views(azimuth: np.ndarray, views: np.ndarray, nc: int, cfg: BundleGenConfig, rng: np.random.Generator):
    """(cam_idx, pt_idx) sorted by camera then point: point p is seen by ``views[p]`` distinct cameras, one from
    each of ``views[p]`` equal integer parts of the ``W`` ring cameras centred on its azimuth."""
    width = min(nc, max(cfg.max_views, int(round(nc * cfg.view_span_deg / 360.0))))
    nearest = np.rint(np.mod(azimuth, 2.0 * np.pi) * (nc / (2.0 * np.pi))).astype(np.int64)
    first = nearest - width // 2
    m = int(views.sum())
    pt_idx = np.repeat(np.arange(views.size, dtype=np.int64), views)
    k = views[pt_idx]
    j = np.arange(m, dtype=np.int64) - np.repeat(np.cumsum(views) - views, views)  # 0..k-1 within a point
    lo = j * width // k
    hi = (j + 1) * width // k  # > lo because width >= k
    cam_idx = np.mod(first[pt_idx] + lo + (rng.random(m) * (hi - lo)).astype(np.int64), nc)
    del k, j, lo, hi
    order = np.argsort(cam_idx * views.size + pt_idx, kind="stable")
    return cam_idx[order], pt_idx[order]


def _project(cams: np.ndarray, pts: np.ndarray, cam_idx: np.ndarray, pt_idx: np.ndarray):
    """BAL predictions, raw depths and the largest |normalized coordinate| of each observation, in chunks."""
    m = cam_idx.size
    pred = np.empty((m, 2))
    depth = np.empty(m)
    off_axis = np.empty(m)
    for a in range(0, m, _CHUNK):
        b = min(m, a + _CHUNK)
        ci, pj = cam_idx[a:b], pt_idx[a:b]
        pred[a:b], depth[a:b] = bal_project(cams[ci], pts[pj])
        Rc = so3.exp(cams[ci, 0:3])
        P = np.einsum("mij,mj->mi", Rc, pts[pj]) + cams[ci, 3:6]
        off_axis[a:b] = np.abs(P[:, 0:2] / P[:, 2:3]).max(axis=1)
    return pred, depth, off_axis


# -- pose graphs -----------------------------------------------------------------------------------------
def generate_pose_graph(
    kind: str,
    poses: int,
    seed: int = 0,
    *,
    translation_sigma: float = 0.05,
    rotation_sigma: float = 0.01,
) -> GeneratedPoseGraph:
    """A seeded pose graph of ``poses`` poses of ``kind`` (one of :data:`PGO_KINDS`, see the module docstring)
    with loop closures, and its ground truth. Returns ``(initial, truth)``, two :class:`PoseGraph` with the
    same edges: the odometry-composed initial guess and the true poses. The sigmas (m, rad) are the
    measurement noise of :func:`~mixslam.sim.pose_graph.simulate_pose_graph`.

    Raises :class:`ConfigError` for an unknown kind, fewer than 2 poses, a bad seed or a negative sigma.
    """
    if kind not in _PGO_SIM:
        raise ConfigError(f"generate_pose_graph: kind must be one of {', '.join(PGO_KINDS)}, got {kind!r}")
    n = _count(poses, "generate_pose_graph: poses", 2)
    seed = check_seed(seed, "generate_pose_graph: seed")
    sim_kind, loop_prob = _PGO_SIM[kind]
    graph, R, t = simulate_pose_graph(
        sim_kind,
        n,
        seed=seed,
        translation_sigma=translation_sigma,
        rotation_sigma=rotation_sigma,
        loop_closure_prob=loop_prob,
    )
    label = f"<generate pgo {kind} poses={n} seed={seed}"
    graph.source = label + ">"
    truth = graph.with_poses(R, t)
    truth.source = label + " truth>"
    return GeneratedPoseGraph(graph, truth)
