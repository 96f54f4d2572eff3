"""Preconditioned conjugate gradients on the normal equations (CGNR), matrix-free.

Solves (JᵀJ + diag(d)) x = b without ever forming JᵀJ: each iteration runs one fused JᵀJ·p pass over the
stored Jacobian. Vectors and scalars live in the Krylov precision of the policy (see
:class:`~mixslam.linear.operators.KrylovArith`). The loop has an inexact-Newton tolerance, an iteration
cap, a periodic true-residual refresh, and a safeguard that stops on non-finite or growing values and
returns the best iterate seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .operators import JacobianOperator, KrylovArith


@dataclass
class CGResult:
    x: np.ndarray
    """Solution (best iterate) in the Krylov dtype."""
    iterations: int
    relative_residual: float
    """‖b - A x‖ / ‖b‖ (recurrence value, refreshed periodically)."""
    status: str
    """``converged``, ``max_iterations``, ``stagnated``, ``nonfinite`` or ``diverged``."""


def pcg(op: JacobianOperator, damping: np.ndarray, b: np.ndarray, precond, arith: KrylovArith, *,
        tol: float, max_iterations: int, refresh_every: int = 50, stagnation_window: int = 20) -> CGResult:
    """Preconditioned CG on (JᵀJ + diag(damping)) x = b, everything in ``arith``'s precision."""
    dt = arith.dtype
    b = arith.round(b)
    d = arith.round(damping)
    n = b.size
    bnorm = np.sqrt(arith.dot(b, b))
    x = np.zeros(n, dt)
    if not np.isfinite(bnorm) or bnorm == 0.0:
        return CGResult(x, 0, 0.0 if bnorm == 0.0 else float("nan"), "converged" if bnorm == 0.0 else "nonfinite")
    q = np.empty(n, dt)

    def apply_A(v):
        op.normal_matvec(v, q)
        return arith.axpy(1.0, arith.mul(d, v), arith.round(q))

    r = b.copy()
    z = arith.round(precond.apply(r)) if precond is not None else r.copy()
    p = z.copy()
    rz = arith.dot(r, z)
    best_x, best_res = x.copy(), 1.0
    res = 1.0
    since_best = 0
    status = "max_iterations"
    it = 0
    for it in range(1, max_iterations + 1):
        Ap = apply_A(p)
        pAp = arith.dot(p, Ap)
        if not np.isfinite(pAp) or pAp <= 0.0 or not np.isfinite(rz):
            status = "nonfinite" if not np.isfinite(pAp) or not np.isfinite(rz) else "breakdown"
            it -= 1
            break
        alpha = rz / pAp
        x = arith.axpy(alpha, p, x)
        if refresh_every and it % refresh_every == 0:
            r = arith.axpy(-1.0, apply_A(x), b)  # true residual, against drift
        else:
            r = arith.axpy(-alpha, Ap, r)
        rnorm = np.sqrt(arith.dot(r, r))
        if not np.isfinite(rnorm):
            status = "nonfinite"
            break
        res = rnorm / bnorm
        if res < 0.99 * best_res:
            best_res, since_best = res, 0
            best_x = x  # axpy rebinds x to a new array, never mutates it
        else:
            since_best += 1
        if res <= tol:
            status = "converged"
            break
        if res > 1e3:
            status = "diverged"
            break
        if since_best >= stagnation_window:
            status = "stagnated"
            break
        z = arith.round(precond.apply(r)) if precond is not None else r
        rz_new = arith.dot(r, z)
        beta = rz_new / rz if rz != 0 else 0.0
        rz = rz_new
        p = arith.axpy(beta, p, z)
    if status in ("nonfinite", "diverged"):
        # Every CG iterate lowers the quadratic model, so otherwise the last one is the best answer; only
        # after a blow-up fall back to the iterate with the smallest residual seen.
        x, res = best_x, best_res
    return CGResult(x, it, float(res), status)
