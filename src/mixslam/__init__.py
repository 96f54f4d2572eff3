"""mixslam: mixed-precision back-end optimization for SLAM (pose graphs and bundle adjustment)."""

from __future__ import annotations

import logging

from .errors import (
    ConfigError,
    GaugeError,
    InformationMatrixError,
    InputFormatError,
    MixslamError,
    NonFiniteError,
    PrecisionPolicyError,
    SolverError,
)
from .precision import Precision, PrecisionPolicy, QuantizationStats
from .problem.pose_graph import PoseGraph
from .storage import quantize

__version__ = "0.1.0"

logging.getLogger("mixslam").addHandler(logging.NullHandler())

__all__ = [
    "ConfigError",
    "GaugeError",
    "InformationMatrixError",
    "InputFormatError",
    "MixslamError",
    "NonFiniteError",
    "PrecisionPolicyError",
    "SolverError",
    "Precision",
    "PrecisionPolicy",
    "QuantizationStats",
    "quantize",
    "PoseGraph",
    "__version__",
]
