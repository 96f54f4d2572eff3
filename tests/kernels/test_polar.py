"""The polar-factor projection onto SO(3) (mixslam.kernels.polar) against the SVD projection."""
import numpy as np
import pytest

from mixslam.kernels.polar import polar_rotations
from mixslam.lie import so3


def cases(seed=0, n=500):
    rng = np.random.default_rng(seed)
    R = so3.exp(rng.normal(size=(n, 3)))
    M = R * rng.uniform(0.1, 10, size=(n, 1, 1)) + rng.uniform(0, 0.5, size=(n, 1, 1)) * rng.normal(size=(n, 3, 3))
    M[:20] *= -1  # det < 0: the nearest rotation is not the polar factor
    M[20:25, :, 2] = M[20:25, :, 0]  # singular
    return M


def test_polar_rotations_equal_the_svd_projection_where_they_apply():
    M = cases()
    out = np.empty_like(M)
    ok = np.empty(M.shape[0], dtype=np.bool_)
    polar_rotations(M, out, ok)
    det = np.linalg.det(M)
    assert not ok[det <= 0].any() and ok[det > 1e-6 * np.abs(M).max(axis=(1, 2)) ** 3].all()
    ref = so3._project_svd(M[ok])
    sv = np.linalg.svd(M[ok], compute_uv=False)
    # the polar factor's sensitivity: u / (σ2 + σ3)·σ1 (Higham); both computations round at that level
    tol = 50 * np.finfo(float).eps * sv[:, 0] / (sv[:, 1] + sv[:, 2])
    assert np.all(np.abs(out[ok] - ref).max(axis=(1, 2)) <= tol)


@pytest.mark.parametrize("seed", [0, 1])
def test_project_is_a_rotation_and_the_nearest_one(seed):
    M = cases(seed)
    R = so3.project(M)
    eps = np.finfo(float).eps
    assert np.abs(np.einsum("nji,njk->nik", R, R) - np.eye(3)).max() <= 20 * eps
    assert np.all(np.abs(np.linalg.det(R) - 1) <= 20 * eps)
    # no rotation is nearer (Frobenius) than the one returned: check against the SVD projection's distance
    ref = so3._project_svd(M)
    d_ours = np.linalg.norm(M - R, axis=(1, 2))
    d_ref = np.linalg.norm(M - ref, axis=(1, 2))
    assert np.all(d_ours <= d_ref * (1 + 1e-12) + 1e-12)
