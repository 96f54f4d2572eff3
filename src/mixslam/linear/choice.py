"""Which linear solver and preconditioner a solve uses: names, aliases, defaults, construction.

Decisions made here, once for every problem kind and every caller (library, command line, SLAM pipeline,
benchmarks):

* **Two separate choices**, as Ceres' ``linear_solver_type`` and ``preconditioner_type``: the solver
  (``cholesky``: sparse Cholesky of a pose graph; ``schur``: landmark elimination of a bundle adjustment with
  a dense reduced camera system, both in fp64 or fp32 refined to fp64; ``iterative_schur``: PCG on the
  implicit reduced camera system of a bundle adjustment, Schur-Jacobi preconditioned, Ceres'
  ITERATIVE_SCHUR; ``cg``: CGNR in the policy's precisions) and, for ``cg`` only, the preconditioner
  (``jacobi``: block-Jacobi; ``ic``: block incomplete Cholesky, pose graphs only; ``none``).
* **Aliases**: ``ic`` = ``cg`` + ``ic``; ``cgnr`` = ``cg`` + ``jacobi`` (unless a preconditioner is named),
  both kept from earlier releases; ``ischur`` = ``iterative_schur``. A preconditioner named without a solver
  means ``cg`` (only CG takes one).
* **Defaults from the policy's fields, never its name** (:func:`default_linear_solver`): a policy whose
  ``factor`` the problem kind's direct solver has gets that direct solver: fp64, or fp32 refined to fp64
  (``fp32``, ``mixed`` and ``auto`` presets; bundle adjustment's ``mixed`` and ``auto`` measure the fp32 and
  the fp64 elimination on their first two steps and keep the faster). Any other policy (a 16-bit
  ``factor``: the ``mixed16`` and ``fp16`` presets) gets CG, whose operations are the ones the policy's
  fields describe, with incomplete Cholesky for pose graphs (the article's design) and block-Jacobi for
  bundle adjustment (two variable sets). A bundle adjustment whose reduced camera system is too large for
  the dense Schur solver gets ``iterative_schur`` where the policy's arithmetic is fp32 or wider, else CG.
  A custom policy equal to a preset gets what the preset gets.
* **Validation**: a direct solver refuses a policy whose ``factor`` it does not have and a preconditioner
  (named, the pose-graph ``cholesky`` also takes an fp16 factor where the arithmetic is fp32: the fp32 factor
  kept in fp16 panels, ``mixed16``; :data:`NAMED_DIRECT_FACTORS`); ``iterative_schur`` is for bundle
  adjustment and takes no preconditioner; ``cholesky`` is for pose graphs and ``schur`` for bundle
  adjustment; ``ic`` needs one variable set (pose graphs). The CG-only fields of a policy (Jacobian,
  preconditioner and Krylov formats) do not concern the direct solvers. Every refusal is a
  :class:`~mixslam.errors.ConfigError` naming the value and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..precision import Precision, PrecisionPolicy, is_16bit
from .base import LinearSolver, Preconditioner
from .block_pattern import BlockPattern
from .config import CGConfig, DirectConfig, ICConfig
from .linearization import blocks_dtype

__all__ = [
    "SOLVERS",
    "ITERATIVE",
    "PRECONDITIONERS",
    "SOLVER_ALIASES",
    "PROBLEM_KINDS",
    "LinearSolverChoice",
    "LinearStructure",
    "default_linear_solver",
    "resolve_linear_solver",
    "make_linear_solver",
    "solve_kernel_specs",
]

SOLVERS = ("cholesky", "schur", "cg", "iterative_schur")
"""Canonical linear solver names."""
ITERATIVE = ("cg", "iterative_schur")
"""The iterative solvers (inexact-Newton tolerances); the others are direct."""
PRECONDITIONERS = ("jacobi", "ic", "none")
"""Preconditioner names (``cg`` only)."""
SOLVER_ALIASES = {"ic": ("cg", "ic"), "cgnr": ("cg", "jacobi"), "ischur": ("iterative_schur", None)}
"""Spellings of earlier releases: alias -> (solver, preconditioner it implies)."""
PROBLEM_KINDS = ("pgo", "ba")

_DIRECT = {"pgo": "cholesky", "ba": "schur"}
#: The factor formats each kind's direct solver has.
DIRECT_FACTORS = {"pgo": (Precision.FP64, Precision.FP32), "ba": (Precision.FP64, Precision.FP32)}
"""The factor formats a problem kind's direct solver uses by default (a policy with another factor gets CG)."""
NAMED_DIRECT_FACTORS = {"pgo": (Precision.FP64, Precision.FP32, Precision.FP16), "ba": DIRECT_FACTORS["ba"]}
"""... and those it takes when named (``--solver cholesky``): the pose-graph Cholesky also keeps an fp32 factor
in fp16 panels (``factor`` fp16 with fp32 arithmetic: ``mixed16``), refined to fp64. Not a default: it
changes what the ``mixed16`` study preset measures (CG with a 16-bit IC factor, the article's design)."""
_DEFAULT_PRECONDITIONER = {"pgo": "ic", "ba": "jacobi"}
_F64 = np.dtype(np.float64)


