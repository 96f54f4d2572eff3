"""Every linear solver and preconditioner on small random least-squares systems with known answers.

Each system is a random :class:`Linearization`: one variable set (pose-graph-like: both blocks of a row act on the
same variables, one row anchored to a fixed variable) or two (BA-like: cameras and points). The known answer is
``numpy.linalg.solve`` of the dense damped normal equations (JᵀJ + λD) δ = -Jᵀr; every tolerance is
:func:`helpers.tol_for` of the precision under test and the measured condition number of the (Jacobi-scaled)
damped normal matrix. Also: the model decrease, the statuses, the damping, the timing record, the incomplete-
Cholesky refactor and escalation state machine, and the choice of solver (names, aliases, defaults, refusals).
"""
import numpy as np
import pytest

from helpers import random_ba, tol_for, unit_roundoff
from mixslam.errors import ConfigError
from mixslam.linear import (
    CGConfig,
    Damping,
    ICConfig,
    Linearization,
    LinearSolverChoice,
    LinearStatus,
    LinearStructure,
    default_linear_solver,
    make_linear_solver,
    resolve_linear_solver,
)
from mixslam.linear.block_pattern import BlockPattern
from mixslam.linear.cgnr import CGSolver, pcg
from mixslam.linear.choice import DIRECT_FACTORS
from mixslam.linear.cholesky import CholeskySolver
from mixslam.linear.config import DirectConfig
from mixslam.linear.linearization import model_decrease
from mixslam.linear.operators import JacobianOperator, KrylovArith, column_scale
from mixslam.linear.preconditioners import ICPreconditioner, IdentityPreconditioner, JacobiPreconditioner
from mixslam.linear.schur import MAX_DENSE, SchurSolver
from mixslam.precision import PRESETS, Precision, PrecisionPolicy

# ---- the systems ----------------------------------------------------------------------------------------------

def random_pgo(seed: int, nv: int = 12, p: int = 3, loops: int = 6):
    """A pose-graph-like linearization (a chain anchored at a fixed variable, plus random loops) and its
    normal matrix's block pattern. Columns are scaled by factors e^N(0,1), which the solvers' scaling undoes."""
    rng = np.random.default_rng(seed)
    ia = np.concatenate([[-1], np.arange(nv - 1), rng.integers(0, nv, loops)])
    ib = np.concatenate([[0], np.arange(1, nv), rng.integers(0, nv, loops)])
    keep = ia != ib
    ia, ib = ia[keep].astype(np.int64), ib[keep].astype(np.int64)
    m = ia.size
    colscale = np.exp(rng.normal(size=p))
    A = rng.normal(size=(m, p, p)) * colscale
    B = rng.normal(size=(m, p, p)) * colscale
    A[ia < 0] = 0.0
    r = rng.normal(size=(m, p))
    return Linearization(r, A, B, ia, ib, nv, p), BlockPattern(ia, ib, nv, p)


def dense_jacobian(lin: Linearization) -> np.ndarray:
    k = lin.r.shape[1]
    J = np.zeros((lin.r.size, lin.size))
    for blocks, idx, off, w in lin.block_sets():
        for e in np.flatnonzero(idx >= 0):
            J[k * e:k * (e + 1), off + idx[e] * w:off + (idx[e] + 1) * w] += blocks[e]
    return J


class Dense:
    """The dense damped normal equations of ``lin`` and their solution."""

    def __init__(self, lin: Linearization, damping: Damping):
        self.J = dense_jacobian(lin)
        self.g = self.J.T @ lin.r.reshape(-1)
        H = self.J.T @ self.J
        d = np.diag(H)
        self.M = H + np.diag(np.where(d > 0, damping.diagonal(d), 1.0))
        self.delta = np.linalg.solve(self.M, -self.g)
        s = 1.0 / np.sqrt(np.diag(self.M))
        self.kappa = float(np.linalg.cond(self.M * s[:, None] * s[None, :]))

    def model_decrease(self, delta: np.ndarray, g: np.ndarray | None = None) -> float:
        """-gᵀδ - 0.5‖Jδ‖² (``g``: the right-hand side the solver solved with; default the exact Jᵀr)."""
        g = self.g if g is None else g
        return float(-(g @ delta) - 0.5 * np.sum((self.J @ delta) ** 2))


