"""A bundle-adjustment problem as data: cameras, points, observations, gauge.

Two camera models share this container (``model``):

``"bal"``
    The BAL / Ceres ``SnavelyReprojectionError`` model. ``cameras`` is (nc, 9) per camera
    ``[w(3), t(3), f, k1, k2]`` (w: angle-axis, world -> camera). For world point X:
    ``P = R(w) X + t``, ``p = -P[:2] / P[2]``, ``r = 1 + k1 |p|² + k2 |p|⁴``, prediction ``f r p``. The state is
    updated additively in these 9 numbers (as Ceres and the BAL authors do), so the tangent dimension is 9.
``"pinhole"``
    A calibrated pinhole camera with an SE(3) pose, for visual odometry. ``cameras`` is (nc, 12): the
    world -> camera rotation R_cw row-major (9 numbers) then t_cw (3). ``P = R_cw X + t_cw`` (camera looks down
    +z), prediction ``(fx P.x / P.z + cx, fy P.y / P.z + cy)`` with ``intrinsics = (fx, fy, cx, cy)``. The state
    is updated with :func:`mixslam.lie.se3.retract` (tangent (rho, phi), 6 numbers).

The cost is 0.5 Σ ‖(prediction - observation) / sigma‖² (BAL: sigma = 1, so it is Ceres' cost).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..errors import GaugeError, InputFormatError, NonFiniteError

MODELS = {"bal": (9, 9), "pinhole": (12, 6)}
"""model -> (numbers stored per camera, tangent dimension per camera)."""


@dataclass
class BundleData:
    """Cameras, points and their observations (see the module docstring for the camera models)."""

    model: str
    """``"bal"`` or ``"pinhole"``."""
    cameras: np.ndarray
    """(nc, 9) BAL parameters or (nc, 12) pinhole poses [R_cw row-major, t_cw], fp64."""
    points: np.ndarray
    """(npts, 3) world points, fp64."""
    observations: np.ndarray
    """(m, 2) measured pixel coordinates, fp64."""
    cam_idx: np.ndarray
    """(m,) int64 camera index of each observation."""
    pt_idx: np.ndarray
    """(m,) int64 point index of each observation."""
    intrinsics: np.ndarray = field(default_factory=lambda: np.zeros(4))
    """Pinhole only: (fx, fy, cx, cy) shared by all cameras."""
    sigma: float = 1.0
    """Pixel noise standard deviation; residuals are divided by it (whitening)."""
    fixed_cameras: np.ndarray | None = None
    """(nc,) bool: cameras held constant (the gauge). None means the first camera only."""
    fixed_points: np.ndarray | None = None
    """(npts,) bool: points held constant. None means none."""
    source: str = "<memory>"
    """Where the data came from (path or generator), for messages."""
    warnings: list = field(default_factory=list)
    """Non-fatal findings (e.g. points seen by one camera only)."""

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown camera model {self.model!r}; expected one of {sorted(MODELS)}")
        self.cameras = np.asarray(self.cameras, dtype=np.float64)
        self.points = np.asarray(self.points, dtype=np.float64)
        self.observations = np.asarray(self.observations, dtype=np.float64)
        self.cam_idx = np.asarray(self.cam_idx, dtype=np.int64)
        self.pt_idx = np.asarray(self.pt_idx, dtype=np.int64)
        self.intrinsics = np.asarray(self.intrinsics, dtype=np.float64)
        if self.fixed_cameras is None:
            self.fixed_cameras = np.zeros(len(self.cameras), dtype=bool)
            if len(self.cameras):
                self.fixed_cameras[0] = True
        else:
            self.fixed_cameras = np.asarray(self.fixed_cameras, dtype=bool)
        if self.fixed_points is None:
            self.fixed_points = np.zeros(len(self.points), dtype=bool)
        else:
            self.fixed_points = np.asarray(self.fixed_points, dtype=bool)

    # ------------------------------------------------------------------ sizes
    @property
    def num_cameras(self) -> int:
        return int(self.cameras.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_observations(self) -> int:
        return int(self.observations.shape[0])

    @property
    def camera_dim(self) -> int:
        """Numbers stored per camera (9 BAL, 12 pinhole)."""
        return MODELS[self.model][0]

    @property
    def camera_tangent_dim(self) -> int:
        """Numbers in a camera update (9 BAL, 6 pinhole)."""
        return MODELS[self.model][1]

    def rotations(self) -> np.ndarray:
        """Pinhole: (nc, 3, 3) R_cw view."""
        return self.cameras[:, :9].reshape(-1, 3, 3)

    def translations(self) -> np.ndarray:
        """Pinhole: (nc, 3) t_cw view."""
        return self.cameras[:, 9:12]

    def with_state(self, cameras: np.ndarray, points: np.ndarray) -> BundleData:
        """A copy with new camera parameters and points (everything else shared)."""
        return dataclasses.replace(
            self,
            cameras=np.array(cameras, dtype=np.float64),
            points=np.array(points, dtype=np.float64),
            warnings=list(self.warnings),
        )

    # ------------------------------------------------------------------ checks
    def validate(self) -> BundleData:
        """Check shapes, finiteness, index ranges and that every free variable is observed.

        Raises :class:`InputFormatError` (shapes, indices), :class:`NonFiniteError` (NaN/inf) or
        :class:`GaugeError` naming unobserved free cameras/points. Points seen by a single camera (depth
        unobservable; only LM damping holds them) add a warning.
        """
        src = self.source
        nc, npt, m = self.num_cameras, self.num_points, self.num_observations
        fixed_c, fixed_p = self.fixed_cameras, self.fixed_points
        assert fixed_c is not None and fixed_p is not None  # arrays since __post_init__
        if self.cameras.ndim != 2 or self.cameras.shape[1] != self.camera_dim:
            raise InputFormatError(
                src, None, f"cameras must be (nc, {self.camera_dim}) for model {self.model!r}, got {self.cameras.shape}"
            )
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise InputFormatError(src, None, f"points must be (npts, 3), got {self.points.shape}")
        if self.observations.shape != (m, 2) or self.cam_idx.shape != (m,) or self.pt_idx.shape != (m,):
            raise InputFormatError(
                src,
                None,
                "observations (m, 2), cam_idx (m,) and pt_idx (m,) disagree: "
                f"{self.observations.shape}, {self.cam_idx.shape}, {self.pt_idx.shape}",
            )
        if fixed_c.shape != (nc,) or fixed_p.shape != (npt,):
            raise InputFormatError(src, None, "fixed_cameras/fixed_points must have one flag per camera/point")
        for name, arr in (("camera", self.cameras), ("point", self.points), ("observation", self.observations)):
            bad = ~np.isfinite(arr).all(axis=1)
            if bad.any():
                first = np.flatnonzero(bad)[:5].tolist()
                raise NonFiniteError(f"{src}: {int(bad.sum())} {name}(s) have NaN/inf values (first: {first})")
        if self.model == "pinhole":
            K = self.intrinsics
            if K.shape != (4,) or not np.isfinite(K).all() or K[0] <= 0 or K[1] <= 0:
                raise InputFormatError(
                    src, None, f"pinhole intrinsics must be finite (fx > 0, fy > 0, cx, cy), got {K}"
                )
        if not (np.isfinite(self.sigma) and self.sigma > 0):
            raise InputFormatError(src, None, f"pixel sigma must be positive and finite, got {self.sigma}")
        for name, idx, n in (("camera", self.cam_idx, nc), ("point", self.pt_idx, npt)):
            bad = (idx < 0) | (idx >= n)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise InputFormatError(
                    src,
                    None,
                    f"observation {k} refers to {name} {int(idx[k])}, but there are {n} {name}s (indices 0..{n - 1})",
                )
        cam_obs = np.bincount(self.cam_idx, minlength=nc)
        pt_obs = np.bincount(self.pt_idx, minlength=npt)
        lonely_c = np.flatnonzero((cam_obs == 0) & ~fixed_c)
        lonely_p = np.flatnonzero((pt_obs == 0) & ~fixed_p)
        if lonely_c.size or lonely_p.size:
            names = [f"camera {i}" for i in lonely_c[:10]] + [f"point {j}" for j in lonely_p[:10]]
            raise GaugeError(
                f"{src}: {lonely_c.size} camera(s) and {lonely_p.size} point(s) are free but no "
                f"observation constrains them: {', '.join(names)}"
                f"{' ...' if lonely_c.size > 10 or lonely_p.size > 10 else ''}; "
                "remove them or fix them",
                [f"camera {i}" for i in lonely_c] + [f"point {j}" for j in lonely_p],
            )
        single = int(np.count_nonzero((pt_obs == 1) & ~fixed_p))
        if single:
            msg = f"{single} point(s) are seen by one camera only: their depth is held by damping alone"
            if msg not in self.warnings:
                self.warnings.append(msg)
        return self
