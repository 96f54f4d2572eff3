"""The BA linear solvers (Schur, two-set CGNR) against a dense solve of the same damped normal equations."""
import numpy as np
import pytest

from helpers import random_ba
from mixslam.linear import CGConfig, Damping
from mixslam.linear.cgnr import CGSolver
from mixslam.linear.preconditioners import JacobiPreconditioner
from mixslam.linear.schur import SchurSolver
from mixslam.precision import PrecisionPolicy


def _random_ba(seed, nc=5, npts=30, pc=9):
    return random_ba(seed, nc, npts, pc, fixed_cam=0, fixed_pt=3, spread=2.0)


def _dense(lin):
    n = lin.size
    J = np.zeros((lin.r.size, n))
    for e in range(lin.r.shape[0]):
        if lin.ia[e] >= 0:
            J[2 * e:2 * e + 2, lin.ia[e] * lin.p:(lin.ia[e] + 1) * lin.p] = lin.A[e]
        if lin.ib[e] >= 0:
            o = lin.nv * lin.p + lin.ib[e] * 3
            J[2 * e:2 * e + 2, o:o + 3] = lin.B[e]
    return J


@pytest.mark.parametrize("pc", [9, 6])
@pytest.mark.parametrize("lam", [1e-4, 1.0])
def test_schur_matches_dense(pc, lam):
    lin = _random_ba(1, pc=pc)
    J = _dense(lin)
    g = J.T @ lin.r.reshape(-1)
    np.testing.assert_allclose(lin.gradient(), g, rtol=1e-12, atol=1e-12)
    H = J.T @ J
    D = lam * np.clip(np.diag(H), 1e-6, 1e32)
    expect = np.linalg.solve(H + np.diag(D), -g)
    res = SchurSolver(lin.nv, lin.p, lin.nb).solve(lin, Damping(lam, 1e-6, 1e32), 0.0)
    np.testing.assert_allclose(res.delta, expect, rtol=1e-8, atol=1e-10 * np.abs(expect).max())
    assert res.relative_residual < 1e-10
    model = -(g @ expect) - 0.5 * np.sum((J @ expect) ** 2)
    assert res.model_decrease == pytest.approx(model, rel=1e-9)


@pytest.mark.parametrize("precision,rtol", [("fp64", 1e-7), ("fp32", 1e-3), ("mixed", 3e-2)])
def test_two_set_cgnr_matches_dense(precision, rtol):
    """CGNR over (cameras, points) solves the same system; tolerance from the precision under test."""
    lin = _random_ba(2, pc=6)
    J = _dense(lin)
    g = J.T @ lin.r.reshape(-1)
    H = J.T @ J
    lam = 1e-2
    expect = np.linalg.solve(H + np.diag(lam * np.clip(np.diag(H), 1e-6, 1e32)), -g)
    policy = PrecisionPolicy.preset(precision, "ba")
    solver = CGSolver(policy, JacobiPreconditioner(policy), CGConfig(max_iterations=2000))
    res = solver.solve(lin, Damping(lam, 1e-6, 1e32), 1e-10 if precision == "fp64" else 1e-6)
    assert res.delta.shape == (lin.size,)
    err = np.linalg.norm(res.delta - expect) / np.linalg.norm(expect)
    assert err < rtol, (precision, err, res.status, res.iterations)
    assert res.stats.overflows == 0