SYSTEMS = {
    "pgo-se2": lambda: random_pgo(1, p=3),
    "pgo-se3": lambda: random_pgo(1, p=6),
    "ba-pinhole": lambda: (random_ba(1, pc=6), None),
    "ba-bal": lambda: (random_ba(1, pc=9), None),
}


def kind_of(system: str) -> str:
    return system.split("-")[0]


def structure(lin: Linearization, pattern) -> LinearStructure:
    return LinearStructure(lin.nv, lin.p, lin.nb, lin.pb, pattern)


def rel_err(x, ref) -> float:
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


# ---- every solver in every preset it accepts vs. the dense solve -----------------------------------------------

def _solver_names(kind: str):
    direct = "cholesky" if kind == "pgo" else "schur"
    return [(direct, None), ("cg", "jacobi"), ("cg", "none")] + ([("cg", "ic")] if kind == "pgo" else [])


def _cases():
    for system in SYSTEMS:
        for preset, policy in PRESETS[kind_of(system)].items():
            # 16-bit operands leave a relative error of about u16 · κ ≈ 5e-4 · κ: only the better-conditioned
            # systems (more damping) give a check that says something.
            for lam in ((0.1, 1.0) if unit_roundoff(policy) > 1e-4 else (1e-3, 0.1, 1.0)):
                yield system, preset, lam


@pytest.mark.parametrize("system,preset,lam", list(_cases()))
def test_every_solver_in_every_preset_it_accepts_matches_the_dense_solve(system, preset, lam):
    kind = kind_of(system)
    lin, pattern = SYSTEMS[system]()
    policy = PrecisionPolicy.preset(preset, kind)
    damping = Damping(lam)
    dense = Dense(lin, damping)
    for solver, pre in _solver_names(kind):
        try:
            choice = resolve_linear_solver(solver, pre, policy, kind)
        except ConfigError:
            # the one refusal among these: a factor format the kind's direct solver does not have
            assert solver in ("cholesky", "schur") and policy.factor not in DIRECT_FACTORS[kind]
            continue
        assert choice == LinearSolverChoice(solver, pre)
        obj = make_linear_solver(choice, policy, structure(lin, pattern), CGConfig(max_iterations=1000))
        # The direct solvers reach fp64 accuracy whatever the policy (an fp32 factor is refined to the fp64
        # residual tolerance of DirectConfig); CG is asked for the attainable residual u.
        direct = not choice.iterative
        refined = direct and policy.factor is not Precision.FP64
        res = obj.solve(lin, damping, 0.0 if direct else unit_roundoff(policy))
        tol = tol_for(Precision.FP64 if direct else policy, kappa=dense.kappa)
        if refined:
            tol = max(tol, 10 * DirectConfig().tolerance * dense.kappa)
        assert tol < 0.2  # the check is not vacuous
        assert res.delta.shape == (lin.size,) and res.delta.dtype == np.float64
        assert res.status is not LinearStatus.NONFINITE, (choice.label, res.status)
        assert rel_err(res.delta, dense.delta) <= tol, (choice.label, rel_err(res.delta, dense.delta), tol)
        if direct or preset == "fp64":
            assert res.status is LinearStatus.CONVERGED
        if direct and not refined:
            assert res.iterations == 1
            assert res.relative_residual <= tol_for(Precision.FP64, kappa=dense.kappa)
        if refined:
            assert res.iterations >= 1 and res.decision is not None and res.decision.startswith("factor")
            assert res.relative_residual <= DirectConfig().tolerance
        # The model decrease: the dense formula at the returned step (fp64, unquantized J; g the right-hand
        # side the solver solved with: Jᵀr in the policy's rhs precision for CG), and within the step's own
        # error of the exact step's.
        g_used = lin.gradient(np.float64 if direct else policy.rhs.compute_dtype).astype(np.float64)
        assert res.model_decrease == pytest.approx(dense.model_decrease(res.delta, g_used),
                                                   rel=tol_for(Precision.FP64, n=lin.size))
        assert res.model_decrease == pytest.approx(dense.model_decrease(dense.delta), rel=tol)
        assert res.stats.overflows == 0


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_model_decrease_is_the_dense_formula(system):
    lin, _ = SYSTEMS[system]()
    dense = Dense(lin, Damping(0.1))
    delta = np.random.default_rng(0).normal(size=lin.size)
    g = lin.gradient(np.float64)
    np.testing.assert_allclose(g, dense.g, rtol=tol_for(Precision.FP64, n=lin.r.size),
                               atol=tol_for(Precision.FP64, n=lin.r.size) * np.abs(dense.g).max())
    assert model_decrease(lin, g, delta) == pytest.approx(dense.model_decrease(delta),
                                                          rel=tol_for(Precision.FP64, n=lin.size))
    # At the damped Newton step the model decrease is 0.5 δᵀ(JᵀJ + 2λD)δ > 0.
    assert model_decrease(lin, g, dense.delta) > 0


