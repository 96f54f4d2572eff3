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
            J[2 * e : 2 * e + 2, lin.ia[e] * lin.p : (lin.ia[e] + 1) * lin.p] = lin.A[e]
        if lin.ib[e] >= 0:
            o = lin.nv * lin.p + lin.ib[e] * 3
            J[2 * e : 2 * e + 2, o : o + 3] = lin.B[e]
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


# ---------------------------------------------------------------------------------------------------------
# The mixed-precision Schur solve: fp32 elimination and factor, fp64 refinement / PCG, fallback, auto policy
# ---------------------------------------------------------------------------------------------------------
from mixslam.linear.config import DirectConfig  # noqa: E402

U32 = float(np.finfo(np.float32).eps) / 2


def _system(lin, lam):
    J = _dense(lin)
    g = J.T @ lin.r.reshape(-1)
    H = J.T @ J
    D = lam * np.clip(np.diag(H), 1e-6, 1e32)
    return H + np.diag(D), g


@pytest.mark.parametrize("method", ["pcg", "refinement"])
@pytest.mark.parametrize("pc", [9, 6])
def test_fp32_schur_refined_to_the_fp64_tolerance(method, pc):
    lin = _random_ba(4, pc=pc)
    K, g = _system(lin, 1e-3)
    expect = np.linalg.solve(K, -g)
    solver = SchurSolver(
        lin.nv, lin.p, lin.nb, PrecisionPolicy.preset("fp32", "ba"), DirectConfig(tolerance=1e-11, method=method)
    )
    res = solver.solve(lin, Damping(1e-3, 1e-6, 1e32), 0.0)
    true = np.linalg.norm(K @ res.delta + g) / np.linalg.norm(g)
    assert res.relative_residual <= 1e-11 and true < 1e-10
    np.testing.assert_allclose(res.delta, expect, rtol=1e-6, atol=1e-8 * np.abs(expect).max())
    st = solver.direct_stats()
    assert st.factor == "fp32" and st.factorizations == 1 and st.refinements + st.cg_iterations >= 1
    assert res.iterations == 1 + st.refinements + st.cg_iterations
    assert res.decision.startswith("factor")


def test_the_fp32_schur_solve_alone_is_an_fp32_answer():
    """Without refinement the fp32 elimination leaves an error far above fp64's and within fp32's reach: the
    refinement is what brings it to fp64 (a solver that silently computed in fp64 would fail this)."""
    lin = _random_ba(5, pc=9)
    K, g = _system(lin, 1e-2)
    cfg = DirectConfig(
        tolerance=1e-30, max_cg_iterations=0, method="refinement", max_refinement_iterations=0, fp64_fallback=False
    )
    res = SchurSolver(lin.nv, lin.p, lin.nb, PrecisionPolicy.preset("fp32", "ba"), cfg).solve(
        lin, Damping(1e-2, 1e-6, 1e32), 0.0
    )
    kappa = np.linalg.cond(K)
    assert 10 * U32 * 1e-3 < res.relative_residual < 100 * U32 * kappa
    assert res.status.value == "max_iterations"


def test_fp32_schur_goes_on_in_fp64_when_it_does_not_pay():
    # κ ≈ 2.5e6: the fp32 factor needs two PCG iterations for 1e-15 (one reaches 9e-14), more than allowed
    lin = _random_ba(6, pc=9)
    K, g = _system(lin, 1e-3)
    cfg = DirectConfig(tolerance=1e-15, max_fp32_iterations=1)
    solver = SchurSolver(lin.nv, lin.p, lin.nb, PrecisionPolicy.preset("fp32", "ba"), cfg)
    first = solver.solve(lin, Damping(1e-3, 1e-6, 1e32), 0.0)
    assert "fp32 -> fp64" in first.decision
    st = solver.direct_stats()
    assert st.switched_to_fp64 and "solves with the fp32 Schur factor" in st.switched_to_fp64
    second = solver.solve(lin, Damping(1e-3, 1e-6, 1e32), 0.0)
    assert second.iterations == 1 and not solver.mixed and second.relative_residual < 1e-12
    np.testing.assert_allclose(second.delta, np.linalg.solve(K, -g), rtol=1e-7, atol=1e-10)


def test_auto_measures_fp32_then_fp64_and_keeps_the_faster():
    lin = _random_ba(7, pc=9)
    auto = PrecisionPolicy.preset("auto", "ba")
    assert auto.adaptive and auto.factor.value == "fp32"
    solver = SchurSolver(lin.nv, lin.p, lin.nb, auto)
    d = Damping(1e-3, 1e-6, 1e32)
    one = solver.solve(lin, d, 0.0)
    assert solver.dtype == np.float64 and "fp64 next" in one.decision  # step 2 measures fp64
    assert "fp64 not measured yet" in solver.direct_stats().choice
    two = solver.solve(lin, d, 0.0)
    choice = solver.direct_stats().choice
    assert choice.startswith("fp32 Schur + PCG:") or choice.startswith("fp64 Schur:")
    assert ("fp32" if solver.mixed else "fp64") == solver.direct_stats().factor
    assert "auto:" in two.decision and not solver.adaptive
    solver.solve(lin, d, 0.0)  # the choice holds
    assert solver.direct_stats().choice == choice


# ---------------------------------------------------------------------------------------------------------
# Iterative Schur: PCG on the implicit reduced camera system
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision,rtol,err", [("fp64", 1e-12, 1e-8), ("fp32", 1e-6, 3e-3), ("mixed", 1e-4, 3e-2)])
def test_iterative_schur_matches_dense(precision, rtol, err):
    from mixslam.linear.implicit_schur import ImplicitSchurSolver

    lin = _random_ba(8, pc=9)
    K, g = _system(lin, 1e-2)
    expect = np.linalg.solve(K, -g)
    policy = PrecisionPolicy.preset(precision, "ba")
    solver = ImplicitSchurSolver(policy, CGConfig(max_iterations=500))
    res = solver.solve(lin, Damping(1e-2, 1e-6, 1e32), rtol)
    assert res.status.value == "converged" and res.relative_residual <= rtol
    got = np.linalg.norm(res.delta - expect) / np.linalg.norm(expect)
    assert got < err, (precision, got)
    assert res.stats.overflows == 0
    mem = solver.memory()
    assert mem.jacobian_bytes == lin.A.size * (
        8 if precision == "fp64" else 2 if precision == "mixed" else 4
    ) + lin.B.size * (8 if precision == "fp64" else 2 if precision == "mixed" else 4)


def test_iterative_schur_choice_and_refusals():
    from mixslam.errors import ConfigError
    from mixslam.linear.choice import LinearSolverChoice, resolve_linear_solver

    mixed = PrecisionPolicy.preset("mixed", "ba")
    assert resolve_linear_solver("ischur", None, mixed, "ba") == LinearSolverChoice("iterative_schur")
    got = resolve_linear_solver("iterative_schur", None, mixed, "ba")
    assert got.iterative and got.label == "iterative_schur"
    with pytest.raises(ConfigError, match="for bundle adjustment"):
        resolve_linear_solver("iterative_schur", None, PrecisionPolicy.preset("fp64"), "pgo")
    with pytest.raises(ConfigError, match="own preconditioner"):
        resolve_linear_solver("iterative_schur", "jacobi", mixed, "ba")
    from mixslam.linear.implicit_schur import ImplicitSchurSolver

    with pytest.raises(ConfigError, match="fp32 or fp64 arithmetic"):
        ImplicitSchurSolver(PrecisionPolicy.preset("fp16", "ba"))
