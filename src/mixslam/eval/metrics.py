"""Trajectory error metrics: absolute (ATE) and relative (RPE) pose errors, statistics, association.

Definitions (poses ``T_wb`` of the body in the world; reference ``Q_i``, estimate ``P_i``, matched one to one)
----------------------------------------------------------------------------------------------------------
* **ATE** (:func:`ate`): the estimate is first aligned onto the reference (:func:`~mixslam.eval.align.align_trajectory`,
  mode ``se3`` / ``sim3`` / ``none``, fitted on positions), then the error of pose ``i``
  is the Euclidean distance ``||t(Q_i) - t(S P_i)||`` in metres: evo's APE with the ``translation_part``
  relation (``evo_ape -a`` / ``-as``). :func:`ate_rotation` gives the angle (degrees) of
  ``R(Q_i)^T R(S P_i)``: evo's APE ``rotation_angle_deg``.
* **RPE** (:func:`rpe`): for every pair ``(i, i + delta)``, ``delta`` in frames (matched poses, not seconds),
  ``E_i = (Q_i^-1 Q_j)^-1 (P_i^-1 P_j)``; the translation error is ``||t(E_i)||`` and the rotation error the
  angle of ``R(E_i)`` in degrees: evo's RPE ``translation_part`` / ``rotation_angle_deg`` with
  ``delta_unit=frames`` (checked to 1e-9 in ``tests/eval/test_evo_crosscheck.py``; evo's ``point_distance``
  relation is a different quantity for the RPE and is not what this computes). All ``n - delta`` overlapping
  pairs are used (``(0, d), (1, 1 + d), ...``), which is evo's ``--all_pairs``; evo's default
  (``all_pairs=False``) takes the disjoint pairs ``(0, d), (d, 2d), ...``, and the two coincide for
  ``delta = 1``. The RPE is unchanged by a rigid alignment of the estimate, not by a scale: :func:`evaluate_files`
  computes it on the aligned estimate, so ``sim3`` corrects the scale of the relative motions too (as
  ``evo_rpe -as``).
* Rotation angles are ``2 atan2(|v|, |w|)`` of the unit quaternion (via :func:`mixslam.lie.so3.log`):
  accurate near 0 and 180 degrees, unlike ``arccos((trace - 1) / 2)``.

Statistics (:func:`stats`): ``max``, ``p99``, ``p90``, ``mean``, ``median``, ``rmse = sqrt(mean(e^2))`` and
``n``; the percentiles are numpy's default (``method="linear"``: the sorted values linearly interpolated at
position ``q (n - 1)``, as ``np.percentile``). An empty array raises
:class:`~mixslam.eval.align.EvaluationError`.

Association (:func:`associate`): as the TUM benchmark's ``associate.py``: every pair of stamps with
``|t_ref - t_est| <= max_difference`` is a candidate; candidates are taken greedily by increasing time
difference (ties: lower reference index, then lower estimate index), each stamp at most once, so exact
matches always win and the matching is one to one. The result is sorted by reference index. (evo's
``associate_trajectories`` keeps, for each reference stamp, the nearest estimated stamp, so one estimated
stamp can be matched to two reference stamps when these are less than ``2 max_difference`` apart; with
reference stamps spaced more than that, the usual case, both give the same pairs, as the cross-check test
verifies.)
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, NonFiniteError
from ..lie import so3
from .align import EvaluationError, align_trajectory, check_align_mode, paired_poses

__all__ = ["ate", "ate_rotation", "rpe", "stats", "associate", "evaluate_files", "STAT_KEYS"]

STAT_KEYS = ("max", "p99", "p90", "mean", "median", "rmse", "n")
"""The keys of :func:`stats`, in the order the command line prints them."""


def _angles_deg(R: np.ndarray) -> np.ndarray:
    if R.shape[0] == 0:
        return np.zeros(0)
    return np.degrees(np.linalg.norm(so3.log(R), axis=-1))


def ate(ref_R, ref_t, est_R, est_t, mode: str = "se3") -> np.ndarray:
    """Absolute translation errors ``(n,)`` in metres after aligning the estimate (``mode``: se3 / sim3 /
    none); poses matched one to one, in the same order."""
    _, est_t_al, _ = align_trajectory(ref_R, ref_t, est_R, est_t, mode)
    return np.linalg.norm(np.asarray(ref_t, dtype=np.float64) - est_t_al, axis=1)


def ate_rotation(ref_R, ref_t, est_R, est_t, mode: str = "se3") -> np.ndarray:
    """Absolute rotation errors ``(n,)`` in degrees, ``angle(R(Q_i)^T R(S P_i))``, after the same alignment
    as :func:`ate` (fitted on positions; ``ref_t`` and ``est_t`` are needed for it)."""
    est_R_al, _, _ = align_trajectory(ref_R, ref_t, est_R, est_t, mode)
    ref_R = np.asarray(ref_R, dtype=np.float64)
    return _angles_deg(np.swapaxes(ref_R, -1, -2) @ est_R_al)


def _check_delta(delta) -> int:
    if isinstance(delta, bool) or not isinstance(delta, (int, np.integer)) or delta < 1:
        raise ConfigError(f"delta must be a positive integer (frames), got {delta!r}")
    return int(delta)


def rpe(ref_R, ref_t, est_R, est_t, delta: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Relative pose errors of the pairs ``(i, i + delta)``, ``i = 0 .. n - delta - 1``.

    ``E_i = (Q_i^-1 Q_j)^-1 (P_i^-1 P_j)``; returns ``(||t(E_i)|| (n - delta,) in metres,
    angle(R(E_i)) (n - delta,) in degrees)``. No alignment is applied (a rigid one would change nothing).
    Raises :class:`~mixslam.errors.ConfigError` if ``delta`` is not a positive integer and
    :class:`~mixslam.eval.align.EvaluationError` if there are not more than ``delta`` poses.
    """
    ref_R, ref_t, est_R, est_t = paired_poses(ref_R, ref_t, est_R, est_t)
    delta = _check_delta(delta)
    n = ref_R.shape[0]
    if n <= delta:
        raise EvaluationError(f"RPE with delta {delta} needs more than {delta} poses, got {n}")

    def relative(R, t):
        RiT = np.swapaxes(R[:-delta], -1, -2)
        return RiT @ R[delta:], np.einsum("nij,nj->ni", RiT, t[delta:] - t[:-delta])

    Rq, tq = relative(ref_R, ref_t)
    Rp, tp = relative(est_R, est_t)
    RqT = np.swapaxes(Rq, -1, -2)
    # (Rq, tq)^-1 (Rp, tp) = (Rq^T Rp, Rq^T (tp - tq))
    trans = np.linalg.norm(np.einsum("nij,nj->ni", RqT, tp - tq), axis=1)
    return trans, _angles_deg(RqT @ Rp)


