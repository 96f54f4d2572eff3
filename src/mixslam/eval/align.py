"""Least-squares alignment of point sets and trajectories (Umeyama 1991).

:func:`umeyama` finds the proper rotation ``R`` (det +1), translation ``t`` and, optionally, scale ``s``
minimizing ``sum_i ||dst_i - (s R src_i + t)||^2`` in closed form (S. Umeyama, "Least-squares estimation of
transformation parameters between two point patterns", IEEE TPAMI 13(4), 1991): with the centred clouds and
``Sigma = (1/n) sum dst_c src_c^T = U D V^T``, ``R = U S V^T`` where ``S = diag(1, 1, det(U) det(V))``
turns the best orthogonal matrix into the best *rotation* when the data are better fitted by a reflection
(the reflection case), ``s = trace(D S) / var(src)`` and ``t = mean(dst) - s R mean(src)``.

Decisions
---------
* **Degenerate input is refused**, for both ``with_scale`` values: fewer than 3 points, or points whose
  cross-covariance has rank < 2 (all coincident, or collinear). The rotation about the common line is then
  undetermined (any angle gives the same cost), so no answer would be reproducible (evo 1.38 returns one of
  the equally good rotations here, picked by rounding). The rank test is relative: the second singular value
  of ``Sigma`` must exceed ``1e-10`` times the first. Planar input (rank 2) is fine: the rotation is unique,
  the ``S`` correction makes it proper.
  These raise :class:`EvaluationError` (a :class:`~mixslam.errors.MixslamError` and a ``ValueError``), so
  the command line reports them with exit status 2.
* Wrong shapes raise ``ValueError`` (a programming error); NaN/inf raise
  :class:`~mixslam.errors.NonFiniteError`; an unknown alignment mode raises
  :class:`~mixslam.errors.ConfigError`.
* A trajectory is ``(R (n, 3, 3), t (n, 3))`` of poses ``T_wb`` (body in world), fp64. Aligning an
  estimate maps its world frame onto the reference's: ``T_wb' = S T_wb`` with ``S = (s R, t)``, i.e.
  ``R_i' = R R_i`` and ``t_i' = s R t_i + t``; only the positions enter the fit (as evo and the TUM
  tools do), the orientations are carried along.

:class:`EvaluationError` lives here (rather than in :mod:`mixslam.errors`) so the evaluation package is
self-contained; it is re-exported from :mod:`mixslam.eval`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, MixslamError, NonFiniteError

__all__ = ["EvaluationError", "umeyama", "align_trajectory", "ALIGN_MODES"]

ALIGN_MODES = ("se3", "sim3", "none")
"""Alignment modes: rigid (``se3``), similarity (``sim3``, also corrects the scale) and none."""

_RANK_RTOL = 1e-10


class EvaluationError(MixslamError, ValueError):
    """Trajectories that cannot be evaluated: too few poses or matches, or a degenerate alignment."""


def _points(name: str, a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name} must be an (n, 3) array of points, got shape {a.shape}")
    return a


def umeyama(src, dst, with_scale: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares similarity (or rigid) transform mapping ``src`` onto ``dst``.

    Minimizes ``sum_i ||dst_i - (s R src_i + t)||^2`` over rotations ``R`` (det +1), translations ``t`` and,
    if ``with_scale``, scales ``s > 0`` (else ``s = 1``). Returns ``(R (3, 3), t (3,), s)``.

    Raises ``ValueError`` if the shapes are not ``(n, 3)`` and equal, :class:`~mixslam.errors.NonFiniteError`
    on NaN/inf, and :class:`EvaluationError` if ``n < 3`` or the points are collinear or coincident (the
    rotation is then not determined; see the module docstring).
    """
    src = _points("src", src)
    dst = _points("dst", dst)
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must have the same shape, got {src.shape} and {dst.shape}")
    n = src.shape[0]
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise NonFiniteError("umeyama: the point sets hold NaN/inf values")
    if n < 3:
        raise EvaluationError(f"alignment needs at least 3 points, got {n}")
    mu_s = src.mean(axis=0)
    mu_d = dst.mean(axis=0)
    sc = src - mu_s
    dc = dst - mu_d
    sigma = dc.T @ sc / n
    U, d, Vt = np.linalg.svd(sigma)
    if not d[0] > 0 or d[1] <= _RANK_RTOL * d[0]:
        raise EvaluationError(
            f"degenerate alignment: the {n} points are collinear or coincident (cross-covariance singular "
            f"values {d[0]:.3g}, {d[1]:.3g}, {d[2]:.3g}), so the rotation about their line is undetermined; "
            "use mode 'none' or a trajectory that is not a straight line"
        )
    S = np.ones(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2] = -1.0
    R = (U * S) @ Vt
    if with_scale:
        var_s = float(np.sum(sc * sc) / n)
        s = float(np.dot(d, S) / var_s)
    else:
        s = 1.0
    t = mu_d - s * (R @ mu_s)
    return R, t, s


def _trajectory(name: str, R, t) -> tuple[np.ndarray, np.ndarray]:
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if R.ndim != 3 or R.shape[1:] != (3, 3) or t.shape != (R.shape[0], 3):
        raise ValueError(
            f"{name} trajectory must be rotations (n, 3, 3) and translations (n, 3); got {R.shape} and {t.shape}"
        )
    if not (np.isfinite(R).all() and np.isfinite(t).all()):
        raise NonFiniteError(f"the {name} trajectory holds NaN/inf values")
    return R, t


def paired_poses(ref_R, ref_t, est_R, est_t):
    ref_R, ref_t = _trajectory("reference", ref_R, ref_t)
    est_R, est_t = _trajectory("estimated", est_R, est_t)
    if ref_R.shape[0] != est_R.shape[0]:
        raise ValueError(
            f"the trajectories must have the same number of poses (associate them first), got "
            f"{ref_R.shape[0]} (reference) and {est_R.shape[0]} (estimated)"
        )
    return ref_R, ref_t, est_R, est_t


def check_align_mode(mode: str) -> str:
    if mode not in ALIGN_MODES:
        raise ConfigError(f"alignment mode must be one of {', '.join(ALIGN_MODES)}; got {mode!r}")
    return mode


def align_trajectory(ref_R, ref_t, est_R, est_t, mode: str = "se3"):
    """Align the estimated trajectory onto the reference (poses matched one to one, same order).

    ``mode``: ``"se3"`` (rigid), ``"sim3"`` (rigid and scale) or ``"none"``. The transform is fitted to the
    positions only, with :func:`umeyama` (``src`` = estimated, ``dst`` = reference).

    Returns ``(est_R_aligned (n, 3, 3), est_t_aligned (n, 3), (R (3, 3), t (3,), s))`` with
    ``est_R_aligned[i] = R est_R[i]`` and ``est_t_aligned[i] = s R est_t[i] + t``; ``mode="none"`` returns
    copies of the inputs and the identity.
    """
    check_align_mode(mode)
    ref_R, ref_t, est_R, est_t = paired_poses(ref_R, ref_t, est_R, est_t)
    if mode == "none":
        return est_R.copy(), est_t.copy(), (np.eye(3), np.zeros(3), 1.0)
    R, t, s = umeyama(est_t, ref_t, with_scale=(mode == "sim3"))
    return R @ est_R, s * est_t @ R.T + t, (R, t, s)
