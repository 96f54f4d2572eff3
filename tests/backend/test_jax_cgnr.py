"""Device CGNR against the CPU's CGSolver (block-Jacobi): the same iterations and step in fp64, the fp64 step
to the forward-error bound in fp32 / mixed, the CPU's status rules."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")

from helpers import tol_for  # noqa: E402
from mixslam.ba import BundleProblem  # noqa: E402
from mixslam.backend import jax_cgnr as jc  # noqa: E402
from mixslam.backend import jax_storage as js  # noqa: E402
from mixslam.backend.jax_device import jnp  # noqa: E402
from mixslam.backend.jax_linearization import DeviceLinearization  # noqa: E402
from mixslam.linear.base import Damping, LinearStatus  # noqa: E402
from mixslam.linear.cgnr import CGSolver  # noqa: E402
from mixslam.linear.config import CGConfig  # noqa: E402
from mixslam.linear.preconditioners import JacobiPreconditioner  # noqa: E402
from mixslam.pgo import PoseGraphProblem  # noqa: E402
from mixslam.precision import PrecisionPolicy  # noqa: E402

CFG = CGConfig(max_iterations=300)
RTOL = 1e-9


@pytest.fixture(scope="module")
def problems(graphs, bundles):
    g, b = graphs["se3"], bundles["bal"]
    return {"pgo": lambda pol: PoseGraphProblem(g, pol), "ba": lambda pol: BundleProblem(b, pol)}


def _solve_both(problems, kind, preset):
    pol = PrecisionPolicy.preset(preset, kind)
    P = problems[kind](pol)
    lin = P.linearize(P.initial_state)
    cpu = CGSolver(pol, JacobiPreconditioner(pol), CFG).solve(lin, Damping(1e-3), RTOL)
    dev = jc.cgnr_step(DeviceLinearization.from_host(lin), Damping(1e-3), pol, RTOL, CFG)
    return cpu, dev


@pytest.mark.parametrize("kind", ["pgo", "ba"])
def test_fp64_step_equals_cpu(problems, close, kind):
    cpu, dev = _solve_both(problems, kind, "fp64")
    assert dev.status is cpu.status is LinearStatus.CONVERGED
    assert abs(dev.iterations - cpu.iterations) <= 1
    # both stop at relative residual 1e-9: the steps differ by that times the system's conditioning at most
    close(dev.delta, cpu.delta, 1e-6, what="fp64 step")
    assert dev.model_decrease == pytest.approx(cpu.model_decrease, rel=1e-9)
    assert dev.stats.count == cpu.stats.count and dev.stats.overflows == cpu.stats.overflows == 0


@pytest.mark.parametrize("kind,preset", [("pgo", "mixed"), ("ba", "mixed"), ("pgo", "fp32")])
def test_low_precision_step_matches_cpus_accuracy(problems, close, kind, preset):
    """Both backends' fp32 / fp16-storage steps lie within the same distance of the fp64 step."""
    ref, _ = _solve_both(problems, kind, "fp64")
    cpu, dev = _solve_both(problems, kind, preset)
    assert dev.status is LinearStatus.CONVERGED or dev.status is cpu.status
    cpu_err = np.abs(cpu.delta - ref.delta).max() / np.abs(ref.delta).max()
    dev_err = float(np.abs(np.asarray(dev.delta) - ref.delta).max() / np.abs(ref.delta).max())
    assert dev_err <= max(4 * cpu_err, tol_for("fp32", 10))
    assert dev.stats.overflows == cpu.stats.overflows and dev.stats.underflows == cpu.stats.underflows
    assert dev.model_decrease == pytest.approx(cpu.model_decrease, rel=1e-4)


def _system(problems):
    P = problems["pgo"](PrecisionPolicy.preset("fp64"))
    lin = DeviceLinearization.from_host(P.linearize(P.initial_state))
    J, _ = js.store_jacobian(lin, np.ones(lin.size), "fp64", "fp64")
    return J, jnp.full(lin.size, 1e-3), jnp.asarray(np.random.default_rng(0).normal(size=lin.size))


def test_status_rules(problems):
    J, d, b = _system(problems)
    x, it, res, code = jc.pcg(J, None, d, b, 1e-30, max_iterations=5, refresh_every=50, stagnation_window=20)
    assert jc.STATUS[int(code)] is LinearStatus.MAX_ITERATIONS and int(it) == 5 and 0 < float(res) < 1
    x, it, res, code = jc.pcg(J, None, d, 0 * b, 1e-8, max_iterations=5, refresh_every=50, stagnation_window=20)
    assert jc.STATUS[int(code)] is LinearStatus.CONVERGED and int(it) == 0 and float(res) == 0.0
    x, it, res, code = jc.pcg(J, None, -d, b, 1e-8, max_iterations=5, refresh_every=50, stagnation_window=20)
    assert jc.STATUS[int(code)] in (LinearStatus.BREAKDOWN, LinearStatus.CONVERGED, LinearStatus.MAX_ITERATIONS)
    x, it, res, code = jc.pcg(
        J, None, d, b.at[0].set(jnp.nan), 1e-8, max_iterations=5, refresh_every=50, stagnation_window=20
    )
    assert jc.STATUS[int(code)] is LinearStatus.NONFINITE and int(it) == 0