def stats(errors) -> dict:
    """Summary of an error array: ``max``, ``p99``, ``p90``, ``mean``, ``median``, ``rmse`` (floats) and
    ``n`` (int). Percentiles use numpy's default linear interpolation. Raises ``ValueError`` unless
    ``errors`` is a non-empty 1-D array, :class:`~mixslam.errors.NonFiniteError` on NaN/inf."""
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 1:
        raise ValueError(f"errors must be a 1-D array, got shape {e.shape}")
    if e.size == 0:
        raise EvaluationError("no errors to summarize (empty array)")
    if not np.isfinite(e).all():
        raise NonFiniteError("errors hold NaN/inf values")
    p99, p90 = np.percentile(e, [99.0, 90.0])
    return {
        "max": float(e.max()),
        "p99": float(p99),
        "p90": float(p90),
        "mean": float(e.mean()),
        "median": float(np.median(e)),
        "rmse": float(np.sqrt(np.mean(e * e))),
        "n": int(e.size),
    }


def _stamps(name: str, a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} timestamps must be a 1-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise NonFiniteError(f"{name} timestamps hold NaN/inf values")
    return a


def associate(t_ref, t_est, max_difference: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Match two lists of timestamps one to one (nearest first, within ``max_difference`` seconds,
    inclusive); see the module docstring. Returns ``(idx_ref, idx_est)``, int64 arrays of equal length,
    sorted by ``idx_ref``. The stamps need not be sorted."""
    t_ref = _stamps("reference", t_ref)
    t_est = _stamps("estimated", t_est)
    md = float(max_difference)
    if not (np.isfinite(md) and md >= 0):
        raise ConfigError(f"max_difference must be a finite number >= 0 (seconds), got {max_difference!r}")
    empty = np.zeros(0, dtype=np.int64)
    if t_ref.size == 0 or t_est.size == 0:
        return empty, empty.copy()
    order = np.argsort(t_est, kind="stable")
    s = t_est[order]
    # Candidate windows, widened by a few ulps; the exact test |diff| <= md is applied below.
    slack = md + 8 * np.finfo(np.float64).eps * max(np.abs(t_ref).max(), np.abs(s).max(), 1.0)
    lo = np.searchsorted(s, t_ref - slack, side="left")
    hi = np.searchsorted(s, t_ref + slack, side="right")
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return empty, empty.copy()
    i = np.repeat(np.arange(t_ref.size), counts)
    starts = np.cumsum(counts) - counts
    k = np.arange(total) - np.repeat(starts, counts) + np.repeat(lo, counts)
    j = order[k]
    diff = np.abs(t_ref[i] - t_est[j])
    keep = diff <= md
    i, j, diff = i[keep], j[keep], diff[keep]
    used_r = np.zeros(t_ref.size, dtype=bool)
    used_e = np.zeros(t_est.size, dtype=bool)
    pairs_r, pairs_e = [], []
    o = np.lexsort((j, i, diff))
    for a, b in zip(i[o].tolist(), j[o].tolist()):
        if not used_r[a] and not used_e[b]:
            used_r[a] = used_e[b] = True
            pairs_r.append(a)
            pairs_e.append(b)
    idx_r = np.asarray(pairs_r, dtype=np.int64)
    idx_e = np.asarray(pairs_e, dtype=np.int64)
    o = np.argsort(idx_r, kind="stable")
    return idx_r[o], idx_e[o]


def evaluate_files(ref_path, est_path, align: str = "se3", max_difference: float = 0.02, delta: int = 1) -> dict:
    """Evaluate a TUM trajectory file against a reference TUM file.

    Reads both (:func:`mixslam.io.read_tum`), associates the timestamps (:func:`associate`), aligns the
    matched estimate onto the reference (``align``: se3 / sim3 / none) and returns::

        {"ate": stats (m), "ate_rot_deg": stats, "rpe_trans": stats (m), "rpe_rot_deg": stats,
         "matched": int, "reference_poses": int, "estimated_poses": int, "delta": int,
         "max_difference": float,
         "alignment": {"mode": str, "rotation": 3x3 list, "translation": [3], "scale": float}}

    The RPE (pairs ``delta`` matched poses apart) is computed on the aligned estimate. Everything that can go
    wrong with the files or their contents raises a :class:`~mixslam.errors.MixslamError`
    (:class:`~mixslam.errors.InputFormatError` from the reader, :class:`~mixslam.eval.align.EvaluationError`
    for too few matches or a degenerate alignment).
    """
    from ..io import read_tum

    check_align_mode(align)
    delta = _check_delta(delta)
    ts_ref, ref_R, ref_t = read_tum(ref_path)
    ts_est, est_R, est_t = read_tum(est_path)
    ir, ie = associate(ts_ref, ts_est, max_difference)
    m = int(ir.size)
    if m == 0:
        raise EvaluationError(
            f"no timestamps of {est_path} (t in [{ts_est.min():.6f}, {ts_est.max():.6f}]) match those of "
            f"{ref_path} (t in [{ts_ref.min():.6f}, {ts_ref.max():.6f}]) within {max_difference} s; "
            "raise --max-difference or check the time bases"
        )
    if m < 3 and align != "none":
        raise EvaluationError(f"only {m} matched pose(s): {align} alignment needs at least 3")
    if m <= delta:
        raise EvaluationError(f"only {m} matched pose(s): RPE with delta {delta} needs more than {delta}")
    ref_R, ref_t = ref_R[ir], ref_t[ir]
    est_R_al, est_t_al, (R, t, s) = align_trajectory(ref_R, ref_t, est_R[ie], est_t[ie], align)
    e_ate = np.linalg.norm(ref_t - est_t_al, axis=1)
    e_rot = _angles_deg(np.swapaxes(ref_R, -1, -2) @ est_R_al)
    r_trans, r_rot = rpe(ref_R, ref_t, est_R_al, est_t_al, delta)
    return {
        "ate": stats(e_ate),
        "ate_rot_deg": stats(e_rot),
        "rpe_trans": stats(r_trans),
        "rpe_rot_deg": stats(r_rot),
        "matched": m,
        "reference_poses": int(ts_ref.size),
        "estimated_poses": int(ts_est.size),
        "delta": int(delta),
        "max_difference": float(max_difference),
        "alignment": {"mode": align, "rotation": R.tolist(), "translation": t.tolist(), "scale": float(s)},
    }
