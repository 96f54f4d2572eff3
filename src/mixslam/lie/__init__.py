"""Batched Lie-group operations (fp64 by default): SO(2), SE(2), SO(3), SE(3)."""

from . import se2, se3, so2, so3

__all__ = ["so2", "so3", "se2", "se3"]