def test_fp32_linearization_is_widened_exactly_by_the_direct_solvers():
    lin, pattern = random_pgo(2)
    lin32 = Linearization(*(np.asarray(a, np.float32) for a in (lin.r, lin.A, lin.B)), lin.ia, lin.ib, lin.nv, lin.p)
    lin64 = Linearization(*(np.asarray(a, np.float64) for a in (lin32.r, lin32.A, lin32.B)), lin.ia, lin.ib,
                          lin.nv, lin.p)
    fp64 = PrecisionPolicy.preset("fp64")
    a = CholeskySolver(pattern, fp64).solve(lin32, Damping(0.1))
    b = CholeskySolver(pattern, fp64).solve(lin64, Damping(0.1))
    dense = Dense(lin64, Damping(0.1))
    tol = tol_for(Precision.FP64, kappa=dense.kappa)
    assert rel_err(a.delta, b.delta) <= tol and rel_err(a.delta, dense.delta) <= tol


# ---- damping, statuses, timing ---------------------------------------------------------------------------------

def test_damping_diagonal_is_lambda_times_the_clamped_column_norms():
    d = Damping(2.0, min_diagonal=1e-3, max_diagonal=10.0)
    np.testing.assert_array_equal(d.diagonal(np.array([0.0, 1e-6, 1e-3, 1.0, 10.0, 1e6])),
                                  [2e-3, 2e-3, 2e-3, 2.0, 20.0, 20.0])
    assert Damping(0.5).min_diagonal == 1e-6 and Damping(0.5).max_diagonal == 1e32
    np.testing.assert_array_equal(Damping(0.0).diagonal(np.array([1.0, 5.0])), [0.0, 0.0])


def test_the_clamping_reaches_the_solve():
    lin, pattern = random_pgo(1)
    fp64 = PrecisionPolicy.preset("fp64")
    colsq = lin.column_sq_norms()
    damping = Damping(1.0, min_diagonal=float(np.median(colsq)), max_diagonal=float(np.median(colsq)))
    res = CholeskySolver(pattern, fp64).solve(lin, damping)
    dense = Dense(lin, damping)  # every column damped by the same λ·median
    assert rel_err(res.delta, dense.delta) <= tol_for(Precision.FP64, kappa=dense.kappa)
    assert rel_err(res.delta, Dense(lin, Damping(1.0)).delta) > 1e-3  # and the clamp changed the answer


def test_linear_status_values():
    assert [s.value for s in LinearStatus] == ["converged", "max_iterations", "stagnated", "breakdown",
                                                "nonfinite", "diverged"]
    for s in LinearStatus:
        assert s == s.value and LinearStatus(s.value) is s


def _pcg(lin, damping_values, b, *, precision=Precision.FP64, tol=1e-12, max_iterations=200, precond=None,
         stagnation_window=20, refresh_every=50):
    scale = column_scale(lin.column_sq_norms())
    op = JacobianOperator.from_linearization(lin, scale, precision, precision)
    return pcg(op, damping_values, b, precond, KrylovArith(precision), tol=tol, max_iterations=max_iterations,
               stagnation_window=stagnation_window, refresh_every=refresh_every)


