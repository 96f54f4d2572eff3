"""Seeded simulator of a full SLAM run in a household world, with ground truth.

The world (z up, metres; :func:`make_world`):

* a grid of ``rooms[0] x rooms[1]`` rectangular rooms (columns along x, rows along y; each column width and
  row depth uniform in ``room_size``), floor at z = 0, walls ``wall_height`` high. Walls have no thickness:
  they are 2-D segments of the floor plan (:attr:`World.walls`). Neighbouring rooms on the tour (below) are
  joined by a door, a full-height gap of width uniform in ``door_width`` in the shared wall; other shared
  walls get one with probability ``extra_door_prob``;
* landmarks: on every wall face (Poisson, ``wall_density`` per m^2, 1-5 cm proud of the wall, into the room
  the face belongs to), on the exposed faces (top and the three sides away from the wall) of
  ``furniture_per_room`` boxes per room standing against the walls (``furniture_density`` per m^2; wall
  landmarks hidden behind a box are removed), and on the floor and ceiling (``floor_density``,
  ``ceiling_density``). Each landmark carries the outward normal of its surface;
* the route: a closed tour through the rooms of the grid's outer ring (one room for a 1 x 1 grid), waypoints
  at each door (and 0.6 m either side of it, so doors are crossed square on) and one inside each room
  (its centre pulled towards the middle of the building, jittered). The tour is the closed centripetal
  Catmull-Rom spline through the waypoints, its turns rounded by a Gaussian filter (:func:`tour`; turn
  radii >= about 0.6 m), at least ``route_clearance`` from every wall and 0.5 m from every furniture box
  (the draw is repeated until it is).

The run (:func:`simulate_run`):

* the robot drives the tour (random start, random direction) with a smooth lateral wobble of amplitude up to
  ``lateral_wobble``; keyframes are ``speed`` metres apart along the 3-D path. The camera (x right, y down,
  z forward) looks along the horizontal motion with a smooth yaw wobble (3-6 deg). ``planar=True``: height
  uniform in [1.05, 1.25] m plus bumps of 1-3 cm, roll and pitch tilt within 1.5 deg. ``planar=False``: the
  height wanders over [0.7, 1.7] m (slopes up to about 30 deg) and the camera pitches with the slope plus up
  to 9 deg of wobble, rolling up to 4.6 deg;
* visibility: a keyframe sees a landmark when its depth (camera z) is in [``min_depth``, ``max_range``], its
  true projection is inside the image (``0 <= u < width``, ``0 <= v < height``), the camera is on the outer
  side of the landmark's surface (``normal . (centre - landmark) > 0``; a zero normal is seen from any side),
  and the 2-D sight line from the camera centre to the landmark crosses no wall segment (walls are full
  height, doors full-height gaps). Furniture boxes occlude nothing (a box's own far faces are culled by the
  normal test; boxes hiding other landmarks are ignored). Every visible landmark is observed;
* each observation is the true projection (:func:`mixslam.problem.camera.pinhole_project`) plus
  N(0, pixel_noise^2) noise per coordinate (it may fall just outside the image); then
  ``round(outlier_fraction * m)`` observations drawn at random get a pixel uniform over the image instead
  (flagged in ``obs_outlier``; they keep their landmark id);
* wheel odometry: the true relative motion ``T_k^-1 T_{k+1}`` (camera frames) perturbed on the right,
  ``R <- R Exp(w)``, ``t <- t + v``, with ``w ~ N(0, (b d)^2 I)``, ``v ~ N(0, (a d)^2 I)``, ``d`` the step
  length and ``(a, b) = odometry_noise``: the error of the composed odometry grows with the distance driven.

Loop closures (:func:`loop_candidates`): a true revisit is a pair (i, j), ``j - i > min_separation``, of
keyframes at most ``max_distance`` apart whose orientations differ by at most ``max_angle``. The
simulated front end matches landmarks by their true ids, so its false candidates (different places) share no
landmarks and never pass a geometric verification; :func:`aliased_candidates` (``aliasing_rate``, off by
default) adds the failure a real front end has, perceptual aliasing: a different place proposed with wrong
matches, part of them consistent with one wrong relative pose (repeated structure).

Randomness: ``numpy.random.default_rng([seed, k])`` with a distinct ``k`` per stream (world layout 0, world
landmarks 1, trajectory start 10, path wobble 14, camera wobble 15, pixel noise 11, outliers 12,
odometry 13, loops 20, aliased loops 21), so a seed reproduces every array bit for bit and the streams are independent
(changing ``outlier_fraction`` does not change the pixel noise, changing the odometry noise does not change
the trajectory, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from ..errors import ConfigError, check_config_fields, check_seed
from ..lie import so3
from ..problem.camera import pinhole_project

__all__ = [
    "WorldConfig",
    "CameraConfig",
    "TrajectoryConfig",
    "LoopConfig",
    "World",
    "Run",
    "make_world",
    "simulate_run",
    "loop_candidates",
    "aliased_candidates",
    "AliasedCandidate",
    "revisit_pairs",
    "tour",
    "SURFACE_WALL",
    "SURFACE_FURNITURE",
    "SURFACE_FLOOR",
    "SURFACE_CEILING",
]

SURFACE_WALL = 0
"""``World.landmark_surface`` code of a landmark on a wall."""
SURFACE_FURNITURE = 1
"""... on a furniture box."""
SURFACE_FLOOR = 2
"""... on the floor."""
SURFACE_CEILING = 3
"""... on the ceiling."""

_DOOR_APPROACH = 0.6  # m: route waypoints this far either side of a door's centre
_FURNITURE_CLEARANCE = 0.5  # m: boxes keep this far from the tour
_ROUTE_STEP = 0.01  # m: tabulation step of the tour and of the trajectory
_TOUR_SMOOTH = 0.4  # m: std of the Gaussian filter that rounds the tour's turns
_MAX_TRIES = 200  # draws of the layout / of a furniture box before giving up
_FRAME_CHUNK = 32  # keyframes per vectorised visibility block
# camera axes in the body frame (x forward, y left, z up): x_cam = right, y_cam = down, z_cam = forward
_R_BODY_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


# -- configuration -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorldConfig:
    """Parameters of :func:`make_world`. Defaults: 3 x 2 rooms of 4-5 m, 1,200-1,450 landmarks (60% on
    walls, 25% on furniture, 10% floor, 5% ceiling), a 22-25 m tour; with the default camera and trajectory
    100-115 landmarks visible per keyframe on average (least 48-75 over a run; 20 seeds measured)."""

    rooms: tuple = (3, 2)
    """Grid of rooms (columns along x, rows along y); both >= 2, or (1, 1) for a single room."""
    room_size: tuple = (4.0, 5.0)
    """Range (m) of each column's width and each row's depth (uniform)."""
    wall_height: float = 2.5
    """Height of the walls (m); the ceiling is at this height."""
    door_width: tuple = (1.3, 1.6)
    """Range (m) of a door's width (uniform). Doors are full-height gaps in the walls."""
    extra_door_prob: float = 0.5
    """Probability of a door in a shared wall the tour does not cross (more sight lines between rooms)."""
    wall_density: float = 4.0
    """Landmarks per m^2 of wall face (both faces of an inner wall, the inner face of an outer wall)."""
    furniture_per_room: int = 2
    """Furniture boxes per room, standing against the walls (0.5-1.5 m wide, 0.4-0.8 m deep, 0.4-1.8 m high)."""
    furniture_density: float = 8.0
    """Landmarks per m^2 of the exposed faces of the furniture boxes."""
    floor_density: float = 1.0
    """Landmarks per m^2 of floor."""
    ceiling_density: float = 0.5
    """Landmarks per m^2 of ceiling."""
    route_clearance: float = 0.55
    """Least distance (m) from the tour to any wall (the trajectory's lateral wobble comes on top: keep
    ``route_clearance - lateral_wobble >= 0.4``)."""

    def __post_init__(self):
        r = self.rooms
        if (
            not isinstance(r, (tuple, list))
            or len(r) != 2
            or any(isinstance(v, bool) or not isinstance(v, Integral) for v in r)
            or not (tuple(r) == (1, 1) or min(r) >= 2)
        ):
            _fail(self, "rooms", "(nx, ny) integers, both >= 2, or (1, 1)", r)
        _check_range(self, "room_size", 0.0)
        _check_range(self, "door_width", 0.0)
        check_config_fields(
            self,
            ints={"furniture_per_room": 0},
            nonnegative=("wall_density", "furniture_density", "floor_density", "ceiling_density", "route_clearance"),
            positive=("wall_height",),
            fractions=("extra_door_prob",),
        )
        need = 2.0 * (_DOOR_APPROACH + self.route_clearance)
        if self.room_size[0] < need or self.door_width[1] + 1.2 > self.room_size[0]:
            raise ConfigError(
                f"WorldConfig.room_size {self.room_size!r} is too small for doors {self.door_width!r} "
                f"and a route clearance of {self.route_clearance} m (need >= {need:.2f} m and >= the "
                "widest door + 1.2 m)"
            )


