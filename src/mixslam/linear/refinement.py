"""fp64 accuracy from a factor below fp64: iterative refinement, then PCG, on the fp64 matrix.

Mixed-precision iterative refinement (Wilkinson; Carson & Higham 2018): with a factor F ≈ A computed in a
lower precision u_f, x ← x + F⁻¹(b - A x) with the residual in fp64 converges to fp64 accuracy when
κ(A)·u_f is well below 1, at a rate of about κ(A)·u_f per step. When it is not (pose graphs reach κ ≈ 1e8,
fp32's u_f = 6e-8), the same factor is still an excellent preconditioner: conjugate gradients on A with F as
preconditioner and fp64 vectors converge in a few iterations (GMRES-IR's idea, with CG since A is SPD).
:func:`refine` does the first and falls back to :func:`pcg` when a refinement step stalls.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["RefineMethod", "RefineResult", "refine", "pcg", "refine_to", "fp32_verdict"]

#: A refinement step that reduces the residual by less than this factor hands over to PCG.
STALL_RATIO = 0.5


class RefineMethod(str, enum.Enum):
    """How a :class:`RefineResult` was reached."""

    REFINEMENT = "refinement"
    """Iterative refinement alone."""
    PCG = "pcg"
    """Refinement stalled (or was skipped); PCG with the factor as preconditioner finished."""


@dataclass
class RefineResult:
    """The solution of A x = b and how it was found."""

    x: np.ndarray
    """fp64 solution."""
    refinements: int
    """Refinement steps taken (the first solve F⁻¹ b not counted)."""
    cg_iterations: int
    """PCG iterations taken (0 when refinement reached the tolerance)."""
    relative_residual: float
    """‖b - A x‖ / ‖b‖ in fp64."""
    converged: bool
    """True when ``relative_residual`` reached the tolerance."""
    method: RefineMethod

    @property
    def iterations(self) -> int:
        """Refinement steps plus PCG iterations: the solves with the factor after the first."""
        return self.refinements + self.cg_iterations


def refine(
    matvec: Callable[[np.ndarray], np.ndarray],
    factor_solve: Callable[[np.ndarray], np.ndarray],
    b: np.ndarray,
    tol: float,
    max_refinements: int,
    max_cg: int,
) -> RefineResult:
    """x with ‖b - A x‖ ≤ tol ‖b‖ by refinement with ``factor_solve`` (≈ A⁻¹), then PCG if it stalls.

    ``matvec`` is the fp64 product with A. Stops after ``max_refinements`` refinement steps and
    ``max_cg`` PCG iterations at most (``converged`` False then: the best x found is returned)."""
    b = np.asarray(b, dtype=np.float64)
    bnorm = float(np.linalg.norm(b))
    if bnorm == 0.0:
        return RefineResult(np.zeros_like(b), 0, 0, 0.0, True, RefineMethod.REFINEMENT)
    x = factor_solve(b)
    r = b - matvec(x)
    rel = float(np.linalg.norm(r)) / bnorm
    steps = 0
    while rel > tol and steps < max_refinements and np.isfinite(rel):
        x_new = x + factor_solve(r)
        r_new = b - matvec(x_new)
        rel_new = float(np.linalg.norm(r_new)) / bnorm
        steps += 1
        if not rel_new < rel:  # diverging: keep the better iterate and go to PCG
            break
        x, r, rel_prev, rel = x_new, r_new, rel, rel_new
        if rel > STALL_RATIO * rel_prev:
            break
    if rel <= tol or max_cg == 0 or not np.isfinite(rel):
        return RefineResult(x, steps, 0, rel, rel <= tol, RefineMethod.REFINEMENT)
    out = pcg(matvec, factor_solve, b, x, tol, max_cg, r=r)
    out.refinements = steps
    return out


def pcg(
    matvec: Callable[[np.ndarray], np.ndarray],
    precond: Callable[[np.ndarray], np.ndarray],
    b: np.ndarray,
    x0: np.ndarray | None,
    tol: float,
    max_iterations: int,
    r: np.ndarray | None = None,
) -> RefineResult:
    """Preconditioned CG on the SPD system A x = b in fp64 from ``x0`` (``r`` = b - A x0 if known), until
    ‖b - A x‖ ≤ tol ‖b‖ (the recurrence residual, checked against the true one at the end)."""
    b = np.asarray(b, dtype=np.float64)
    bnorm = float(np.linalg.norm(b))
    x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=np.float64)
    if bnorm == 0.0:
        return RefineResult(np.zeros_like(b), 0, 0, 0.0, True, RefineMethod.PCG)
    if r is None:
        r = b - matvec(x) if x0 is not None else b.copy()
    rel = float(np.linalg.norm(r)) / bnorm
    it = 0
    if rel > tol and max_iterations > 0:
        z = precond(r)
        p = z.copy()
        rz = float(r @ z)
        while it < max_iterations:
            q = matvec(p)
            pq = float(p @ q)
            if not (pq > 0.0) or not np.isfinite(rz):
                break  # lost positive definiteness to rounding: keep x
            alpha = rz / pq
            x += alpha * p
            r -= alpha * q
            it += 1
            rel = float(np.linalg.norm(r)) / bnorm
            if rel <= tol:
                break
            z = precond(r)
            rz_new = float(r @ z)
            p *= rz_new / rz
            p += z
            rz = rz_new
        true = b - matvec(x)
        rel = float(np.linalg.norm(true)) / bnorm
    return RefineResult(x, 0, it, rel, rel <= tol, RefineMethod.PCG)


def refine_to(matvec, factor_solve, b: np.ndarray, config, tolerance: float | None = None) -> RefineResult:
    """:func:`refine` with a :class:`~mixslam.linear.config.DirectConfig`'s tolerance (unless ``tolerance`` is
    given), method and caps."""
    steps = config.max_refinement_iterations if config.method == "refinement" else 0
    tol = config.tolerance if tolerance is None else tolerance
    return refine(matvec, factor_solve, b, tol, steps, config.max_cg_iterations)


def fp32_verdict(out: RefineResult, config, factor: str) -> str | None:
    """Why the fp32 ``factor`` does not pay on this problem after a freshly factored step ended as ``out``
    (None: it does): PCG did not reach the tolerance, or the step needed more than ``max_fp32_iterations``
    solves with the factor. The reason goes into ``DirectStats.switched_to_fp64``."""
    if not out.converged:
        return f"PCG with the fp32 {factor} did not reach {config.tolerance:g}"
    if out.iterations > config.max_fp32_iterations:
        return f"{out.iterations} solves with the fp32 {factor} for one step (> {config.max_fp32_iterations})"
    return None
