"""Compiled relative-pose ("between") errors, whitened residuals and Jacobians of a pose graph, one pass.

The same mathematics as :mod:`mixslam.problem.between` (g2o's EDGE_SE2 and EDGE_SE3:QUAT errors, the
closed-form Jacobians for the retraction t <- t + R rho, R <- R Exp(phi)), which stays the reference the
tests compare these kernels with. numpy's version makes about twenty passes over (m, 3, 3) or (m, 6, 6)
temporaries per call and cost 0.6 ms (errors) and 1 ms (whitened Jacobians) on intel.g2o's 2,512 edges;
one compiled pass per edge costs a few microseconds per thousand edges (``benchmarks/pgo_fixed_costs.py``).

Precision: every operation runs in the dtype of the output arrays (float64 or float32: the policy's
residual precision), with the rotations, measurements and square-root information given in that dtype; the
position difference t_j - t_i is formed in fp64 from the fp64 state and then narrowed (as the reference
does: its rounding error is then relative to the edge's length, not to the distance from the origin).
No fastmath: the fp32 path rounds like the numpy reference (operation order aside).

Entry points (``dim`` 2 or 3 is chosen by the caller; k = 3 / 6 error rows, p = 3 / 6 tangent columns):

* :func:`se2_errors` / :func:`se3_errors`: errors e (m, k);
* :func:`se2_whitened` / :func:`se3_whitened`: r = W e, A = W dE/dXi, B = W dE/dXj;
* :func:`quadratic_forms`: eᵀ Ω e per edge, fp64 accumulation.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

__all__ = ["se2_errors", "se2_whitened", "se3_errors", "se3_whitened", "quadratic_forms", "warm_between"]

_PI = np.pi
_TWO_PI = 2.0 * np.pi


@njit(cache=True, inline="always")
def _wrap(theta):
    """g2o's normalize_theta: [-pi, pi), as :func:`mixslam.lie.so2.wrap`."""
    return (theta + _PI) % _TWO_PI - _PI


@njit(cache=True, inline="always")
def _se2_edge(R, t, i, j, Rz, tz, e, buf, u, rd):
    """Error of one SE(2) edge into ``e`` (3,); leaves u = Riᵀ(tj - ti) and R_D in ``u`` (2,), ``rd`` (2, 2)."""
    buf[0] = t[j, 0] - t[i, 0]  # fp64 difference, narrowed by the store
    buf[1] = t[j, 1] - t[i, 1]
    d0, d1 = buf[0], buf[1]
    u[0] = R[i, 0, 0] * d0 + R[i, 1, 0] * d1
    u[1] = R[i, 0, 1] * d0 + R[i, 1, 1] * d1
    v0 = u[0] - tz[0]
    v1 = u[1] - tz[1]
    e[0] = Rz[0, 0] * v0 + Rz[1, 0] * v1
    e[1] = Rz[0, 1] * v0 + Rz[1, 1] * v1
    m00 = R[i, 0, 0] * R[j, 0, 0] + R[i, 1, 0] * R[j, 1, 0]
    m01 = R[i, 0, 0] * R[j, 0, 1] + R[i, 1, 0] * R[j, 1, 1]
    m10 = R[i, 0, 1] * R[j, 0, 0] + R[i, 1, 1] * R[j, 1, 0]
    m11 = R[i, 0, 1] * R[j, 0, 1] + R[i, 1, 1] * R[j, 1, 1]
    rd[0, 0] = Rz[0, 0] * m00 + Rz[1, 0] * m10
    rd[0, 1] = Rz[0, 0] * m01 + Rz[1, 0] * m11
    rd[1, 0] = Rz[0, 1] * m00 + Rz[1, 1] * m10
    rd[1, 1] = Rz[0, 1] * m01 + Rz[1, 1] * m11
    buf[0] = _wrap(np.arctan2(rd[1, 0], rd[0, 0]))
    e[2] = buf[0]


@njit(cache=True)
def se2_errors(R, t, ei, ej, Rz, tz, out):
    """g2o EDGE_SE2 errors (m, 3) into ``out`` (its dtype is the arithmetic's)."""
    dt = out.dtype
    buf = np.empty(2, dt)
    u = np.empty(2, dt)
    rd = np.empty((2, 2), dt)
    for k in range(ei.shape[0]):
        _se2_edge(R, t, ei[k], ej[k], Rz[k], tz[k], out[k], buf, u, rd)


