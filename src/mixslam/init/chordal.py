"""Chordal initialization of a pose graph (2D and 3D).

Two linear least-squares solves, as in GTSAM's ``InitializePose3``, SE-Sync's chordal initializer and
Carlone et al., "Initialization Techniques for 3D SLAM" (ICRA 2015):

1. **Rotations** (chordal relaxation). Minimize ``sum_e kappa_e ||R_j - R_i Z_e||_F^2`` over unconstrained
   d x d matrices, the fixed poses' rotations held at their current values (the gauge), then project each
   solution onto SO(d). Written row by row, ``R_j[r, :] - R_i[r, :] Z_e`` involves only row ``r`` of every
   matrix, so the d^2 unknowns per pose split into d independent problems that share one sparse
   (n d) x (n d) normal matrix: it is factored once and solved for d right-hand sides.
2. **Translations**. With the rotations fixed, the g2o translation error of an edge,
   ``e_t = Z_R^T R_i^T (t_j - t_i - R_i z_e)``, is linear in the translations; minimizing
   ``sum_e e_t^T Omega_tt e_t`` is the sparse linear least-squares problem with the world-frame weights
   ``W_e = (R_i Z_R) Omega_tt (R_i Z_R)^T``, the fixed poses' translations held.

Weights (``weighted=True``): the isotropic rotation weight of SE-Sync,
``kappa_e = d_R / trace(Omega_RR^-1)`` (d_R = 3 in 3D, 1 in 2D; Omega_RR is the rotation block of the
information), and the translation block Omega_tt itself (the translation-rotation cross terms are ignored).
With ``weighted=False`` every ``kappa_e = 1`` and every ``Omega_tt = I``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import NonFiniteError, SolverError
from ..lie import so2, so3
from ..linear.direct import SparseCholesky
from ..problem.pose_graph import PoseGraph, check_connected

__all__ = ["chordal_initialization", "chordal_rotations", "chordal_translations"]


def chordal_initialization(graph: PoseGraph, *, weighted: bool = True) -> PoseGraph:
    """Return a copy of ``graph`` whose poses are the chordal initialization (rotations, then translations).

    Fixed poses keep their current rotation and translation exactly. Raises :class:`~mixslam.GaugeError`
    if no pose is fixed or some pose is not connected to a fixed one, and :class:`~mixslam.SolverError` if
    a linear system is singular.
    """
    check_connected(graph)
    # The two systems have d x d blocks at the same places: one analysis serves both.
    analysis: dict = {}
    rotations = chordal_rotations(graph, weighted=weighted, analysis=analysis)
    translations = chordal_translations(graph, rotations, weighted=weighted, analysis=analysis)
    return graph.with_poses(rotations, translations)


# -- helpers ---------------------------------------------------------------------------------------------
def _blocks(graph: PoseGraph) -> tuple[int, slice, slice]:
    d = graph.dim
    if d not in (2, 3):
        raise ValueError(f"{graph.source}: dim must be 2 or 3, got {d}")
    if d == 2:
        return d, slice(0, 2), slice(2, 3)
    return d, slice(0, 3), slice(3, 6)


def _rotation_weights(graph: PoseGraph, weighted: bool) -> np.ndarray:
    """Isotropic rotation weight of each edge (SE-Sync's kappa, up to a global scale)."""
    m = graph.num_edges
    if not weighted or m == 0:
        return np.ones(m)
    _, _, rb = _blocks(graph)
    omega_rr = np.asarray(graph.information[:, rb, rb], dtype=np.float64)
    k = omega_rr.shape[1]
    omega_rr = 0.5 * (omega_rr + np.swapaxes(omega_rr, 1, 2))
    eig = np.linalg.eigvalsh(omega_rr)
    scale = np.maximum(np.abs(eig).max(axis=1), 1e-300)
    good = eig[:, 0] > 1e-12 * scale
    kappa = np.empty(m)
    # k / trace(inv(Omega_RR)) = k / sum(1/eig): a harmonic mean of the eigenvalues.
    kappa[good] = k / np.sum(1.0 / eig[good], axis=1)
    # Not positive definite (should not happen after validation/repair): fall back to the mean diagonal.
    diag_mean = np.trace(omega_rr, axis1=1, axis2=2) / k
    kappa[~good] = np.maximum(diag_mean[~good], 0.0)
    if not np.all(np.isfinite(kappa)):
        raise NonFiniteError(f"{graph.source}: non-finite rotation weight derived from the information")
    return kappa


def _translation_weights(graph: PoseGraph, weighted: bool) -> np.ndarray:
    """Translation block of the information, clipped to positive semidefinite, (m, d, d)."""
    d, tb, _ = _blocks(graph)
    m = graph.num_edges
    if not weighted or m == 0:
        return np.broadcast_to(np.eye(d), (m, d, d)).copy()
    omega = np.array(graph.information[:, tb, tb], dtype=np.float64)
    omega = 0.5 * (omega + np.swapaxes(omega, 1, 2))
    # Sylvester's criterion (every leading minor positive) clears a positive-definite block, which needs no
    # clipping, without an eigensolve; only the others (none after validation) are eigendecomposed.
    minors = [omega[:, 0, 0], np.linalg.det(omega[:, :2, :2])] + ([np.linalg.det(omega)] if d == 3 else [])
    unsure = np.nonzero(~np.all(np.stack(minors) > 0.0, axis=0))[0]
    if unsure.size:
        eig, V = np.linalg.eigh(omega[unsure])
        e = np.maximum(eig, 0.0)
        omega[unsure] = (V * e[:, None, :]) @ np.swapaxes(V, 1, 2)
    return omega


def _solve_reduced(
    H: sp.csr_matrix,
    rhs: np.ndarray,
    free_cols: np.ndarray,
    fixed_vals: np.ndarray,
    fixed_cols: np.ndarray,
    what: str,
    source: str,
    analysis: dict | None = None,
) -> np.ndarray:
    """Solve H x = rhs with the entries ``fixed_cols`` of x held at ``fixed_vals``; returns the free part.
    ``analysis`` (a dict, filled on the first call) carries the sparse Cholesky's analysis to a later system
    with the same pattern (the translations after the rotations), which then only refactors."""
    Hr = H.tocsr()[free_cols].tocsc()
    Hff = Hr[:, free_cols]
    b = rhs[free_cols]
    if fixed_cols.size:
        b = b - Hr[:, fixed_cols] @ fixed_vals
    if Hff.shape[0] == 0:
        return np.zeros((0,) + rhs.shape[1:])
    try:  # the normal matrix is SPD when every pose is tied to a fixed one: the fastest sparse Cholesky
        chol = None if analysis is None else analysis.get("chol")
        if chol is not None and chol.n == Hff.shape[0]:
            try:
                chol.factorize(Hff)
            except SolverError:  # another pattern (or not positive definite: the new analysis says so again)
                chol = None
        else:
            chol = None
        if chol is None:
            chol = SparseCholesky(Hff)
            chol.factorize(Hff)
            if analysis is not None:
                analysis["chol"] = chol
        x = chol.solve(np.asarray(b, dtype=np.float64))
    except SolverError as exc:
        raise SolverError(
            f"{source}: chordal initialization: the {what} system is singular or not positive definite ({exc}); "
            "check that every pose is tied to a fixed pose by edges"
        ) from exc
    if not np.all(np.isfinite(x)):
        raise SolverError(
            f"{source}: chordal initialization: the {what} solve produced NaN/inf (singular or badly scaled system)"
        )
    return x


# -- step 1: rotations -----------------------------------------------------------------------------------
def chordal_rotations(graph: PoseGraph, *, weighted: bool = True, analysis: dict | None = None) -> np.ndarray:
    """Chordal-relaxation rotations (n, d, d), projected onto SO(d); fixed poses keep their rotations."""
    d, _, _ = _blocks(graph)
    n, m = graph.num_poses, graph.num_edges
    kappa = _rotation_weights(graph, weighted)
    Z = np.asarray(graph.meas_rotations, dtype=np.float64)
    ei = np.asarray(graph.edge_i, dtype=np.int64)
    ej = np.asarray(graph.edge_j, dtype=np.int64)

    # Unknowns: x_p = R_p[r, :]^T (a d-vector) for each row r, stacked per pose: column index d*p + a.
    # Residual of edge e for row r: x_j - Z^T x_i, weight kappa. Normal-matrix blocks:
    #   H_jj += kappa I, H_ii += kappa Z Z^T, H_ij += -kappa Z, H_ji += -kappa Z^T.
    eye = np.broadcast_to(np.eye(d), (m, d, d))
    Zt = np.swapaxes(Z, 1, 2)
    blocks = np.concatenate(
        [
            kappa[:, None, None] * eye,
            kappa[:, None, None] * (Z @ Zt),
            -kappa[:, None, None] * Z,
            -kappa[:, None, None] * Zt,
        ]
    )
    brow = np.concatenate([ej, ei, ei, ej])
    bcol = np.concatenate([ej, ei, ej, ei])
    a = np.arange(d)
    H = _block_matrix(blocks, brow, bcol, n, d)

    fixed = np.asarray(graph.fixed, dtype=bool)
    free_cols = (d * np.where(~fixed)[0][:, None] + a).ravel()
    fixed_cols = (d * np.where(fixed)[0][:, None] + a).ravel()
    R0 = np.asarray(graph.rotations, dtype=np.float64)
    # Right-hand side column r holds the unknown vector x for row r: x[d*p + a] = R_p[r, a].
    fixed_vals = np.swapaxes(R0[fixed], 1, 2).reshape(-1, d)  # [d*p + a, r] = R_p[r, a]
    rhs = np.zeros((n * d, d))
    x = _solve_reduced(H, rhs, free_cols, fixed_vals, fixed_cols, "rotation", graph.source, analysis)

    M = np.empty((n, d, d))
    M[~fixed] = np.swapaxes(x.reshape(-1, d, d), 1, 2)  # x[d*p + a, r] -> M_p[r, a]
    out = R0.copy()
    proj = so3.project if d == 3 else so2.project
    if (~fixed).any():
        out[~fixed] = proj(M[~fixed])
    return out


def _block_matrix(blocks: np.ndarray, brow: np.ndarray, bcol: np.ndarray, n: int, d: int) -> sp.csr_matrix:
    """Sum d x d ``blocks`` placed at block positions (brow, bcol) into an (n d) x (n d) CSR matrix."""
    a = np.arange(d)
    rows = (d * brow[:, None, None] + a[None, :, None]) + 0 * a[None, None, :]
    cols = (d * bcol[:, None, None] + a[None, None, :]) + 0 * a[None, :, None]
    return sp.coo_matrix((blocks.ravel(), (rows.ravel(), cols.ravel())), shape=(n * d, n * d)).tocsr()


# -- step 2: translations --------------------------------------------------------------------------------
def chordal_translations(
    graph: PoseGraph, rotations: np.ndarray, *, weighted: bool = True, analysis: dict | None = None
) -> np.ndarray:
    """Translations (n, d) minimizing the g2o translation errors with ``rotations`` held fixed."""
    d, _, _ = _blocks(graph)
    n = graph.num_poses
    R = np.asarray(rotations, dtype=np.float64)
    ei = np.asarray(graph.edge_i, dtype=np.int64)
    ej = np.asarray(graph.edge_j, dtype=np.int64)
    omega = _translation_weights(graph, weighted)
    # World-frame weight W = A Omega_tt A^T with A = R_i Z_R (the frame the g2o translation error lives in).
    A = R[ei] @ np.asarray(graph.meas_rotations, dtype=np.float64)
    W = A @ omega @ np.swapaxes(A, 1, 2)
    W = 0.5 * (W + np.swapaxes(W, 1, 2))
    c = np.einsum("mab,mb->ma", R[ei], np.asarray(graph.meas_translations, dtype=np.float64))
    # Residual r = t_j - t_i - c: H_jj += W, H_ii += W, H_ij -= W, H_ji -= W; g_j += W c, g_i -= W c.
    blocks = np.concatenate([W, W, -W, -W])
    brow = np.concatenate([ej, ei, ei, ej])
    bcol = np.concatenate([ej, ei, ej, ei])
    a = np.arange(d)
    H = _block_matrix(blocks, brow, bcol, n, d)
    Wc = np.einsum("mab,mb->ma", W, c)
    g = np.zeros((n, d))
    np.add.at(g, ej, Wc)
    np.add.at(g, ei, -Wc)

    fixed = np.asarray(graph.fixed, dtype=bool)
    free_cols = (d * np.where(~fixed)[0][:, None] + a).ravel()
    fixed_cols = (d * np.where(fixed)[0][:, None] + a).ravel()
    t0 = np.asarray(graph.translations, dtype=np.float64)
    x = _solve_reduced(
        H, g.reshape(-1), free_cols, t0[fixed].reshape(-1), fixed_cols, "translation", graph.source, analysis
    )
    out = t0.copy()
    out[~fixed] = x.reshape(-1, d)
    return out
