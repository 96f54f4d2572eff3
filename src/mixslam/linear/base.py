"""The two interfaces of the linear solve of one LM step: :class:`LinearSolver` and :class:`Preconditioner`.

As in Ceres (``linear_solver_type`` and ``preconditioner_type``) the two are chosen separately: a direct
solver (``cholesky``, ``schur``) has no preconditioner; the iterative ``cg`` solver takes any
:class:`Preconditioner` (``jacobi``, ``ic``, ``none``). The LM loop of :mod:`mixslam.solve.lm` sees only
:class:`LinearSolver`: its name, its initial damping, its inexact-Newton tolerance, ``solve`` and its
statistics.

The damped system of one step is (JᵀJ + λ·D) δ = -Jᵀr with D = clamp(diag(JᵀJ)) (:class:`Damping`).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..precision import QuantizationStats

__all__ = [
    "Damping",
    "LinearStatus",
    "LinearResult",
    "MemoryUse",
    "DirectStats",
    "PreconditionerStats",
    "LinearSolver",
    "Preconditioner",
    "KernelSpec",
]

KernelSpec = tuple
"""(kernel name, storage dtype, vector dtype, emulated 16-bit arithmetic): one compiled specialization
(:mod:`mixslam.kernels.warm`)."""


@dataclass(frozen=True)
class Damping:
    """The Levenberg-Marquardt damping of one step: λ·clamp(diag(JᵀJ), min_diagonal, max_diagonal)."""

    lam: float
    """Relative damping λ (0 for Gauss-Newton)."""
    min_diagonal: float = 1e-6
    """diag(JᵀJ) entries are clamped to [min_diagonal, max_diagonal] (as Ceres)."""
    max_diagonal: float = 1e32
    """See ``min_diagonal``."""

    def diagonal(self, colsq: np.ndarray) -> np.ndarray:
        """λ·D for the column squared norms ``colsq`` = diag(JᵀJ)."""
        return self.lam * np.clip(colsq, self.min_diagonal, self.max_diagonal)


class LinearStatus(str, enum.Enum):
    """How one linear solve ended."""

    CONVERGED = "converged"
    """Direct solve done, or CG reached the requested relative residual."""
    MAX_ITERATIONS = "max_iterations"
    """CG stopped at its iteration cap."""
    STAGNATED = "stagnated"
    """CG's residual stopped improving (see ``CGConfig.stagnation_window``)."""
    BREAKDOWN = "breakdown"
    """CG met pᵀAp <= 0 (the system is not positive definite in this precision)."""
    NONFINITE = "nonfinite"
    """NaN or infinity in the solve; the step is zero and must be rejected."""
    DIVERGED = "diverged"
    """CG's residual grew above 1e3 of the right-hand side."""


@dataclass
class MemoryUse:
    """Bytes the linear solver holds for one step (None: not held by this solver)."""

    jacobian_bytes: int | None = None
    """The stored (possibly 16-bit) Jacobian of the iterative solver."""
    preconditioner_bytes: int | None = None
    """The stored preconditioner (block-Jacobi inverses or the incomplete factor)."""
    factor_bytes: float | None = None
    """The direct solver's sparse factor (NaN when the backend does not say)."""
    reduced_system_bytes: int | None = None
    """The Schur solver's dense reduced camera system."""
    point_blocks_bytes: int | None = None
    """The Schur solver's point blocks (inverses and camera-point products)."""

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class PreconditionerStats:
    """What the incomplete-Cholesky preconditioner ended up being (None for the others)."""

    shift: float
    """Diagonal shift the last factorization needed to exist (0: none)."""
    shift_tries: int
    """Breakdowns before the last factorization succeeded."""
    fill_level: int | str
    """Block fill level of the last factor (``"complete"`` after escalation or when asked)."""
    ordering: str
    """``"natural"`` or ``"min-degree"``."""
    escalated: bool
    """True if the solve switched to the complete minimum-degree factor (``ICConfig.escalate``)."""
    factorizations: int
    """Numeric factorizations over the whole solve."""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class DirectStats:
    """What the direct solver did over one nonlinear solve (the mixed-precision path's choices counted)."""

    factor: str
    """Format of the numeric factor (``fp64`` or ``fp32``)."""
    backend: str
    """The factorization's backend (``mixslam`` for the fp32 factor)."""
    steps: int = 0
    """Linear solves (LM steps, rejected ones included)."""
    factorizations: int = 0
    """Numeric factorizations."""
    reuses: int = 0
    """Steps solved by PCG with the factor of an earlier step (no factorization)."""
    failed_reuses: int = 0
    """Steps where that PCG did not converge within ``reuse_max_iterations`` and the matrix was factored."""
    refinements: int = 0
    """Iterative-refinement steps in total."""
    cg_iterations: int = 0
    """PCG iterations in total (reuses and refinement fallbacks)."""
    not_converged: int = 0
    """Steps that ended above the residual tolerance (the step is still used; LM judges it)."""
    shifts: int = 0
    """fp32 factorizations that broke down and were redone with a diagonal shift (PCG removes it)."""
    switched_to_fp64: str | None = None
    """Why the solve went on with an fp64 factor (None: it did not)."""
    choice: str | None = None
    """An adaptive policy's (``auto``) choice of the factor's format and its reason: the measured seconds of
    its first step (fp32 factor + PCG) and its second (fp64 factor). None for the other policies."""

    def count(self, out) -> None:
        """Add one refinement's counts (a :class:`~mixslam.linear.refinement.RefineResult`)."""
        self.refinements += out.refinements
        self.cg_iterations += out.cg_iterations
        if not out.converged:
            self.not_converged += 1

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class LinearResult:
    """The step of one linear solve and how it was found."""

    delta: np.ndarray
    """(size,) fp64 step."""
    iterations: int
    """CG iterations (1 for a direct solve)."""
    relative_residual: float
    """‖b - A x‖ / ‖b‖ of the damped normal equations as the solver measured it."""
    status: LinearStatus
    model_decrease: float
    """Predicted cost decrease -gᵀδ - 0.5‖Jδ‖² (fp64)."""
    stats: QuantizationStats = field(default_factory=QuantizationStats)
    """Every quantization of this solve (operands stored, Krylov overflows, fallbacks)."""
    times: dict = field(default_factory=dict)
    """Seconds (``*_s`` / phase names) and call counts (``*_calls``) of the solve's parts."""
    decision: str | None = None
    """The direct solver's choice for this step (``factor``, ``reuse``, ``reuse failed: factor``, with
    ``+ pcg`` when refinement handed over to PCG); None for CG."""


