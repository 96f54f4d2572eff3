"""Shared test helpers: per-precision tolerances (kornia-style lookup)."""
from __future__ import annotations

from mixslam.precision import Precision

#: Relative tolerance for values computed once in each precision.
RTOL = {Precision.FP64: 1e-10, Precision.FP32: 1e-4, Precision.FP16: 2e-2, Precision.BF16: 2e-2}


def tol_for(precision) -> float:
    return RTOL[Precision.parse(precision)]