def test_pcg_statuses():
    lin, _ = random_pgo(1)
    n = lin.size
    b = np.random.default_rng(3).normal(size=n)
    d = np.full(n, 0.1)
    res = _pcg(lin, d, b)
    assert res.status is LinearStatus.CONVERGED and res.relative_residual <= 1e-12
    res = _pcg(lin, d, b, max_iterations=1)
    assert res.status is LinearStatus.MAX_ITERATIONS and res.iterations == 1 and res.relative_residual > 1e-12
    res = _pcg(lin, d, np.zeros(n))
    assert res.status is LinearStatus.CONVERGED and res.iterations == 0 and not res.x.any()
    res = _pcg(lin, d, np.where(np.arange(n) == 4, np.nan, b))
    assert res.status is LinearStatus.NONFINITE
    res = _pcg(lin, np.full(n, -1e6), b)  # pᵀAp < 0: the system is not positive definite
    assert res.status is LinearStatus.BREAKDOWN
    # The true residual (refreshed every iteration) of fp32 Krylov vectors cannot get below ~u32 · κ: asked
    # for 1e-14 it stops improving.
    res = _pcg(lin, d, b, precision=Precision.FP32, tol=1e-14, max_iterations=2000, stagnation_window=20,
               refresh_every=1)
    assert res.status is LinearStatus.STAGNATED and res.iterations < 2000
    assert res.relative_residual <= tol_for(Precision.FP32, kappa=Dense(lin, Damping(0.1)).kappa) * 100


def test_zero_right_hand_side_gives_a_zero_step():
    # pcg's early return (zero or non-finite right-hand side) carries its timing record too (it once did not:
    # CGSolver.solve then failed on a KeyError)
    lin, _ = random_pgo(1)
    lin.r[:] = 0.0
    fp32 = PrecisionPolicy.preset("fp32")
    res = CGSolver(fp32, JacobiPreconditioner(fp32)).solve(lin, Damping(0.1), 1e-6)
    assert res.status is LinearStatus.CONVERGED and res.iterations == 0
    assert not res.delta.any() and res.model_decrease == 0.0


def test_nonfinite_solve_returns_a_zero_step():
    lin, _ = random_pgo(1)
    lin.r[3, 1] = np.nan
    fp32 = PrecisionPolicy.preset("fp32")
    res = CGSolver(fp32, JacobiPreconditioner(fp32)).solve(lin, Damping(0.1), 1e-6)
    assert res.status is LinearStatus.NONFINITE
    assert not res.delta.any() and np.isnan(res.model_decrease)


CG_TIMES = {"quantize", "preconditioner", "cg", "products_s", "products_calls", "preconditioner_s",
            "preconditioner_calls", "cg_s", "cg_calls"}


@pytest.mark.parametrize("pre", ["jacobi", "ic", "none"])
def test_cg_timing_record(pre):
    lin, pattern = random_pgo(1)
    mixed = PrecisionPolicy.preset("mixed")
    solver = make_linear_solver(LinearSolverChoice("cg", pre), mixed, structure(lin, pattern))
    res = solver.solve(lin, Damping(0.1), 1e-4)
    assert CG_TIMES <= set(res.times)
    assert ("ic_factor" in res.times) == (pre == "ic")
    assert all(v >= 0 for v in res.times.values())
    assert res.times["cg_calls"] == 1
    assert res.times["products_calls"] >= res.iterations
    assert (res.times["preconditioner_calls"] > 0) == (pre != "none")
    mem = solver.memory()
    assert mem.jacobian_bytes > 0 and (mem.preconditioner_bytes > 0) == (pre != "none")


def test_direct_solvers_timing_and_memory():
    lin, pattern = random_pgo(1)
    fp64 = PrecisionPolicy.preset("fp64")
    chol = CholeskySolver(pattern, fp64)
    assert set(chol.solve(lin, Damping(0.1)).times) == {"assemble", "factor_solve"}
    assert chol.memory().factor_bytes is not None
    ba = random_ba(1)
    schur = SchurSolver(ba.nv, ba.p, ba.nb)
    assert set(schur.solve(ba, Damping(0.1)).times) == {"schur", "factor", "factor_solve"}
    mem = schur.memory()
    assert mem.reduced_system_bytes == (ba.nv * ba.p) ** 2 * 8 and mem.point_blocks_bytes > 0


