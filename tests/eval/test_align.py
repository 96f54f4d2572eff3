"""Tests of mixslam.eval.align: Umeyama's closed form and trajectory alignment."""
from __future__ import annotations

import numpy as np
import pytest

from mixslam.errors import ConfigError, MixslamError, NonFiniteError
from mixslam.eval import EvaluationError, align_trajectory, umeyama
from mixslam.lie import so3


def _random_rotation(rng, angle=None):
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    if angle is None:
        angle = rng.uniform(0, np.pi)
    return so3.exp(axis * angle)


def _cost(src, dst, R, t, s):
    return float(np.sum((dst - (s * src @ R.T + t)) ** 2))


@pytest.mark.parametrize("with_scale", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_recovers_random_transform_exactly(seed, with_scale):
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(40, 3)) * 3
    R0, t0 = _random_rotation(rng), rng.normal(size=3) * 10
    s0 = rng.uniform(0.2, 5.0) if with_scale else 1.0
    dst = s0 * src @ R0.T + t0
    R, t, s = umeyama(src, dst, with_scale=with_scale)
    assert np.abs(R - R0).max() < 1e-12
    assert np.abs(t - t0).max() < 1e-12 * max(1.0, s0) * 10
    assert abs(s - s0) < 1e-12 * s0
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    assert np.abs(R.T @ R - np.eye(3)).max() < 1e-13


@pytest.mark.parametrize("angle", [np.pi, np.pi - 1e-9, np.pi - 1e-5, 1e-9, 0.0])
@pytest.mark.parametrize("with_scale", [False, True])
def test_rotations_near_180_and_0_degrees(angle, with_scale):
    rng = np.random.default_rng(7)
    src = rng.normal(size=(25, 3))
    R0 = _random_rotation(rng, angle)
    t0 = np.array([1.0, -2.0, 3.0])
    s0 = 0.7 if with_scale else 1.0
    R, t, s = umeyama(src, s0 * src @ R0.T + t0, with_scale=with_scale)
    assert np.abs(R - R0).max() < 1e-12
    assert np.abs(t - t0).max() < 1e-12
    assert abs(s - s0) < 1e-12


@pytest.mark.parametrize("with_scale", [False, True])
def test_noisy_points_close_and_optimal(with_scale):
    rng = np.random.default_rng(3)
    src = rng.uniform(-5, 5, size=(500, 3))
    R0, t0, s0 = _random_rotation(rng), rng.normal(size=3), (1.3 if with_scale else 1.0)
    dst = s0 * src @ R0.T + t0 + rng.normal(scale=1e-3, size=src.shape)
    R, t, s = umeyama(src, dst, with_scale=with_scale)
    assert np.abs(R - R0).max() < 1e-4
    assert np.abs(t - t0).max() < 1e-3
    assert abs(s - s0) < 1e-4
    # A local optimum: small perturbations of (R, t, s) only increase the cost.
    c = _cost(src, dst, R, t, s)
    for _ in range(20):
        dR = so3.exp(rng.normal(scale=1e-5, size=3))
        ds = 1 + rng.normal(scale=1e-5) if with_scale else 1.0
        assert _cost(src, dst, dR @ R, t + rng.normal(scale=1e-5, size=3), s * ds) >= c


def test_planar_points_get_a_proper_rotation():
    # Points in a plane: Sigma has rank 2, and the plain SVD solution may be a reflection; the correction gives
    # the rotation that fits exactly.
    rng = np.random.default_rng(11)
    src = np.column_stack([rng.normal(size=(30, 2)) * 4, np.zeros(30)])
    for _ in range(10):
        R0, t0 = _random_rotation(rng), rng.normal(size=3)
        R, t, _ = umeyama(src, src @ R0.T + t0)
        assert np.linalg.det(R) == pytest.approx(1.0)
        assert np.abs(R - R0).max() < 1e-12 and np.abs(t - t0).max() < 1e-12


