"""Multi-view geometry the pipeline needs: triangulation of tracks and motion-only pose refinement (PnP).

Poses are world -> camera (R_cw, t_cw), as in the pinhole BA model (camera looks down +z); pixels map to
normalized coordinates with the intrinsics (fx, fy, cx, cy).
"""

from __future__ import annotations

import numpy as np

from ..lie import se3, so3


def normalized(pixels: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels (m, 2) -> normalized image coordinates (m, 2)."""
    return np.column_stack([(pixels[:, 0] - K[2]) / K[0], (pixels[:, 1] - K[3]) / K[1]])


def triangulate(
    R_cw: np.ndarray,
    t_cw: np.ndarray,
    obs_track: np.ndarray,
    obs_frame: np.ndarray,
    obs_pixel: np.ndarray,
    K: np.ndarray,
    ntracks: int,
    min_parallax_deg: float = 1.0,
    min_depth: float = 0.1,
    parallax_R_cw: np.ndarray | None = None,
):
    """Linear least-squares triangulation of every track from all its observations, vectorized.

    ``R_cw`` (nf, 3, 3), ``t_cw`` (nf, 3): frame poses; observation o sees track ``obs_track[o]`` in frame
    ``obs_frame[o]`` at ``obs_pixel[o]``. Returns (points (ntracks, 3), ok (ntracks,) bool): ok needs two
    views, a parallax above ``min_parallax_deg`` between some pair of rays (the extreme rays), and a depth
    above ``min_depth`` in every view. ``parallax_R_cw``: rotations to measure the parallax with (default
    ``R_cw``), e.g. ones that do not depend on the solver, so the decision does not either.
    """
    x = normalized(obs_pixel, K)
    R, t = R_cw[obs_frame], t_cw[obs_frame]
    # (x_u r3 - r1) X = t1 - x_u t3 ; (x_v r3 - r2) X = t2 - x_v t3
    rows1 = x[:, 0:1] * R[:, 2, :] - R[:, 0, :]
    rows2 = x[:, 1:2] * R[:, 2, :] - R[:, 1, :]
    b1 = t[:, 0] - x[:, 0] * t[:, 2]
    b2 = t[:, 1] - x[:, 1] * t[:, 2]
    AtA = np.zeros((ntracks, 3, 3))
    Atb = np.zeros((ntracks, 3))
    np.add.at(AtA, obs_track, np.einsum("mi,mj->mij", rows1, rows1) + np.einsum("mi,mj->mij", rows2, rows2))
    np.add.at(Atb, obs_track, rows1 * b1[:, None] + rows2 * b2[:, None])
    count = np.bincount(obs_track, minlength=ntracks)
    ok = count >= 2
    pts = np.zeros((ntracks, 3))
    det = np.linalg.det(AtA)
    good = ok & (np.abs(det) > 1e-12)
    if good.any():
        pts[good] = np.linalg.solve(AtA[good], Atb[good][..., None])[..., 0]
    ok &= good
    # Parallax: the largest angle between a track's world-frame rays.
    Rp = R if parallax_R_cw is None else parallax_R_cw[obs_frame]
    ray = np.einsum("mji,mj->mi", Rp, np.column_stack([x, np.ones(len(x))]))  # R_cwᵀ [x; 1]
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    ref = np.zeros((ntracks, 3))
    order = np.arange(len(obs_track))
    first_idx = np.full(ntracks, len(obs_track))
    np.minimum.at(first_idx, obs_track, order)
    has = first_idx < len(obs_track)
    ref[has] = ray[first_idx[has]]
    cosang = np.einsum("mi,mi->m", ray, ref[obs_track])
    min_cos = np.ones(ntracks)
    np.minimum.at(min_cos, obs_track, cosang)
    ok &= min_cos < np.cos(np.radians(min_parallax_deg))
    depth = np.einsum("mij,mj->mi", R, pts[obs_track])[:, 2] + t[:, 2]
    min_d = np.full(ntracks, np.inf)
    np.minimum.at(min_d, obs_track, depth)
    ok &= min_d > min_depth
    return pts, ok


def refine_pose(
    R_cw: np.ndarray,
    t_cw: np.ndarray,
    points: np.ndarray,
    pixels: np.ndarray,
    K: np.ndarray,
    sigma: float = 1.0,
    iterations: int = 10,
    huber: float = 3.0,
):
    """Motion-only Gauss-Newton (PnP refinement) of one pose from 3-D points and their pixels.

    Huber-weighted (threshold ``huber`` sigmas) for the first half of the iterations so a few wrong associations
    do not drag the pose, then on the inliers alone (a Huber estimate stays biased by the outliers). Returns
    (R_cw, t_cw, information (6, 6) in the (rho, phi) tangent of ``se3.retract``, inlier mask, rms px).
    """
    R, t = R_cw.copy(), t_cw.copy()
    H = np.zeros((6, 6))
    inl = np.ones(len(points), bool)
    rms = np.inf
    for it in range(iterations):
        P = points @ R.T + t
        z = P[:, 2]
        front = z > 1e-6
        zs = np.where(front, z, 1.0)
        u = K[0] * P[:, 0] / zs + K[2]
        v = K[1] * P[:, 1] / zs + K[3]
        r = np.column_stack([u, v]) - pixels
        e = np.linalg.norm(r, axis=1) / sigma
        inl = front & (e <= huber)
        if it < iterations // 2:
            w = np.where(e <= huber, 1.0, huber / np.maximum(e, 1e-12)) * front  # Huber: robust start
        else:
            w = inl.astype(float)  # then the inliers alone (the Huber estimate is biased by outliers)
        # d pixel / d P
        dpi = np.zeros((len(P), 2, 3))
        dpi[:, 0, 0] = K[0] / zs
        dpi[:, 0, 2] = -K[0] * P[:, 0] / zs**2
        dpi[:, 1, 1] = K[1] / zs
        dpi[:, 1, 2] = -K[1] * P[:, 1] / zs**2
        # P(δ) = R Exp(φ) X + t + R ρ  ->  dP/dρ = R, dP/dφ = -R [X]x
        dP = np.zeros((len(P), 3, 6))
        dP[:, :, :3] = R
        dP[:, :, 3:] = -R @ so3.hat(points)
        J = dpi @ dP / sigma
        rw = r / sigma * np.sqrt(w)[:, None]
        Jw = J * np.sqrt(w)[:, None, None]
        H = np.einsum("mki,mkj->ij", Jw, Jw)
        g = np.einsum("mki,mk->i", Jw, rw)
        try:
            delta = -np.linalg.solve(H + 1e-9 * np.eye(6) * np.trace(H), g)
        except np.linalg.LinAlgError:
            break
        R, t = se3.retract(R, t, delta)
        rms = float(np.sqrt(np.mean(np.sum(r[inl] ** 2, axis=1)))) if inl.any() else np.inf
        if np.linalg.norm(delta) < 1e-10 and it >= iterations // 2:
            break
    return R, t, H, inl, rms
