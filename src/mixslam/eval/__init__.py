"""Trajectory evaluation: alignment (Umeyama), ATE / RPE errors, statistics, timestamp association.

See :mod:`mixslam.eval.align` and :mod:`mixslam.eval.metrics` for the exact definitions (they follow evo's
APE / RPE); :func:`evaluate_files` is what ``mixslam eval REF.tum EST.tum`` runs.
"""

from .align import ALIGN_MODES, EvaluationError, align_trajectory, umeyama
from .metrics import STAT_KEYS, associate, ate, ate_rotation, evaluate_files, rpe, stats

__all__ = [
    "ALIGN_MODES",
    "EvaluationError",
    "align_trajectory",
    "umeyama",
    "STAT_KEYS",
    "associate",
    "ate",
    "ate_rotation",
    "evaluate_files",
    "rpe",
    "stats",
]