@dataclass(frozen=True)
class CameraConfig:
    """The keyframe camera of :func:`simulate_run` (defaults: 640 x 480, 77 deg horizontal field of view)."""

    fx: float = 400.0
    """Horizontal focal length (px)."""
    fy: float = 400.0
    """Vertical focal length (px)."""
    cx: float = 320.0
    """Principal point x (px)."""
    cy: float = 240.0
    """Principal point y (px)."""
    width: int = 640
    """Image width (px); a projection is inside when 0 <= u < width."""
    height: int = 480
    """Image height (px); a projection is inside when 0 <= v < height."""
    max_range: float = 8.0
    """Largest depth (camera z, m) at which a landmark is seen."""
    min_depth: float = 0.2
    """Smallest depth (m) at which a landmark is seen."""
    pixel_noise: float = 1.0
    """Standard deviation of the Gaussian pixel noise per coordinate (px); 0 gives exact inliers."""
    outlier_fraction: float = 0.0
    """Fraction of the observations (rounded to a count) whose pixel is replaced by one uniform over the
    image; they are flagged in ``Run.obs_outlier`` and keep their landmark id."""

    def __post_init__(self):
        check_config_fields(
            self,
            positive=("fx", "fy", "width", "height", "max_range", "min_depth"),
            nonnegative=("pixel_noise",),
            fractions=("outlier_fraction",),
        )
        _check_finite(self, "cx")
        _check_finite(self, "cy")
        if self.max_range <= self.min_depth:
            raise ConfigError(
                f"CameraConfig.max_range must exceed min_depth ({self.min_depth}), got {self.max_range!r}"
            )

    def intrinsics(self) -> np.ndarray:
        """(fx, fy, cx, cy) as a float64 array."""
        return np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float64)


@dataclass(frozen=True)
class TrajectoryConfig:
    """The ground-truth motion and the wheel odometry of :func:`simulate_run`."""

    keyframes: int | None = 300
    """Number of keyframes. None: as many as ``laps`` full laps of the tour take (``1 + floor(length /
    speed)``). With a given count the robot keeps touring as long as it needs (the default world's tour is
    19-27 m, so the default 300 keyframes = 29.9 m drive about 1.1-1.6 laps and revisit the start)."""
    laps: float = 2.0
    """Laps of the tour driven when ``keyframes`` is None."""
    speed: float = 0.1
    """Distance between consecutive keyframes along the 3-D path (arc length, m; the straight-line distance
    is at most ~0.2% shorter at 0.1 m, ~0.6% at 0.25 m, on the tightest turns); 0.1 is 10 Hz at 1 m/s."""
    planar: bool = True
    """True: wheeled robot, height 1.05-1.25 m with 1-3 cm bumps, roll/pitch tilt within 1.5 deg. False: free
    3-D motion (hand-held or flying), height over 0.7-1.7 m, the camera pitching with the slope (up to about
    30 deg) plus up to 9 deg of wobble."""
    lateral_wobble: float = 0.1
    """Largest sideways deviation (m) of the path from the tour (a smooth random wobble, different each lap)."""
    odometry_noise: tuple = (0.05, 0.05)
    """(a, b): per step of length d, translation noise std ``a d`` (m) and rotation noise std ``b d`` (rad)
    per axis; (0, 0) gives exact odometry. Default (0.05, 0.05), wheel odometry of a small indoor robot (about
    3 deg of heading error per metre). With (0.02, 0.01) the raw odometry was about as good as our monocular
    VO, so a non-converging solver (naive fp16) that leaves the odometry prediction looked *better*."""

    def __post_init__(self):
        # 2 keyframes: one odometry step, the least the simulator needs (the SLAM study needs 3, see StudyConfig)
        check_config_fields(
            self,
            ints={} if self.keyframes is None else {"keyframes": 2},
            positive=("laps", "speed"),
            nonnegative=("lateral_wobble",),
            choices={"planar": (True, False)},
        )
        v = self.odometry_noise
        if not _pair(v) or min(v) < 0:
            _fail(
                self,
                "odometry_noise",
                "a pair (a, b) of finite numbers >= 0 (translation fraction, rotation rad per m)",
                v,
            )


@dataclass(frozen=True)
class LoopConfig:
    """Loop-closure candidates of :func:`loop_candidates` (a simulated place-recognition front end)."""

    recall: float = 0.5
    """Probability that a keyframe j with a true revisit partner gets one true candidate (i, j)."""
    false_positive_rate: float = 0.01
    """Probability per keyframe j (with some i < j - min_separation) of one false candidate (i, j)."""
    min_separation: int = 50
    """Candidates (i, j) have ``j - i > min_separation`` keyframes."""
    max_distance: float = 1.0
    """A true revisit's camera centres are at most this far apart (m)."""
    max_angle: float = 30.0
    """... and its camera orientations differ by at most this angle (deg)."""
    aliasing_rate: float = 0.0
    """Probability per keyframe j (with some i < j - min_separation more than ``2 * max_distance`` away) of one
    perceptually aliased candidate (:func:`aliased_candidates`): a different place that looks like an
    earlier one, proposed with wrong matches of which ``aliasing_matches`` agree on one wrong relative pose.
    0 (the default) draws none; ``false_positive_rate``'s candidates are different places too, but they
    share no landmark ids with j, so the verification always rejects them."""
    aliasing_matches: tuple = (6, 40)
    """Range (inclusive integers) of an aliased candidate's wrong matches that are consistent with its wrong
    relative pose (repeated structure: the inliers a verification finds)."""
    aliasing_outliers: tuple = (0, 20)
    """Range (inclusive integers) of its further wrong matches, at random pixels (the verification's outliers)."""

    def __post_init__(self):
        check_config_fields(
            self,
            ints={"min_separation": 0},
            nonnegative=("max_distance", "max_angle"),
            fractions=("recall", "false_positive_rate", "aliasing_rate"),
        )
        if self.max_angle > 180.0:
            _fail(self, "max_angle", "a number of degrees in [0, 180]", self.max_angle)
        for name in ("aliasing_matches", "aliasing_outliers"):
            v = getattr(self, name)
            if not (
                isinstance(v, (tuple, list))
                and len(v) == 2
                and all(isinstance(x, Integral) and not isinstance(x, bool) for x in v)
                and 0 <= v[0] <= v[1]
            ):
                _fail(self, name, "a pair (lo, hi) of integers with 0 <= lo <= hi", v)