def test_a_rejected_step_reuses_the_stored_jacobian():
    lin, _ = random_pgo(1)
    mixed = PrecisionPolicy.preset("mixed16")
    solver = CGSolver(mixed, JacobiPreconditioner(mixed))
    first = solver.solve(lin, Damping(0.1), 1e-3)
    again = solver.solve(lin, Damping(1.0), 1e-3)  # same linearization, more damping
    assert first.stats.count > 0
    jac_values = lin.A.size + lin.B.size
    assert first.stats.count - again.stats.count == jac_values  # stored once, not counted twice
    assert rel_err(again.delta, Dense(lin, Damping(1.0)).delta) <= tol_for(mixed, kappa=Dense(lin, Damping(1.0)).kappa)


# ---- the incomplete-Cholesky preconditioner's refactor and escalation ------------------------------------------

def _perturbed(lin: Linearization, seed: int) -> Linearization:
    """Another linearization of the same problem (a new LM iterate)."""
    rng = np.random.default_rng(seed)
    return Linearization(lin.r + 0.1 * rng.normal(size=lin.r.shape), lin.A * (1 + 0.3 * rng.normal(size=lin.A.shape)),
                         lin.B * (1 + 0.3 * rng.normal(size=lin.B.shape)), lin.ia, lin.ib, lin.nv, lin.p)


def _ic_solver(pattern, ic: ICConfig, max_iterations: int, precision: str = "fp64"):
    policy = PrecisionPolicy.preset(precision)
    pre = ICPreconditioner(pattern, policy, ic)
    return CGSolver(policy, pre, CGConfig(max_iterations=max_iterations)), pre


LOOSE, TIGHT = 0.999, 1e-14  # a solve that converges at once, and one that cannot within the cap


def test_ic_never_refactors_when_strictly_static():
    lin, pattern = random_pgo(1, p=6)
    solver, pre = _ic_solver(pattern, ICConfig(fill_level=0, refactor="never"), max_iterations=2)
    assert pre.stats() is None  # nothing factored yet
    for seed in range(3):
        res = solver.solve(_perturbed(lin, seed), Damping(1e-3), TIGHT)
        assert res.status is LinearStatus.MAX_ITERATIONS
    st = pre.stats()
    assert st.factorizations == 1 and st.escalated is False
    assert st.fill_level == 0 and st.ordering == "natural" and st.shift_tries == 0 and st.shift == 0.0


def test_ic_refactors_on_stall_then_escalates():
    lin, pattern = random_pgo(1, p=6)
    lin2 = _perturbed(lin, 1)
    solver, pre = _ic_solver(pattern, ICConfig(fill_level=0), max_iterations=1)
    first = solver.solve(lin, Damping(1e-3), LOOSE)
    assert first.status is LinearStatus.CONVERGED and pre.stats().factorizations == 1
    assert "ic_factor" in first.times
    # A new linearization and a solve that stops at the cap with the old factor: refactor at lin2 and redo;
    # still above escalate_residual (0.1) with a factor of lin2 itself: escalate to the complete min-degree
    # factor, which inverts the damped system (fp64), so one CG iteration then converges.
    res = solver.solve(lin2, Damping(1e-3), TIGHT)
    st = pre.stats()
    assert st.factorizations == 3 and st.escalated is True
    assert st.fill_level == "complete" and st.ordering == "min-degree"
    assert res.times["cg_calls"] == 3 and res.iterations == 3
    assert res.status is LinearStatus.CONVERGED
    dense = Dense(lin2, Damping(1e-3))
    assert rel_err(res.delta, dense.delta) <= tol_for(Precision.FP64, kappa=dense.kappa)
    # Escalated: recomputed at every new linearization, kept for a re-solve of the same one (a rejected step).
    assert solver.solve(lin2, Damping(1e-2), LOOSE).status is LinearStatus.CONVERGED
    assert pre.stats().factorizations == 3
    solver.solve(_perturbed(lin, 2), Damping(1e-3), LOOSE)
    assert pre.stats().factorizations == 4 and pre.stats().escalated is True


def test_ic_refactors_on_stall_without_escalating_when_told_not_to():
    lin, pattern = random_pgo(1, p=6)
    solver, pre = _ic_solver(pattern, ICConfig(fill_level=0, escalate=False), max_iterations=2)
    solver.solve(lin, Damping(1e-3), LOOSE)
    res = solver.solve(_perturbed(lin, 1), Damping(1e-3), TIGHT)
    st = pre.stats()
    assert st.factorizations == 2 and st.escalated is False and st.fill_level == 0
    assert res.status is LinearStatus.MAX_ITERATIONS and res.times["cg_calls"] == 2