@njit(cache=True)
def se2_whitened(R, t, ei, ej, Rz, tz, W, r, A, B):
    """Whitened residuals r = W e (m, 3) and Jacobian blocks A = W dE/dXi, B = W dE/dXj (m, 3, 3)."""
    dt = r.dtype
    buf = np.empty(2, dt)
    u = np.empty(2, dt)
    rd = np.empty((2, 2), dt)
    e = np.empty(3, dt)
    Ji = np.zeros((3, 3), dt)
    Jj = np.zeros((3, 3), dt)
    for k in range(ei.shape[0]):
        _se2_edge(R, t, ei[k], ej[k], Rz[k], tz[k], e, buf, u, rd)
        Z = Rz[k]
        # dE/dXi = [[-Rzᵀ, -Rzᵀ S u], [0, -1]],  dE/dXj = [[R_D, 0], [0, 1]],  S u = (-u1, u0)
        Ji[0, 0] = -Z[0, 0]
        Ji[0, 1] = -Z[1, 0]
        Ji[1, 0] = -Z[0, 1]
        Ji[1, 1] = -Z[1, 1]
        Ji[0, 2] = -(Z[0, 0] * (-u[1]) + Z[1, 0] * u[0])
        Ji[1, 2] = -(Z[0, 1] * (-u[1]) + Z[1, 1] * u[0])
        Ji[2, 2] = -1.0
        Jj[0, 0] = rd[0, 0]
        Jj[0, 1] = rd[0, 1]
        Jj[1, 0] = rd[1, 0]
        Jj[1, 1] = rd[1, 1]
        Jj[2, 2] = 1.0
        _whiten(W[k], e, Ji, Jj, r[k], A[k], B[k], 3)


@njit(cache=True, inline="always")
def _whiten(Wk, e, Ji, Jj, rk, Ak, Bk, n):
    """rk = Wk e, Ak = Wk Ji, Bk = Wk Jj for n x n blocks (n a literal at the call: unrolled loops)."""
    for a in range(n):
        s = Wk[a, 0] * e[0]
        for c in range(1, n):
            s += Wk[a, c] * e[c]
        rk[a] = s
        for b in range(n):
            sa = Wk[a, 0] * Ji[0, b]
            sb = Wk[a, 0] * Jj[0, b]
            for c in range(1, n):
                sa += Wk[a, c] * Ji[c, b]
                sb += Wk[a, c] * Jj[c, b]
            Ak[a, b] = sa
            Bk[a, b] = sb


@njit(cache=True, inline="always")
def _quaternion(rd, q):
    """Unit quaternion (x, y, z, w), w >= 0, of the rotation ``rd`` (Shepperd's method, as
    :func:`mixslam.lie.so3.to_quaternion`), into ``q``."""
    tr = rd[0, 0] + rd[1, 1] + rd[2, 2]
    c = 0
    if rd[1, 1] > rd[c, c]:
        c = 1
    if rd[2, 2] > rd[c, c]:
        c = 2
    if tr > rd[c, c]:
        s = np.sqrt(1.0 + tr) * 2.0
        q[3] = 0.25 * s
        q[0] = (rd[2, 1] - rd[1, 2]) / s
        q[1] = (rd[0, 2] - rd[2, 0]) / s
        q[2] = (rd[1, 0] - rd[0, 1]) / s
    else:
        i = c
        j = (i + 1) % 3
        k = (i + 2) % 3
        s = np.sqrt(1.0 + rd[i, i] - rd[j, j] - rd[k, k]) * 2.0
        q[i] = 0.25 * s
        q[3] = (rd[k, j] - rd[j, k]) / s
        q[j] = (rd[j, i] + rd[i, j]) / s
        q[k] = (rd[k, i] + rd[i, k]) / s
    if q[3] < 0:
        for a in range(4):
            q[a] = -q[a]
    nrm = np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    for a in range(4):
        q[a] = q[a] / nrm


@njit(cache=True, inline="always")
def _se3_edge(R, t, i, j, Rz, tz, e, buf, u, m, rd, q):
    """Error of one SE(3) edge into ``e`` (6,); leaves u = Riᵀ(tj - ti), RiᵀRj in ``m``, R_D in ``rd`` and its
    quaternion in ``q``."""
    for a in range(3):
        buf[a] = t[j, a] - t[i, a]  # fp64 difference, narrowed by the store
    for a in range(3):
        u[a] = R[i, 0, a] * buf[0] + R[i, 1, a] * buf[1] + R[i, 2, a] * buf[2]
    for a in range(3):
        buf[a] = u[a] - tz[a]
    for a in range(3):
        e[a] = Rz[0, a] * buf[0] + Rz[1, a] * buf[1] + Rz[2, a] * buf[2]
    for a in range(3):
        for b in range(3):
            m[a, b] = R[i, 0, a] * R[j, 0, b] + R[i, 1, a] * R[j, 1, b] + R[i, 2, a] * R[j, 2, b]
    for a in range(3):
        for b in range(3):
            rd[a, b] = Rz[0, a] * m[0, b] + Rz[1, a] * m[1, b] + Rz[2, a] * m[2, b]
    _quaternion(rd, q)
    e[3] = q[0]
    e[4] = q[1]
    e[5] = q[2]


