"""Batched SO(3): rotation matrices of shape (..., 3, 3), rotation vectors of shape (..., 3).

All functions work in the dtype of their input (fp64 by default); the small-angle branches use the
per-precision thresholds of :data:`mixslam.precision.THRESHOLDS`.
"""

from __future__ import annotations

import numpy as np

from ..kernels.polar import polar_rotations
from ..precision import THRESHOLDS, Precision


def _small(dtype) -> float:
    return THRESHOLDS[Precision.FP64 if np.dtype(dtype) == np.float64 else Precision.FP32].small_angle


def hat(v: np.ndarray) -> np.ndarray:
    """Skew-symmetric matrices [v]x with [v]x w = v x w."""
    v = np.asarray(v)
    out = np.zeros(v.shape[:-1] + (3, 3), dtype=v.dtype)
    out[..., 0, 1] = -v[..., 2]
    out[..., 0, 2] = v[..., 1]
    out[..., 1, 0] = v[..., 2]
    out[..., 1, 2] = -v[..., 0]
    out[..., 2, 0] = -v[..., 1]
    out[..., 2, 1] = v[..., 0]
    return out


def vee(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hat` (reads the antisymmetric part)."""
    return 0.5 * np.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], axis=-1
    )


def exp(w: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: rotation vector -> rotation matrix."""
    w = np.asarray(w, dtype=np.result_type(w, np.float32))
    theta2 = np.sum(w * w, axis=-1)
    theta = np.sqrt(theta2)
    small = theta < _small(w.dtype)
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta2 / 24.0, (1.0 - np.cos(safe)) / (safe * safe))
    K = hat(w)
    eye = np.broadcast_to(np.eye(3, dtype=w.dtype), K.shape)
    return eye + a[..., None, None] * K + b[..., None, None] * (K @ K)


def log(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> rotation vector (angle in [0, pi]), robust near 0 and pi (via quaternions)."""
    q = to_quaternion(R)
    return quaternion_log(q)


def quaternion_log(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> rotation vector; uses the sign with w >= 0."""
    q = np.asarray(q)
    sign = np.where(q[..., 3] < 0, -1.0, 1.0).astype(q.dtype)
    v = q[..., :3] * sign[..., None]
    w = q[..., 3] * sign
    n = np.linalg.norm(v, axis=-1)
    small = n < _small(q.dtype)
    angle = 2.0 * np.arctan2(n, w)
    scale = np.where(small, 2.0 / np.where(w == 0, 1.0, w), angle / np.where(small, 1.0, n))
    return v * scale[..., None]


def to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (x, y, z, w) with w >= 0 (Shepperd's method)."""
    R = np.asarray(R)
    shape = R.shape[:-2]
    Rf = R.reshape(-1, 3, 3)
    n = Rf.shape[0]
    q = np.empty((n, 4), dtype=R.dtype)
    tr = Rf[:, 0, 0] + Rf[:, 1, 1] + Rf[:, 2, 2]
    diag = np.stack([Rf[:, 0, 0], Rf[:, 1, 1], Rf[:, 2, 2]], axis=1)
    case = np.where(tr > diag.max(axis=1), 3, diag.argmax(axis=1))
    # case 3: trace largest
    m = case == 3
    if m.any():
        s = np.sqrt(1.0 + tr[m]) * 2.0
        q[m, 3] = 0.25 * s
        q[m, 0] = (Rf[m, 2, 1] - Rf[m, 1, 2]) / s
        q[m, 1] = (Rf[m, 0, 2] - Rf[m, 2, 0]) / s
        q[m, 2] = (Rf[m, 1, 0] - Rf[m, 0, 1]) / s
    for i in range(3):
        m = case == i
        if not m.any():
            continue
        j, k = (i + 1) % 3, (i + 2) % 3
        s = np.sqrt(1.0 + Rf[m, i, i] - Rf[m, j, j] - Rf[m, k, k]) * 2.0
        q[m, i] = 0.25 * s
        q[m, 3] = (Rf[m, k, j] - Rf[m, j, k]) / s
        q[m, j] = (Rf[m, j, i] + Rf[m, i, j]) / s
        q[m, k] = (Rf[m, k, i] + Rf[m, i, k]) / s
    q *= np.where(q[:, 3] < 0, -1.0, 1.0)[:, None]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.reshape(shape + (4,))


def from_quaternion(q: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w), normalized here, -> rotation matrix."""
    q = np.asarray(q)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    R = np.empty(q.shape[:-1] + (3, 3), dtype=q.dtype)
    R[..., 0, 0] = 1 - 2 * (y * y + z * z)
    R[..., 0, 1] = 2 * (x * y - z * w)
    R[..., 0, 2] = 2 * (x * z + y * w)
    R[..., 1, 0] = 2 * (x * y + z * w)
    R[..., 1, 1] = 1 - 2 * (x * x + z * z)
    R[..., 1, 2] = 2 * (y * z - x * w)
    R[..., 2, 0] = 2 * (x * z - y * w)
    R[..., 2, 1] = 2 * (y * z + x * w)
    R[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return R


def from_euler(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll) (the TORO / GTSAM Rot3::RzRyRx convention)."""
    cr, sr = np.cos(roll), np.sin(roll)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    R = np.empty(np.shape(roll) + (3, 3))
    R[..., 0, 0] = cy * cp
    R[..., 0, 1] = cy * sp * sr - sy * cr
    R[..., 0, 2] = cy * sp * cr + sy * sr
    R[..., 1, 0] = sy * cp
    R[..., 1, 1] = sy * sp * sr + cy * cr
    R[..., 1, 2] = sy * sp * cr - cy * sr
    R[..., 2, 0] = -sp
    R[..., 2, 1] = cp * sr
    R[..., 2, 2] = cp * cr
    return R


def project(M: np.ndarray) -> np.ndarray:
    """Nearest rotation matrix (in Frobenius norm) to each 3x3 matrix: the polar factor by a compiled Newton
    iteration where det(M) > 0 (:mod:`mixslam.kernels.polar`, 25x faster), else via SVD with the det fix."""
    M = np.asarray(M)
    if M.dtype == np.float64 and M.ndim >= 2 and M.size:
        flat = np.ascontiguousarray(M.reshape(-1, 3, 3))
        out = np.empty_like(flat)
        ok = np.empty(flat.shape[0], dtype=np.bool_)
        polar_rotations(flat, out, ok)
        if not ok.all():
            out[~ok] = _project_svd(flat[~ok])
        return out.reshape(M.shape)
    return _project_svd(M)


def _project_svd(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.ones(M.shape[:-2] + (3,), dtype=M.dtype)
    D[..., 2] = d
    return (U * D[..., None, :]) @ Vt


def right_jacobian(w: np.ndarray) -> np.ndarray:
    """Right Jacobian Jr(w) of SO(3): Exp(w + dw) ~ Exp(w) Exp(Jr(w) dw)."""
    w = np.asarray(w, dtype=np.float64)
    theta2 = np.sum(w * w, axis=-1)
    theta = np.sqrt(theta2)
    small = theta < 1e-6
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 0.5 - theta2 / 24.0, (1.0 - np.cos(safe)) / (safe * safe))
    b = np.where(small, 1.0 / 6.0 - theta2 / 120.0, (safe - np.sin(safe)) / (safe**3))
    K = hat(w)
    eye = np.broadcast_to(np.eye(3), K.shape)
    return eye - a[..., None, None] * K + b[..., None, None] * (K @ K)
