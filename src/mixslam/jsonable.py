"""The one conversion of mixslam's results to JSON-ready values (reports, benchmark files)."""

from __future__ import annotations

import dataclasses
import enum
import math
from pathlib import PurePath

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(x):
    """``x`` with dataclasses, enums, numpy scalars/arrays and paths turned into JSON types.

    Dataclasses with an ``as_dict()`` method are converted through it. Non-finite floats become None (NaN) or
    ±1e308 (±inf): JSON has no NaN, and readers of a report must not choke on one.
    """
    if hasattr(x, "as_dict") and callable(x.as_dict) and not isinstance(x, type):
        return to_jsonable(x.as_dict())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return to_jsonable({f.name: getattr(x, f.name) for f in dataclasses.fields(x)})
    if isinstance(x, dict):
        return {str(k.value if isinstance(k, enum.Enum) else k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if not math.isfinite(v):
            return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
        return v
    if isinstance(x, PurePath):
        return str(x)
    return x
