"""The pose-graph problem: poses (fp64), relative-pose edges with information matrices, fixed poses.

Conventions (those of g2o, so that ``2 * cost`` equals the chi2 g2o reports for the same poses):

* 2D (``dim == 2``): pose X = (R(theta), t); edge error e = (t_d, wrap(theta_d)) of D = Z^-1 * Xi^-1 * Xj,
  information order (x, y, theta).
* 3D (``dim == 3``): edge error e = (t_d, qvec_d) of D = Z^-1 * Xi^-1 * Xj, where qvec is the vector part
  of D's unit quaternion taken with w >= 0; information order (x, y, z, qx, qy, qz).
* cost = 0.5 * sum_k e_k^T Omega_k e_k, accumulated in fp64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import GaugeError, InformationMatrixError, NonFiniteError
from ..kernels.spd import shifted_cholesky_fails


@dataclass
class PoseGraph:
    """A pose graph. Arrays are indexed by pose *index* 0..n-1; ``ids`` maps indices to the file's ids."""

    dim: int
    """2 for SE(2) graphs, 3 for SE(3) graphs."""
    ids: np.ndarray
    """(n,) int64 vertex ids as written in the file, sorted ascending."""
    rotations: np.ndarray
    """(n, d, d) fp64 rotation matrices of the poses (world from body)."""
    translations: np.ndarray
    """(n, d) fp64 positions of the poses."""
    edge_i: np.ndarray
    """(m,) int64 index of each edge's first pose."""
    edge_j: np.ndarray
    """(m,) int64 index of each edge's second pose."""
    meas_rotations: np.ndarray
    """(m, d, d) fp64 measured relative rotations Z_R."""
    meas_translations: np.ndarray
    """(m, d) fp64 measured relative translations Z_t."""
    information: np.ndarray
    """(m, k, k) fp64 information matrices in g2o order (translation block first), k = 3 (2D) or 6 (3D)."""
    fixed: np.ndarray
    """(n,) bool: poses held constant (gauge). Defaults to the first pose if the file names none."""
    has_initial_guess: bool = True
    """False when the file had no vertices (the poses are then an odometry/spanning-tree guess)."""
    source: str = "<memory>"
    """Where the graph came from (for messages)."""
    edge_lines: np.ndarray | None = None
    """(m,) 1-based line numbers of the edges in ``source`` (for messages), if read from a file."""
    warnings: dict = field(default_factory=dict)
    """Reader warnings, e.g. ``{"unknown_tags": {"EQUIV": 40}}``."""

    # -- sizes -------------------------------------------------------------------------------------------
    @property
    def num_poses(self) -> int:
        return int(self.rotations.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_i.shape[0])

    @property
    def tangent_dim(self) -> int:
        """Degrees of freedom per pose: 3 (2D) or 6 (3D)."""
        return 3 if self.dim == 2 else 6

    def copy(self) -> PoseGraph:
        import copy

        return copy.deepcopy(self)

    def with_poses(self, rotations: np.ndarray, translations: np.ndarray) -> PoseGraph:
        g = self.copy()
        g.rotations = np.array(rotations, dtype=np.float64)
        g.translations = np.array(translations, dtype=np.float64)
        return g

    # -- checks ------------------------------------------------------------------------------------------
    def edge_label(self, k: int) -> str:
        loc = f" (line {int(self.edge_lines[k])})" if self.edge_lines is not None else ""
        return f"edge {int(self.ids[self.edge_i[k]])}->{int(self.ids[self.edge_j[k]])}{loc}"

    def validate(self) -> None:
        """Check finiteness, edge indices, information matrices and that every pose is anchored to a fixed one."""
        n = self.num_poses
        for name in ("edge_i", "edge_j"):
            idx = getattr(self, name)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise GaugeError(f"{self.source}: {name} refers to pose indices outside 0..{n - 1}")
        if not np.all(np.isfinite(self.rotations)) or not np.all(np.isfinite(self.translations)):
            bad = np.where(
                ~(np.isfinite(self.rotations).all(axis=(1, 2)) & np.isfinite(self.translations).all(axis=1))
            )[0]
            raise NonFiniteError(f"{self.source}: poses {self.ids[bad[:10]].tolist()} have NaN/inf values")
        check_information(self.information, self)
        check_connected(self)


