"""Batched Lie-group operations against identities and finite differences."""
import numpy as np
import pytest

from mixslam.lie import se2, se3, so2, so3


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def test_so3_exp_log_round_trip(rng):
    w = rng.normal(size=(200, 3))
    w *= (rng.uniform(0, np.pi - 1e-3, 200) / np.linalg.norm(w, axis=1))[:, None]
    np.testing.assert_allclose(so3.log(so3.exp(w)), w, atol=1e-12)
    np.testing.assert_allclose(so3.log(so3.exp(1e-12 * w)), 1e-12 * w, atol=1e-24)


def test_so3_exp_is_a_rotation(rng):
    R = so3.exp(rng.normal(size=(50, 3)) * 3)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-14)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-14)


def test_quaternion_round_trip_near_pi(rng):
    axes = rng.normal(size=(20, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    R = so3.exp(axes * (np.pi - 1e-9))
    q = so3.to_quaternion(R)
    assert (q[:, 3] >= 0).all()
    np.testing.assert_allclose(so3.from_quaternion(q), R, atol=1e-12)


def test_right_jacobian_finite_differences(rng):
    w = rng.normal(size=3)
    Jr = so3.right_jacobian(w)
    h = 1e-6
    for a in range(3):
        d = np.zeros(3)
        d[a] = h
        num = so3.log(so3.exp(w).T @ so3.exp(w + d)) / h
        np.testing.assert_allclose(num, Jr[:, a], atol=1e-5)


def test_euler_matches_axis_products():
    r, p, y = 0.1, -0.2, 0.3
    expected = so3.exp(np.array([0, 0, y])) @ so3.exp(np.array([0, p, 0])) @ so3.exp(np.array([r, 0, 0]))
    np.testing.assert_allclose(so3.from_euler(r, p, y), expected, atol=1e-15)


def test_project_returns_nearest_rotation(rng):
    R = so3.exp(rng.normal(size=(10, 3)))
    np.testing.assert_allclose(so3.project(R + 1e-3 * rng.normal(size=R.shape)), R, atol=5e-3)
    np.testing.assert_allclose(so3.project(R), R, atol=1e-14)


@pytest.mark.parametrize("group", [se2, se3])
def test_compose_inverse_between(group, rng):
    if group is se3:
        Ra, Rb = so3.exp(rng.normal(size=(5, 3))), so3.exp(rng.normal(size=(5, 3)))
        d = 3
    else:
        Ra, Rb = so2.exp(rng.normal(size=5)), so2.exp(rng.normal(size=5))
        d = 2
    ta, tb = rng.normal(size=(5, d)), rng.normal(size=(5, d))
    Ri, ti = group.inverse(Ra, ta)
    R0, t0 = group.compose(Ra, ta, Ri, ti)
    np.testing.assert_allclose(R0, np.broadcast_to(np.eye(d), R0.shape), atol=1e-14)
    np.testing.assert_allclose(t0, 0, atol=1e-14)
    Rd, td = group.between(Ra, ta, Rb, tb)
    Rc, tc = group.compose(Ra, ta, Rd, td)
    np.testing.assert_allclose(Rc, Rb, atol=1e-14)
    np.testing.assert_allclose(tc, tb, atol=1e-14)


def test_se3_adjoint_moves_tangents(rng):
    # X Exp(xi) X^-1 = Exp(Ad_X xi) to first order.
    R, t = so3.exp(rng.normal(size=3)), rng.normal(size=3)
    xi = 1e-7 * rng.normal(size=6)
    Re, te = se3.exp(xi)
    lhs_R, lhs_t = se3.compose(*se3.compose(R, t, Re, te), *se3.inverse(R, t))
    Ra, ta = se3.exp(se3.adjoint(R, t) @ xi)
    np.testing.assert_allclose(lhs_R, Ra, atol=1e-13)
    np.testing.assert_allclose(lhs_t, ta, atol=1e-13)


def test_so2_wrap():
    np.testing.assert_allclose(so2.wrap(np.array([np.pi + 0.1, -np.pi - 0.1, 0.3])), [-np.pi + 0.1, np.pi - 0.1, 0.3])
