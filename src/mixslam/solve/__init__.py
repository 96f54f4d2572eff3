"""Nonlinear solve: Levenberg-Marquardt / Gauss-Newton, configuration, report."""
from .config import CGConfig, LMConfig
from .report import IterationRecord, SolveReport, Status

__all__ = ["CGConfig", "LMConfig", "IterationRecord", "SolveReport", "Status"]