def indefinite_edges(information: np.ndarray) -> np.ndarray:
    """Indices of information matrices that are not positive definite (smallest eigenvalue <= 0)."""
    if information.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    # One Cholesky per matrix of Ω - τI, τ = 1e-12 x (Ω's largest absolute row sum >= max|eig|), in a compiled
    # loop (0.05 us a matrix; numpy's batched eigensolve, 1.5 us): it breaks down on every matrix whose
    # smallest eigenvalue is at most 1e-12 of its largest |eigenvalue| and on few others, which the eigensolve
    # then clears or names.
    M = np.ascontiguousarray(information, dtype=np.float64)
    fails = np.empty(M.shape[0], dtype=np.bool_)
    shifted_cholesky_fails(M, 1e-12, fails)
    unsure = np.nonzero(fails)[0]
    if unsure.size == 0:
        return unsure.astype(np.int64)
    M = M[unsure]
    eig = np.linalg.eigvalsh(M)
    scale = np.maximum(np.abs(eig).max(axis=1), 1e-300)
    return unsure[eig[:, 0] <= 1e-12 * scale].astype(np.int64)


def check_information(information: np.ndarray, graph: PoseGraph | None = None) -> None:
    """Raise :class:`InformationMatrixError` for NaN/inf, non-symmetric or non-positive-definite matrices."""
    label = (lambda k: graph.edge_label(k)) if graph is not None else (lambda k: f"edge #{k}")
    src = graph.source if graph is not None else "<memory>"
    finite = np.isfinite(information).all(axis=(1, 2))
    if not finite.all():
        k = int(np.where(~finite)[0][0])
        raise InformationMatrixError(f"{src}: {label(k)} has a NaN/inf information entry")
    asym = np.abs(information - np.swapaxes(information, 1, 2)).max(axis=(1, 2))
    tol = 1e-9 * np.maximum(np.abs(information).max(axis=(1, 2)), 1.0)
    if (asym > tol).any():
        k = int(np.where(asym > tol)[0][0])
        raise InformationMatrixError(f"{src}: {label(k)} has a non-symmetric information matrix")
    bad = indefinite_edges(information)
    if bad.size:
        raise InformationMatrixError(
            f"{src}: {bad.size} of {information.shape[0]} information matrices are not positive definite, "
            f"first: {label(int(bad[0]))}. The cost 0.5 eᵀΩe would be unbounded below. Repair them with "
            "`repair='nearest'` (nearest positive-definite matrix) or `repair='isotropic'` (SE-Sync-style "
            "isotropic weights), on the command line --repair-information nearest|isotropic"
        )


def check_connected(graph: PoseGraph) -> None:
    """Raise :class:`GaugeError` naming the poses that no chain of edges ties to a fixed pose."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = graph.num_poses
    if not graph.fixed.any():
        raise GaugeError(f"{graph.source}: no pose is fixed; fix at least one (the gauge) with FIX or fixed=[...]")
    adj = sp.coo_matrix((np.ones(graph.num_edges), (graph.edge_i, graph.edge_j)), shape=(n, n))
    _, labels = connected_components(adj, directed=False)
    anchored = np.isin(labels, np.unique(labels[graph.fixed]))
    if not anchored.all():
        free = graph.ids[~anchored]
        shown = ", ".join(str(int(v)) for v in free[:20]) + (" ..." if free.size > 20 else "")
        raise GaugeError(
            f"{graph.source}: {free.size} pose(s) are not connected by edges to a fixed pose, so their "
            f"position is undetermined: vertex ids {shown}. Add edges to them, fix one of them, or remove them.",
            unconstrained=[int(v) for v in free],
        )


def repair_information(information: np.ndarray, method: str) -> tuple[np.ndarray, int]:
    """Return (repaired copy, number of matrices changed).

    ``nearest``: the nearest symmetric positive-definite matrix in Frobenius norm (eigenvalues clipped to
    ``1e-6 * largest``), only for the matrices that need it; ``isotropic``: SE-Sync-style weights
    kappa_t I (translation) and kappa_R I (rotation), kappa = mean of the block's diagonal, for every edge.
    """
    info = np.array(information, dtype=np.float64)
    if method == "nearest":
        bad = indefinite_edges(info)
        if bad.size:
            w, V = np.linalg.eigh(info[bad])
            w = np.maximum(w, 1e-6 * w.max(axis=1, keepdims=True))
            info[bad] = (V * w[:, None, :]) @ np.swapaxes(V, 1, 2)
        return info, int(bad.size)
    if method == "isotropic":
        k = info.shape[1]
        h = k // 2 if k == 6 else 2
        out = np.zeros_like(info)
        tt = np.trace(info[:, :h, :h], axis1=1, axis2=2) / h
        rr = np.trace(info[:, h:, h:], axis1=1, axis2=2) / (k - h)
        out[:, :h, :h] = tt[:, None, None] * np.eye(h)
        out[:, h:, h:] = rr[:, None, None] * np.eye(k - h)
        changed = int(np.count_nonzero(np.abs(out - info).max(axis=(1, 2)) > 0))
        return out, changed
    raise ValueError(f"unknown repair method {method!r}; expected 'nearest' or 'isotropic'")