@dataclass(frozen=True)
class LinearSolverChoice:
    """A resolved (solver, preconditioner) pair."""

    solver: str
    """``cholesky``, ``schur`` or ``cg``."""
    preconditioner: str | None = None
    """``jacobi``, ``ic`` or ``none`` for ``cg``; None for the direct solvers."""

    @property
    def label(self) -> str:
        """``cholesky`` or ``cg+ic``: what reports and progress lines show."""
        return self.solver if self.preconditioner is None else f"{self.solver}+{self.preconditioner}"

    @property
    def iterative(self) -> bool:
        return self.solver in ITERATIVE


@dataclass(frozen=True)
class LinearStructure:
    """What the solvers need to know of an analyzed problem's unknowns."""

    nv: int
    """Variables of the first set (poses; BA: cameras)."""
    p: int
    """Tangent size of a first-set variable."""
    nb: int = 0
    """Variables of a second set (BA: points); 0 for one set."""
    pb: int = 0
    """Tangent size of a second-set variable."""
    pattern: BlockPattern | None = None
    """The normal matrix's block pattern (one variable set: pose graphs), for ``cholesky`` and ``ic``."""


def _check_kind(kind: str) -> None:
    if kind not in PROBLEM_KINDS:
        raise ConfigError(f"unknown problem kind {kind!r}; expected one of {list(PROBLEM_KINDS)}")


def default_linear_solver(
    policy: PrecisionPolicy, kind: str, direct_unknowns: int | None = None, max_direct: int | None = None
) -> LinearSolverChoice:
    """The solver a ``kind`` problem gets in ``policy`` when none is named (see the module docstring).

    ``direct_unknowns`` / ``max_direct``: size of the system the direct solver would factor densely and its
    limit (bundle adjustment's reduced camera system); above it, CG."""
    _check_kind(kind)
    too_big = direct_unknowns is not None and max_direct is not None and direct_unknowns > max_direct
    if policy.factor in DIRECT_FACTORS[kind] and not too_big:
        return LinearSolverChoice(_DIRECT[kind])
    wide = not any(is_16bit(getattr(policy, f)) for f in ("jacobian_accumulate", "krylov", "preconditioner_accumulate"))
    if kind == "ba" and too_big and wide:
        return LinearSolverChoice("iterative_schur")
    return LinearSolverChoice("cg", _DEFAULT_PRECONDITIONER[kind])


