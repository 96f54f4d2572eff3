"""Elimination orders for the IC factor: minimum degree, the complete-fill pattern, the permuted factor."""
import numpy as np
import pytest

from mixslam.errors import ConfigError
from mixslam.linear import (
    CGConfig,
    Damping,
    ICConfig,
    Linearization,
    LinearSolverChoice,
    LinearStatus,
    make_linear_solver,
)
from mixslam.linear.block_pattern import BlockPattern
from mixslam.linear.ordering import minimum_degree_order
from mixslam.pgo import PoseGraphProblem, optimize_pose_graph
from mixslam.precision import PrecisionPolicy
from mixslam.sim import simulate_pose_graph
from mixslam.solve import LMConfig


def _arrow(n):
    """Pose 0 joined to every other pose: eliminating it first fills everything, last fills nothing."""
    ia = np.zeros(n - 1, dtype=np.int64)
    ib = np.arange(1, n, dtype=np.int64)
    return ia, ib


def test_minimum_degree_order_is_superlus_complete_lu_order():
    """The order comes from SuperLU's incomplete LU with everything dropped (cheap numeric phase); it must be
    the column order of its complete LU on the same matrix."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    g = simulate_pose_graph("manhattan", 300, seed=4).graph
    n = g.num_poses
    order = minimum_degree_order(g.edge_i, g.edge_j, n)
    r = np.concatenate([g.edge_i, g.edge_j])
    c = np.concatenate([g.edge_j, g.edge_i])
    G = sp.csc_matrix((np.full(r.size, -1.0), (r, c)), shape=(n, n))
    G.sum_duplicates()
    G.data[:] = -1.0
    G = (G + sp.diags(np.diff(G.indptr) + 1.0)).tocsc()
    lu = spla.splu(G, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    assert np.array_equal(order, np.argsort(lu.perm_c))


def test_minimum_degree_is_a_deterministic_permutation_that_avoids_fill():
    n = 40
    ia, ib = _arrow(n)
    order = minimum_degree_order(ia, ib, n)
    assert np.array_equal(np.sort(order), np.arange(n))
    assert np.array_equal(order, minimum_degree_order(ia, ib, n))
    natural = BlockPattern(ia, ib, n, 3, fill_level=n)
    md = BlockPattern(ia, ib, n, 3, fill_level=n, order=order)
    assert natural.nnzb == n * (n + 1) // 2          # the hub first: a dense factor
    assert md.nnzb == 2 * n - 1                       # the hub last: no fill at all
    assert order[-1] == 0


def test_complete_fill_is_the_cholesky_pattern():
    rng = np.random.default_rng(0)
    n, p = 30, 2
    ia = np.concatenate([np.arange(n - 1), rng.integers(0, n, 12)])
    ib = np.concatenate([np.arange(1, n), rng.integers(0, n, 12)])
    keep = ia != ib
    ia, ib = ia[keep], ib[keep]
    for order in (None, minimum_degree_order(ia, ib, n)):
        pat = BlockPattern(ia, ib, n, p, fill_level=n, order=order)
        # A generic SPD matrix with this graph: its dense Cholesky factor's nonzero blocks.
        pos = np.arange(n) if order is None else np.argsort(order)
        # JᵀJ of random edge Jacobians (fill entries of the same size as the original ones) plus a prior.
        J = np.zeros((ia.size * p, n * p))
        for e, (a, b) in enumerate(zip(pos[ia], pos[ib])):
            J[e * p:(e + 1) * p, a * p:(a + 1) * p] = rng.normal(size=(p, p))
            J[e * p:(e + 1) * p, b * p:(b + 1) * p] = rng.normal(size=(p, p))
        H = J.T @ J + 0.1 * np.eye(n * p)
        L = np.linalg.cholesky(H)
        nz = np.abs(L.reshape(n, p, n, p)).sum(axis=(1, 3)) > 1e-10 * np.abs(L).max()
        expected = {(int(i), int(j)) for i, j in zip(*np.nonzero(nz))}
        got = set(zip(pat.block_rows.tolist(), pat.indices.tolist()))
        assert got == expected


def test_order_must_be_a_permutation():
    ia, ib = _arrow(5)
    with pytest.raises(ValueError, match="permutation"):
        BlockPattern(ia, ib, 5, 3, order=np.array([0, 1, 2, 3, 3]))


@pytest.mark.parametrize("dim", [2, 3])
def test_complete_min_degree_factor_is_an_exact_preconditioner(dim):
    # fp64 storage: the complete factor of the damped system it is computed at inverts that system, so CG
    # converges in one or two iterations; this checks the permutation in and out of the triangular solves.
    sim = simulate_pose_graph("manhattan" if dim == 2 else "grid3d", 200, seed=1)
    pol = PrecisionPolicy.preset("fp64", problem="pgo")
    prob = PoseGraphProblem(sim.graph, pol)
    lin: Linearization = prob.linearize((sim.graph.rotations, sim.graph.translations))
    ic = ICConfig(ordering="min-degree", fill_level="complete", damped=True)
    solver = make_linear_solver(LinearSolverChoice("cg", "ic"), pol, prob.linear_structure(),
                                CGConfig(max_iterations=50), ic)
    res = solver.solve(lin, Damping(1e-4, 1e-6, 1e32), 1e-10)
    assert res.status == "converged" and res.status is LinearStatus.CONVERGED
    assert res.iterations <= 2
    assert solver.preconditioner.stats().fill_level == "complete"
    assert solver.preconditioner.stats().ordering == "min-degree"
    direct = make_linear_solver(LinearSolverChoice("cholesky"), pol, prob.linear_structure()).solve(
        lin, Damping(1e-4, 1e-6, 1e32), 0.0)
    np.testing.assert_allclose(res.delta, direct.delta, rtol=1e-7, atol=1e-9 * np.abs(direct.delta).max())


@pytest.mark.parametrize("precision", ["fp32", "mixed"])
def test_min_degree_ic_reaches_the_fp64_optimum(precision):
    sim = simulate_pose_graph("manhattan", 400, seed=5)
    _, ref = optimize_pose_graph(sim.graph, precision="fp64", solver="cholesky")
    for fill in (2, "complete"):
        _, rep = optimize_pose_graph(sim.graph, precision=precision, solver="ic",
                                     ic=ICConfig(ordering="min-degree", fill_level=fill))
        assert rep.converged, rep.reason
        assert rep.fp16_overflows == 0
        assert rep.final_cost <= ref.final_cost * (1 + 1e-6)
        assert rep.preconditioner_stats.ordering == "min-degree"


def test_escalation_switches_to_the_complete_min_degree_factor():
    # A CG cap of 2 iterations leaves every solve unconverged (residual above 10%): the solver must
    # escalate once to the complete min-degree factor, with which 2 iterations suffice, and still converge.
    sim = simulate_pose_graph("manhattan", 300, seed=2)
    _, ref = optimize_pose_graph(sim.graph, precision="fp64", solver="cholesky")
    cg, ic = CGConfig(max_iterations=2), ICConfig(fill_level=0)
    _, rep = optimize_pose_graph(sim.graph, precision="mixed", solver="ic", cg=cg, ic=ic,
                                 lm=LMConfig(max_iterations=60))
    assert rep.preconditioner_stats.escalated is True
    assert rep.preconditioner_stats.fill_level == "complete"
    assert rep.final_cost <= ref.final_cost * (1 + 1e-6)
    _, off = optimize_pose_graph(sim.graph, precision="mixed", solver="ic", cg=CGConfig(max_iterations=2),
                                 ic=ICConfig(fill_level=0, escalate=False), lm=LMConfig(max_iterations=5))
    assert off.preconditioner_stats.escalated is False


def test_no_escalation_when_the_factor_is_strictly_static_or_already_complete():
    sim = simulate_pose_graph("manhattan", 300, seed=2)
    _, never = optimize_pose_graph(sim.graph, precision="mixed", solver="ic", lm=LMConfig(max_iterations=5),
                                   cg=CGConfig(max_iterations=2), ic=ICConfig(fill_level=0, refactor="never"))
    assert never.preconditioner_stats.escalated is False and never.preconditioner_stats.factorizations == 1
    _, md = optimize_pose_graph(sim.graph, precision="mixed", solver="ic", lm=LMConfig(max_iterations=5),
                                cg=CGConfig(max_iterations=2),
                                ic=ICConfig(ordering="min-degree", fill_level="complete"))
    assert md.preconditioner_stats.escalated is False


@pytest.mark.parametrize("bad", [-1, 1.5, "full", True])
@pytest.mark.parametrize("solver", ["ic", "cgnr"])
def test_bad_fill_level_is_refused(bad, solver):
    # ICConfig validates when built, so a bad value never reaches a solve (whatever the solver).
    sim = simulate_pose_graph("manhattan", 50, seed=0)
    with pytest.raises(ConfigError, match=r"ICConfig\.fill_level"):
        optimize_pose_graph(sim.graph, precision="mixed", solver=solver, ic=ICConfig(fill_level=bad))


@pytest.mark.parametrize("fields, phrase", [({"ordering": "amd"}, r"ICConfig\.ordering"),
                                            ({"escalate_residual": float("nan")}, r"ICConfig\.escalate_residual"),
                                            ({"escalate_residual": 0.0}, r"ICConfig\.escalate_residual")])
def test_bad_ordering_and_escalation_settings_are_refused(fields, phrase):
    sim = simulate_pose_graph("manhattan", 50, seed=0)
    with pytest.raises(ConfigError, match=phrase):
        optimize_pose_graph(sim.graph, precision="mixed", solver="ic", ic=ICConfig(**fields))


def test_block_pattern_refuses_a_fractional_fill_level():
    ia, ib = _arrow(5)
    with pytest.raises(ValueError, match="fill_level"):
        BlockPattern(ia, ib, 5, 3, fill_level=1.7)


def test_orderings_are_shared_inside_one_solve_only(monkeypatch):
    """Inside shared_orderings() a graph is ordered once (the chordal solves and the LM's factor); outside,
    every call computes (repeated solves each pay for their orderings)."""
    import mixslam.linear.ordering as ordering

    calls = []
    real = ordering._order
    monkeypatch.setattr(ordering, "_order", lambda *a: calls.append(a[3]) or real(*a))
    n = 6
    ptr = np.array([0, 1, 3, 5, 7, 9, 10])
    idx = np.array([1, 0, 2, 1, 3, 2, 4, 3, 5, 4])
    first = ordering.fill_reducing_order(ptr, idx, n, "mmd")
    ordering.fill_reducing_order(ptr, idx, n, "mmd")
    assert calls == ["mmd", "mmd"]
    with ordering.shared_orderings():
        a = ordering.fill_reducing_order(ptr, idx, n, "mmd")
        a[:] = -1  # callers get copies
        b = ordering.fill_reducing_order(ptr, idx, n, "mmd")
        with ordering.shared_orderings():  # nested: the same scope
            ordering.fill_reducing_order(ptr, idx, n, "mmd")
    assert calls == ["mmd"] * 3 and np.array_equal(b, first)
    ordering.fill_reducing_order(ptr, idx, n, "mmd")
    assert len(calls) == 4 and ordering._ORDER_CACHE is None