# -- results -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class World:
    """The static scene. Only ``landmarks``, ``walls`` and ``route`` are needed to build one by hand; the
    other arrays default to empty (``normals`` to zeros: seen from any side)."""

    landmarks: np.ndarray
    """(L, 3) float64 landmark positions (world, z up)."""
    walls: np.ndarray
    """(S, 2, 2) float64 wall segments of the floor plan ``[[x0, y0], [x1, y1]]``: the occluders (doors are
    gaps between segments)."""
    route: np.ndarray
    """(w, 2) float64 waypoints of the closed tour in free space (the first is not repeated at the end)."""
    normals: np.ndarray | None = None
    """(L, 3) float64 outward unit normal of each landmark's surface; a zero row: seen from any side."""
    landmark_surface: np.ndarray | None = None
    """(L,) int8 surface code (:data:`SURFACE_WALL`, ``_FURNITURE``, ``_FLOOR``, ``_CEILING``)."""
    landmark_room: np.ndarray | None = None
    """(L,) int64 index into ``rooms`` of the room a landmark faces (-1 unknown)."""
    rooms: np.ndarray | None = None
    """(R, 4) float64 room rectangles ``[xmin, ymin, xmax, ymax]``, room ``ix + nx * iy``."""
    doors: np.ndarray | None = None
    """(D, 2, 2) float64 door gaps (segments across the opening, for plotting)."""
    furniture: np.ndarray | None = None
    """(F, 2, 3) float64 furniture boxes ``[min corner, max corner]``."""
    wall_height: float = 2.5
    """Wall (and ceiling) height (m)."""
    config: WorldConfig | None = None
    """The configuration :func:`make_world` used (None for a hand-built world)."""
    seed: int | None = None
    """The seed :func:`make_world` used."""

    def __post_init__(self):
        def arr(v, shape, dtype=np.float64):
            a = np.ascontiguousarray(np.asarray(v, dtype=dtype)).reshape(shape)
            a.flags.writeable = False
            return a

        lm = arr(self.landmarks, (-1, 3))
        n = lm.shape[0]
        object.__setattr__(self, "landmarks", lm)
        object.__setattr__(self, "walls", arr(self.walls, (-1, 2, 2)))
        object.__setattr__(self, "route", arr(self.route, (-1, 2)))
        defaults = {
            "normals": (np.zeros((n, 3)), (n, 3), np.float64),
            "landmark_surface": (np.zeros(n), (n,), np.int8),
            "landmark_room": (np.full(n, -1), (n,), np.int64),
            "rooms": (np.zeros((0, 4)), (-1, 4), np.float64),
            "doors": (np.zeros((0, 2, 2)), (-1, 2, 2), np.float64),
            "furniture": (np.zeros((0, 2, 3)), (-1, 2, 3), np.float64),
        }
        for name, (empty, shape, dtype) in defaults.items():
            v = getattr(self, name)
            object.__setattr__(self, name, arr(empty if v is None else v, shape, dtype))
        if self.route.shape[0] < 3:
            raise ValueError(f"World.route needs at least 3 waypoints, got {self.route.shape[0]}")
        if not (np.isfinite(lm).all() and np.isfinite(self.walls).all() and np.isfinite(self.route).all()):
            raise ValueError("World: landmarks, walls and route must be finite")

    @property
    def num_landmarks(self) -> int:
        return int(self.landmarks.shape[0])

    def __repr__(self) -> str:
        rooms, doors, furniture = self.rooms, self.doors, self.furniture
        assert rooms is not None and doors is not None and furniture is not None  # arrays since __post_init__
        return (
            f"World(landmarks={self.num_landmarks}, walls={self.walls.shape[0]}, rooms={rooms.shape[0]}, "
            f"doors={doors.shape[0]}, furniture={furniture.shape[0]}, route={self.route.shape[0]} "
            f"waypoints, seed={self.seed})"
        )


@dataclass(frozen=True, eq=False)
class Run:
    """One simulated run (:func:`simulate_run`); ``n`` keyframes, ``m`` observations."""

    R_wc: np.ndarray
    """(n, 3, 3) float64 true keyframe orientations, camera -> world (camera x right, y down, z forward)."""
    t_wc: np.ndarray
    """(n, 3) float64 true camera centres in the world."""
    obs_frame: np.ndarray
    """(m,) int64 keyframe of each observation (observations are sorted by keyframe, then landmark)."""
    obs_landmark: np.ndarray
    """(m,) int64 landmark index into ``world.landmarks`` (the true data association, outliers included)."""
    obs_pixel: np.ndarray
    """(m, 2) float64 measured pixel (u, v)."""
    obs_outlier: np.ndarray
    """(m,) bool: the pixel is a random one (an outlier)."""
    odom_R: np.ndarray
    """(n-1, 3, 3) float64 wheel-odometry rotation of step k, measuring ``R_wc[k]^T R_wc[k+1]``."""
    odom_t: np.ndarray
    """(n-1, 3) float64 wheel-odometry translation of step k, measuring ``R_wc[k]^T (t_wc[k+1] - t_wc[k])``."""
    intrinsics: np.ndarray
    """(4,) float64 (fx, fy, cx, cy)."""
    pixel_noise: float
    """Pixel noise std per coordinate (px) of the inliers."""
    seed: int
    """The seed :func:`simulate_run` used."""
    world: World
    """The world the run was simulated in (``world.landmarks`` are the true landmark positions)."""
    trajectory_config: TrajectoryConfig
    """The trajectory configuration used."""
    camera_config: CameraConfig
    """The camera configuration used."""
    distance: np.ndarray
    """(n,) float64 distance driven (arc length of the 3-D path) up to each keyframe: ``k * speed``."""

    def __repr__(self) -> str:
        return (
            f"Run(frames={self.num_frames}, observations={self.num_observations}, "
            f"outliers={int(self.obs_outlier.sum())}, landmarks={self.world.num_landmarks}, seed={self.seed})"
        )

    @property
    def num_frames(self) -> int:
        return int(self.R_wc.shape[0])

    @property
    def num_observations(self) -> int:
        return int(self.obs_frame.shape[0])

    @property
    def landmarks(self) -> np.ndarray:
        """(L, 3) true landmark positions (``world.landmarks``)."""
        return self.world.landmarks

    def cameras(self) -> np.ndarray:
        """(n, 12) true cameras ``[R_cw row-major, t_cw]`` (world -> camera) for
        :func:`mixslam.problem.camera.pinhole_project` and :class:`mixslam.problem.bundle.BundleData`."""
        R_cw = np.swapaxes(self.R_wc, 1, 2)
        t_cw = -np.einsum("nij,nj->ni", R_cw, self.t_wc)
        return np.concatenate([R_cw.reshape(-1, 9), t_cw], axis=1)


# -- validation ------------------------------------------------------------------------------------------
# The scalar rules are checked by ``check_config_fields`` in each config's ``__post_init__``; these helpers
# add the pair and cross-field rules, with the same ``Class.field must be ..., got ...`` message.
def _fail(cfg, name, what, v):
    raise ConfigError(f"{type(cfg).__name__}.{name} must be {what}, got {v!r}")


def _pair(v) -> bool:
    return (
        isinstance(v, (tuple, list))
        and len(v) == 2
        and all(isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x) for x in v)
    )


def _check_range(cfg, name, lo):
    """``name`` is a pair (a, b) of finite numbers with lo < a <= b."""
    v = getattr(cfg, name)
    if not _pair(v) or not lo < v[0] <= v[1]:
        _fail(cfg, name, f"a pair (lo, hi) of finite numbers with {lo} < lo <= hi", v)


def _check_finite(cfg, name):
    v = getattr(cfg, name)
    if not (isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)):
        _fail(cfg, name, "a finite number", v)


