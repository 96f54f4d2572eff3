"""g2o-convention errors, Jacobians against finite differences, and a hand-computed chi2."""
import numpy as np
import pytest

from mixslam.lie import se2, se3, so2, so3
from mixslam.problem.between import chi2, cost, edge_errors, linearize
from mixslam.problem.pose_graph import PoseGraph


def _graph(dim, R, t, ei, ej, Rz, tz, info):
    n = R.shape[0]
    fixed = np.zeros(n, bool)
    fixed[0] = True
    return PoseGraph(dim, np.arange(n), R, t, np.asarray(ei), np.asarray(ej), Rz, tz, info, fixed)


def _random_graph(dim, rng, n=5, m=7):
    if dim == 3:
        R, Rz = so3.exp(rng.normal(size=(n, 3))), so3.exp(rng.normal(size=(m, 3)))
    else:
        R, Rz = so2.exp(rng.normal(size=n)), so2.exp(rng.normal(size=m))
    ei = rng.integers(0, n, m)
    ej = (ei + rng.integers(1, n, m)) % n
    k = 3 if dim == 2 else 6
    return _graph(dim, R, rng.normal(size=(n, dim)), ei, ej, Rz, rng.normal(size=(m, dim)),
                  np.tile(np.eye(k), (m, 1, 1)))


@pytest.mark.parametrize("dim", [2, 3])
def test_jacobians_match_central_differences(dim):
    rng = np.random.default_rng(dim)
    g = _random_graph(dim, rng)
    e, Ji, Jj = linearize(g)
    retract = se3.retract if dim == 3 else se2.retract
    k, h = g.tangent_dim, 1e-6
    for blocks, which in ((Ji, g.edge_i), (Jj, g.edge_j)):
        for edge in range(g.num_edges):
            num = np.zeros((k, k))
            for a in range(k):
                d = np.zeros(k)
                d[a] = h
                vals = []
                for s in (1.0, -1.0):
                    R, t = g.rotations.copy(), g.translations.copy()
                    p = which[edge]
                    R[p], t[p] = retract(R[p], t[p], s * d)
                    vals.append(edge_errors(g, R, t)[edge])
                num[:, a] = (vals[0] - vals[1]) / (2 * h)
            np.testing.assert_allclose(blocks[edge], num, atol=1e-7)


def test_chi2_hand_computed_2d():
    # X0 = identity, X1 = (1, 0, pi/2), Z = (0.9, 0.1, 0): D = Z^-1 X1 = (0.1, -0.1, pi/2).
    R = so2.exp(np.array([0.0, np.pi / 2]))
    t = np.array([[0.0, 0.0], [1.0, 0.0]])
    g = _graph(2, R, t, [0], [1], so2.exp(np.array([0.0])), np.array([[0.9, 0.1]]), np.diag([1.0, 2.0, 3.0])[None])
    np.testing.assert_allclose(edge_errors(g)[0], [0.1, -0.1, np.pi / 2], atol=1e-15)
    expected = 0.01 * 1 + 0.01 * 2 + 3 * (np.pi / 2) ** 2
    assert chi2(g) == pytest.approx(expected, rel=1e-14)
    assert cost(g) == pytest.approx(expected / 2, rel=1e-14)


@pytest.mark.parametrize("angle, coupled_chi2", [(np.pi / 2, 1.5 + np.sqrt(0.5)), (-np.pi / 2, 1.5 - np.sqrt(0.5))])
def test_chi2_hand_computed_3d_quaternion_sign(angle, coupled_chi2):
    # X1 = (Rz(angle), (1,2,3)), Z = (I, (1,2,2)): D = (Rz(angle), (0,0,1)), qvec = (0, 0, sin(angle/2)) with w >= 0.
    R = so3.exp(np.array([[0, 0, 0], [0, 0, angle]], float))
    t = np.array([[0.0, 0, 0], [1.0, 2, 3]])
    info = np.eye(6)
    info[2, 5] = info[5, 2] = 0.5  # couples the z-translation and qz errors: exposes the quaternion sign
    g = _graph(3, R, t, [0], [1], np.eye(3)[None], np.array([[1.0, 2, 2]]), info[None])
    e = edge_errors(g)[0]
    np.testing.assert_allclose(e, [0, 0, 1, 0, 0, np.sin(angle / 2)], atol=1e-15)
    assert chi2(g) == pytest.approx(coupled_chi2, rel=1e-13)


def test_quaternion_sign_uses_nonnegative_w():
    # A rotation by 270 degrees has w < 0 in one sign; g2o flips it so the error is the short way round.
    R = so3.exp(np.array([[0, 0, 0], [0, 0, 1.5 * np.pi]], float))
    g = _graph(3, R, np.zeros((2, 3)), [0], [1], np.eye(3)[None], np.zeros((1, 3)), np.eye(6)[None])
    assert edge_errors(g)[0][5] == pytest.approx(-np.sin(np.pi / 4), abs=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_fp32_evaluation_agrees_with_fp64(dim):
    g = _random_graph(dim, np.random.default_rng(7))
    e64 = edge_errors(g, dtype=np.float64)
    e32 = edge_errors(g, dtype=np.float32)
    assert e32.dtype == np.float32
    np.testing.assert_allclose(e32, e64, atol=1e-5 * (1 + np.abs(e64).max()))