def test_ic_escalates_on_the_first_linearization_when_its_own_factor_fails():
    lin, pattern = random_pgo(1, p=6)
    solver, pre = _ic_solver(pattern, ICConfig(fill_level=0), max_iterations=1)
    res = solver.solve(lin, Damping(1e-3), TIGHT)
    assert pre.stats().escalated is True and pre.stats().factorizations == 2
    assert res.times["cg_calls"] == 2


def test_ic_always_refactors_at_each_new_linearization():
    lin, pattern = random_pgo(1, p=6)
    solver, pre = _ic_solver(pattern, ICConfig(refactor="always"), max_iterations=500)
    solver.solve(lin, Damping(1e-3), 1e-8)
    solver.solve(lin, Damping(1e-1), 1e-8)  # same linearization: same factor
    assert pre.stats().factorizations == 1
    solver.solve(_perturbed(lin, 1), Damping(1e-3), 1e-8)
    assert pre.stats().factorizations == 2 and pre.stats().escalated is False


def test_ic_converged_solve_is_never_redone():
    lin, pattern = random_pgo(1, p=6)
    solver, pre = _ic_solver(pattern, ICConfig(), max_iterations=500, precision="mixed")
    for seed in range(3):
        res = solver.solve(_perturbed(lin, seed), Damping(1e-3), 1e-4)
        assert res.status is LinearStatus.CONVERGED and res.times["cg_calls"] == 1
    assert pre.stats().factorizations == 1


def test_identity_and_jacobi_preconditioners():
    lin, _ = random_pgo(1)
    assert IdentityPreconditioner().is_identity and IdentityPreconditioner().stats() is None
    r = np.arange(6.0)
    assert IdentityPreconditioner().apply(r) is r
    fp64 = PrecisionPolicy.preset("fp64")
    jac = JacobiPreconditioner(fp64)
    scale = column_scale(lin.column_sq_norms())
    jac.prepare(lin, scale, np.full(lin.size, 0.5), True, {})
    # Block-Jacobi: the inverse of each p x p diagonal block of S JᵀJ S + diag(d).
    J = dense_jacobian(lin) * scale
    M = J.T @ J + 0.5 * np.eye(lin.size)
    v = np.random.default_rng(0).normal(size=lin.size)
    p = lin.p
    expect = np.concatenate([np.linalg.solve(M[i:i + p, i:i + p], v[i:i + p]) for i in range(0, lin.size, p)])
    np.testing.assert_allclose(jac.apply(v), expect, rtol=tol_for(Precision.FP64, n=p, kappa=np.linalg.cond(M)))
    assert jac.nbytes == lin.nv * p * p * 8 and jac.stats() is None


# ---- which solver: names, aliases, defaults, refusals ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["pgo", "ba"])
@pytest.mark.parametrize("preset", ["fp64", "fp32", "mixed", "auto", "mixed16", "fp16"])
def test_default_solver_of_each_preset(kind, preset):
    policy = PrecisionPolicy.preset(preset, kind)
    got = resolve_linear_solver(None, None, policy, kind)
    # direct where the kind's direct solver has the policy's factor format (both kinds: fp64 and fp32)
    if preset in ("fp64", "fp32", "mixed", "auto"):
        assert got == LinearSolverChoice("cholesky" if kind == "pgo" else "schur")
        assert got.preconditioner is None and not got.iterative and got.label == got.solver
    else:
        assert got == LinearSolverChoice("cg", "ic" if kind == "pgo" else "jacobi")
        assert got.iterative and got.label == f"cg+{got.preconditioner}"
    assert got == default_linear_solver(policy, kind)


@pytest.mark.parametrize("kind", ["pgo", "ba"])
@pytest.mark.parametrize("preset", ["fp64", "fp32", "mixed", "mixed16", "fp16"])
def test_a_custom_policy_equal_to_a_preset_gets_what_the_preset_gets(kind, preset):
    p = PrecisionPolicy.preset(preset, kind)
    mine = PrecisionPolicy("mine", **{k: v for k, v in p.__dict__.items() if k != "name"})
    assert resolve_linear_solver(None, None, mine, kind) == resolve_linear_solver(None, None, p, kind)