def _check_world(c: WorldConfig) -> WorldConfig:
    if not isinstance(c, WorldConfig):
        raise TypeError(f"config must be a WorldConfig, got {type(c).__name__}")
    return c


def _check_camera(c: CameraConfig) -> CameraConfig:
    if not isinstance(c, CameraConfig):
        raise TypeError(f"camera must be a CameraConfig, got {type(c).__name__}")
    return c


def _check_trajectory(c: TrajectoryConfig) -> TrajectoryConfig:
    if not isinstance(c, TrajectoryConfig):
        raise TypeError(f"traj must be a TrajectoryConfig, got {type(c).__name__}")
    return c


def _check_loop(c: LoopConfig) -> LoopConfig:
    if not isinstance(c, LoopConfig):
        raise TypeError(f"config must be a LoopConfig, got {type(c).__name__}")
    return c


def _seed(seed, where: str) -> int:
    return check_seed(seed, f"{where}: seed")


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


# -- world -----------------------------------------------------------------------------------------------
def make_world(config: WorldConfig = WorldConfig(), seed: int = 0) -> World:
    """Draw a household world (see the module docstring): rooms, doors, furniture, landmarks and the tour."""
    cfg = _check_world(config)
    seed = _seed(seed, "make_world")
    rng = _rng(seed, 0)
    nx, ny = (int(v) for v in cfg.rooms)
    lo, hi = cfg.room_size
    X = np.concatenate([[0.0], np.cumsum(rng.uniform(lo, hi, nx))])
    Y = np.concatenate([[0.0], np.cumsum(rng.uniform(lo, hi, ny))])
    rooms = np.array([[X[i], Y[j], X[i + 1], Y[j + 1]] for j in range(ny) for i in range(nx)])
    ring = _ring(nx, ny)
    tour_edges = {frozenset((ring[k], ring[(k + 1) % len(ring)])) for k in range(len(ring))} if len(ring) > 1 else set()
    # shared walls: (room a, room b, axis, coordinate, lo, hi); axis 0: wall at x = coordinate along y
    shared = []
    for j in range(ny):
        for i in range(nx):
            a = i + nx * j
            if i + 1 < nx:
                shared.append((a, a + 1, 0, X[i + 1], Y[j], Y[j + 1]))
            if j + 1 < ny:
                shared.append((a, a + nx, 1, Y[j + 1], X[i], X[i + 1]))
    extra = rng.random(len(shared)) < cfg.extra_door_prob
    for _ in range(_MAX_TRIES):
        doors = {}  # shared-wall index -> (centre along the wall, width)
        for k, (a, b, _axis, _c, s0, s1) in enumerate(shared):
            if frozenset((a, b)) in tour_edges or extra[k]:
                w = rng.uniform(*cfg.door_width)
                mid, half = 0.5 * (s0 + s1), 0.15 * (s1 - s0)  # door centres in the middle 30% of the wall
                lo_c = max(mid - half, s0 + 0.5 * w + 0.1)
                hi_c = min(mid + half, s1 - 0.5 * w - 0.1)
                doors[k] = (rng.uniform(lo_c, max(lo_c, hi_c)), w)
        walls, door_segs = _walls(X, Y, shared, doors)
        route = _route(ring, rooms, shared, doors, X, Y, rng)
        curve = tour(route)
        if _min_distance(curve, walls) >= cfg.route_clearance:
            break
    else:
        raise RuntimeError(
            f"make_world: no tour with route_clearance {cfg.route_clearance} m after "
            f"{_MAX_TRIES} draws; lower it or widen the doors/rooms"
        )
    furniture = _furniture(cfg, rooms, door_segs, curve, rng)

    lm_rng = _rng(seed, 1)
    parts = [
        _wall_landmarks(cfg, X, Y, shared, doors, lm_rng),
        _furniture_landmarks(cfg, furniture, X, Y, lm_rng),
        _flat_landmarks(cfg, rooms, lm_rng),
    ]
    pts = np.concatenate([p[0] for p in parts])
    nrm = np.concatenate([p[1] for p in parts])
    surf = np.concatenate([p[2] for p in parts])
    room = np.concatenate([p[3] for p in parts])
    # wall landmarks hidden behind a furniture box (the box stands against the wall)
    hidden = np.zeros(len(pts), dtype=bool)
    wall_lm = surf == SURFACE_WALL
    for (x0, y0, _z0), (x1, y1, z1) in zip(furniture[:, 0], furniture[:, 1]):
        hidden |= (
            wall_lm & (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1) & (pts[:, 2] <= z1)
        )
    keep = ~hidden
    return World(
        landmarks=pts[keep],
        walls=walls,
        route=route,
        normals=nrm[keep],
        landmark_surface=surf[keep],
        landmark_room=room[keep],
        rooms=rooms,
        doors=door_segs,
        furniture=furniture,
        wall_height=float(cfg.wall_height),
        config=cfg,
        seed=seed,
    )


def _ring(nx: int, ny: int) -> list:
    """Rooms of the grid's outer ring in order (counter-clockwise from room 0)."""
    if nx == 1 and ny == 1:
        return [0]
    cells = (
        [(i, 0) for i in range(nx)]
        + [(nx - 1, j) for j in range(1, ny)]
        + [(i, ny - 1) for i in range(nx - 2, -1, -1)]
        + [(0, j) for j in range(ny - 2, 0, -1)]
    )
    return [i + nx * j for i, j in cells]


def _walls(X, Y, shared, doors):
    """(wall segments (S, 2, 2), door segments (D, 2, 2)) of the floor plan."""
    segs, door_segs = [], []

    def add(axis, c, s0, s1):
        if s1 - s0 > 1e-9:
            segs.append([[c, s0], [c, s1]] if axis == 0 else [[s0, c], [s1, c]])

    # outer walls
    for x in (X[0], X[-1]):
        add(0, x, Y[0], Y[-1])
    for y in (Y[0], Y[-1]):
        add(1, y, X[0], X[-1])
    for k, (_a, _b, axis, c, s0, s1) in enumerate(shared):
        if k in doors:
            m, w = doors[k]
            add(axis, c, s0, m - 0.5 * w)
            add(axis, c, m + 0.5 * w, s1)
            door_segs.append(
                [[c, m - 0.5 * w], [c, m + 0.5 * w]] if axis == 0 else [[m - 0.5 * w, c], [m + 0.5 * w, c]]
            )
        else:
            add(axis, c, s0, s1)
    return np.array(segs, dtype=np.float64).reshape(-1, 2, 2), np.array(door_segs, dtype=np.float64).reshape(-1, 2, 2)


def _route(ring, rooms, shared, doors, X, Y, rng):
    """Closed tour waypoints: per ring room, its inner point, then the door to the next room (approach,
    centre, exit)."""
    centre_all = np.array([0.5 * (X[0] + X[-1]), 0.5 * (Y[0] + Y[-1])])
    if len(ring) == 1:
        x0, y0, x1, y1 = rooms[0]
        inset = np.minimum(1.2, 0.3 * np.array([x1 - x0, y1 - y0]))
        j = rng.uniform(-0.2, 0.2, (4, 2))
        pts = (
            np.array(
                [
                    [x0 + inset[0], y0 + inset[1]],
                    [x1 - inset[0], y0 + inset[1]],
                    [x1 - inset[0], y1 - inset[1]],
                    [x0 + inset[0], y1 - inset[1]],
                ]
            )
            + j
        )
        return pts
    by_pair = {frozenset((a, b)): k for k, (a, b, *_r) in enumerate(shared)}
    pts = []
    for r, a in enumerate(ring):
        b = ring[(r + 1) % len(ring)]
        x0, y0, x1, y1 = rooms[a]
        c = np.array([0.5 * (x0 + x1), 0.5 * (y0 + y1)])
        pull = np.clip(0.3 * (centre_all - c), -0.8, 0.8)
        pts.append(c + pull + rng.uniform(-0.25, 0.25, 2))
        k = by_pair[frozenset((a, b))]
        _, _, axis, cw, _, _ = shared[k]
        m, _ = doors[k]
        door = np.array([cw, m]) if axis == 0 else np.array([m, cw])
        normal = np.zeros(2)
        cb = np.array([0.5 * (rooms[b][0] + rooms[b][2]), 0.5 * (rooms[b][1] + rooms[b][3])])
        normal[axis] = np.sign(cb[axis] - c[axis])  # from room a to room b
        pts += [door - _DOOR_APPROACH * normal, door, door + _DOOR_APPROACH * normal]
    return np.array(pts)


