"""Schur complement of bundle adjustment's normal equations (points eliminated), fp64, compiled.

Layout as in :mod:`mixslam.kernels.products`: observation ``e`` has a camera block ``A[e]`` (k x pc) on camera
``ia[e]`` and a point block ``B[e]`` (k x 3) on point ``ib[e]`` (-1: fixed). With U = diag blocks of AᵀA,
V = diag blocks of BᵀB (both damped by the caller) and W_e = A[e]ᵀB[e]:

    S = U - Σ_j Σ_{e,f ∈ obs(j)} W_e V_j⁻¹ W_fᵀ           (dense, (nc pc)²)
    b = -g_c + Σ_j Σ_{e ∈ obs(j)} W_e V_j⁻¹ g_p[j]
    δp_j = V_j⁻¹ (-g_p[j] - Σ_{e ∈ obs(j)} W_eᵀ δc[ia[e]])
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, fastmath=True)
def point_blocks(A, ia, B, ib, nc, npts, dc, dp):
    """U (nc, pc, pc) = Σ AᵀA + diag(dc) per camera, Vinv (npts, 3, 3) = (Σ BᵀB + diag(dp))⁻¹ per point and
    WT (m, 3, pc) = (AᵀB)ᵀ per row (transposed so the reduction's inner loop runs along a camera row).

    Rows are 2 high (reprojection residuals). ``dc`` (nc, pc) / ``dp`` (npts, 3): the damping.
    """
    m = A.shape[0]
    pc = A.shape[2]
    U = np.zeros((nc, pc, pc))
    V = np.zeros((npts, 3, 3))
    WT = np.zeros((m, 3, pc))
    for e in range(m):
        c = ia[e]
        j = ib[e]
        if c >= 0:
            for a in range(pc):
                a0 = A[e, 0, a]
                a1 = A[e, 1, a]
                for b in range(pc):
                    U[c, a, b] += a0 * A[e, 0, b] + a1 * A[e, 1, b]
        if j >= 0:
            for a in range(3):
                b0 = B[e, 0, a]
                b1 = B[e, 1, a]
                for b in range(3):
                    V[j, a, b] += b0 * B[e, 0, b] + b1 * B[e, 1, b]
            if c >= 0:
                for q in range(3):
                    b0 = B[e, 0, q]
                    b1 = B[e, 1, q]
                    for a in range(pc):
                        WT[e, q, a] = A[e, 0, a] * b0 + A[e, 1, a] * b1
    for c in range(nc):
        for a in range(pc):
            U[c, a, a] += dc[c, a]
    Vinv = np.empty((npts, 3, 3))
    for j in range(npts):
        for a in range(3):
            V[j, a, a] += dp[j, a]
        _inv3_spd(V[j], Vinv[j])
    return U, Vinv, WT


@njit(cache=True, fastmath=True)
def _inv3_spd(M, out):
    """Inverse of a 3x3 symmetric positive-definite matrix by Cholesky (M = L Lᵀ, M⁻¹ = L⁻ᵀ L⁻¹)."""
    l00 = np.sqrt(M[0, 0])
    l10 = M[1, 0] / l00
    l20 = M[2, 0] / l00
    l11 = np.sqrt(M[1, 1] - l10 * l10)
    l21 = (M[2, 1] - l20 * l10) / l11
    l22 = np.sqrt(M[2, 2] - l20 * l20 - l21 * l21)
    # N = L⁻¹ (lower)
    n00 = 1.0 / l00
    n11 = 1.0 / l11
    n22 = 1.0 / l22
    n10 = -l10 * n00 * n11
    n21 = -l21 * n11 * n22
    n20 = -(l20 * n00 + l21 * n10) * n22
    out[0, 0] = n00 * n00 + n10 * n10 + n20 * n20
    out[1, 1] = n11 * n11 + n21 * n21
    out[2, 2] = n22 * n22
    out[0, 1] = out[1, 0] = n10 * n11 + n20 * n21
    out[0, 2] = out[2, 0] = n20 * n22
    out[1, 2] = out[2, 1] = n21 * n22


@njit(cache=True, fastmath=True)
def reduce_cameras(U, Vinv, WT, ia, order, ptr, gc, gp):
    """Dense reduced camera system S (nc pc, nc pc) and right-hand side b (see the module docstring).

    ``order``/``ptr``: observations grouped by point (``order[ptr[j]:ptr[j+1]]`` are point j's rows).
    Only blocks with camera c2 >= c1 are accumulated; the lower triangle is mirrored at the end.
    """
    nc, pc, _ = U.shape
    n = nc * pc
    S = np.zeros((n, n))
    b = np.empty(n)
    for c in range(nc):
        for a in range(pc):
            b[c * pc + a] = -gc[c, a]
    npts = Vinv.shape[0]
    Y = np.empty((pc, 3))
    for j in range(npts):
        for t in range(ptr[j], ptr[j + 1]):
            e = order[t]
            c1 = ia[e]
            if c1 < 0:
                continue
            # Y = W_e V_j^-1  (W_e = WT[e]ᵀ, pc x 3)
            for a in range(pc):
                for d in range(3):
                    Y[a, d] = WT[e, 0, a] * Vinv[j, 0, d] + WT[e, 1, a] * Vinv[j, 1, d] + WT[e, 2, a] * Vinv[j, 2, d]
            for a in range(pc):
                b[c1 * pc + a] += Y[a, 0] * gp[j, 0] + Y[a, 1] * gp[j, 1] + Y[a, 2] * gp[j, 2]
            for u in range(ptr[j], ptr[j + 1]):
                f = order[u]
                c2 = ia[f]
                if c2 < c1:
                    continue
                base = c2 * pc
                for a in range(pc):
                    row = c1 * pc + a
                    y0 = Y[a, 0]
                    y1 = Y[a, 1]
                    y2 = Y[a, 2]
                    for d in range(pc):
                        S[row, base + d] -= y0 * WT[f, 0, d] + y1 * WT[f, 1, d] + y2 * WT[f, 2, d]
    # Diagonal camera blocks: U minus what was accumulated (a c1 == c2 pair of distinct rows is counted from
    # both sides, an e == f pair once, exactly as the full double sum).
    for c in range(nc):
        for a in range(pc):
            for d in range(pc):
                S[c * pc + a, c * pc + d] += U[c, a, d]
    for r in range(n):
        for q in range(r + 1, n):
            if q // pc != r // pc:
                S[q, r] = S[r, q]
    return S, b


@njit(cache=True, fastmath=True)
def back_substitute(Vinv, WT, ia, order, ptr, gp, dc):
    """δp (npts, 3) from the camera step ``dc`` (nc, pc)."""
    npts = Vinv.shape[0]
    pc = WT.shape[2]
    dp = np.zeros((npts, 3))
    rhs = np.empty(3)
    for j in range(npts):
        for d in range(3):
            rhs[d] = -gp[j, d]
        for t in range(ptr[j], ptr[j + 1]):
            e = order[t]
            c = ia[e]
            if c < 0:
                continue
            for d in range(3):
                s = 0.0
                for a in range(pc):
                    s += WT[e, d, a] * dc[c, a]
                rhs[d] -= s
        for d in range(3):
            s = 0.0
            for q in range(3):
                s += Vinv[j, d, q] * rhs[q]
            dp[j, d] = s
    return dp
