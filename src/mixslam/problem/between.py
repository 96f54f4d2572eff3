"""Relative-pose ("between") factors of a pose graph: errors and Jacobians, exactly as g2o defines them.

For an edge i -> j with measurement Z and poses Xi, Xj, let D = Z^-1 * Xi^-1 * Xj. The error is

* 2D (EDGE_SE2): e = (t_D, wrap(theta_D)),
* 3D (EDGE_SE3:QUAT): e = (t_D, qvec(R_D)) with the unit quaternion of R_D taken with w >= 0,

and the cost 0.5 * sum e^T Omega e. Jacobians are with respect to our retraction on each pose,
t <- t + R rho, R <- R Exp(phi) (tangent order (rho, phi)), derived in closed form:

* 3D, u = Ri^T (tj - ti), (w, v) = quaternion of R_D, M = 0.5 (w I + [v]x):
  dE/dXi = [[-Rz^T, Rz^T [u]x], [0, -M Rj^T Ri]],  dE/dXj = [[R_D, 0], [0, M]].
* 2D, S = [[0, -1], [1, 0]]: dE/dXi = [[-Rz^T, -Rz^T S u], [0, -1]],  dE/dXj = [[R_D, 0], [0, 1]].

All functions compute in the dtype they are given (the policy's residual precision); callers cast.
:func:`linearize` is the numpy reference; :func:`edge_errors`, :func:`whitened`, :func:`quadratic_forms` and
:func:`cost` run the compiled one-pass kernels of :mod:`mixslam.kernels.between` for fp64 and fp32 (other
dtypes, the emulated 16-bit ones, go through the reference).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import between as K
from ..lie import so2, so3
from .pose_graph import PoseGraph

_KERNEL_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def _mT(a):
    return np.swapaxes(a, -1, -2)


def _mv(A, x):
    return np.einsum("...ij,...j->...i", A, x)


def _kernel_args(graph: PoseGraph, rotations, translations, dt: np.dtype):
    R = graph.rotations if rotations is None else rotations
    t = graph.translations if translations is None else translations
    return (
        np.ascontiguousarray(R, dtype=dt),
        np.ascontiguousarray(t, dtype=np.float64),
        np.ascontiguousarray(graph.edge_i, dtype=np.int64),
        np.ascontiguousarray(graph.edge_j, dtype=np.int64),
        np.ascontiguousarray(graph.meas_rotations, dtype=dt),
        np.ascontiguousarray(graph.meas_translations, dtype=dt),
    )


def edge_errors(graph: PoseGraph, rotations=None, translations=None, dtype=np.float64) -> np.ndarray:
    """Unwhitened g2o errors e (m, k) at the given poses (default: the graph's), computed in ``dtype``."""
    dt = np.dtype(dtype)
    if dt not in _KERNEL_DTYPES:
        return linearize(graph, rotations, translations, dtype=dt, jacobians=False)[0]
    out = np.empty((graph.num_edges, graph.tangent_dim), dt)
    kernel: Any = K.se2_errors if graph.dim == 2 else K.se3_errors
    kernel(*_kernel_args(graph, rotations, translations, dt), out)
    return out


def whitened(graph: PoseGraph, rotations, translations, W: np.ndarray, dtype=np.float64):
    """(r, A, B): whitened residuals r = W e (m, k) and Jacobian blocks A = W dE/dXi, B = W dE/dXj (m, k, p) in
    ``dtype``, ``W`` (m, k, k) the square-root information (:func:`sqrt_information`)."""
    dt = np.dtype(dtype)
    m, k = graph.num_edges, graph.tangent_dim
    if dt not in _KERNEL_DTYPES:
        e, Ji, Jj = linearize(graph, rotations, translations, dtype=dt)
        Wd = W.astype(dt, copy=False)
        return np.einsum("mij,mj->mi", Wd, e), Wd @ Ji, Wd @ Jj
    r, A, B = np.empty((m, k), dt), np.empty((m, k, k), dt), np.empty((m, k, k), dt)
    kernel: Any = K.se2_whitened if graph.dim == 2 else K.se3_whitened
    kernel(*_kernel_args(graph, rotations, translations, dt), np.ascontiguousarray(W, dtype=dt), r, A, B)
    return r, A, B


def quadratic_forms(e: np.ndarray, information: np.ndarray) -> np.ndarray:
    """(m,) eᵀ Ω e of every edge, accumulated in fp64."""
    out = np.empty(e.shape[0])
    K.quadratic_forms(np.ascontiguousarray(e, np.float64), np.ascontiguousarray(information, np.float64), out)
    return out


def linearize(graph: PoseGraph, rotations=None, translations=None, *, dtype=np.float64, jacobians=True):
    """Errors (m, k) and, if asked, the Jacobian blocks (m, k, p) w.r.t. pose i and pose j, in ``dtype``."""
    R = graph.rotations if rotations is None else rotations
    t = graph.translations if translations is None else translations
    dt = np.dtype(dtype)
    Ri, Rj = R[graph.edge_i].astype(dt, copy=False), R[graph.edge_j].astype(dt, copy=False)
    # The position difference is taken on the fp64 state before narrowing: its rounding error is then
    # relative to the edge length, not to the distance from the origin (100x smaller on 100 m maps).
    dtij = (t[graph.edge_j] - t[graph.edge_i]).astype(dt, copy=False)
    Rz = graph.meas_rotations.astype(dt, copy=False)
    tz = graph.meas_translations.astype(dt, copy=False)
    RiT = _mT(Ri)
    u = _mv(RiT, dtij)
    RzT = _mT(Rz)
    tD = _mv(RzT, u - tz)
    RD = RzT @ RiT @ Rj
    m, d = tD.shape
    if d == 2:
        theta = so2.wrap(np.arctan2(RD[:, 1, 0], RD[:, 0, 0]))
        e = np.concatenate([tD, theta[:, None].astype(dt)], axis=1)
        if not jacobians:
            return e, None, None
        Ji = np.zeros((m, 3, 3), dt)
        Jj = np.zeros((m, 3, 3), dt)
        Ji[:, :2, :2] = -RzT
        Su = np.stack([-u[:, 1], u[:, 0]], axis=1)
        Ji[:, :2, 2] = -_mv(RzT, Su)
        Ji[:, 2, 2] = -1.0
        Jj[:, :2, :2] = RD
        Jj[:, 2, 2] = 1.0
        return e, Ji, Jj
    q = so3.to_quaternion(RD).astype(dt, copy=False)  # w >= 0
    e = np.concatenate([tD, q[:, :3]], axis=1)
    if not jacobians:
        return e, None, None
    w = q[:, 3]
    M = 0.5 * (w[:, None, None] * np.eye(3, dtype=dt) + so3.hat(q[:, :3]))
    Ji = np.zeros((m, 6, 6), dt)
    Jj = np.zeros((m, 6, 6), dt)
    Ji[:, :3, :3] = -RzT
    Ji[:, :3, 3:] = RzT @ so3.hat(u)
    Ji[:, 3:, 3:] = -M @ _mT(Rj) @ Ri
    Jj[:, :3, :3] = RD
    Jj[:, 3:, 3:] = M
    return e, Ji, Jj


def sqrt_information(information: np.ndarray) -> np.ndarray:
    """Upper factors W (m, k, k) with W^T W = Omega, so that the whitened error is W e (fp64)."""
    L = np.linalg.cholesky(information)  # Omega = L L^T
    return _mT(L)


def cost(graph: PoseGraph, rotations=None, translations=None) -> float:
    """0.5 * sum e^T Omega e in fp64 (g2o's chi2 is twice this)."""
    e = edge_errors(graph, rotations, translations, dtype=np.float64)
    return 0.5 * float(np.sum(quadratic_forms(e, graph.information)))


def chi2(graph: PoseGraph, rotations=None, translations=None) -> float:
    """g2o's chi2 = sum e^T Omega e = 2 * cost."""
    return 2.0 * cost(graph, rotations, translations)
