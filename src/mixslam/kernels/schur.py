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


@njit(cache=True)
def point_blocks(A, ia, B, ib, nc, npts):
    """U (nc, pc, pc) = Σ AᵀA per camera, V (npts, 3, 3) = Σ BᵀB per point, W (m, pc, 3) = AᵀB per row."""
    m, k, pc = A.shape
    U = np.zeros((nc, pc, pc))
    V = np.zeros((npts, 3, 3))
    W = np.zeros((m, pc, 3))
    for e in range(m):
        c = ia[e]
        j = ib[e]
        if c >= 0:
            for a in range(pc):
                for b in range(a, pc):
                    s = 0.0
                    for r in range(k):
                        s += A[e, r, a] * A[e, r, b]
                    U[c, a, b] += s
                    if b != a:
                        U[c, b, a] += s
        if j >= 0:
            for a in range(3):
                for b in range(a, 3):
                    s = 0.0
                    for r in range(k):
                        s += B[e, r, a] * B[e, r, b]
                    V[j, a, b] += s
                    if b != a:
                        V[j, b, a] += s
            if c >= 0:
                for a in range(pc):
                    for b in range(3):
                        s = 0.0
                        for r in range(k):
                            s += A[e, r, a] * B[e, r, b]
                        W[e, a, b] = s
    return U, V, W


@njit(cache=True)
def reduce_cameras(U, Vinv, W, ia, order, ptr, gc, gp):
    """Dense reduced camera system S (nc pc, nc pc) and right-hand side b (see the module docstring).

    ``order``/``ptr``: observations grouped by point (``order[ptr[j]:ptr[j+1]]`` are point j's rows).
    """
    nc, pc, _ = U.shape
    n = nc * pc
    S = np.zeros((n, n))
    b = np.empty(n)
    for c in range(nc):
        for a in range(pc):
            b[c * pc + a] = -gc[c, a]
            for d in range(pc):
                S[c * pc + a, c * pc + d] = U[c, a, d]
    npts = Vinv.shape[0]
    Y = np.empty((pc, 3))
    for j in range(npts):
        for t in range(ptr[j], ptr[j + 1]):
            e = order[t]
            c1 = ia[e]
            if c1 < 0:
                continue
            # Y = W_e V_j^-1
            for a in range(pc):
                for d in range(3):
                    s = 0.0
                    for q in range(3):
                        s += W[e, a, q] * Vinv[j, q, d]
                    Y[a, d] = s
            for a in range(pc):
                s = 0.0
                for d in range(3):
                    s += Y[a, d] * gp[j, d]
                b[c1 * pc + a] += s
            for u in range(ptr[j], ptr[j + 1]):
                f = order[u]
                c2 = ia[f]
                if c2 < 0:
                    continue
                for a in range(pc):
                    for d in range(pc):
                        s = 0.0
                        for q in range(3):
                            s += Y[a, q] * W[f, d, q]
                        S[c1 * pc + a, c2 * pc + d] -= s
    return S, b


@njit(cache=True)
def back_substitute(Vinv, W, ia, order, ptr, gp, dc):
    """δp (npts, 3) from the camera step ``dc`` (nc, pc)."""
    npts = Vinv.shape[0]
    pc = W.shape[1]
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
                    s += W[e, a, d] * dc[c, a]
                rhs[d] -= s
        for d in range(3):
            s = 0.0
            for q in range(3):
                s += Vinv[j, d, q] * rhs[q]
            dp[j, d] = s
    return dp
