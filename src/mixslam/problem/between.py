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
"""

from __future__ import annotations

import numpy as np

from ..lie import so2, so3
from .pose_graph import PoseGraph


def _mT(a):
    return np.swapaxes(a, -1, -2)


def _mv(A, x):
    return np.einsum("...ij,...j->...i", A, x)


def edge_errors(graph: PoseGraph, rotations=None, translations=None, dtype=np.float64) -> np.ndarray:
    """Unwhitened g2o errors e (m, k) at the given poses (default: the graph's), computed in ``dtype``."""
    return linearize(graph, rotations, translations, dtype=dtype, jacobians=False)[0]


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
    return 0.5 * float(np.einsum("mi,mij,mj->", e, graph.information, e))


def chi2(graph: PoseGraph, rotations=None, translations=None) -> float:
    """g2o's chi2 = sum e^T Omega e = 2 * cost."""
    return 2.0 * cost(graph, rotations, translations)
