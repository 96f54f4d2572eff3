"""Batched SE(3) as (R (...,3,3), t (...,3)) pairs, and the poses' tangent-space helpers.

The tangent vector is ordered (translation rho, rotation phi), as g2o orders its errors. Our retraction,
used by every optimizer in mixslam, is the decoupled right update
``t <- t + R rho, R <- R Exp(phi)``, which has the same optima as SE(3)'s exponential map.
"""

from __future__ import annotations

import numpy as np

from . import so3
from .rigid import between, compose, inverse  # noqa: F401  (re-exported)


def retract(R, t, delta):
    """Apply the tangent update delta = (rho, phi) on the right: t + R rho, R Exp(phi)."""
    delta = np.asarray(delta)
    return R @ so3.exp(delta[..., 3:6]), t + np.einsum("...ij,...j->...i", R, delta[..., 0:3])


def exp(xi):
    """SE(3) exponential map of xi = (rho, phi)."""
    xi = np.asarray(xi, dtype=np.float64)
    rho, phi = xi[..., :3], xi[..., 3:]
    R = so3.exp(phi)
    V = np.swapaxes(so3.right_jacobian(phi), -1, -2)  # left Jacobian Jl(phi) = Jr(phi)^T
    return R, np.einsum("...ij,...j->...i", V, rho)


def adjoint(R, t):
    """6x6 adjoint in (rho, phi) order: Ad = [[R, [t]x R], [0, R]]."""
    out = np.zeros(R.shape[:-2] + (6, 6), dtype=R.dtype)
    out[..., :3, :3] = R
    out[..., :3, 3:] = so3.hat(t) @ R
    out[..., 3:, 3:] = R
    return out


def to_matrix(R, t):
    M = np.zeros(R.shape[:-2] + (4, 4), dtype=R.dtype)
    M[..., :3, :3] = R
    M[..., :3, 3] = t
    M[..., 3, 3] = 1.0
    return M