def tour(route: np.ndarray, step: float = _ROUTE_STEP, smooth: float = _TOUR_SMOOTH) -> np.ndarray:
    """The closed tour through the waypoints ``route`` (w, 2): the closed centripetal Catmull-Rom spline
    through them, resampled every ``step`` metres of arc length and smoothed by a circular Gaussian filter
    of ``smooth`` metres std (it rounds off the tight turns the spline makes at the waypoints; the default
    world's tour then passes within about 15 cm of them): (p, 2) points, the first repeated at the end."""
    C = _catmull_rom(route, min(step, 0.01))
    C = np.concatenate([C, C[:1]])
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(C, axis=0), axis=1))])
    L = s[-1]
    p = max(8, int(round(L / step)))
    su = np.arange(p) * (L / p)
    C = np.stack([np.interp(su, s, C[:, i]) for i in range(2)], axis=1)
    if smooth > 0:
        h = L / p
        half = min(p // 2, int(math.ceil(3.0 * smooth / h)))
        k = np.exp(-0.5 * (np.arange(-half, half + 1) * h / smooth) ** 2)
        k /= k.sum()
        pad = np.concatenate([C[-half:], C, C[:half]]) if half else C
        C = np.stack([np.convolve(pad[:, i], k, mode="valid") for i in range(2)], axis=1)
    return np.concatenate([C, C[:1]])


def _catmull_rom(route: np.ndarray, step: float) -> np.ndarray:
    """The closed centripetal Catmull-Rom spline through ``route``, tabulated at most ``step`` apart (in the
    chord between waypoints); the first point is not repeated."""
    P = np.asarray(route, dtype=np.float64)
    w = P.shape[0]
    P0, P1, P2, P3 = P[np.arange(-1, w - 1)], P, P[(np.arange(w) + 1) % w], P[(np.arange(w) + 2) % w]

    def knot(a, b):
        return np.maximum(np.linalg.norm(b - a, axis=1), 1e-12) ** 0.5

    t1 = knot(P0, P1)
    t2 = t1 + knot(P1, P2)
    t3 = t2 + knot(P2, P3)
    t0 = np.zeros(w)
    counts = np.maximum(2, np.ceil(np.linalg.norm(P2 - P1, axis=1) / step).astype(np.int64) * 2)
    seg = np.repeat(np.arange(w), counts)
    frac = (np.arange(seg.size) - np.repeat(np.cumsum(counts) - counts, counts)) / np.repeat(counts, counts)
    t = (t1[seg] + frac * (t2[seg] - t1[seg]))[:, None]
    a0, a1, a2, a3 = t0[seg, None], t1[seg, None], t2[seg, None], t3[seg, None]
    q0, q1, q2, q3 = P0[seg], P1[seg], P2[seg], P3[seg]
    A1 = ((a1 - t) * q0 + (t - a0) * q1) / (a1 - a0)
    A2 = ((a2 - t) * q1 + (t - a1) * q2) / (a2 - a1)
    A3 = ((a3 - t) * q2 + (t - a2) * q3) / (a3 - a2)
    B1 = ((a2 - t) * A1 + (t - a0) * A2) / (a2 - a0)
    B2 = ((a3 - t) * A2 + (t - a1) * A3) / (a3 - a1)
    return ((a2 - t) * B1 + (t - a1) * B2) / (a2 - a1)


def _min_distance(points: np.ndarray, walls: np.ndarray) -> float:
    """Least distance from the 2-D points to the wall segments."""
    if walls.shape[0] == 0:
        return np.inf
    a, b = walls[:, 0], walls[:, 1]
    ab = b - a
    ap = points[:, None, :] - a[None]
    s = np.clip(np.sum(ap * ab, axis=-1) / np.maximum(np.sum(ab * ab, axis=-1), 1e-300), 0.0, 1.0)
    d = ap - s[..., None] * ab
    return float(np.sqrt(np.min(np.sum(d * d, axis=-1))))


def _furniture(cfg, rooms, door_segs, curve, rng):
    """(F, 2, 3) boxes against the room walls, clear of the tour, the doors and each other."""
    boxes = []
    door_mid = 0.5 * (door_segs[:, 0] + door_segs[:, 1]) if door_segs.size else np.zeros((0, 2))
    for x0, y0, x1, y1 in rooms:
        placed = 0
        for _ in range(_MAX_TRIES):
            if placed == cfg.furniture_per_room:
                break
            width, depth, height = rng.uniform([0.5, 0.4, 0.4], [1.5, 0.8, 1.8])
            side = rng.integers(4)  # against wall: 0 x0, 1 x1, 2 y0, 3 y1
            if side < 2:
                along = rng.uniform(y0, y1 - width)
                bx = (x0, x0 + depth) if side == 0 else (x1 - depth, x1)
                by = (along, along + width)
            else:
                along = rng.uniform(x0, x1 - width)
                bx = (along, along + width)
                by = (y0, y0 + depth) if side == 2 else (y1 - depth, y1)
            lo_b = np.array([bx[0], by[0]])
            hi_b = np.array([bx[1], by[1]])
            # clear of the tour and of the doors (1 m around a door centre)
            if _box_near(lo_b, hi_b, curve, _FURNITURE_CLEARANCE) or _box_near(lo_b, hi_b, door_mid, 1.0):
                continue
            if any(np.all(lo_b < b[1, :2] + 0.1) and np.all(b[0, :2] - 0.1 < hi_b) for b in boxes):
                continue
            boxes.append(np.array([[bx[0], by[0], 0.0], [bx[1], by[1], height]]))
            placed += 1
    return np.array(boxes, dtype=np.float64).reshape(-1, 2, 3)


def _box_near(lo, hi, pts, margin):
    if pts.shape[0] == 0:
        return False
    d = np.maximum(np.maximum(lo - pts, pts - hi), 0.0)
    return bool(np.any(np.sum(d * d, axis=1) < margin * margin))


def _uniform_rect(rng, n, origin, u, v):
    """n points uniform on the parallelogram origin + a u + b v, a, b in [0, 1]."""
    ab = rng.random((n, 2))
    return origin + ab[:, :1] * u + ab[:, 1:] * v


def _wall_landmarks(cfg, X, Y, shared, doors, rng):
    """Landmarks on the wall faces, 1-5 cm proud of the wall, normals into the rooms."""
    nx, ny = len(X) - 1, len(Y) - 1
    faces = []  # (axis, coordinate, s0, s1, normal sign, room)
    for j in range(ny):
        faces.append((0, X[0], Y[j], Y[j + 1], +1.0, nx * j))
        faces.append((0, X[-1], Y[j], Y[j + 1], -1.0, nx - 1 + nx * j))
    for i in range(nx):
        faces.append((1, Y[0], X[i], X[i + 1], +1.0, i))
        faces.append((1, Y[-1], X[i], X[i + 1], -1.0, i + nx * (ny - 1)))
    for k, (a, b, axis, c, s0, s1) in enumerate(shared):
        pieces = [(s0, s1)]
        if k in doors:
            m, w = doors[k]
            pieces = [(s0, m - 0.5 * w), (m + 0.5 * w, s1)]
        for p0, p1 in pieces:
            if p1 - p0 > 1e-9:
                faces.append((axis, c, p0, p1, -1.0, a))  # room a lies on the low side
                faces.append((axis, c, p0, p1, +1.0, b))
    out_p, out_n, out_r = [], [], []
    h = cfg.wall_height
    for axis, c, s0, s1, sign, room in faces:
        n = rng.poisson(cfg.wall_density * (s1 - s0) * h)
        s = rng.uniform(s0, s1, n)
        z = rng.uniform(0.0, h, n)
        off = c + sign * rng.uniform(0.01, 0.05, n)
        p = np.stack([off, s, z], axis=1) if axis == 0 else np.stack([s, off, z], axis=1)
        nv = np.zeros(3)
        nv[axis] = sign
        out_p.append(p)
        out_n.append(np.broadcast_to(nv, (n, 3)))
        out_r.append(np.full(n, room, dtype=np.int64))
    P = np.concatenate(out_p)
    return P, np.concatenate(out_n), np.full(len(P), SURFACE_WALL, np.int8), np.concatenate(out_r)


def _furniture_landmarks(cfg, boxes, X, Y, rng):
    """Landmarks on the top and the sides of each box; the side flush with a wall gets none."""
    out_p, out_n, out_r = [np.zeros((0, 3))], [np.zeros((0, 3))], [np.zeros(0, np.int64)]
    for lo, hi in boxes:
        size = hi - lo
        faces = [
            (
                np.array([lo[0], lo[1], hi[2]]),
                np.array([size[0], 0, 0]),
                np.array([0, size[1], 0]),
                np.array([0.0, 0.0, 1.0]),
            )
        ]
        for axis in (0, 1):
            other = 1 - axis
            for sign, c in ((-1.0, lo[axis]), (1.0, hi[axis])):
                if np.any(np.abs((X if axis == 0 else Y) - c) < 1e-9):
                    continue  # flush with a wall
                corner = lo.copy()
                corner[axis] = c
                u = np.zeros(3)
                u[other] = size[other]
                v = np.array([0.0, 0.0, size[2]])
                nv = np.zeros(3)
                nv[axis] = sign
                faces.append((corner, u, v, nv))
        for corner, u, v, nv in faces:
            area = np.linalg.norm(np.cross(u, v))
            n = rng.poisson(cfg.furniture_density * area)
            p = _uniform_rect(rng, n, corner, u, v) + 0.005 * nv
            out_p.append(p)
            out_n.append(np.broadcast_to(nv, (n, 3)))
            out_r.append(np.full(n, -1, dtype=np.int64))
    P = np.concatenate(out_p)
    N = np.concatenate(out_n)
    return P, N, np.full(len(P), SURFACE_FURNITURE, np.int8), np.concatenate(out_r)


def _flat_landmarks(cfg, rooms, rng):
    out_p, out_n, out_r, out_s = [], [], [], []
    for r, (x0, y0, x1, y1) in enumerate(rooms):
        for density, z, nz, kind in (
            (cfg.floor_density, 0.0, 1.0, SURFACE_FLOOR),
            (cfg.ceiling_density, cfg.wall_height, -1.0, SURFACE_CEILING),
        ):
            n = rng.poisson(density * (x1 - x0) * (y1 - y0))
            p = _uniform_rect(
                rng,
                n,
                np.array([x0 + 0.05, y0 + 0.05, z]),
                np.array([x1 - x0 - 0.1, 0, 0]),
                np.array([0, y1 - y0 - 0.1, 0]),
            )
            out_p.append(p)
            out_n.append(np.broadcast_to(np.array([0.0, 0.0, nz]), (n, 3)))
            out_r.append(np.full(n, r, dtype=np.int64))
            out_s.append(np.full(n, kind, np.int8))
    return np.concatenate(out_p), np.concatenate(out_n), np.concatenate(out_s), np.concatenate(out_r)


# -- run ---------------------------------------------------------------------------------------------------
def simulate_run(
    world: World, traj: TrajectoryConfig = TrajectoryConfig(), camera: CameraConfig = CameraConfig(), seed: int = 0
) -> Run:
    """Simulate a run through ``world``: true keyframe poses, observations and wheel odometry (see the
    module docstring)."""
    if not isinstance(world, World):
        raise TypeError(f"world must be a World, got {type(world).__name__}")
    traj = _check_trajectory(traj)
    cam = _check_camera(camera)
    seed = _seed(seed, "simulate_run")
    R_wc, t_wc, dist = trajectory_poses(world, traj, seed)
    n = R_wc.shape[0]

    frame, lm = _visible(world, R_wc, t_wc, cam)
    K = cam.intrinsics()
    R_cw = np.swapaxes(R_wc, 1, 2)
    cams = np.concatenate([R_cw.reshape(n, 9), -np.einsum("nij,nj->ni", R_cw, t_wc)], axis=1)
    pred, _ = pinhole_project(cams[frame], world.landmarks[lm], K)
    m = frame.size
    noise = float(cam.pixel_noise)
    pixel = pred + _rng(seed, 11).normal(0.0, 1.0, (m, 2)) * noise
    out_rng = _rng(seed, 12)
    n_out = int(round(float(cam.outlier_fraction) * m))
    outlier = np.zeros(m, dtype=bool)
    if n_out:
        idx = out_rng.choice(m, n_out, replace=False)
        outlier[idx] = True
        pixel[idx] = out_rng.random((n_out, 2)) * np.array([cam.width, cam.height], dtype=np.float64)

    # wheel odometry: true relative motion perturbed on the right
    R_rel = np.swapaxes(R_wc[:-1], 1, 2) @ R_wc[1:]
    t_rel = np.einsum("nji,nj->ni", R_wc[:-1], t_wc[1:] - t_wc[:-1])
    step = np.linalg.norm(t_rel, axis=1)
    a, b = (float(v) for v in traj.odometry_noise)
    odo = _rng(seed, 13)
    w = odo.normal(0.0, 1.0, (n - 1, 3)) * (b * step)[:, None]
    v = odo.normal(0.0, 1.0, (n - 1, 3)) * (a * step)[:, None]
    odom_R = R_rel @ so3.exp(w) if b > 0 else R_rel
    odom_t = t_rel + v if a > 0 else t_rel

    def ro(x):
        x = np.ascontiguousarray(x)
        x.flags.writeable = False
        return x

    return Run(
        R_wc=ro(R_wc),
        t_wc=ro(t_wc),
        obs_frame=ro(frame),
        obs_landmark=ro(lm),
        obs_pixel=ro(pixel),
        obs_outlier=ro(outlier),
        odom_R=ro(odom_R),
        odom_t=ro(odom_t),
        intrinsics=ro(K),
        pixel_noise=noise,
        seed=seed,
        world=world,
        trajectory_config=traj,
        camera_config=cam,
        distance=ro(dist),
    )


def _sines(rng, u, amp_lo, amp_hi, wl_lo, wl_hi, k=2):
    """Sum of k sinusoids of u with random amplitudes, wavelengths and phases."""
    amp = rng.uniform(amp_lo, amp_hi, k)
    wl = rng.uniform(wl_lo, wl_hi, k)
    ph = rng.uniform(0.0, 2.0 * np.pi, k)
    return np.sum(amp * np.sin(2.0 * np.pi * u[:, None] / wl + ph), axis=1)


def trajectory_poses(world: World, cfg: TrajectoryConfig, seed: int):
    """(R_wc (n,3,3), t_wc (n,3), distance (n,)) of the keyframes."""
    rng = _rng(seed, 10)
    curve = tour(world.route, _ROUTE_STEP)
    if rng.random() < 0.5:
        curve = curve[::-1]
    s_tab = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
    L = float(s_tab[-1])
    s0 = rng.uniform(0.0, L)
    speed = float(cfg.speed)
    if cfg.keyframes is None:
        D = float(cfg.laps) * L
        need = None
    else:
        need = (int(cfg.keyframes) - 1) * speed
        D = 1.3 * need + 1.0
    while True:
        u, P, yaw, slope = _path(curve, s_tab[:-1], L, s0, D, cfg, _rng(seed, 14))
        S = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(P, axis=0), axis=1))])
        if need is None or S[-1] >= need:
            break
        D *= 2.0
    n = int(cfg.keyframes) if cfg.keyframes is not None else 1 + int(math.floor(S[-1] / speed + 1e-9))
    Sk = np.arange(n) * speed
    uk = np.interp(Sk, S, u)
    t_wc = np.stack([np.interp(Sk, S, P[:, i]) for i in range(3)], axis=1)
    yaw_k = np.interp(Sk, S, yaw)
    slope_k = np.interp(Sk, S, slope)
    g = _rng(seed, 15)  # orientation wobble
    yaw_k = yaw_k + _sines(g, uk, np.radians(1.5), np.radians(3.0), 3.0, 8.0)
    if cfg.planar:
        pitch = _sines(g, uk, 0.004, 0.012, 1.0, 4.0)
        roll = _sines(g, uk, 0.004, 0.012, 1.0, 4.0)
    else:
        pitch = -np.arctan(slope_k) + _sines(g, uk, 0.05, 0.08, 2.0, 6.0)
        roll = _sines(g, uk, 0.02, 0.04, 2.0, 6.0)
    R_wc = so3.from_euler(roll, pitch, yaw_k) @ _R_BODY_CAM
    return R_wc, t_wc, Sk


