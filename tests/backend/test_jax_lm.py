"""Whole solves on the device backend (JAX on the CPU here) against the numba backend: the same optima (pose
graphs within 1e-9 relative in fp64 and 1e-6 in mixed, BAL within 1e-6), the same LM path in fp64, the
report's backend fields, and the configurations the device backend refuses."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")

from mixslam.ba import BAConfig, optimize_bundle  # noqa: E402
from mixslam.backend import jax_lm  # noqa: E402
from mixslam.errors import ConfigError  # noqa: E402
from mixslam.pgo import PGOConfig, optimize_pose_graph  # noqa: E402
from mixslam.precision import Precision  # noqa: E402

JAX = {"backend": "jax", "device": "cpu"}
TOL = {"fp64": 1e-9, "mixed": 1e-6}


@pytest.fixture(scope="module")
def cpu_optima(graphs):
    """The numba backend's fp64 optimum (Cholesky) of each generated graph, from the file's poses."""
    return {name: optimize_pose_graph(g, precision="fp64", init="file")[1].final_cost for name, g in graphs.items()}


@pytest.mark.parametrize("name", ["se2", "se3"])
@pytest.mark.parametrize("precision", ["fp64", "mixed"])
def test_pose_graph_reaches_the_cpu_optimum(graphs, cpu_optima, name, precision):
    g = graphs[name]
    out, rep = optimize_pose_graph(g, precision=precision, init="file", **JAX)
    assert rep.converged, rep.reason
    ref = cpu_optima[name]
    assert abs(rep.final_cost - ref) <= TOL[precision] * ref, (rep.final_cost, ref)
    assert rep.final_cost < rep.initial_cost
    # the returned graph holds the optimized poses: its fp64 cost is the reported one
    from mixslam.problem.between import cost

    assert cost(out, out.rotations, out.translations) == pytest.approx(rep.final_cost, rel=1e-12)
    assert (rep.backend, rep.solver_label, rep.precision) == ("jax:cpu", "cg+jacobi", precision)
    assert rep.as_dict()["backend"] == "jax:cpu"
    assert rep.linear_iterations > 0 and rep.quantization.count > 0 and rep.timing["total"] > 0
    if precision == "mixed":  # block-Jacobi inverses stored in fp16 (mixed's preconditioner_storage)
        assert rep.policy.preconditioner_storage is Precision.FP16 and rep.memory.preconditioner_bytes > 0


def test_fp64_takes_the_cpu_cg_path(graphs):
    """Same decisions on the same numbers: the numba CG solve and the device solve take the same LM steps."""
    g = graphs["se2"]
    _, cpu = optimize_pose_graph(g, precision="fp64", init="file", solver="cg", preconditioner="jacobi")
    _, dev = optimize_pose_graph(g, precision="fp64", init="file", **JAX)
    assert dev.iterations == cpu.iterations and dev.status is cpu.status
    assert [h.accepted for h in dev.history] == [h.accepted for h in cpu.history]
    assert abs(dev.linear_iterations - cpu.linear_iterations) <= dev.iterations
    assert dev.final_cost == pytest.approx(cpu.final_cost, rel=1e-12)


@pytest.mark.parametrize("precision", ["fp64", "mixed"])
def test_bal_reaches_the_cpu_optimum(bundles, precision):
    data = bundles["bal"]
    _, ref = optimize_bundle(data, precision="fp64")  # Schur, fp64
    out, rep = optimize_bundle(data, precision=precision, **JAX)
    assert rep.converged, rep.reason
    assert abs(rep.final_cost - ref.final_cost) <= 1e-6 * ref.final_cost
    assert rep.backend == "jax:cpu" and rep.problem.observations == data.num_observations
    assert rep.depth.final.behind == 0
    # camera 0 is fixed: its pose unchanged (BAL keeps its f, k1, k2 free)
    np.testing.assert_array_equal(out.cameras[0, :6], data.cameras[0, :6])


def test_widened_step_spec():
    from mixslam.linear.config import CGConfig
    from mixslam.precision import PrecisionPolicy
    from mixslam.solve.config import LMConfig

    spec = jax_lm.StepSpec.of(PrecisionPolicy.preset("mixed16"), "jacobi", CGConfig(), LMConfig())
    assert spec.jacobian_storage is Precision.FP16
    w = spec.widened(jacobian=True, preconditioner=False)
    assert w.jacobian_storage is Precision.FP32 and w.preconditioner_storage is Precision.FP16


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"backend": "cuda"}, "backend must be one of"),
        ({"backend": "jax", "solver": "ic"}, "runs the CG solver"),
        ({"backend": "jax", "preconditioner": "ic"}, "'jacobi' and 'none'"),
        ({"backend": "jax", "precision": "fp16"}, "16-bit arithmetic"),
        ({"backend": "jax", "robust": "tls"}, "no robust losses"),
        ({"backend": "jax", "device": "tpu"}, "device must be one of"),
        ({"device": "gpu"}, "numba backend runs on the CPU"),
    ],
)
def test_refused_configurations(overrides, match):
    if "robust" in overrides:
        from mixslam.solve.config import RobustConfig

        overrides = {**overrides, "robust": RobustConfig(overrides["robust"])}
    with pytest.raises(ConfigError, match=match):
        PGOConfig(**overrides)
    if overrides.get("solver") != "cholesky" and overrides.get("preconditioner") != "ic":
        with pytest.raises(ConfigError, match=match):
            BAConfig(**overrides)


def test_jax_missing_is_a_config_error(monkeypatch):
    from mixslam.backend import choice

    monkeypatch.setattr(choice, "jax_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"needs jax.*pip install"):
        PGOConfig(backend="jax")
