"""Geodesic acceleration of a damped Gauss-Newton step (Transtrum and Sethna, "Improvements to the
Levenberg-Marquardt algorithm for nonlinear least-squares minimization", arXiv:1201.5885, 2012).

LM's step v = -(JᵀJ + λD)⁻¹ Jᵀr follows the tangent of the residuals' path. Where the path curves, the
next state is off the valley floor and LM creeps along it with gain ratios well below 1. The correction

    a = -(JᵀJ + λD)⁻¹ Jᵀ r''_v,    r''_v ≈ (2 / h) ((r(x ⊞ h v) - r(x)) / h - J v)

is the second-order term of the residuals along v (a finite difference with one residual evaluation, the
Jacobian products of the linearization at hand and one more solve with the damped system already factored);
the step becomes v + a / 2, kept when 2‖a‖ <= α‖v‖ (:class:`~mixslam.solve.config.LMConfig`'s
``acceleration_ratio``, ``acceleration_step``). LM's gain ratio then measures the corrected step against the
linear model's prediction for it, so a correction that does not pay is rejected like any step.

Why pose graphs need it: a map that must turn about a weakly constrained hinge (the first poses of
parking-garage: the chordal start is 3° off there, 8 m at the far end) moves its poses along arcs, and each
Gauss-Newton step moves them along tangents. Measured (fp64, chordal start): parking-garage 20 -> 8 LM
iterations, ais2klinik 33 -> 17, the same optima; the other shared graphs take as many iterations as before.

Used where the problem can evaluate its residuals alone (``residuals(state)``, None when it cannot: a robust
loss whose weights move with the residuals) and the linear solver can solve again with the same damped system
(:meth:`~mixslam.linear.base.LinearSolver.solve_again`: the direct solvers).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..kernels import jac_matvec, jac_rmatvec
from ..linear.linearization import Linearization, blocks_for

__all__ = ["geodesic_correction", "NOISE_FACTOR"]

#: The second difference is taken for curvature only above this many units of the residuals' rounding
#: (eps of their dtype times their norms): below it, it is rounding noise amplified by 1/h², and a linear
#: problem's exact step would be moved by it (measured: 3e-12 relative on a linear fit, 60x fp64's tolerance).
NOISE_FACTOR = 100.0


def geodesic_correction(
    residuals: Callable[[object], np.ndarray | None],
    retract: Callable[[object, np.ndarray], object],
    state,
    lin: Linearization,
    v: np.ndarray,
    solve_again: Callable[[np.ndarray], np.ndarray | None],
    h: float,
) -> np.ndarray | None:
    """The acceleration a for the damped step ``v`` at ``state`` (linearized as ``lin``): zero where the
    residuals do not curve along ``v`` measurably (:data:`NOISE_FACTOR`), None when the residuals or the
    second solve are not available. fp64 throughout: the finite difference divides by h²,
    and the residuals' own precision (fp32 under ``mixed``) bounds its accuracy (the step is checked by the
    cost like any other)."""
    rh = residuals(retract(state, h * v))
    if rh is None:  # the problem cannot (LM asks before the first step)
        return None
    A, B = blocks_for(lin.A, np.float64), blocks_for(lin.B, np.float64)
    Jv = np.empty(lin.r.shape, dtype=np.float64)
    va, vb = lin.split(v)
    jac_matvec(A, lin.ia, B, lin.ib, va, vb, Jv, False)
    r0 = np.asarray(lin.r, dtype=np.float64)
    r1 = np.asarray(rh, dtype=np.float64)
    d = r1 - r0 - h * Jv  # the residuals' departure from their tangent: h² r''/2 + O(h³)
    noise = NOISE_FACTOR * np.finfo(rh.dtype).eps * (np.linalg.norm(r0) + np.linalg.norm(r1) + h * np.linalg.norm(Jv))
    if not np.linalg.norm(d) > noise:  # no curvature above the residuals' rounding: nothing to correct
        return np.zeros_like(v)
    rpp = (2.0 / (h * h)) * d
    b = np.zeros(lin.size)
    ba, bb = lin.split(b)
    jac_rmatvec(A, lin.ia, B, lin.ib, -rpp, ba, bb, False)
    return solve_again(b)
