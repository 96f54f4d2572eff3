"""The mixed-precision direct solve: fp32 factor + fp64 refinement / PCG, shifts, and the factor-reuse rule."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

from mixslam.linear.base import Damping, LinearStatus
from mixslam.linear.cholesky import CholeskySolver
from mixslam.linear.config import DirectConfig
from mixslam.linear.direct import SparseCholesky
from mixslam.linear.refinement import RefineMethod, pcg, refine
from mixslam.precision import PrecisionPolicy

from .test_solvers import Dense, random_pgo

U32 = float(np.finfo(np.float32).eps) / 2


def grid_laplacian(k: int, eps: float) -> sp.csc_matrix:
    """The graph Laplacian of a k x k grid plus eps·I: SPD with κ ≈ 8/eps (pose graphs are near-Laplacian)."""
    T = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])
    I = sp.identity(k)
    L = sp.kron(T, I) + sp.kron(I, T)
    L = L - sp.diags(np.asarray(L.sum(axis=1)).ravel())  # rows sum to zero: a true graph Laplacian
    H = (L + eps * sp.identity(k * k)).tocsc()
    H.sort_indices()
    return H


@pytest.fixture(scope="module")
def ill():
    H = grid_laplacian(24, 8e-8)
    lam = np.linalg.eigvalsh(H.toarray())
    assert 5e7 < lam[-1] / lam[0] < 2e8  # κ ≈ 1e8
    b = np.random.default_rng(0).standard_normal(H.shape[0])
    x = np.linalg.solve(H.toarray(), b)
    return H, b, x


def test_plain_fp32_fails_where_refinement_reaches_fp64(ill):
    H, b, x_true = ill
    kappa = 1e8
    f32 = SparseCholesky(H, backend="mixslam", dtype=np.float32)
    try:
        f32.factorize(H)
        plain = f32.solve(b)
        plain_err = np.linalg.norm(plain - x_true) / np.linalg.norm(x_true)
    except Exception:  # a breakdown is a failure of plain fp32 too
        plain_err = np.inf
        H_shift = H.copy()
        H_shift.setdiag(H.diagonal() * (1 + 1e-6))
        f32.factorize(H_shift)
    assert plain_err > 1e-3  # κ·u32 ≈ 6: no digit of the plain fp32 solution can be trusted
    out = refine(H.dot, f32.solve, b, 1e-10, max_refinements=10, max_cg=200)
    assert out.converged and out.relative_residual <= 1e-10
    assert np.linalg.norm(out.x - x_true) / np.linalg.norm(x_true) < 1e-10 * kappa * 10
    assert out.method is RefineMethod.PCG  # refinement alone stalls at κ·u32 > 1: PCG finished it
    assert out.cg_iterations <= 60


def test_refinement_alone_converges_when_well_conditioned():
    H = grid_laplacian(20, 1e-1)  # κ ≈ 80
    b = np.ones(H.shape[0])
    f32 = SparseCholesky(H, backend="mixslam", dtype=np.float32)
    f32.factorize(H)
    out = refine(H.dot, f32.solve, b, 1e-12, max_refinements=10, max_cg=0)
    assert out.converged and out.method is RefineMethod.REFINEMENT and 1 <= out.refinements <= 4
    # each step gains about -log10(κ u32) digits: from ~1e-6 to 1e-12 in a few steps
    assert np.linalg.norm(H @ out.x - b) / np.linalg.norm(b) <= 1e-12


def test_pcg_is_exact_on_a_zero_rhs_and_stops_at_its_cap(ill):
    H, b, _ = ill
    out = pcg(H.dot, lambda r: r, np.zeros_like(b), None, 1e-10, 5)
    assert out.converged and not out.x.any()
    out = pcg(H.dot, lambda r: r, b, None, 1e-10, 5)  # unpreconditioned on κ = 1e8: far from converged
    assert not out.converged and out.cg_iterations == 5
    assert out.relative_residual == pytest.approx(np.linalg.norm(b - H @ out.x) / np.linalg.norm(b))


def _solver(lin, pattern, **cfg):
    return CholeskySolver(pattern, PrecisionPolicy.preset("mixed"), DirectConfig(**cfg))


@pytest.mark.parametrize("method", ["pcg", "refinement"])
def test_mixed_cholesky_matches_the_dense_solve(method):
    lin, pattern = random_pgo(3, nv=40, p=3, loops=20)
    solver = _solver(lin, pattern, method=method)
    damping = Damping(1e-4)
    dense = Dense(lin, damping)
    res = solver.solve(lin, damping)
    assert res.status is LinearStatus.CONVERGED and res.relative_residual <= 1e-10
    assert np.linalg.norm(res.delta - dense.delta) / np.linalg.norm(dense.delta) <= 10 * 1e-10 * dense.kappa
    assert res.decision.startswith("factor")
    st = solver.direct_stats()
    assert st.factor == "fp32" and st.backend == "mixslam" and st.factorizations == 1 and st.steps == 1
    assert solver.memory().factor_bytes > 0


def test_factor_reuse_rule():
    lin, pattern = random_pgo(4, nv=40, p=3, loops=20)
    solver = _solver(lin, pattern, reuse_max_iterations=8)
    r1 = solver.solve(lin, Damping(1e-3))
    assert r1.decision.startswith("factor")

    def cheap_iterations():  # the measured costs on a tiny system vary; pin them so the cap decides
        solver._t_factor, solver._t_iteration = 1.0, 0.01

    cheap_iterations()
    # a nearby system (λ changed by 1%): the old factor preconditions it to convergence within the cap
    r2 = solver.solve(lin, Damping(1.01e-3))
    assert r2.decision == "reuse" and r2.relative_residual <= 1e-10 and 1 <= r2.iterations <= 8
    ref = Dense(lin, Damping(1.01e-3))
    assert np.linalg.norm(r2.delta - ref.delta) / np.linalg.norm(ref.delta) <= 10 * 1e-10 * ref.kappa
    # a far system (λ x 1e4): the reuse is abandoned and the matrix factored
    cheap_iterations()
    r3 = solver.solve(lin, Damping(10.0))
    assert r3.decision.startswith("reuse failed: factor")
    st = solver.direct_stats()
    assert (st.steps, st.factorizations, st.reuses, st.failed_reuses) == (3, 2, 1, 1)
    # with reuse off every step factors
    off = _solver(lin, pattern, reuse=False)
    for lam in (1e-3, 1.01e-3):
        assert off.solve(lin, Damping(lam)).decision.startswith("factor")
    assert off.direct_stats().factorizations == 2 and off.direct_stats().reuses == 0


def test_reuse_budget_follows_the_measured_costs():
    lin, pattern = random_pgo(5, nv=20, p=3, loops=10)
    solver = _solver(lin, pattern, reuse_max_iterations=6)
    assert solver._reuse_budget() == 0  # no factor yet
    solver.solve(lin, Damping(1e-3))
    solver._t_factor, solver._t_iteration = 1.0, 0.1
    assert solver._reuse_budget() == 6  # the cap
    solver._t_factor, solver._t_iteration = 1.0, 0.4
    assert solver._reuse_budget() == 1  # a failed reuse must cost less than a factorization
    solver._t_factor, solver._t_iteration = 1.0, 0.6
    assert solver._reuse_budget() == 0


@pytest.mark.parametrize("fallback", [True, False])
def test_fp32_breakdown_is_shifted_and_recovered(monkeypatch, fallback):
    # with fp64_fallback (the default) the step is solved in fp64 at once (PCG with a shifted fp32 factor of a
    # matrix whose κ·u32 is near 1 takes a hundred iterations or more); without it, PCG with the shifted factor
    lin, pattern = random_pgo(6, nv=20, p=3, loops=10)
    solver = _solver(lin, pattern, reuse=False, fp64_fallback=fallback)
    real = solver.chol.factorize
    calls = []

    def breaks_first(H):
        calls.append(H)
        if len(calls) == 1:
            from mixslam.errors import SolverError

            raise SolverError("H is not positive definite (simulated fp32 breakdown)")
        return real(H)

    monkeypatch.setattr(solver.chol, "factorize", breaks_first)
    damping = Damping(1e-3)
    res = solver.solve(lin, damping)
    assert "shift 1e-06" in res.decision and res.relative_residual <= 1e-10
    dense = Dense(lin, damping)
    assert np.linalg.norm(res.delta - dense.delta) / np.linalg.norm(dense.delta) <= 10 * 1e-10 * dense.kappa
    st = solver.direct_stats()
    assert st.shifts == 1 and st.not_converged == 0
    np.testing.assert_allclose(calls[1].diagonal(), calls[0].diagonal() * (1 + 1e-6))
    if fallback:
        assert st.cg_iterations == 0 and "shift 1e-06 needed" in st.switched_to_fp64 and not solver.mixed
        assert "fp32 -> fp64" in res.decision and res.iterations == 2
    else:
        assert st.cg_iterations > 0 and st.switched_to_fp64 is None and solver.mixed


def _auto_solver(lin, pattern):
    return CholeskySolver(pattern, PrecisionPolicy.preset("auto"), DirectConfig(reuse=False))


@pytest.mark.parametrize("fp32_faster", [True, False])
def test_auto_keeps_the_faster_measured_factor(fp32_faster):
    lin, pattern = random_pgo(8, nv=40, p=3, loops=20)
    solver = _auto_solver(lin, pattern)
    assert solver.adaptive and solver.mixed
    solver.solve(lin, Damping(1e-3))  # step 1: fp32 factor + PCG
    assert solver.chol.dtype == np.float64 and solver._measuring  # step 2 will be the fp64 measurement
    # the measured step times decide; pin them so the test does not depend on this machine's timings
    solver._t32 = 1.0 if fp32_faster else 3.0
    decision = solver._adapt(True, 2.0, "factor")
    st = solver.direct_stats()
    assert st.factor == ("fp32" if fp32_faster else "fp64") and not solver.adaptive
    assert solver.chol.dtype == (np.float32 if fp32_faster else np.float64)
    assert ("fp32 factor + PCG: 1.0000 s" if fp32_faster else "fp64 factor: 2.0000 s") in st.choice
    assert "auto:" in decision
    res = solver.solve(lin, Damping(1e-3))  # the rest of the solve in the chosen format, still accurate
    dense = Dense(lin, Damping(1e-3))
    assert np.linalg.norm(res.delta - dense.delta) / np.linalg.norm(dense.delta) <= 10 * 1e-10 * dense.kappa


def test_auto_on_two_contrasting_problems():
    # a well-conditioned graph: fp32 + PCG works, the choice is made from the two measured steps
    lin, pattern = random_pgo(9, nv=60, p=3, loops=30)
    solver = _auto_solver(lin, pattern)
    for lam in (1e-3, 1e-3, 1e-3):
        solver.solve(lin, Damping(lam))
    st = solver.direct_stats()
    assert st.switched_to_fp64 is None and st.choice is not None and " against " in st.choice
    t_chosen, t_other = (float(w) for w in re.findall(r"([0-9.]+) s", st.choice))
    assert t_chosen <= t_other  # the faster one was kept
    # an ill-conditioned graph where fp32 breaks down (simulated: the unshifted fp32 factorization fails):
    # fp64 from the next step on, with the reason
    lin2, pattern2 = random_pgo(10, nv=60, p=3, loops=30)
    solver2 = _auto_solver(lin2, pattern2)
    real = solver2.chol.factorize
    calls = []

    def breaks_once(H):
        calls.append(H)
        if len(calls) == 1:
            from mixslam.errors import SolverError

            raise SolverError("H is not positive definite (simulated fp32 breakdown)")
        return real(H)

    solver2.chol.factorize = breaks_once
    first = solver2.solve(lin2, Damping(1e-3))
    assert "shift" in first.decision and "fp32 -> fp64" in first.decision
    st2 = solver2.direct_stats()
    assert st2.choice.startswith("fp64 factor: fp32 factorization broke down") and not solver2.mixed
    assert solver2.solve(lin2, Damping(1e-3)).decision == "factor"  # fp64 from now on
