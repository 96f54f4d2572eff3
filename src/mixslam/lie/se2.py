"""Batched SE(2) as (R (...,2,2), t (...,2)) pairs; tangent order (x, y, theta) as g2o's EDGE_SE2."""

from __future__ import annotations

import numpy as np

from . import so2
from .rigid import between, compose, inverse  # noqa: F401  (re-exported)


def retract(R, t, delta):
    """t + R rho, R Exp(phi), with delta = (rho_x, rho_y, phi)."""
    delta = np.asarray(delta)
    return R @ so2.exp(delta[..., 2]), t + np.einsum("...ij,...j->...i", R, delta[..., 0:2])


def adjoint(R, t):
    """3x3 adjoint in (x, y, theta) order."""
    out = np.zeros(R.shape[:-2] + (3, 3), dtype=R.dtype)
    out[..., :2, :2] = R
    out[..., 0, 2] = t[..., 1]
    out[..., 1, 2] = -t[..., 0]
    out[..., 2, 2] = 1.0
    return out