class Preconditioner(ABC):
    """M ≈ (S (JᵀJ + λD) S)⁻¹ for CG on the column-scaled normal equations, in the policy's precisions.

    The CG solver calls :meth:`prepare` before each solve, :meth:`apply` in every iteration, :meth:`retry`
    after a solve (a preconditioner that can do better, e.g. by refactoring, returns the statistics of that
    work and the solve is redone) and :meth:`end_solve` once the step is final.
    """

    name: ClassVar[str]
    is_identity: ClassVar[bool] = False

    @abstractmethod
    def prepare(
        self, lin, scale: np.ndarray, damping: np.ndarray, new_linearization: bool, times: dict
    ) -> QuantizationStats:
        """Make the preconditioner for the scaled system with column scale ``scale`` and scaled damping
        ``damping`` (both (size,), variables' order); returns the quantization statistics of what it stored."""

    @abstractmethod
    def apply(self, r: np.ndarray) -> np.ndarray:
        """z = M r, in the policy's preconditioner arithmetic."""

    def retry(self, lin, scale: np.ndarray, damping: np.ndarray, result, times: dict) -> QuantizationStats | None:
        """After a CG solve that returned ``result``: None to accept it, or the statistics of a new
        preconditioner to redo the solve with."""
        return None

    def end_solve(self) -> None:  # noqa: B027 (an optional hook: the default does nothing)
        """The step of this linear solve is final."""

    @property
    def nbytes(self) -> int:
        return 0

    def stats(self) -> PreconditionerStats | None:
        return None

    def kernel_specs(self) -> set:
        """The compiled specializations :meth:`prepare` and :meth:`apply` call (see ``kernels/warm.py``)."""
        return set()


class LinearSolver(ABC):
    """Solves the damped normal equations of one LM step."""

    name: ClassVar[str]
    initial_lambda: ClassVar[float]
    """The relative damping LM starts from when ``LMConfig.initial_lambda`` is None."""
    preconditioner: Preconditioner | None = None

    @abstractmethod
    def solve(self, lin, damping: Damping, rtol: float) -> LinearResult:
        """The step for linearization ``lin`` with ``damping``; ``rtol`` is the inexact-Newton tolerance
        (iterative solvers only)."""

    can_solve_again: ClassVar[bool] = False
    """Whether :meth:`solve_again` solves (the direct solvers) or returns None."""

    def solve_again(self, b: np.ndarray) -> np.ndarray | None:
        """x with (JᵀJ + λD) x = b for the damped system of the last :meth:`solve` (fp64, variables' order), or
        None where that would cost a new solve (CG): LM's geodesic acceleration asks for it."""
        return None

    def next_tolerance(self, gnorm: float, g0norm: float) -> float:
        """The tolerance for the solves of a new linearization (0: exact, the direct solvers)."""
        return 0.0

    def tighten_tolerance(self, relative_residual: float) -> None:  # noqa: B027 (optional hook, no-op default)
        """Ask later solves to go below ``relative_residual`` (direct solvers: nothing to do)."""

    @property
    def label(self) -> str:
        """``name`` or ``name+preconditioner``: what reports and progress lines show."""
        pre = self.preconditioner
        return self.name if pre is None else f"{self.name}+{pre.name}"

    def memory(self) -> MemoryUse:
        return MemoryUse()

    def direct_stats(self) -> DirectStats | None:
        """The direct solver's counts (None for CG)."""
        return None

    def warm(self) -> float:
        """Compile (or load) the kernels this solver calls that :meth:`kernel_specs` does not list (the
        supernodal factor's); returns the seconds it took."""
        return 0.0

    def kernel_specs(self) -> set:
        """The compiled specializations one solve with this solver calls (:mod:`mixslam.kernels.warm`)."""
        return set()
