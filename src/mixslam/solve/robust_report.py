"""What a robust solve adds to its report, and the known-inlier rule, shared by every problem kind."""

from __future__ import annotations

import numpy as np

from ..problem.robust import RobustWeighting
from .report import SolveReport

__all__ = ["fill_robust_report", "known_inlier_edges", "REJECT_BELOW"]

REJECT_BELOW = 0.5
"""A block whose final weight is below this is reported as rejected (``rejected_edges``)."""


def known_inlier_edges(id_i: np.ndarray, id_j: np.ndarray) -> np.ndarray:
    """Edges between consecutive vertex ids (odometry): the known inliers of ``--known-inliers odometry``."""
    return np.abs(np.asarray(id_i, np.int64) - np.asarray(id_j, np.int64)) == 1


def fill_robust_report(report: SolveReport, rw: RobustWeighting, s: np.ndarray) -> None:
    """``robust``, ``edge_weights`` and ``rejected_edges`` from the final squared block norms ``s``."""
    w = rw.final_weights(s)
    info = dict(rw.summary())
    info.update(report.robust or {})
    info["plain_final_cost"] = 0.5 * float(np.sum(np.asarray(s, dtype=np.float64)))
    report.robust = info
    report.edge_weights = w
    report.rejected_edges = [int(k) for k in np.flatnonzero(w < REJECT_BELOW)]