@njit(cache=True)
def se3_errors(R, t, ei, ej, Rz, tz, out):
    """g2o EDGE_SE3:QUAT errors (m, 6) into ``out`` (its dtype is the arithmetic's)."""
    dt = out.dtype
    buf = np.empty(3, dt)
    u = np.empty(3, dt)
    m = np.empty((3, 3), dt)
    rd = np.empty((3, 3), dt)
    q = np.empty(4, dt)
    for k in range(ei.shape[0]):
        _se3_edge(R, t, ei[k], ej[k], Rz[k], tz[k], out[k], buf, u, m, rd, q)


@njit(cache=True)
def se3_whitened(R, t, ei, ej, Rz, tz, W, r, A, B):
    """Whitened residuals r = W e (m, 6) and Jacobian blocks A = W dE/dXi, B = W dE/dXj (m, 6, 6)."""
    dt = r.dtype
    buf = np.empty(3, dt)
    u = np.empty(3, dt)
    m = np.empty((3, 3), dt)
    rd = np.empty((3, 3), dt)
    q = np.empty(4, dt)
    e = np.empty(6, dt)
    M = np.empty((3, 3), dt)
    Ji = np.zeros((6, 6), dt)
    Jj = np.zeros((6, 6), dt)
    for k in range(ei.shape[0]):
        i, j = ei[k], ej[k]
        Z = Rz[k]
        _se3_edge(R, t, i, j, Z, tz[k], e, buf, u, m, rd, q)
        # M = 0.5 (w I + [v]x), v = q[:3]
        w = q[3]
        M[0, 0] = 0.5 * w
        M[1, 1] = 0.5 * w
        M[2, 2] = 0.5 * w
        M[0, 1] = -0.5 * q[2]
        M[0, 2] = 0.5 * q[1]
        M[1, 0] = 0.5 * q[2]
        M[1, 2] = -0.5 * q[0]
        M[2, 0] = -0.5 * q[1]
        M[2, 1] = 0.5 * q[0]
        # dE/dXi = [[-Rzᵀ, Rzᵀ [u]x], [0, -M Rjᵀ Ri]],  dE/dXj = [[R_D, 0], [0, M]]
        for a in range(3):
            # row a of Rzᵀ [u]x: (Rzᵀ)[a, :] = Z[:, a]; [u]x columns: (0, u2, -u1), (-u2, 0, u0), (u1, -u0, 0)
            z0, z1, z2 = Z[0, a], Z[1, a], Z[2, a]
            Ji[a, 3] = z1 * u[2] - z2 * u[1]
            Ji[a, 4] = z2 * u[0] - z0 * u[2]
            Ji[a, 5] = z0 * u[1] - z1 * u[0]
            for b in range(3):
                Ji[a, b] = -Z[b, a]
                Jj[a, b] = rd[a, b]
                Jj[3 + a, 3 + b] = M[a, b]
        # Rjᵀ Ri = mᵀ
        for a in range(3):
            for b in range(3):
                Ji[3 + a, 3 + b] = -(M[a, 0] * m[b, 0] + M[a, 1] * m[b, 1] + M[a, 2] * m[b, 2])
        _whiten(W[k], e, Ji, Jj, r[k], A[k], B[k], 6)


@njit(cache=True, inline="always")
def _quadratic_forms(e, information, out, n):
    for k in range(e.shape[0]):
        s = 0.0
        for a in range(n):
            row = 0.0
            for b in range(n):
                row += information[k, a, b] * e[k, b]
            s += e[k, a] * row
        out[k] = s


@njit(cache=True)
def quadratic_forms(e, information, out):
    """out[k] = e[k]ᵀ Ω[k] e[k] in fp64 (the pose graphs' block sizes 3 and 6 unrolled)."""
    n = e.shape[1]
    if n == 3:
        _quadratic_forms(e, information, out, 3)
    elif n == 6:
        _quadratic_forms(e, information, out, 6)
    else:
        _quadratic_forms(e, information, out, n)


_WARMED = [False]


def warm_between() -> float:
    """Compile (or load from numba's cache) every kernel for fp64 and fp32; returns the seconds it took (0 once
    done: a second call costs nothing)."""
    if _WARMED[0]:
        return 0.0
    t0 = time.perf_counter()
    ei = np.zeros(1, np.int64)
    ej = np.ones(1, np.int64)
    for dt in (np.float64, np.float32):
        for d, k, errors, whitened in ((2, 3, se2_errors, se2_whitened), (3, 6, se3_errors, se3_whitened)):
            R = np.broadcast_to(np.eye(d, dtype=dt), (2, d, d)).copy()
            t = np.zeros((2, d))
            Rz, tz = R[:1].copy(), np.zeros((1, d), dt)
            W = np.eye(k, dtype=dt)[None].copy()
            e = np.empty((1, k), dt)
            errors(R, t, ei, ej, Rz, tz, e)
            whitened(R, t, ei, ej, Rz, tz, W, e, np.empty((1, k, k), dt), np.empty((1, k, k), dt))
            quadratic_forms(e, np.eye(k)[None].copy(), np.empty(1))
    _WARMED[0] = True
    return time.perf_counter() - t0
