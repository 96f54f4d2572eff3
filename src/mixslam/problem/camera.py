"""Camera projection and reprojection residuals/Jacobians: the plain numpy reference.

The two camera models are defined in :mod:`mixslam.problem.bundle` (``"bal"`` and ``"pinhole"``). This module
evaluates them batched over observations, in plain numpy, and is the oracle for the compiled kernels of
:mod:`mixslam.problem.reprojection` (same formulas, same guards, same constants).

Rotation (BAL)
    ``R(w)`` is Rodrigues' formula. As in Ceres 2.1 ``AngleAxisRotatePoint``, when ``θ² <= SMALL_ANGLE2[dtype]``
    (the machine epsilon of the evaluation dtype: DBL_EPSILON for fp64, as Ceres, FLT_EPSILON for fp32) the
    first-order form ``R = I + [w]x`` is used; its neglected terms are ``θ²/2 <= eps/2``, below one rounding.
    The coefficients are evaluated without cancellation: ``(1 - cos θ)/θ² = 2 (sin(θ/2)/θ)²``.

Jacobians
    BAL (additive update of ``[w, t, f, k1, k2]``): ``d(R(w) X)/dw = -R [X]x Jr(w)`` (Jr = right Jacobian of SO(3),
    ``Exp(w + dw) ≈ Exp(w) Exp(Jr(w) dw)``). In the small-angle branch ``R = I + [w]x`` and ``Jr = I - [w]x/2``
    (first order; the exact derivative of the branch, ``-[X]x``, differs by O(θ) <= 1.5e-8 fp64).
    Pinhole (tangent (rho, phi) of :func:`mixslam.lie.se3.retract`): ``dP/drho = R``, ``dP/dphi = -R [X]x``.
    Both: point block ``dP/dX = R``.

Depth guard
    ``P = R X + t``; its ``z`` is the depth. An observation is *behind* the camera when ``P.z >= 0`` (BAL, which
    looks down -z) or ``P.z <= 0`` (pinhole, +z). Behind observations are counted but evaluated normally (so the
    BAL costs equal Ceres'). When ``|P.z| < min_depth``, ``P.z`` is replaced by ``±min_depth`` with its sign
    (0 gets the in-front sign: ``-`` for BAL, ``+`` for pinhole) and the observation is counted as *clamped*; its
    Jacobian is that of the clamped function (the derivative through ``P.z`` is zero). This keeps 0/0 out of
    the perspective divide, so finite inputs give finite outputs. Defaults (:data:`MIN_DEPTH`), absolute, in the
    units of the scene:

    * fp64: ``1e-6``. Real BAL depths are O(0.1 .. 100); with |P.xy| ~ 100 and P.z = 1e-6 the projection is
      ~1e8, |p|⁴ ~ 1e32: far from overflow in fp64.
    * fp32: ``1e-4``. At P.z = 1e-6 the distortion term k2|p|⁴ and its Jacobian (~ f |p|⁵ / z) overflow fp32's
      3.4e38 for ordinary |P.xy|; at 1e-4 they stay below ~1e32 for |P.xy| <= 10 (k2 O(1)).
"""

from __future__ import annotations

import numpy as np

from ..lie import so3
from ..precision import thresholds

__all__ = [
    "MIN_DEPTH",
    "SMALL_ANGLE2",
    "FRONT_SIGN",
    "min_depth_for",
    "small_angle2_for",
    "bal_project",
    "pinhole_project",
    "depth_status",
    "guard_depth",
    "reference_residuals",
    "reference_jacobians",
]

MIN_DEPTH = {np.dtype(dt): thresholds(dt).min_depth for dt in (np.float64, np.float32)}
"""Default |P.z| below which the depth is clamped, per evaluation dtype (absolute, scene units); from
:data:`mixslam.precision.THRESHOLDS`."""

SMALL_ANGLE2 = {np.dtype(dt): thresholds(dt).rodrigues_small_angle2 for dt in (np.float64, np.float32)}
"""From :data:`mixslam.precision.THRESHOLDS`: θ² at or below which BAL's Rodrigues uses ``R = I + [w]x``
(Ceres 2.1: θ² > DBL_EPSILON -> Rodrigues)."""

FRONT_SIGN = {"bal": -1.0, "pinhole": 1.0}
"""Sign of P.z for a point in front of the camera."""


def _dt(dtype) -> np.dtype:
    dt = np.dtype(np.float64 if dtype is None else dtype)
    if dt not in MIN_DEPTH:
        raise ValueError(f"reprojection supports float64 and float32, not {dt}")
    return dt


def min_depth_for(dtype, min_depth=None) -> float:
    """The depth clamp in effect: ``min_depth`` if given, else :data:`MIN_DEPTH` of ``dtype``."""
    return MIN_DEPTH[_dt(dtype)] if min_depth is None else float(min_depth)


def small_angle2_for(dtype) -> float:
    return SMALL_ANGLE2[_dt(dtype)]


