"""The warm-up list is what a solve calls: every kernel specialization a real solve uses, and nothing more.

The kernels' compiled entry points are wrapped by a recorder for the duration of one solve, so the check does
not depend on what numba has already compiled in this process or on disk.
"""
import numpy as np
import pytest

from mixslam.ba import BAConfig, optimize_bundle
from mixslam.kernels import ic as ic_mod
from mixslam.kernels import products
from mixslam.kernels import warm
from mixslam.kernels.warm import ALL, specializations, warm_products
from mixslam.pgo import PGOConfig, optimize_pose_graph
from mixslam.precision import PrecisionPolicy
from mixslam.sim.bundle import WindowConfig, simulate_window
from mixslam.sim.pose_graph import simulate_pose_graph
from mixslam.solve.config import LMConfig

SHORT = LMConfig(max_iterations=3)


def _store(M):
    return np.dtype(np.float16) if M.dtype == np.uint16 else M.dtype


@pytest.fixture
def calls(monkeypatch):
    """Set of (spec, block shape) the kernels are entered with while the fixture is active."""
    seen = set()
    # The solves' own warm-up would enter every listed kernel itself: leave it out, so only the solve counts.
    monkeypatch.setattr("mixslam.pgo.warmup", lambda *a, **k: 0.0)
    monkeypatch.setattr("mixslam.ba.warmup", lambda *a, **k: 0.0)

    def wrap(module, name, spec_of):
        real = getattr(module, name)

        def recorder(*args):
            seen.add(spec_of(*args))
            return real(*args)
        monkeypatch.setattr(module, name, recorder)

    def sizes(*tuples):
        return tuple(len(t) for t in tuples)

    wrap(products, "jac_matvec_nb",
         lambda A, ia, B, ib, xa, xb, y, tag, K, PA, PB:
         (("jac_matvec", _store(A), y.dtype, tag.dtype == np.uint16), sizes(K, PA, PB)))
    wrap(products, "jac_rmatvec_nb",
         lambda A, ia, B, ib, y, ga, gb, tag, K, PA, PB:
         (("jac_rmatvec", _store(A), ga.dtype, tag.dtype == np.uint16), sizes(K, PA, PB)))
    wrap(products, "normal_matvec_nb",
         lambda A, ia, B, ib, pa, pb, ga, gb, t, tag, K, PA, PB:
         (("normal_matvec", _store(A), ga.dtype, tag.dtype == np.uint16), sizes(K, PA, PB)))
    wrap(ic_mod, "ic_solve_nb",
         lambda indptr, indices, L, b, x, w, tag, P:
         (("ic_solve", _store(L), x.dtype, tag.dtype == np.uint16), (len(P),) * 3))
    wrap(ic_mod, "ic0_factor_nb",
         lambda indptr, indices, blocks, shift, L, pos, P:
         (("ic_factor", np.dtype(np.float64), np.dtype(np.float64), False), (len(P),) * 3))
    return seen


PGO_CASES = [("fp64", "cholesky")] + [(p, s) for p in ("fp64", "fp32", "mixed", "mixed16", "fp16")
                                      for s in ("cgnr", "ic")]


@pytest.mark.parametrize("precision,solver", PGO_CASES)
@pytest.mark.parametrize("kind,dim", [("grid3d", 3), ("manhattan", 2)])
def test_pose_graph_solve_calls_exactly_the_listed_specializations(calls, precision, solver, kind, dim):
    sim = simulate_pose_graph(kind, 60, seed=1)
    assert sim.graph.dim == dim
    optimize_pose_graph(sim.graph, PGOConfig(precision=precision, solver=solver, lm=SHORT))
    p = 3 if dim == 2 else 6
    listed = {(s, (p, p, p)) for s in specializations(PrecisionPolicy.preset(precision, "pgo"), solver)}
    assert calls == listed


BA_CASES = [("fp64", "schur")] + [(p, "cgnr") for p in ("fp64", "fp32", "mixed", "mixed16", "fp16")]


@pytest.mark.parametrize("precision,solver", BA_CASES)
def test_bundle_solve_calls_exactly_the_listed_specializations(calls, precision, solver):
    data, _, _ = simulate_window(WindowConfig(keyframes=8, landmarks_per_frame=30, fixed_frames=2), seed=0)
    optimize_bundle(data, BAConfig(precision=precision, solver=solver, lm=SHORT))
    listed = {(s, (2, 6, 3)) for s in specializations(PrecisionPolicy.preset(precision, "ba"), solver)}
    assert calls == listed


def test_direct_solvers_need_no_cg_kernels():
    fp64 = PrecisionPolicy.preset("fp64", "pgo")
    names = {s[0] for s in specializations(fp64, "cholesky")}
    assert names == {"jac_matvec", "jac_rmatvec"}
    assert specializations(fp64, "cholesky") < specializations(fp64, "ic")


def test_all_covers_every_preset_and_solver():
    for problem, solvers in (("pgo", ("cholesky", "cgnr", "ic")), ("ba", ("schur", "cgnr"))):
        for name in ("fp64", "fp32", "mixed", "mixed16", "fp16"):
            for solver in solvers:
                assert specializations(PrecisionPolicy.preset(name, problem), solver) <= ALL


def test_warm_products_enters_each_listed_kernel_once(calls, monkeypatch):
    monkeypatch.setattr(warm, "_DONE", set())  # as in a fresh process
    specs = specializations(PrecisionPolicy.preset("fp16", "pgo"), "ic")
    assert warm_products(specs, (3, 3, 3)) > 0.0
    assert calls == {(s, (3, 3, 3)) for s in specs}
    calls.clear()
    assert warm_products(specs, (3, 3, 3)) == 0.0
    assert not calls
