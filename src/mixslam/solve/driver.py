"""The one solve sequence of every problem kind (pose graph, bundle adjustment, and the next ones).

:func:`solve` owns what every solve does, in this order: validate the input, pick the precision preset and
the linear solver (:func:`mixslam.linear.choice.resolve_linear_solver`: defaults from the policy's fields),
analyze the problem (the kind's own work: numbering, whitening, patterns, initial guess), build the linear
solver (its symbolic work), compile the kernels that solve calls (timed apart), run Levenberg-Marquardt with
BLAS held to one thread, refuse a non-finite result, evaluate the initial and final cost in fp64 whatever the
policy, and fill the report. A problem kind supplies only an :class:`AnalyzedProblem`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError, NonFiniteError
from ..linear.choice import (
    LinearSolverChoice,
    LinearStructure,
    make_linear_solver,
    resolve_linear_solver,
    solve_kernel_specs,
)
from ..linear.config import CGConfig, DirectConfig, ICConfig
from ..precision import PrecisionPolicy
from .config import LMConfig, RobustConfig
from .gnc import fallback_ic, graduated_non_convexity, too_filled
from .lm import levenberg_marquardt
from .report import SolveReport, Status, peak_rss_bytes

__all__ = ["SolveSettings", "AnalyzedProblem", "solve", "single_threaded_blas"]


class SolveSettings(Protocol):
    """The fields every problem kind's configuration has (``PGOConfig``, ``BAConfig``)."""

    @property
    def precision(self) -> str | PrecisionPolicy: ...
    @property
    def solver(self) -> str | None: ...
    @property
    def preconditioner(self) -> str | None: ...
    @property
    def lm(self) -> LMConfig: ...
    @property
    def cg(self) -> CGConfig: ...
    @property
    def ic(self) -> ICConfig: ...
    @property
    def direct(self) -> DirectConfig: ...
    @property
    def robust(self) -> RobustConfig: ...


class AnalyzedProblem(Protocol):
    """A problem analyzed once (numbering, whitening, patterns): what the driver and the LM loop need."""

    @property
    def initial_state(self) -> Any:
        """The state LM starts from (after the kind's initialization)."""

    @property
    def init_seconds(self) -> float:
        """Time the kind's initialization took (part of the analysis; reported as ``timing["init"]``)."""

    def cost(self, state) -> float: ...
    def linearize(self, state): ...
    def retract(self, state, delta: np.ndarray): ...
    def state_norm(self, state) -> float: ...

    def linear_structure(self) -> LinearStructure:
        """The unknowns (and, for one variable set, the normal matrix's block pattern)."""

    def direct_size(self) -> tuple[int, int] | None:
        """(unknowns the direct solver factors densely, its limit), or None when it has no such limit."""

    def warm(self, specs: frozenset) -> float:
        """Compile the kernels a solve calls (the problem's own and ``specs``); returns the seconds."""

    def fp64_cost(self, state) -> float:
        """The cost 0.5 Σ eᵀΩe of ``state`` in fp64 (what the report gives, whatever the policy); with a robust
        loss 0.5 Σ ρ(eᵀΩe)."""

    def is_finite(self, state) -> bool: ...

    def finish_report(self, report: SolveReport, state) -> None:
        """Add the kind's own report fields."""


def check_solve_settings(settings: SolveSettings) -> None:
    """The checks every problem kind's configuration shares (called from its ``__post_init__``): the types of
    the solver fields, as a :class:`~mixslam.errors.ConfigError` naming ``Class.field``. Names are checked
    when the solve resolves them (:func:`~mixslam.linear.choice.resolve_linear_solver`)."""
    cls = type(settings).__name__
    for name, kind in (
        ("lm", LMConfig),
        ("cg", CGConfig),
        ("ic", ICConfig),
        ("direct", DirectConfig),
        ("robust", RobustConfig),
    ):
        if not isinstance(getattr(settings, name), kind):
            raise ConfigError(f"{cls}.{name} must be a {kind.__name__}, got {getattr(settings, name)!r}")
    if not isinstance(settings.precision, (str, PrecisionPolicy)):
        raise ConfigError(f"{cls}.precision must be a preset name or a PrecisionPolicy, got {settings.precision!r}")
    for name in ("solver", "preconditioner"):
        if getattr(settings, name) is not None and not isinstance(getattr(settings, name), str):
            raise ConfigError(f"{cls}.{name} must be a name or None, got {getattr(settings, name)!r}")


def single_threaded_blas():
    """Context manager: BLAS limited to one thread inside (no-op if threadpoolctl is missing).

    The compiled kernels run on this package's own threads (:mod:`mixslam.kernels.threads`); BLAS (OpenBLAS in
    numpy/scipy wheels) is called in between for small dense work. OpenBLAS worker threads busy-wait after
    each call, and on a 2-core machine they take the core the next numba kernel needs: measured on
    problem-16-22106 (fp64 Schur), the whole BA solve takes 0.76 s with the default BLAS threads and about
    0.5 s with one.
    """
    global _BLAS_CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a core dependency
        return contextlib.nullcontext()
    # One controller per process: building one scans every loaded library (2-3 ms, measured as 5% of a
    # 50-keyframe VO window solve when it was done per solve). Rebuilt if a BLAS was loaded since.
    if _BLAS_CONTROLLER is None or not _BLAS_CONTROLLER.select(user_api="blas").lib_controllers:
        import scipy.linalg  # noqa: F401  (scipy's own BLAS loaded before the scan: the solvers call both)

        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