def _path(curve, s_tab, L, s0, D, cfg, g):
    """The 3-D path tabulated every _ROUTE_STEP of tour arc length u in [0, D]: (u, points (p,3), heading of
    the horizontal motion (unwrapped), slope dh/ds)."""
    u = np.arange(int(math.ceil(D / _ROUTE_STEP)) + 2) * _ROUTE_STEP
    base = np.stack([np.interp(u + s0, s_tab, curve[:-1, i], period=L) for i in range(2)], axis=1)
    tang = np.gradient(base, _ROUTE_STEP, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    left = np.stack([-tang[:, 1], tang[:, 0]], axis=1)
    w = _sines(g, u, 0.3 * cfg.lateral_wobble, 0.5 * cfg.lateral_wobble, 4.0, 10.0)
    xy = base + w[:, None] * left
    if cfg.planar:
        h = g.uniform(1.05, 1.25) + _sines(g, u, 0.005, 0.015, 1.0, 3.0)
    else:
        h = 1.2 + _sines(g, u, 0.25, 0.35, 6.0, 12.0, 1) + _sines(g, u, 0.05, 0.15, 3.0, 6.0, 1)
    P = np.concatenate([xy, h[:, None]], axis=1)
    dxy = np.gradient(xy, _ROUTE_STEP, axis=0)
    yaw = np.unwrap(np.arctan2(dxy[:, 1], dxy[:, 0]))
    slope = np.gradient(h, _ROUTE_STEP) / np.linalg.norm(dxy, axis=1)
    return u, P, yaw, slope


def _visible(world: World, R_wc: np.ndarray, t_wc: np.ndarray, cam: CameraConfig):
    """(frame, landmark) int64 pairs of the visible landmarks (see the module docstring), sorted by frame
    then landmark."""
    X = world.landmarks
    N = world.normals
    assert N is not None  # an array since World.__post_init__
    omni = ~np.any(N != 0.0, axis=1)
    walls = world.walls
    a, b = walls[:, 0], walls[:, 1]
    ab = b - a
    # o4[l, s]: side of wall s's line that landmark l is on
    o4 = ab[None, :, 0] * (X[:, None, 1] - a[None, :, 1]) - ab[None, :, 1] * (X[:, None, 0] - a[None, :, 0])
    fx, fy, cx, cy = (float(v) for v in cam.intrinsics())
    out_f, out_l = [], []
    n = R_wc.shape[0]
    for f0 in range(0, n, _FRAME_CHUNK):
        f1 = min(n, f0 + _FRAME_CHUNK)
        C = t_wc[f0:f1]
        d = X[None, :, :] - C[:, None, :]  # (f, L, 3)
        Pc = d @ R_wc[f0:f1]  # camera coordinates R_cw (X - C)
        z = Pc[..., 2]
        ok = (z >= cam.min_depth) & (z <= cam.max_range)
        zs = np.where(ok, z, 1.0)
        uu = fx * Pc[..., 0] / zs + cx
        vv = fy * Pc[..., 1] / zs + cy
        ok &= (uu >= 0.0) & (uu < cam.width) & (vv >= 0.0) & (vv < cam.height)
        ok &= omni[None, :] | (np.einsum("flk,lk->fl", d, N) < 0.0)  # normal . (C - X) > 0
        fi, li = np.nonzero(ok)
        if walls.shape[0] and fi.size:
            c = C[fi, :2]
            p = X[li, :2]
            o3 = ab[None, :, 0] * (c[:, None, 1] - a[None, :, 1]) - ab[None, :, 1] * (c[:, None, 0] - a[None, :, 0])
            cross_line = o3 * o4[li] < 0.0  # camera and landmark strictly on opposite sides
            r = p - c
            o1 = r[:, None, 0] * (a[None, :, 1] - c[:, None, 1]) - r[:, None, 1] * (a[None, :, 0] - c[:, None, 0])
            o2 = r[:, None, 0] * (b[None, :, 1] - c[:, None, 1]) - r[:, None, 1] * (b[None, :, 0] - c[:, None, 0])
            blocked = np.any(cross_line & (o1 * o2 <= 0.0), axis=1)
            fi, li = fi[~blocked], li[~blocked]
        out_f.append(fi + f0)
        out_l.append(li)
    if not out_f:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_f).astype(np.int64), np.concatenate(out_l).astype(np.int64)


