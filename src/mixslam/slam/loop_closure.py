"""Loop-closure verification: a proposed pair of keyframes becomes a pose-graph edge only if the landmarks the
older keyframe mapped explain the newer keyframe's pixels.

For a candidate (i, j), i < j: the landmarks keyframe i observed, in i's camera frame as its last VO window
estimated them, are matched by id with keyframe j's observations. The relative pose T_cj_ci is estimated by
a Huber-weighted motion-only Gauss-Newton (PnP refinement) from an initial guess: a 3-D/3-D rigid alignment
of the two keyframes' landmark snapshots when j has one (it always does after its window solve), else the
drifted VO estimate. The candidate is accepted when at least ``min_inliers`` matches reproject within
``inlier_px`` and they are at least ``min_inlier_ratio`` of the matches; false proposals (different places)
share few landmarks, or none, and are rejected.

The edge's information comes from the PnP Gauss-Newton Hessian, divided by ``information_inflation``: the
PnP treats keyframe i's landmarks as exact, which they are not (their error is the VO's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import check_config_fields
from ..eval import umeyama
from ..lie import so3
from ..sim.world import AliasedCandidate
from .geometry import refine_pose


@dataclass(frozen=True)
class LoopVerifyConfig:
    """Loop-closure verification settings."""

    min_inliers: int = 20
    """Matches that must reproject within ``inlier_px`` for a candidate to be accepted."""
    min_inlier_ratio: float = 0.5
    """... and the share of all matches they must be."""
    inlier_px: float = 3.0
    """Inlier threshold in pixel sigmas."""
    information_inflation: float = 10.0
    """The PnP information is divided by this (keyframe i's landmarks are not exact)."""

    def __post_init__(self):
        # 3 inliers at least: the PnP's 6-DoF Gauss-Newton Hessian needs 3 points (2 equations each)
        check_config_fields(
            self,
            ints={"min_inliers": 3},
            fractions=("min_inlier_ratio",),
            positive=("inlier_px", "information_inflation"),
        )


@dataclass
class LoopEdge:
    i: int
    j: int
    R: np.ndarray
    """Measured rotation of Z_ij = T_wc_i⁻¹ T_wc_j."""
    t: np.ndarray
    information: np.ndarray
    """6x6 in g2o's order (translation, quaternion vector)."""
    inliers: int
    matches: int
    rms_px: float
    landmarks: np.ndarray | None = None
    """Landmark ids of the inlier matches (the associations the global bundle adjustment fuses)."""
    landmarks_j: np.ndarray | None = None
    """Landmark ids of keyframe j's observations the inliers were matched with, when the front end's matches
    are not by id (an aliased candidate's wrong associations); None: the same ids as ``landmarks``."""


def verify(
    i: int,
    j: int,
    snapshots: list,
    run,
    R_cw: np.ndarray,
    t_cw: np.ndarray,
    config: LoopVerifyConfig | None = None,
    matches: AliasedCandidate | None = None,
):
    """Verify candidate (i, j); returns a :class:`LoopEdge` or None (rejected), and the number of matches.

    ``matches``: the front end's own matches of an aliased candidate (:func:`~mixslam.sim.world.aliased_candidates`)
    instead of the matching by landmark id; those of its landmarks keyframe i's snapshot holds are verified
    the same way, from the 3-D/3-D alignment of the snapshot's points with the matches' ``points_j``."""
    cfg = config or LoopVerifyConfig()
    ids_i, P_i = snapshots[i]
    if len(ids_i) < cfg.min_inliers:
        return None, len(ids_i)
    ids_j_matched: np.ndarray | None = None
    R0: np.ndarray | None = None
    t0: np.ndarray | None = None
    if matches is None:
        obs = np.flatnonzero(run.obs_frame == j)
        ids_j = run.obs_landmark[obs]
        common, ai, aj = np.intersect1d(ids_i, ids_j, return_indices=True)
        if common.size < cfg.min_inliers:
            return None, int(common.size)
        points = P_i[ai]
        pixels = run.obs_pixel[obs[aj]]
        # Initial T_cj_ci: rigid alignment of the two snapshots, or the VO estimate.
        ids_sj, P_sj = snapshots[j]
        both, bi, bj = np.intersect1d(ids_i, ids_sj, return_indices=True)
        src, dst = P_i[bi], P_sj[bj]
    else:
        order = np.argsort(ids_i, kind="stable")
        pos = np.minimum(np.searchsorted(ids_i[order], matches.landmarks_i), len(ids_i) - 1)
        held = ids_i[order][pos] == matches.landmarks_i
        common = matches.landmarks_i[held]
        if common.size < cfg.min_inliers:
            return None, int(common.size)
        points = P_i[order[pos[held]]]
        pixels = matches.pixels_j[held]
        ids_j_matched = matches.landmarks_j[held]
        ok = np.isfinite(matches.points_j[held]).all(axis=1)
        src, dst = points[ok], matches.points_j[held][ok]
    if len(src) >= 3:
        try:
            R0, t0, _ = umeyama(src, dst)
        except ValueError:
            R0 = None
    if R0 is None or t0 is None:  # (t0 is None only with R0)
        R0 = R_cw[j] @ R_cw[i].T
        t0 = t_cw[j] - R0 @ t_cw[i]
    K = np.asarray(run.intrinsics, dtype=np.float64)
    sigma = float(run.pixel_noise) if run.pixel_noise > 0 else 1.0
    R, t, H, inl, rms = refine_pose(R0, t0, points, pixels, K, sigma, iterations=15, huber=cfg.inlier_px)
    ninl = int(inl.sum())
    if ninl < cfg.min_inliers or ninl < cfg.min_inlier_ratio * common.size or not np.isfinite(rms):
        return None, int(common.size)
    # Z_ij = T_ci_cj = (T_cj_ci)⁻¹
    Rz = R.T
    tz = -R.T @ t
    try:
        cov = np.linalg.inv(H) * cfg.information_inflation
    except np.linalg.LinAlgError:
        return None, int(common.size)
    # Diagonal information in g2o's order; the rotation part of g2o's error is the quaternion vector, θ/2.
    var_t = max(float(np.mean(np.diag(cov)[:3])), 1e-12)
    var_r = max(float(np.mean(np.diag(cov)[3:])), 1e-14)
    info = np.diag([1 / var_t] * 3 + [4 / var_r] * 3)
    return (
        LoopEdge(
            i,
            j,
            so3.project(Rz),
            tz,
            info,
            ninl,
            int(common.size),
            rms,
            common[inl].astype(np.int64),
            None if ids_j_matched is None else ids_j_matched[inl].astype(np.int64),
        ),
        int(common.size),
    )