_BLAS_CONTROLLER = None


def solve(
    kind: str,
    settings: SolveSettings,
    validate: Callable[[], object],
    analyze: Callable[[PrecisionPolicy], AnalyzedProblem],
):
    """Run the solve sequence for a ``kind`` problem; returns (analyzed problem, best state, report).

    ``validate`` checks the input data (raising the library's errors); ``analyze(policy)`` builds the
    :class:`AnalyzedProblem`.
    """
    policy = PrecisionPolicy.preset(settings.precision, problem=kind)
    # Resolved before the analysis so a bad choice fails at once; again after it when the default depends
    # on the problem's size.
    choice: LinearSolverChoice = resolve_linear_solver(settings.solver, settings.preconditioner, policy, kind)
    validate()
    t0 = time.perf_counter()
    problem = analyze(policy)
    structure = problem.linear_structure()
    if structure.nv * structure.p + structure.nb * structure.pb == 0:
        return problem, problem.initial_state, _nothing_to_solve(problem, choice, policy, time.perf_counter() - t0)
    size = problem.direct_size()
    if settings.solver is None and size is not None:
        unknowns, limit = size
        choice = resolve_linear_solver(None, settings.preconditioner, policy, kind, unknowns, limit)
    solver = make_linear_solver(choice, policy, problem.linear_structure(), settings.cg, settings.ic, settings.direct)
    t1 = time.perf_counter()
    compile_s = problem.warm(solve_kernel_specs(solver, policy)) + solver.warm()
    state0 = problem.initial_state
    with single_threaded_blas():  # spinning BLAS threads steal the numba core (see single_threaded_blas)
        if settings.robust.gnc:
            warm_s: list[float] = []

            def new_solver(structure, s=None):
                """The solver of ``choice`` for ``structure``, warmed; CG + IC instead of the default direct
                solver where its factor would fill (:func:`~mixslam.solve.gnc.too_filled`; a solver the user
                named is kept)."""
                if s is None:
                    s = make_linear_solver(choice, policy, structure, settings.cg, settings.ic, settings.direct)
                if settings.solver is None and too_filled(getattr(s, "factor_flops", None), structure):
                    cg_ic = LinearSolverChoice("cg", "ic")
                    ic = fallback_ic(settings.ic)
                    s = make_linear_solver(cg_ic, policy, structure, settings.cg, ic, settings.direct)
                    warm_s.append(problem.warm(solve_kernel_specs(s, policy)))
                warm_s.append(s.warm())
                return s

            t2 = time.perf_counter()
            state, report = graduated_non_convexity(
                problem, state0, new_solver(structure, solver), policy, settings.lm, settings.robust, new_solver
            )
            # GNC's own work (analyses, weight updates) is part of the solve; compiling is not
            compile_s += sum(warm_s)
            report.timing["total"] = time.perf_counter() - t2 - sum(warm_s)
        else:
            state, report = levenberg_marquardt(problem, state0, solver, policy, settings.lm)
    # The returned state must be finite whatever the precision did; LM keeps the best finite iterate.
    if not problem.is_finite(state):
        raise NonFiniteError(f"{kind}: the optimization produced non-finite values in the state")
    report.initial_cost = problem.fp64_cost(state0)
    report.final_cost = problem.fp64_cost(state)
    report.policy = policy
    report.timing["init"] = problem.init_seconds
    report.timing["setup"] = (t1 - t0) - problem.init_seconds
    report.timing["total"] += t1 - t0
    report.timing["compile"] = compile_s
    problem.finish_report(report, state)
    report.peak_rss_bytes = peak_rss_bytes()
    return problem, state, report


def _nothing_to_solve(problem: AnalyzedProblem, choice: LinearSolverChoice, policy: PrecisionPolicy, setup_s: float):
    """The report of a problem without a free variable (every pose / camera and point fixed): its input is
    its optimum, so it is returned unchanged, ``converged`` after 0 iterations."""
    state = problem.initial_state
    cost = problem.fp64_cost(state)
    cost_again = problem.fp64_cost(state)  # kinds that record per-evaluation data (BA depths) get both ends
    report = SolveReport(
        Status.CONVERGED,
        "no free variable (every one is fixed): the input is returned unchanged",
        cost,
        cost_again,
        0,
        0,
        precision=policy.name,
        solver=choice.solver,
        preconditioner=choice.preconditioner,
    )
    report.policy = policy
    report.timing = {"init": problem.init_seconds, "setup": setup_s - problem.init_seconds, "total": setup_s}
    problem.finish_report(report, state)
    return report