@pytest.mark.parametrize("with_scale", [False, True])
def test_reflection_case_gives_best_rotation(with_scale):
    # dst is src mirrored through the plane of its smallest spread (z): no rotation fits exactly. Maximizing
    # tr(R^T diag(a, b, -c)) with a > b > c > 0 over rotations gives R = I, and the scale
    # (a + b - c) / (a + b + c).
    rng = np.random.default_rng(5)
    src = rng.normal(size=(200, 3)) * np.array([5.0, 2.0, 0.5])
    src -= src.mean(axis=0)
    # Make the second moments exactly diagonal so that the optimum is exactly known.
    w, V = np.linalg.eigh(src.T @ src)
    src = src @ V[:, ::-1]
    src *= np.sign(src[0])  # any sign flip of the axes keeps the moments diagonal
    M = np.diag([1.0, 1.0, -1.0])
    dst = src @ M.T + np.array([1.0, 2.0, 3.0])
    R, t, s = umeyama(src, dst, with_scale=with_scale)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    assert np.abs(R - np.eye(3)).max() < 1e-12
    assert np.abs(t - [1.0, 2.0, 3.0]).max() < 1e-12
    a, b, c = np.sum(src ** 2, axis=0)
    assert s == pytest.approx((a + b - c) / (a + b + c) if with_scale else 1.0, rel=1e-12)
    c0 = _cost(src, dst, R, t, s)
    for _ in range(200):  # no random rotation does better
        assert _cost(src, dst, _random_rotation(rng), t, s) >= c0


def test_point_reflection_gives_rotation():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(20, 3))
    R, _, _ = umeyama(src, -src)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("with_scale", [False, True])
def test_degenerate_and_bad_input(with_scale):
    rng = np.random.default_rng(0)
    src = rng.normal(size=(10, 3))
    for n in (0, 1, 2):
        with pytest.raises(EvaluationError, match="at least 3"):
            umeyama(src[:n], src[:n], with_scale)
    line = np.outer(np.arange(10.0), [1.0, 2.0, 3.0]) + 5
    with pytest.raises(EvaluationError, match="collinear"):
        umeyama(line, line + 1, with_scale)
    with pytest.raises(EvaluationError, match="collinear"):
        umeyama(np.ones((5, 3)), np.zeros((5, 3)), with_scale)
    with pytest.raises(ValueError, match="same shape"):
        umeyama(src, src[:9], with_scale)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        umeyama(src[:, :2], src[:, :2], with_scale)
    bad = src.copy()
    bad[3, 1] = np.nan
    with pytest.raises(NonFiniteError):
        umeyama(src, bad, with_scale)
    assert issubclass(EvaluationError, MixslamError) and issubclass(EvaluationError, ValueError)


def _trajectory(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return so3.exp(rng.normal(size=(n, 3))), np.cumsum(rng.normal(size=(n, 3)), axis=0)


@pytest.mark.parametrize("mode", ["se3", "sim3"])
def test_align_trajectory_undoes_transform(mode):
    R, t = _trajectory()
    rng = np.random.default_rng(1)
    Ra, ta, sa = _random_rotation(rng), rng.normal(size=3) * 5, (2.5 if mode == "sim3" else 1.0)
    # est = S^-1 ref, so aligning est onto ref must give S = (sa, Ra, ta) back.
    est_R = Ra.T @ R
    est_t = (t - ta) @ Ra / sa
    eR, et, (Rf, tf, sf) = align_trajectory(R, t, est_R, est_t, mode)
    assert np.abs(Rf - Ra).max() < 1e-12 and np.abs(tf - ta).max() < 1e-11 and abs(sf - sa) < 1e-12
    assert np.abs(eR - R).max() < 1e-12 and np.abs(et - t).max() < 1e-11


def test_align_trajectory_none_and_errors():
    R, t = _trajectory()
    eR, et, (Rf, tf, sf) = align_trajectory(R, t, R, t + 1, "none")
    assert np.array_equal(et, t + 1) and np.array_equal(eR, R)
    assert np.array_equal(Rf, np.eye(3)) and np.array_equal(tf, np.zeros(3)) and sf == 1.0
    with pytest.raises(ConfigError, match="se3, sim3, none"):
        align_trajectory(R, t, R, t, "SE3")
    with pytest.raises(ValueError, match="same number of poses"):
        align_trajectory(R, t, R[:-1], t[:-1])
    with pytest.raises(ValueError, match=r"\(n, 3, 3\)"):
        align_trajectory(R, t, R, t[:, :2])
    bad = R.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(NonFiniteError):
        align_trajectory(R, t, bad, t)
