"""The solve sequence of :func:`mixslam.solve.driver.solve` with the device backend's LM.

The drivers (``optimize_pose_graph``, ``optimize_bundle``) call :func:`solve` when their configuration says
``backend="jax"``: the input is validated and analyzed on the host exactly as for the numba backend (the
same analyzed problem: numbering, initialization), the LM iterations run on the device
(:func:`~.jax_lm.levenberg_marquardt`), and the report gets the fp64 costs of the initial and the returned
state from the analyzed problem's own ``fp64_cost`` (the number the numba backend reports), the kind's own
fields (``finish_report``) and ``backend`` = ``jax:cpu`` / ``jax:gpu``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import NonFiniteError
from ..linear.cgnr import CGSolver
from ..precision import PrecisionPolicy
from ..solve.report import SolveReport, Status, peak_rss_bytes
from .choice import jax_preconditioner
from .jax_device import device as jax_device
from .jax_lm import DeviceProblem, backend_name, check_policy, levenberg_marquardt

__all__ = ["solve"]


def solve(kind: str, settings, validate: Callable[[], object], analyze: Callable, to_device: Callable):
    """Run the solve sequence for a ``kind`` problem on the device ``settings.device``; returns (analyzed
    problem, best state (numpy), report). ``analyze(policy)`` builds the host problem (the driver's own);
    ``to_device(problem, policy, device)`` makes its :class:`~.jax_lm.DeviceProblem`."""
    policy = PrecisionPolicy.preset(settings.precision, problem=kind)
    check_policy(policy)
    dev = jax_device(settings.device)
    preconditioner = jax_preconditioner(settings)
    validate()
    t0 = time.perf_counter()
    problem = analyze(policy)
    state0 = problem.initial_state
    dp: DeviceProblem = to_device(problem, policy, dev)
    t1 = time.perf_counter()
    if dp.size == 0:
        report = SolveReport(
            Status.CONVERGED,
            "no free variable (every one is fixed): the input is returned unchanged",
            0.0,
            0.0,
            0,
            0,
            precision=policy.name,
            solver="cg",
            preconditioner=preconditioner,
            policy=policy,
            backend=backend_name(dev),
        )
        state = state0
        report.timing = {"init": problem.init_seconds, "setup": t1 - t0 - problem.init_seconds, "total": t1 - t0}
    else:
        state, report = levenberg_marquardt(
            dp, policy, settings.lm, settings.cg, preconditioner, initial_lambda=CGSolver.initial_lambda
        )
        if not problem.is_finite(state):
            raise NonFiniteError(f"{kind}: the optimization produced non-finite values in the state")
        report.timing["init"] = problem.init_seconds
        report.timing["setup"] = (t1 - t0) - problem.init_seconds
        report.timing["total"] += t1 - t0
    report.initial_cost = problem.fp64_cost(state0)
    report.final_cost = problem.fp64_cost(state)
    problem.finish_report(report, state)
    report.peak_rss_bytes = peak_rss_bytes()
    return problem, state, report
