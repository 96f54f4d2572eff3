"""Nonlinear solve: the one solve sequence (:mod:`.driver`), Levenberg-Marquardt / Gauss-Newton, configuration,
report."""

from ..linear.config import CGConfig, ICConfig
from .config import LMConfig
from .report import IterationRecord, SolveReport, Status

__all__ = ["CGConfig", "ICConfig", "LMConfig", "IterationRecord", "SolveReport", "Status"]
