"""The nearest rotation to each of many 3x3 matrices, by Higham's scaled Newton iteration for the polar factor.

For M with det(M) > 0 the orthogonal polar factor U of M = U H is a rotation and the nearest one to M in the
Frobenius norm, the same matrix as SVD's U Vᵀ. The iteration X <- (γ X + X⁻ᵀ / γ) / 2, γ = (‖X⁻¹‖_F /
‖X‖_F)^½, converges quadratically from any nonsingular start and, with the closed-form 3x3 inverse, costs
about 0.1 us a step in a compiled loop, against 2.5 us for numpy's batched SVD of a 3x3 matrix (chordal
initialization projects every pose's estimate: parking-garage 4 ms by SVD).

:func:`polar_rotations` returns a flag per matrix: False where det(M) <= 0 (the nearest rotation then is not
the polar factor) or the iteration did not converge in ``MAX_STEPS``; the caller projects those by SVD.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["polar_rotations", "MAX_STEPS"]

MAX_STEPS = 30
"""Newton steps at most per matrix (from a chordal estimate: 5-8)."""


@njit(cache=True)
def polar_rotations(M, out, ok):
    """out[e] = the rotation nearest to M[e] (polar factor) and ok[e] = True, where det(M[e]) > 0 and the
    iteration converged; ok[e] = False elsewhere (out[e] undefined)."""
    m = M.shape[0]
    X = np.empty((3, 3))
    Y = np.empty((3, 3))
    for e in range(m):
        for a in range(3):
            for b in range(3):
                X[a, b] = M[e, a, b]
        ok[e] = False
        for _ in range(MAX_STEPS):
            # cofactors C (so that X⁻ᵀ = C / det)
            c00 = X[1, 1] * X[2, 2] - X[1, 2] * X[2, 1]
            c01 = X[1, 2] * X[2, 0] - X[1, 0] * X[2, 2]
            c02 = X[1, 0] * X[2, 1] - X[1, 1] * X[2, 0]
            c10 = X[0, 2] * X[2, 1] - X[0, 1] * X[2, 2]
            c11 = X[0, 0] * X[2, 2] - X[0, 2] * X[2, 0]
            c12 = X[0, 1] * X[2, 0] - X[0, 0] * X[2, 1]
            c20 = X[0, 1] * X[1, 2] - X[0, 2] * X[1, 1]
            c21 = X[0, 2] * X[1, 0] - X[0, 0] * X[1, 2]
            c22 = X[0, 0] * X[1, 1] - X[0, 1] * X[1, 0]
            det = X[0, 0] * c00 + X[0, 1] * c01 + X[0, 2] * c02
            if not det > 0.0:
                break
            Y[0, 0], Y[0, 1], Y[0, 2] = c00 / det, c01 / det, c02 / det
            Y[1, 0], Y[1, 1], Y[1, 2] = c10 / det, c11 / det, c12 / det
            Y[2, 0], Y[2, 1], Y[2, 2] = c20 / det, c21 / det, c22 / det
            nx = 0.0
            ny = 0.0
            for a in range(3):
                for b in range(3):
                    nx += X[a, b] * X[a, b]
                    ny += Y[a, b] * Y[a, b]
            g = (ny / nx) ** 0.25
            change = 0.0
            for a in range(3):
                for b in range(3):
                    v = 0.5 * (g * X[a, b] + Y[a, b] / g)
                    change += (v - X[a, b]) * (v - X[a, b])
                    X[a, b] = v
            if change <= 3e-18:  # ‖ΔX‖_F <= 1.7e-9: quadratic convergence puts X within rounding of U
                ok[e] = True
                break
        if ok[e]:
            for a in range(3):
                for b in range(3):
                    out[e, a, b] = X[a, b]
