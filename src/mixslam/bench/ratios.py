"""NaN-safe ratios, means and rounding for the tables of figures 6 and 7: a missing or non-finite value gives
NaN, never an exception."""

from __future__ import annotations

import math

import numpy as np


def ratio(a, b) -> float:
    """``a / b``; NaN unless both are finite numbers and ``b > 0``."""
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return float("nan")
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else float("nan")


def geomean(values) -> float:
    """Geometric mean of the finite positive values (NaN when there are none)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x)) and float(x) > 0]
    return float(np.exp(np.mean(np.log(v)))) if v else float("nan")


def nanmean(values) -> float:
    """Mean of the finite values (NaN when there are none)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else float("nan")


def round3(x) -> float:
    """``x`` rounded to 3 decimals (NaN for None or a non-finite value)."""
    return round(float(x), 3) if x is not None and math.isfinite(float(x)) else float("nan")
