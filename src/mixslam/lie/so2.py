"""Batched SO(2): angles (...,) and rotation matrices (..., 2, 2)."""

from __future__ import annotations

import numpy as np


def exp(theta: np.ndarray) -> np.ndarray:
    """Angle -> rotation matrix."""
    theta = np.asarray(theta)
    c, s = np.cos(theta), np.sin(theta)
    R = np.empty(theta.shape + (2, 2), dtype=np.result_type(theta, np.float32))
    R[..., 0, 0] = c
    R[..., 0, 1] = -s
    R[..., 1, 0] = s
    R[..., 1, 1] = c
    return R


def log(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> angle in (-pi, pi]."""
    return np.arctan2(R[..., 1, 0], R[..., 0, 0])


def wrap(theta: np.ndarray) -> np.ndarray:
    """Angle normalized to [-pi, pi) as g2o's ``normalize_theta`` does."""
    return (np.asarray(theta) + np.pi) % (2.0 * np.pi) - np.pi


#: The 2x2 generator S with d/dθ R(θ) = R(θ) S.
GENERATOR = np.array([[0.0, -1.0], [1.0, 0.0]])


def project(M: np.ndarray) -> np.ndarray:
    """Nearest rotation to each 2x2 matrix."""
    return exp(np.arctan2(M[..., 1, 0] - M[..., 0, 1], M[..., 0, 0] + M[..., 1, 1]))