def depth_status(model: str, depth: np.ndarray, min_depth: float) -> tuple[np.ndarray, np.ndarray]:
    """(behind, clamped) boolean masks of raw depths ``P.z``."""
    depth = np.asarray(depth)
    behind = depth * FRONT_SIGN[model] <= 0
    clamped = np.abs(depth) < min_depth
    return behind, clamped


def guard_depth(model: str, depth: np.ndarray, min_depth: float) -> np.ndarray:
    """Depth with |z| < min_depth replaced by ±min_depth (its sign; 0 -> the in-front sign)."""
    depth = np.asarray(depth)
    md = depth.dtype.type(min_depth)
    front = depth.dtype.type(FRONT_SIGN[model])
    signed = np.where(depth > 0, md, np.where(depth < 0, -md, front * md))
    return np.where(np.abs(depth) < md, signed, depth)


# ---------------------------------------------------------------------------------------------------------
# BAL
# ---------------------------------------------------------------------------------------------------------
def _bal_rotation(w: np.ndarray, dt: np.dtype):
    """R(w) and Jr(w), (m,3,3) each, in dtype ``dt`` (see the module docstring for the branches)."""
    th2 = np.sum(w * w, axis=-1)
    small = th2 <= dt.type(SMALL_ANGLE2[dt])
    th = np.sqrt(np.where(small, dt.type(1), th2))
    sn = np.sin(th)
    h = np.sin(th * dt.type(0.5)) / th
    s = np.where(small, dt.type(1), sn / th)  # sin θ / θ
    c = np.where(small, dt.type(0), dt.type(2) * h * h)  # (1 - cos θ) / θ²
    a = np.where(small, dt.type(0.5), dt.type(2) * h * h)  # Jr: (1 - cos θ) / θ²
    b = np.where(small, dt.type(0), (th - sn) / (th * th * th))  # Jr: (θ - sin θ) / θ³
    K = so3.hat(w)
    K2 = K @ K
    eye = np.eye(3, dtype=dt)
    R = eye + s[:, None, None] * K + c[:, None, None] * K2
    Jr = eye - a[:, None, None] * K + b[:, None, None] * K2
    return R, Jr


def _bal_eval(cameras, points, dt, min_depth, model="bal"):
    cameras = np.asarray(cameras, dtype=dt)
    points = np.asarray(points, dtype=dt)
    w, t = cameras[:, 0:3], cameras[:, 3:6]
    f, k1, k2 = cameras[:, 6], cameras[:, 7], cameras[:, 8]
    R, Jr = _bal_rotation(w, dt)
    P = np.einsum("mij,mj->mi", R, points) + t
    depth = P[:, 2].copy()
    z = guard_depth("bal", depth, min_depth)
    p = -P[:, 0:2] / z[:, None]
    n2 = np.sum(p * p, axis=1)
    r = dt.type(1) + k1 * n2 + k2 * n2 * n2
    pred = (f * r)[:, None] * p
    return (
        pred,
        depth,
        {"R": R, "Jr": Jr, "P": P, "z": z, "p": p, "n2": n2, "r": r, "f": f, "k1": k1, "k2": k2, "X": points},
    )


def bal_project(cameras: np.ndarray, points: np.ndarray, *, dtype=None, min_depth=None):
    """BAL projection of ``points`` (m,3) by ``cameras`` (m,9) (gathered per observation).

    Returns ``(pred (m,2), depth (m,))``; depth is the raw ``P.z`` (negative in front of the camera); the
    prediction uses the guarded depth. Arithmetic in ``dtype`` (default float64).
    """
    dt = _dt(dtype)
    pred, depth, _ = _bal_eval(cameras, points, dt, min_depth_for(dt, min_depth))
    return pred, depth


# ---------------------------------------------------------------------------------------------------------
# Pinhole
# ---------------------------------------------------------------------------------------------------------
def _pinhole_eval(cameras, points, intrinsics, dt, min_depth):
    cameras = np.asarray(cameras, dtype=dt)
    points = np.asarray(points, dtype=dt)
    K = np.asarray(intrinsics, dtype=dt)
    R = cameras[:, 0:9].reshape(-1, 3, 3)
    t = cameras[:, 9:12]
    P = np.einsum("mij,mj->mi", R, points) + t
    depth = P[:, 2].copy()
    z = guard_depth("pinhole", depth, min_depth)
    pred = np.empty((P.shape[0], 2), dtype=dt)
    pred[:, 0] = K[0] * (P[:, 0] / z) + K[2]
    pred[:, 1] = K[1] * (P[:, 1] / z) + K[3]
    return pred, depth, {"R": R, "P": P, "z": z, "K": K, "X": points}