def test_defaults_come_from_the_fields_never_the_name():
    mixed16 = PrecisionPolicy.preset("mixed16")
    assert resolve_linear_solver(None, None, mixed16.replace(name="fp64"), "pgo") == LinearSolverChoice("cg", "ic")
    mixed = PrecisionPolicy.preset("mixed")
    assert resolve_linear_solver(None, None, mixed.replace(name="fp64"), "pgo") == LinearSolverChoice("cholesky")
    # fp64 linear solve with an fp32 residual and cost: still every linear-solve operation fp64
    fp64ish = PrecisionPolicy("fp64ish", cost="fp32", residual="fp32")
    assert fp64ish.linear_solve_fp64
    assert resolve_linear_solver(None, None, fp64ish, "pgo") == LinearSolverChoice("cholesky")
    # the factor field decides: a 16-bit factor (no direct solver has one) means CG
    assert resolve_linear_solver(None, None, PrecisionPolicy("k", factor="fp16"), "pgo") == LinearSolverChoice(
        "cg", "ic")
    assert resolve_linear_solver(None, None, PrecisionPolicy("k", factor="fp32"), "ba") == LinearSolverChoice(
        "schur")
    assert resolve_linear_solver(None, None, PrecisionPolicy("k", factor="fp32"), "pgo") == LinearSolverChoice(
        "cholesky")


@pytest.mark.parametrize("solver,pre,kind,expect", [
    ("ic", None, "pgo", ("cg", "ic")),
    ("ic", "ic", "pgo", ("cg", "ic")),
    ("cgnr", None, "pgo", ("cg", "jacobi")),
    ("cgnr", None, "ba", ("cg", "jacobi")),
    ("cgnr", "none", "ba", ("cg", "none")),
    ("cgnr", "ic", "pgo", ("cg", "ic")),
    ("cg", None, "pgo", ("cg", "ic")),
    ("cg", None, "ba", ("cg", "jacobi")),
    ("cg", "none", "pgo", ("cg", "none")),
    (None, "jacobi", "pgo", ("cg", "jacobi")),
    ("cholesky", None, "pgo", ("cholesky", None)),
    ("schur", None, "ba", ("schur", None)),
])
def test_names_and_aliases(solver, pre, kind, expect):
    policy = PrecisionPolicy.preset("fp32" if expect[0] == "cg" else "fp64", kind)
    assert resolve_linear_solver(solver, pre, policy, kind) == LinearSolverChoice(*expect)


def test_named_cholesky_takes_an_fp16_factor_with_fp32_arithmetic():
    """mixed16 (fp16 factor, fp32 arithmetic): the pose-graph Cholesky keeps its fp32 factor in fp16 panels when
    named; the default stays CG + IC (the preset's study design)."""
    mixed16 = PrecisionPolicy.preset("mixed16", "pgo")
    assert resolve_linear_solver("cholesky", None, mixed16, "pgo") == LinearSolverChoice("cholesky")
    assert resolve_linear_solver(None, None, mixed16, "pgo") == LinearSolverChoice("cg", "ic")


