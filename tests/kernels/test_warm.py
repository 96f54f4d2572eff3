"""The warm-up list is what a solve calls: every kernel specialization a real solve uses, and nothing more.

The driver hands the problem the specializations to compile (``problem.warm(specs)``, from
:func:`mixslam.linear.choice.solve_kernel_specs`); a spy replaces ``warm`` and records them, and the kernels'
compiled entry points are wrapped by a recorder for the duration of one solve, so the check does not depend on
what numba has already compiled in this process or on disk.
"""
import numpy as np
import pytest

from mixslam.ba import BAConfig, BundleProblem, optimize_bundle
from mixslam.kernels import camera_major, products, vector_products, warm
from mixslam.kernels import ic as ic_mod
from mixslam.kernels.warm import ALL, warm_products
from mixslam.linear import LinearStructure, make_linear_solver, resolve_linear_solver, solve_kernel_specs
from mixslam.linear import schur as schur_mod
from mixslam.linear.block_pattern import BlockPattern
from mixslam.linear.choice import DIRECT_FACTORS
from mixslam.linear.schur import SCHUR_KERNELS, SCHUR_KERNELS_32
from mixslam.pgo import PGOConfig, PoseGraphProblem, optimize_pose_graph
from mixslam.precision import PrecisionPolicy
from mixslam.sim.bundle import WindowConfig, simulate_window
from mixslam.sim.pose_graph import simulate_pose_graph
from mixslam.solve.config import LMConfig

SHORT = LMConfig(max_iterations=3)
PRESET_NAMES = ("fp64", "fp32", "mixed", "mixed16", "fp16")


def _store(M):
    return np.dtype(np.float16) if M.dtype == np.uint16 else M.dtype


@pytest.fixture
def calls(monkeypatch):
    """Set of (spec, block shape) the kernels are entered with while the fixture is active."""
    seen = set()

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
    # the vectorized cores (fp32/fp64 arithmetic) behind the same public products
    wrap(vector_products, "matvec_chunk_nb",
         lambda A, ia, B, ib, xa, xb, y, e0, e1, K, PA, PB:
         (("jac_matvec", _store(A), y.dtype, False), sizes(K, PA, PB)))
    wrap(vector_products, "rmatvec_chunk_nb",
         lambda A, ia, B, ib, y, GA, GB, e0, e1, K, PA, PB:
         (("jac_rmatvec", _store(A), GA.dtype, False), sizes(K, PA, PB)))
    wrap(vector_products, "normal_chunk_nb",
         lambda A, ia, B, ib, xa, xb, GA, GB, e0, e1, K, PA, PB:
         (("normal_matvec", _store(A), GA.dtype, False), sizes(K, PA, PB)))
    # the camera-major cores (bundle adjustment's CG products)
    wrap(camera_major, "cm_matvec_chunk",
         lambda JA, JB, IB, ROW, sc, b0, b1, s0, s1, XA, xb, y, K, PA, PB:
         (("jac_matvec", _store(JA), y.dtype, False), sizes(K, PA, PB)))
    wrap(camera_major, "cm_rmatvec_chunk",
         lambda JA, JB, IB, ROW, sc, b0, b1, s0, s1, y, ga, gb, ACC, K, PA, PB:
         (("jac_rmatvec", _store(JA), ga.dtype, False), sizes(K, PA, PB)))
    wrap(camera_major, "cm_normal_chunk",
         lambda JA, JB, IB, sc, b0, b1, s0, s1, XA, xb, ga, gb, ACC, NRM, K, PA, PB:
         (("normal_matvec", _store(JA), ga.dtype, False), sizes(K, PA, PB)))
    wrap(ic_mod, "ic_solve_nb",
         lambda indptr, indices, L, b, x, w, tag, P:
         (("ic_solve", _store(L), x.dtype, tag.dtype == np.uint16), (len(P),) * 3))
    wrap(ic_mod, "ic0_factor_nb",
         lambda indptr, indices, blocks, shift, L, pos, P:
         (("ic_factor", np.dtype(np.float64), np.dtype(np.float64), False), (len(P),) * 3))
    # The Schur solver's kernels are one warm-up entry per dtype; every elimination enters schur_point_blocks.
    wrap(schur_mod, "schur_point_blocks",
         lambda A, ia, B, ib, dc, dp, Z, PC, W: (("schur", A.dtype, A.dtype, False),
                                                 (A.shape[1], A.shape[2], B.shape[2])))
    from mixslam.linear import implicit_schur as implicit_mod
    wrap(implicit_mod, "implicit_point_blocks",
         lambda A, ia, B, ib, dc, dp, Linv, M: (("implicit_schur", _store(A), Linv.dtype, False),
                                                (A.shape[1], A.shape[2], B.shape[2])))
    return seen


@pytest.fixture
def warmed(monkeypatch):
    """The ``specs`` the driver passes to ``problem.warm`` (one entry per solve); nothing is compiled ahead, so
    the solve's own warm-up enters no kernel and only the solve counts."""
    passed = []

    def spy(self, specs):
        passed.append(frozenset(specs))
        return 0.0
    monkeypatch.setattr(PoseGraphProblem, "warm", spy)
    monkeypatch.setattr(BundleProblem, "warm", spy)
    return passed


