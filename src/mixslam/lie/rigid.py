"""Operations shared by SE(2) and SE(3) in (R, t) form: they depend only on matrix shapes."""

from __future__ import annotations

import numpy as np


def compose(Ra, ta, Rb, tb):
    """(Ra, ta) * (Rb, tb)."""
    return Ra @ Rb, ta + np.einsum("...ij,...j->...i", Ra, tb)


def inverse(R, t):
    """(R, t)^-1 = (Rᵀ, -Rᵀ t)."""
    Rt = np.swapaxes(R, -1, -2)
    return Rt, -np.einsum("...ij,...j->...i", Rt, t)


def between(Ra, ta, Rb, tb):
    """(Ra, ta)^-1 * (Rb, tb)."""
    Rat = np.swapaxes(Ra, -1, -2)
    return Rat @ Rb, np.einsum("...ij,...j->...i", Rat, tb - ta)
