"""The complete Cholesky factor as the device CG's preconditioner (backend/jax_factor.py): the preconditioner
is the inverse of the step's scaled, damped normal matrix (to the factor's roundoff), whole pose-graph solves
reach the CPU backend's fp64 optimum in every factor format, the factor is reused while CG stays short and
refactored when it does not, and the configurations that cannot use it are refused."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")

from mixslam.ba import BAConfig  # noqa: E402
from mixslam.backend import jax_factor, jax_lm  # noqa: E402
from mixslam.backend.jax_device import device, jnp  # noqa: E402
from mixslam.backend.jax_factor import DeviceFactor, FactorPreconditioner  # noqa: E402
from mixslam.backend.jax_linearization import column_sq_norms  # noqa: E402
from mixslam.backend.jax_lm import device_pose_graph, linearize_fn  # noqa: E402
from mixslam.backend.jax_storage import device_column_scale, scaled_blocks  # noqa: E402
from mixslam.errors import ConfigError  # noqa: E402
from mixslam.pgo import PGOConfig, optimize_pose_graph  # noqa: E402
from mixslam.precision import PrecisionPolicy  # noqa: E402
from mixslam.sim import simulate_pose_graph  # noqa: E402

from ..helpers import unit_roundoff  # noqa: E402


@pytest.fixture(scope="module")
def graphs():
    return {
        "2d": simulate_pose_graph("manhattan", 60, seed=2).graph,
        "3d": simulate_pose_graph("sphere", 50, seed=2).graph,
    }


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("precision", ["fp64", "mixed"])
def test_preconditioner_inverts_the_steps_matrix(graphs, dim, precision):
    """M⁻¹ applied to the step's own scaling is (S JᵀJ S + diag d)⁻¹ within the factor's roundoff."""
    policy = PrecisionPolicy.preset(precision, problem="pgo")
    dev = device("cpu")
    dp = device_pose_graph(graphs[dim], policy, dev)
    lin, _ = linearize_fn(dp.spec, dp.arrays, dp.state)
    lam, lo, hi = 1e-3, 1e-6, 1e32
    f = DeviceFactor(lin, policy, dev, "float64")
    f.factor(lin, lam, lo, hi)
    colsq = column_sq_norms(lin)
    scale = device_column_scale(colsq)
    As, Bs = (np.asarray(x) for x in scaled_blocks(lin, scale))
    colsq, scale = np.asarray(colsq), np.asarray(scale)
    d = np.where(colsq > 0, lam * np.clip(colsq, lo, hi) * scale * scale, 1.0)
    H = f.pattern.assemble_csc(As, Bs, diag_add=d).toarray()
    v = np.random.default_rng(0).normal(size=H.shape[0])
    got = np.asarray(FactorPreconditioner(f.operands(), jnp.asarray(scale), f.layout)(jnp.asarray(v)))
    want = np.linalg.solve(H, v)
    cond = np.linalg.cond(H)
    u = unit_roundoff("fp64" if f.factor_dtype == np.float64 else "fp32")
    assert np.linalg.norm(got - want) <= 10 * H.shape[0] * u * cond * np.linalg.norm(want)


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("precision, rel", [("fp64", 1e-9), ("mixed", 1e-6), ("mixed16", 1e-6)])
def test_solves_reach_the_cpu_optimum_with_one_factor(graphs, dim, precision, rel):
    g = graphs[dim]
    _, ref = optimize_pose_graph(g, precision="fp64")
    _, rep = optimize_pose_graph(g, precision=precision, backend="jax", device="cpu", solver="cholesky")
    assert rep.converged and rep.preconditioner == "cholesky" and rep.backend == "jax:cpu"
    assert abs(rep.final_cost - ref.final_cost) <= rel * ref.final_cost
    st = rep.direct
    assert st is not None and st.factorizations >= 1 and st.factorizations + st.reuses >= 2
    assert st.factor == {"fp64": "fp64", "mixed": "fp32", "mixed16": "fp16 panels"}[precision]
    if precision != "mixed16":  # a (near-)exact factor: a couple of CG iterations per step
        assert st.factorizations == 1
        assert rep.linear_iterations <= 3 * rep.iterations
    assert rep.memory.preconditioner_bytes > 0


def test_refactors_when_cg_runs_long(graphs, monkeypatch):
    """With the threshold at 0 CG iterations every new linearization refactors; the report counts them."""
    monkeypatch.setattr(jax_lm, "REFACTOR_AFTER", 0)
    _, rep = optimize_pose_graph(graphs["2d"], precision="mixed", backend="jax", device="cpu", solver="cholesky")
    assert rep.direct.reuses == 0 and rep.direct.factorizations >= 2
    assert jax_factor.REFACTOR_AFTER == 10  # the module's own value is untouched


def test_cholesky_on_the_device_is_for_pose_graphs_only():
    PGOConfig(backend="jax", solver="cholesky")  # accepted
    with pytest.raises(ConfigError, match="solver"):
        BAConfig(backend="jax", solver="cholesky")
