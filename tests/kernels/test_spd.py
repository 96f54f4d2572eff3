"""Bulk Cholesky checks of small symmetric matrices (mixslam.kernels.spd) against numpy's eigensolver."""
import numpy as np
import pytest

from mixslam.kernels.spd import shifted_cholesky_fails, trace_inverse
from mixslam.problem import indefinite_edges


def matrices(n, seed=0, count=200):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.normal(size=(count, n, n)))[0]
    eig = np.exp(rng.uniform(-6, 6, size=(count, n)))  # condition numbers up to e^12
    kind = np.arange(count) % 4
    eig[kind == 1, 0] = 0.0  # singular
    eig[kind == 2, 0] = -eig[kind == 2, 1]  # indefinite
    eig[kind == 3, 0] = 1e-13 * eig[kind == 3].max(axis=1)  # positive but below 1e-12 of the largest
    M = (Q * eig[:, None, :]) @ np.swapaxes(Q, 1, 2)
    return 0.5 * (M + np.swapaxes(M, 1, 2))


@pytest.mark.parametrize("n", [3, 6])
def test_shifted_cholesky_fails_on_every_matrix_below_the_threshold(n):
    M = matrices(n)
    fails = np.empty(M.shape[0], dtype=np.bool_)
    shifted_cholesky_fails(M, 1e-12, fails)
    eig = np.linalg.eigvalsh(M)
    below = eig[:, 0] <= 1e-12 * np.abs(eig).max(axis=1)
    assert below.sum() >= M.shape[0] // 2  # the test holds cases of both kinds
    assert np.all(fails[below])  # a superset: every matrix below the threshold fails
    assert not np.any(fails[eig[:, 0] > 1e-6 * np.abs(eig).max(axis=1)])  # clearly definite ones pass
    # indefinite_edges narrows it to the eigenvalue criterion exactly
    assert np.array_equal(indefinite_edges(M), np.nonzero(below)[0])


@pytest.mark.parametrize("n", [2, 3, 6])
def test_trace_inverse_matches_numpy(n):
    M = matrices(n, seed=1)
    out = np.empty(M.shape[0])
    trace_inverse(M, out)
    eig = np.linalg.eigvalsh(M)
    definite = eig[:, 0] > 1e-8 * eig[:, -1]
    ref = np.trace(np.linalg.inv(M[definite]), axis1=1, axis2=2)
    cond = eig[definite, -1] / eig[definite, 0]
    assert np.all(np.abs(out[definite] - ref) <= 100 * np.finfo(float).eps * cond * np.abs(ref))
    assert np.all(np.isnan(out[eig[:, 0] < -1e-8 * eig[:, -1]]))  # indefinite: the factorization breaks down