@pytest.mark.parametrize("solver,pre,preset,kind,phrases", [
    ("cholesky", None, "fp16", "pgo", ["cholesky solver factors in fp64 or fp32 or fp16", "fp32 arithmetic only",
                                        "'fp16'"]),
    ("schur", None, "mixed16", "ba", ["schur solver factors in fp64 or fp32", "'mixed16'", "factor in fp16"]),
    ("schur", None, "fp16", "ba", ["schur solver factors in fp64 or fp32", "'fp16'"]),
    ("schur", None, "fp64", "pgo", ["'schur' solver is not for pgo", "'cholesky'"]),
    ("cholesky", None, "fp64", "ba", ["'cholesky' solver is not for ba", "'schur'"]),
    ("ic", None, "mixed", "ba", ["'ic' preconditioner is for pose graphs"]),
    ("cg", "ic", "mixed", "ba", ["'ic' preconditioner is for pose graphs"]),
    ("ic", "jacobi", "mixed", "pgo", ["solver 'ic'", "'jacobi'"]),
    ("cholesky", "jacobi", "fp64", "pgo", ["direct solver 'cholesky' takes no preconditioner", "'jacobi'"]),
    ("schur", "none", "fp64", "ba", ["direct solver 'schur' takes no preconditioner", "'none'"]),
    ("qr", None, "fp64", "pgo", ["unknown solver 'qr'"]),
    ("cg", "amg", "fp32", "pgo", ["unknown preconditioner 'amg'"]),
    (None, None, "fp64", "slam", ["unknown problem kind 'slam'"]),
])
def test_refusals_name_the_value(solver, pre, preset, kind, phrases):
    policy = PrecisionPolicy.preset(preset, "pgo" if kind == "slam" else kind)
    with pytest.raises(ConfigError) as exc:
        resolve_linear_solver(solver, pre, policy, kind)
    for phrase in phrases:
        assert phrase in str(exc.value), (phrase, str(exc.value))


def test_default_switches_to_iterative_schur_above_the_direct_limit():
    fp64 = PrecisionPolicy.preset("fp64", "ba")
    assert default_linear_solver(fp64, "ba", direct_unknowns=6000, max_direct=6000) == LinearSolverChoice("schur")
    assert default_linear_solver(fp64, "ba", direct_unknowns=6001, max_direct=6000) == LinearSolverChoice(
        "iterative_schur")
    for name in ("fp32", "mixed", "mixed16"):  # fp32 arithmetic (16-bit storage allowed)
        assert default_linear_solver(PrecisionPolicy.preset(name, "ba"), "ba", 6001, 6000) == LinearSolverChoice(
            "iterative_schur")
    fp16 = PrecisionPolicy.preset("fp16", "ba")  # 16-bit arithmetic: CG
    assert default_linear_solver(fp16, "ba", 6001, 6000) == LinearSolverChoice("cg", "jacobi")
    assert default_linear_solver(fp64, "ba", direct_unknowns=6001) == LinearSolverChoice("schur")  # no limit
    assert resolve_linear_solver(None, None, fp64, "ba", 10 ** 6, MAX_DENSE) == LinearSolverChoice("iterative_schur")
    assert resolve_linear_solver(None, "none", fp64, "ba", 10 ** 6, MAX_DENSE) == LinearSolverChoice("cg", "none")
    # a named solver is not overridden
    assert resolve_linear_solver("schur", None, fp64, "ba", 10 ** 6, MAX_DENSE) == LinearSolverChoice("schur")
    with pytest.raises(ConfigError, match="too many for the dense Schur solver"):
        make_linear_solver(LinearSolverChoice("schur"), fp64, LinearStructure(MAX_DENSE // 9 + 1, 9, 10, 3))


def test_make_linear_solver_builds_the_named_objects():
    lin, pattern = random_pgo(1)
    mixed, fp64 = PrecisionPolicy.preset("mixed"), PrecisionPolicy.preset("fp64")
    st = structure(lin, pattern)
    cfg, ic = CGConfig(max_iterations=7), ICConfig(fill_level=1)
    s = make_linear_solver(LinearSolverChoice("cg", "ic"), mixed, st, cfg, ic)
    assert isinstance(s, CGSolver) and isinstance(s.preconditioner, ICPreconditioner)
    assert s.config is cfg and s.preconditioner.config is ic and s.label == "cg+ic"
    assert isinstance(make_linear_solver(LinearSolverChoice("cg", "none"), mixed, st).preconditioner,
                      IdentityPreconditioner)
    chol = make_linear_solver(LinearSolverChoice("cholesky"), fp64, st)
    assert isinstance(chol, CholeskySolver) and chol.label == "cholesky" and chol.preconditioner is None
    assert chol.initial_lambda == 1e-12 and s.initial_lambda == 1e-5
    with pytest.raises(ConfigError, match="block pattern"):
        make_linear_solver(LinearSolverChoice("cholesky"), fp64, LinearStructure(lin.nv, lin.p))
    with pytest.raises(ConfigError, match="block pattern"):
        make_linear_solver(LinearSolverChoice("cg", "ic"), mixed, LinearStructure(lin.nv, lin.p))