# -- loop closures -----------------------------------------------------------------------------------------
def revisit_pairs(run: Run, config: LoopConfig = LoopConfig()) -> np.ndarray:
    """All true revisits (i, j) of ``run``: ``j - i > min_separation``, camera centres at most
    ``max_distance`` apart, orientations within ``max_angle``; (p, 2) int64 sorted by j, then i."""
    from scipy.spatial import cKDTree

    cfg = _check_loop(config)
    pairs = cKDTree(run.t_wc).query_pairs(float(cfg.max_distance), output_type="ndarray").astype(np.int64)
    pairs = np.sort(pairs.reshape(-1, 2), axis=1)
    pairs = pairs[pairs[:, 1] - pairs[:, 0] > cfg.min_separation]
    tr = np.einsum("nij,nij->n", run.R_wc[pairs[:, 0]], run.R_wc[pairs[:, 1]])  # trace(R_i^T R_j)
    pairs = pairs[0.5 * (tr - 1.0) >= math.cos(math.radians(cfg.max_angle))]
    return pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]


def loop_candidates(run: Run, config: LoopConfig = LoopConfig(), seed: int = 0) -> np.ndarray:
    """Simulated place-recognition proposals: (q, 3) int64 rows ``(i, j, is_true)``, sorted by j then i,
    all with ``i < j - min_separation``.

    True candidates: each keyframe j with at least one true revisit partner (:func:`revisit_pairs`) gets,
    with probability ``recall``, one candidate (i, j) with i uniform over its partners (at most one true
    candidate per keyframe: no near-duplicates). False candidates: each keyframe j gets, with probability
    ``false_positive_rate``, one pair (i, j) with i uniform over the keyframes before ``j - min_separation``
    that are not its true partners.
    """
    cfg = _check_loop(config)
    rng = _rng(_seed(seed, "loop_candidates"), 20)
    n = run.num_frames
    pairs = revisit_pairs(run, cfg)
    js, start, count = np.unique(pairs[:, 1], return_index=True, return_counts=True)
    r_keep, r_pick = rng.random(js.size), rng.random(js.size)
    r_fp, r_fpi = rng.random(n), rng.random(n)
    keep = r_keep < cfg.recall
    pick = start + np.minimum((r_pick * count).astype(np.int64), count - 1)
    true = pairs[pick[keep]]
    false = []
    sep = int(cfg.min_separation)
    for j in np.flatnonzero(r_fp < cfg.false_positive_rate):
        if j - sep <= 0:
            continue
        k = np.searchsorted(js, j)
        partners = pairs[start[k] : start[k] + count[k], 0] if k < js.size and js[k] == j else np.zeros(0, np.int64)
        free = np.setdiff1d(np.arange(j - sep, dtype=np.int64), partners, assume_unique=True)
        if free.size:
            false.append((int(free[min(int(r_fpi[j] * free.size), free.size - 1)]), int(j)))
    rows = np.concatenate(
        [
            np.column_stack([true, np.ones(len(true), np.int64)]),
            np.array([(i, j, 0) for i, j in false], dtype=np.int64).reshape(-1, 3),
        ]
    )
    return rows[np.lexsort((rows[:, 0], rows[:, 1]))]


