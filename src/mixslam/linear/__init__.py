"""Linear solvers of one LM step and their preconditioners, chosen separately (:mod:`.choice`).

Solvers (:class:`~.base.LinearSolver`): ``cholesky`` (fp64 sparse Cholesky, pose graphs), ``schur`` (fp64
landmark elimination, bundle adjustment), ``cg`` (CGNR in the policy's precisions). Preconditioners of ``cg``
(:class:`~.base.Preconditioner`): ``jacobi``, ``ic`` (block incomplete Cholesky, pose graphs), ``none``.
"""

from .base import Damping, LinearResult, LinearSolver, LinearStatus, MemoryUse, Preconditioner, PreconditionerStats
from .choice import (
    PRECONDITIONERS,
    SOLVER_ALIASES,
    SOLVERS,
    LinearSolverChoice,
    LinearStructure,
    default_linear_solver,
    make_linear_solver,
    resolve_linear_solver,
    solve_kernel_specs,
)
from .config import CGConfig, ICConfig
from .linearization import Linearization

__all__ = [
    "Damping",
    "LinearResult",
    "LinearSolver",
    "LinearStatus",
    "MemoryUse",
    "Preconditioner",
    "PreconditionerStats",
    "PRECONDITIONERS",
    "SOLVER_ALIASES",
    "SOLVERS",
    "LinearSolverChoice",
    "LinearStructure",
    "default_linear_solver",
    "make_linear_solver",
    "resolve_linear_solver",
    "solve_kernel_specs",
    "CGConfig",
    "ICConfig",
    "Linearization",
]