def pinhole_project(cameras: np.ndarray, points: np.ndarray, intrinsics, *, dtype=None, min_depth=None):
    """Pinhole projection of ``points`` (m,3) by ``cameras`` (m,12) = [R_cw row-major, t_cw].

    ``intrinsics`` = (fx, fy, cx, cy). Returns ``(pred (m,2), depth (m,))``; depth is the raw ``P.z`` (positive
    in front); the prediction uses the guarded depth. Arithmetic in ``dtype`` (default float64).
    """
    dt = _dt(dtype)
    pred, depth, _ = _pinhole_eval(cameras, points, intrinsics, dt, min_depth_for(dt, min_depth))
    return pred, depth


# ---------------------------------------------------------------------------------------------------------
# BundleData residuals and Jacobians
# ---------------------------------------------------------------------------------------------------------
def _gather(data, cameras, points, dt):
    cameras = data.cameras if cameras is None else cameras
    points = data.points if points is None else points
    return (
        np.asarray(cameras, dtype=dt)[data.cam_idx],
        np.asarray(points, dtype=dt)[data.pt_idx],
        np.asarray(data.observations, dtype=dt),
    )


def reference_residuals(data, cameras=None, points=None, *, dtype=np.float64, min_depth=None) -> np.ndarray:
    """Whitened residuals (pred - obs) / sigma, (m,2), of ``data`` (or of its structure with the given state)."""
    dt = _dt(dtype)
    md = min_depth_for(dt, min_depth)
    cams, pts, obs = _gather(data, cameras, points, dt)
    if data.model == "bal":
        pred, _, _ = _bal_eval(cams, pts, dt, md)
    else:
        pred, _, _ = _pinhole_eval(cams, pts, data.intrinsics, dt, md)
    return (pred - obs) / dt.type(data.sigma)


def _dpred_dP_bal(e, dt):
    """d pred / d P, (m,2,3), through the guarded depth (zero column for clamped depths)."""
    p, z, n2, r, f, k1, k2 = e["p"], e["z"], e["n2"], e["r"], e["f"], e["k1"], e["k2"]
    m = p.shape[0]
    # dp/dP = (-1/z) [[1, 0, p0], [0, 1, p1]]
    dp_dP = np.zeros((m, 2, 3), dtype=dt)
    inv = -dt.type(1) / z
    dp_dP[:, 0, 0] = inv
    dp_dP[:, 1, 1] = inv
    dp_dP[:, 0, 2] = inv * p[:, 0]
    dp_dP[:, 1, 2] = inv * p[:, 1]
    dp_dP[e["clamped"], :, 2] = 0
    # dpred/dp = f (r I + 2 (k1 + 2 k2 |p|²) p pᵀ)
    g = dt.type(2) * (k1 + dt.type(2) * k2 * n2)
    dpred_dp = (f * g)[:, None, None] * (p[:, :, None] * p[:, None, :])
    dpred_dp[:, 0, 0] += f * r
    dpred_dp[:, 1, 1] += f * r
    return dpred_dp @ dp_dP


def reference_jacobians(data, cameras=None, points=None, *, dtype=np.float64, min_depth=None):
    """``(r (m,2), A (m,2,pc), B (m,2,3))``: residuals and their derivatives w.r.t. the camera tangent (pc = 9
    BAL additive, 6 pinhole (rho, phi) of se3.retract) and the point."""
    dt = _dt(dtype)
    md = min_depth_for(dt, min_depth)
    cams, pts, obs = _gather(data, cameras, points, dt)
    s = dt.type(data.sigma)
    m = obs.shape[0]
    if data.model == "bal":
        pred, depth, e = _bal_eval(cams, pts, dt, md)
        e["clamped"] = depth_status("bal", depth, md)[1]
        J = _dpred_dP_bal(e, dt)  # (m,2,3)
        R, Jr, X, p = e["R"], e["Jr"], e["X"], e["p"]
        A = np.empty((m, 2, 9), dtype=dt)
        A[:, :, 0:3] = -(J @ R @ so3.hat(X) @ Jr)
        A[:, :, 3:6] = J
        A[:, :, 6] = e["r"][:, None] * p
        A[:, :, 7] = (e["f"] * e["n2"])[:, None] * p
        A[:, :, 8] = (e["f"] * e["n2"] * e["n2"])[:, None] * p
        B = J @ R
    else:
        pred, depth, e = _pinhole_eval(cams, pts, data.intrinsics, dt, md)
        clamped = depth_status("pinhole", depth, md)[1]
        P, z, K, R, X = e["P"], e["z"], e["K"], e["R"], e["X"]
        J = np.zeros((m, 2, 3), dtype=dt)
        J[:, 0, 0] = K[0] / z
        J[:, 1, 1] = K[1] / z
        J[:, 0, 2] = np.where(clamped, 0, -K[0] * P[:, 0] / (z * z))
        J[:, 1, 2] = np.where(clamped, 0, -K[1] * P[:, 1] / (z * z))
        A = np.empty((m, 2, 6), dtype=dt)
        A[:, :, 0:3] = J @ R
        A[:, :, 3:6] = -(J @ R @ so3.hat(X))
        B = J @ R
    r = (pred - obs) / s
    return r, np.ascontiguousarray(A / s), np.ascontiguousarray(B / s)
