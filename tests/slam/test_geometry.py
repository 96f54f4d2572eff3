"""Triangulation and motion-only pose refinement on exact synthetic views."""
import numpy as np

from mixslam.lie import so3
from mixslam.slam.geometry import refine_pose, triangulate

K = np.array([400.0, 400.0, 320.0, 240.0])


def _views(seed=0, nf=5, npts=60):
    rng = np.random.default_rng(seed)
    R = so3.exp(rng.normal(scale=0.05, size=(nf, 3)))
    C = np.column_stack([np.arange(nf) * 0.3, np.zeros(nf), np.zeros(nf)])
    t = -np.einsum("nij,nj->ni", R, C)
    X = rng.uniform(-2, 2, (npts, 3)) + [0, 0, 6]
    of, ot = np.repeat(np.arange(nf), npts), np.tile(np.arange(npts), nf)
    P = np.einsum("mij,mj->mi", R[of], X[ot]) + t[of]
    px = np.column_stack([K[0] * P[:, 0] / P[:, 2] + K[2], K[1] * P[:, 1] / P[:, 2] + K[3]])
    return R, t, X, of, ot, px


def test_triangulate_exact_and_parallax_gate():
    R, t, X, of, ot, px = _views()
    pts, ok = triangulate(R, t, ot, of, px, K, len(X))
    assert ok.all()
    np.testing.assert_allclose(pts, X, atol=1e-9)
    # Two views 1 mm apart: no parallax, refused.
    t2 = t.copy()
    t2[1] = t[0] + [0.001, 0, 0]
    sel = of < 2
    P = np.einsum("mij,mj->mi", R[of[sel]], X[ot[sel]]) + t2[of[sel]]
    px2 = np.column_stack([K[0] * P[:, 0] / P[:, 2] + K[2], K[1] * P[:, 1] / P[:, 2] + K[3]])
    _, ok2 = triangulate(R, t2, ot[sel], of[sel], px2, K, len(X), min_parallax_deg=1.0)
    assert not ok2.any()


def test_parallax_measured_with_the_given_rotations_only():
    R, t, X, of, ot, px = _views()
    base, ok = triangulate(R, t, ot, of, px, K, len(X), min_parallax_deg=1.0)
    # Decision rotations 1e-7 rad off the true ones: the points are the same (they use R alone) and so is
    # the decision (no track is within 1e-7 rad of the threshold).
    Rp = so3.exp(np.full((len(R), 3), 1e-7)) @ R
    pts2, ok2 = triangulate(R, t, ot, of, px, K, len(X), min_parallax_deg=1.0, parallax_R_cw=Rp)
    np.testing.assert_array_equal(pts2, base)
    np.testing.assert_array_equal(ok2, ok)
    # A decision rotation that turns frame 1 by 30 degrees gives every two-view track a large parallax even
    # where the true one is tiny (views 1 mm apart), so it is triangulated: the decision follows parallax_R_cw.
    t2 = t.copy()
    t2[1] = t[0] + [0.001, 0, 0]
    sel = of < 2
    P = np.einsum("mij,mj->mi", R[of[sel]], X[ot[sel]]) + t2[of[sel]]
    px2 = np.column_stack([K[0] * P[:, 0] / P[:, 2] + K[2], K[1] * P[:, 1] / P[:, 2] + K[3]])
    Rt = R.copy()
    Rt[1] = so3.exp(np.array([0.0, np.radians(30), 0.0])) @ R[1]
    _, ok3 = triangulate(R, t2, ot[sel], of[sel], px2, K, len(X), min_parallax_deg=1.0, parallax_R_cw=Rt,
                         min_depth=-np.inf)
    assert ok3.all()


def test_refine_pose_recovers_pose_and_flags_outliers():
    R, t, X, of, ot, px = _views(1)
    pix = px[of == 2].copy()
    pix[:5] += 40.0  # five wrong associations
    R0 = so3.exp(np.array([0.02, -0.01, 0.015])) @ R[2]
    R1, t1, H, inl, rms = refine_pose(R0, t[2] + 0.05, X, pix, K, sigma=1.0, iterations=20)
    np.testing.assert_allclose(R1, R[2], atol=1e-9)
    np.testing.assert_allclose(t1, t[2], atol=1e-9)
    assert not inl[:5].any() and inl[5:].all()
    assert np.all(np.linalg.eigvalsh(H) > 0)