@dataclass(frozen=True, eq=False)
class AliasedCandidate:
    """A perceptually aliased loop candidate (i, j) of :func:`aliased_candidates` with its wrong matches.

    Keyframe j is at a different place from keyframe i (centres more than ``2 * max_distance`` apart) but the
    front end believes it is a revisit: it pairs ``landmarks_i`` (landmarks keyframe i mapped) with pixels of
    keyframe j. The first ``consistent`` matches agree on one wrong relative pose (``R``, ``t``: what a
    verification that accepts them measures); the others are at random pixels. Each match also names the
    landmark of j's own observations the front end associated (``landmarks_j``, a wrong association that a
    global bundle adjustment fusing the loop's inliers would merge)."""

    i: int
    j: int
    landmarks_i: np.ndarray
    """(m,) int64 landmark ids of keyframe i's map in the matches."""
    pixels_j: np.ndarray
    """(m, 2) float64 the matched pixels in keyframe j."""
    points_j: np.ndarray
    """(m, 3) float64 the matched points in j's camera frame as j's own map would hold them (1% depth noise;
    NaN rows for the random matches): the 3-D/3-D initial guess of a verification."""
    landmarks_j: np.ndarray
    """(m,) int64 landmark ids of keyframe j's observations the matches were associated with."""
    consistent: int
    """The first ``consistent`` matches are consistent with (R, t)."""
    R: np.ndarray
    """(3, 3) the wrong relative rotation R_ci_cj the consistent matches agree on."""
    t: np.ndarray
    """(3,) the wrong relative translation t_ci_cj (m)."""


def aliased_candidates(run: Run, config: LoopConfig = LoopConfig(), seed: int = 0) -> list[AliasedCandidate]:
    """Perceptually aliased loop candidates (different places that look alike), sorted by j: each keyframe j
    gets, with probability ``aliasing_rate``, one candidate (i, j) with i uniform over the keyframes before
    ``j - min_separation`` whose centres are more than ``2 * max_distance`` from j's. Its matches: keyframe
    i's landmarks seen from a wrong pose of j relative to i drawn like a revisit (within ``max_distance`` and
    ``max_angle``), a count uniform in ``aliasing_matches`` of them projected there (+ pixel noise), plus a
    count uniform in ``aliasing_outliers`` at random pixels. Own random stream (21): turning aliasing on does
    not change :func:`loop_candidates`. None with ``aliasing_rate == 0``."""
    cfg = _check_loop(config)
    rng = _rng(_seed(seed, "aliased_candidates"), 21)
    n = run.num_frames
    sep = int(cfg.min_separation)
    cam = run.camera_config
    K = np.asarray(run.intrinsics, np.float64)
    sigma = float(run.pixel_noise)
    draw = rng.random(n)
    out: list[AliasedCandidate] = []
    if cfg.aliasing_rate <= 0:
        return out
    for jj in np.flatnonzero(draw < cfg.aliasing_rate):
        j = int(jj)
        if j - sep <= 0:
            continue
        far = np.flatnonzero(np.linalg.norm(run.t_wc[: j - sep] - run.t_wc[j], axis=1) > 2 * cfg.max_distance)
        if far.size == 0:
            continue
        i = int(far[rng.integers(far.size)])
        # The wrong pose of j relative to i (camera axes: x right, y down, z forward), like a true revisit:
        # a yaw about the camera's y axis and a horizontal offset, small tilts.
        yaw = math.radians(cfg.max_angle) * rng.uniform(-1.0, 1.0)
        tilt = np.radians(rng.uniform(-1.5, 1.5, 2))
        R = so3.exp(np.array([tilt[0], yaw, tilt[1]]))
        r, phi = cfg.max_distance * math.sqrt(rng.random()), rng.uniform(0.0, 2 * math.pi)
        t = np.array([r * math.cos(phi), rng.uniform(-0.03, 0.03), r * math.sin(phi)])
        seen_i = np.unique(run.obs_landmark[(run.obs_frame == i) & ~run.obs_outlier])
        X_ci = (run.landmarks[seen_i] - run.t_wc[i]) @ run.R_wc[i]  # R_wc^T (X - c)
        X_cj = (X_ci - t) @ R
        depth = X_cj[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = K[:2] * X_cj[:, :2] / depth[:, None] + K[2:]
        inside = (
            (depth >= cam.min_depth)
            & (depth <= cam.max_range)
            & (uv[:, 0] >= 0)
            & (uv[:, 0] < cam.width)
            & (uv[:, 1] >= 0)
            & (uv[:, 1] < cam.height)
        )
        good = rng.permutation(np.flatnonzero(inside))
        n_c = min(int(rng.integers(cfg.aliasing_matches[0], cfg.aliasing_matches[1] + 1)), good.size)
        rest = rng.permutation(np.setdiff1d(np.arange(seen_i.size), good[:n_c]))
        n_r = min(int(rng.integers(cfg.aliasing_outliers[0], cfg.aliasing_outliers[1] + 1)), rest.size)
        seen_j = np.unique(run.obs_landmark[run.obs_frame == j])
        m = min(n_c + n_r, seen_j.size)
        n_c, n_r = min(n_c, m), m - min(n_c, m)
        pick = np.concatenate([good[:n_c], rest[:n_r]]).astype(np.int64)
        pixels = np.concatenate(
            [
                uv[good[:n_c]] + rng.normal(0.0, 1.0, (n_c, 2)) * sigma,
                rng.uniform(0.0, 1.0, (n_r, 2)) * np.array([cam.width, cam.height]),
            ]
        )
        points = np.concatenate(
            [
                X_cj[good[:n_c]] * (1.0 + 0.01 * rng.normal(0.0, 1.0, (n_c, 1))),
                np.full((n_r, 3), np.nan),
            ]
        )
        out.append(
            AliasedCandidate(
                i,
                j,
                seen_i[pick].astype(np.int64),
                pixels,
                points,
                rng.choice(seen_j, m, replace=False).astype(np.int64),
                int(n_c),
                R,
                t,
            )
        )
    return out