def _specs(precision: str, solver: str, kind: str) -> frozenset:
    """solve_kernel_specs of the solver object a ``kind`` solve builds for (precision, solver), on a tiny
    structure (the specs depend on the solver and the policy, not on the sizes)."""
    policy = PrecisionPolicy.preset(precision, kind)
    choice = resolve_linear_solver(solver, None, policy, kind)
    if kind == "pgo":
        ia, ib = np.arange(4, dtype=np.int64), np.arange(1, 5, dtype=np.int64)
        structure = LinearStructure(5, 3, pattern=BlockPattern(ia, ib, 5, 3))
    else:
        structure = LinearStructure(3, 6, 10, 3)
    return solve_kernel_specs(make_linear_solver(choice, policy, structure), policy)


PGO_CASES = [("fp64", "cholesky")] + [(p, s) for p in PRESET_NAMES for s in ("cgnr", "ic")]


@pytest.mark.parametrize("precision,solver", PGO_CASES)
@pytest.mark.parametrize("kind,dim", [("grid3d", 3), ("manhattan", 2)])
def test_pose_graph_solve_calls_exactly_the_listed_specializations(calls, warmed, precision, solver, kind, dim):
    sim = simulate_pose_graph(kind, 60, seed=1)
    assert sim.graph.dim == dim
    optimize_pose_graph(sim.graph, PGOConfig(precision=precision, solver=solver, lm=SHORT))
    assert len(warmed) == 1
    assert warmed[0] == _specs(precision, solver, "pgo")
    p = 3 if dim == 2 else 6
    listed = {(s, (p, p, p)) for s in warmed[0]}
    assert calls == listed


BA_CASES = [("fp64", "schur"), ("mixed", "schur"), ("fp32", "schur")] + [(p, "cgnr") for p in PRESET_NAMES] + [
    (p, "iterative_schur") for p in ("fp64", "fp32", "mixed")]


@pytest.mark.parametrize("precision,solver", BA_CASES)
def test_bundle_solve_calls_exactly_the_listed_specializations(calls, warmed, precision, solver):
    data, _, _ = simulate_window(WindowConfig(keyframes=8, landmarks_per_frame=30, fixed_frames=2), seed=0)
    optimize_bundle(data, BAConfig(precision=precision, solver=solver, lm=SHORT))
    assert len(warmed) == 1
    assert warmed[0] == _specs(precision, solver, "ba")
    listed = {(s, (2, 6, 3)) for s in warmed[0]}
    if (precision, solver) == ("fp32", "schur"):  # the fp64 elimination is listed for the fallback
        assert calls <= listed and (SCHUR_KERNELS_32, (2, 6, 3)) in calls
    elif (precision, solver) == ("fp64", "schur"):  # the model decrease reuses the residual check's product
        assert calls == {c for c in listed if c[0][0] != "jac_matvec"}
    else:  # mixed measures both formats in its first two steps
        assert calls == listed


def test_direct_solvers_need_no_cg_kernels():
    names = {s[0] for s in _specs("fp64", "cholesky", "pgo")}
    assert names == {"jac_matvec", "jac_rmatvec"}
    assert _specs("fp64", "cholesky", "pgo") < _specs("fp64", "ic", "pgo")


def test_all_covers_every_preset_and_solver():
    # pgo.warmup() compiles ALL; ba.warmup() compiles ALL but the IC kernels, and the Schur kernels.
    f64, f32, f16 = np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16)
    implicit = {("implicit_schur", st, dt, False) for st, dt in ((f64, f64), (f32, f32), (f16, f32))}
    ba_all = {s for s in ALL if not s[0].startswith("ic_")} | {SCHUR_KERNELS, SCHUR_KERNELS_32} | implicit
    for problem, solvers, covered in (("pgo", ("cholesky", "cgnr", "ic", "cg"), ALL),
                                      ("ba", ("schur", "cgnr", "cg", "iterative_schur"), ba_all)):
        for name in PRESET_NAMES:
            for solver in solvers:
                if solver in ("cholesky", "schur") and PrecisionPolicy.preset(name, problem).factor not in (
                    DIRECT_FACTORS[problem]
                ):
                    continue  # refused: no direct solver factors in that format
                if solver == "iterative_schur" and name == "fp16":
                    continue  # refused: 16-bit arithmetic
                assert _specs(name, solver, problem) <= covered, (problem, name, solver)


def test_warm_products_enters_each_listed_kernel_once(calls, monkeypatch):
    monkeypatch.setattr(warm, "_DONE", set())  # as in a fresh process
    specs = _specs("fp16", "ic", "pgo")
    assert warm_products(specs, (3, 3, 3)) > 0.0
    assert calls == {(s, (3, 3, 3)) for s in specs}
    calls.clear()
    assert warm_products(specs, (3, 3, 3)) == 0.0
    assert not calls