def resolve_linear_solver(
    solver: str | None,
    preconditioner: str | None,
    policy: PrecisionPolicy,
    kind: str,
    direct_unknowns: int | None = None,
    max_direct: int | None = None,
) -> LinearSolverChoice:
    """The (solver, preconditioner) a solve uses: the named ones (aliases expanded) or the defaults; checked
    against the policy and the problem kind."""
    _check_kind(kind)
    if preconditioner is not None and preconditioner not in PRECONDITIONERS:
        raise ConfigError(f"unknown preconditioner {preconditioner!r}; expected one of {list(PRECONDITIONERS)}")
    if solver is None and preconditioner is not None:
        choice = LinearSolverChoice("cg", preconditioner)  # only CG takes a preconditioner
    elif solver is None:
        choice = default_linear_solver(policy, kind, direct_unknowns, max_direct)
    elif solver in SOLVER_ALIASES:
        name, implied = SOLVER_ALIASES[solver]
        if solver == "ic" and preconditioner not in (None, "ic"):
            raise ConfigError(
                f"solver 'ic' is CG with the 'ic' preconditioner; it cannot take preconditioner "
                f"{preconditioner!r} (use solver 'cg')"
            )
        if name == "iterative_schur":
            return resolve_linear_solver(name, preconditioner, policy, kind, direct_unknowns, max_direct)
        choice = LinearSolverChoice(name, preconditioner or implied)
    elif solver == "cg":
        choice = LinearSolverChoice("cg", preconditioner or _DEFAULT_PRECONDITIONER[kind])
    elif solver == "iterative_schur":
        if kind != "ba":
            raise ConfigError("the 'iterative_schur' solver is for bundle adjustment (cameras and points)")
        if preconditioner is not None:
            raise ConfigError(
                f"the 'iterative_schur' solver has its own preconditioner (Schur-Jacobi), got {preconditioner!r}"
            )
        choice = LinearSolverChoice(solver)
    elif solver in SOLVERS:
        if preconditioner is not None:
            raise ConfigError(f"the direct solver {solver!r} takes no preconditioner, got {preconditioner!r}")
        choice = LinearSolverChoice(solver)
    else:
        names = [*SOLVERS, *SOLVER_ALIASES]
        raise ConfigError(f"unknown solver {solver!r}; expected one of {names}")
    if not choice.iterative:
        if choice.solver != _DIRECT[kind]:
            raise ConfigError(
                f"the {choice.solver!r} solver is not for {kind} problems; the direct solver of "
                f"{kind} is {_DIRECT[kind]!r}"
            )
        sixteen = is_16bit(policy.krylov) or is_16bit(policy.preconditioner_accumulate)
        if policy.factor not in NAMED_DIRECT_FACTORS[kind] or (is_16bit(policy.factor) and sixteen):
            have = " or ".join(p.value for p in NAMED_DIRECT_FACTORS[kind])
            if is_16bit(policy.factor) and kind == "pgo":
                have += " (fp16 with fp32 arithmetic only)"
            raise ConfigError(
                f"the {choice.solver} solver factors in {have}; policy {policy.name!r} asks for its factor "
                f"in {policy.factor.value}: use the CG solver ('cg', aliases 'cgnr', 'ic')"
            )
    if choice.preconditioner == "ic" and kind != "pgo":
        raise ConfigError(
            "the 'ic' preconditioner is for pose graphs (one variable set); bundle adjustment takes 'jacobi' or 'none'"
        )
    return choice


def make_preconditioner(
    name: str, policy: PrecisionPolicy, structure: LinearStructure, ic: ICConfig | None = None
) -> Preconditioner:
    from .preconditioners import ICPreconditioner, IdentityPreconditioner, JacobiPreconditioner

    if name == "jacobi":
        return JacobiPreconditioner(policy)
    if name == "none":
        return IdentityPreconditioner()
    if name == "ic":
        if structure.pattern is None:
            raise ConfigError("the IC preconditioner needs the normal matrix's block pattern")
        return ICPreconditioner(structure.pattern, policy, ic)
    raise ConfigError(f"unknown preconditioner {name!r}; expected one of {list(PRECONDITIONERS)}")


def make_linear_solver(
    choice: LinearSolverChoice,
    policy: PrecisionPolicy,
    structure: LinearStructure,
    cg: CGConfig | None = None,
    ic: ICConfig | None = None,
    direct: DirectConfig | None = None,
) -> LinearSolver:
    """The solver object of ``choice`` for a problem of ``structure`` (its symbolic work done here, once)."""
    if choice.solver == "cholesky":
        from .cholesky import CholeskySolver

        if structure.pattern is None:
            raise ConfigError("the cholesky solver needs the normal matrix's block pattern")
        return CholeskySolver(structure.pattern, policy, direct)
    if choice.solver == "schur":
        from .schur import SchurSolver

        return SchurSolver(structure.nv, structure.p, structure.nb, policy, direct)
    if choice.solver == "iterative_schur":
        from .implicit_schur import ImplicitSchurSolver

        return ImplicitSchurSolver(policy, cg)
    if choice.solver == "cg":
        from .cgnr import CGSolver

        return CGSolver(policy, make_preconditioner(choice.preconditioner or "jacobi", policy, structure, ic), cg)
    raise ConfigError(f"unknown linear solver {choice.solver!r}; expected one of {list(SOLVERS)}")


def solve_kernel_specs(solver: LinearSolver, policy: PrecisionPolicy) -> frozenset:
    """The compiled (kernel, storage dtype, vector dtype, acc16) specializations one LM solve with ``solver``
    calls: the fp64 J·δ of the model decrease, the fp64 Jᵀr of the gradient (both on the unquantized blocks in
    the residual precision), and what the solver and its
    preconditioner list themselves (CG: the gradient in the policy's right-hand-side precision too)."""
    blocks = blocks_dtype(policy.residual.compute_dtype, _F64)  # the Linearization's blocks, as they enter
    common = {("jac_matvec", blocks, _F64, False), ("jac_rmatvec", blocks, _F64, False)}
    return frozenset(common | solver.kernel_specs())
