"""Initial guess by composing relative measurements along a spanning tree ("odometry" initialisation).

The tree is a minimum spanning tree of the pose graph under the edge weight ``|id_i - id_j|`` (Prim's
algorithm from the root, ties broken by edge order in the file). For the usual SLAM graph whose
consecutive ids are joined by odometry edges, this tree *is* the odometry chain, so the guess is the dead-
reckoning trajectory; loop closures are used only where odometry is missing.
"""

from __future__ import annotations

import heapq

import numpy as np

from ..errors import GaugeError
from ..problem.pose_graph import PoseGraph

__all__ = ["spanning_tree_guess"]


def spanning_tree_guess(graph: PoseGraph, root: int | None = None) -> PoseGraph:
    """Return a copy of ``graph`` whose poses are composed from the edge measurements along a spanning tree.

    Parameters
    ----------
    graph:
        Any pose graph (2D or 3D). Only its edges, measurements and the root's pose are used.
    root:
        The *vertex id* (as in ``graph.ids``) where the tree starts; it keeps its current pose. Default:
        the first fixed pose, or the pose with the lowest id when none is fixed.

    Traversing edge ``i -> j`` with measurement ``Z`` forwards sets ``X_j = X_i * Z``; backwards it sets
    ``X_i = X_j * Z^-1``. Poses in components that the root cannot reach are composed from the lowest-index
    pose of their component, which keeps its current pose; ``warnings["spanning_tree_components"]`` then
    records the number of components (such a graph fails :meth:`PoseGraph.validate` anyway).
    """
    g = graph.copy()
    n = g.num_poses
    if n == 0:
        return g
    if root is None:
        fixed = np.flatnonzero(np.asarray(g.fixed, dtype=bool))
        root_idx = int(fixed[0]) if fixed.size else 0
    else:
        pos = int(np.searchsorted(g.ids, root))
        if pos >= n or int(g.ids[pos]) != int(root):
            raise GaugeError(
                f"{g.source}: spanning-tree root {root!r} is not a vertex id of this graph "
                f"(ids run from {int(g.ids[0])} to {int(g.ids[-1])})"
            )
        root_idx = pos

    R = np.array(g.rotations, dtype=np.float64)
    t = np.array(g.translations, dtype=np.float64)
    ZR = np.asarray(g.meas_rotations, dtype=np.float64)
    Zt = np.asarray(g.meas_translations, dtype=np.float64)
    ids = g.ids.tolist()
    ei = g.edge_i.tolist()
    ej = g.edge_j.tolist()

    # adjacency: adj[u] = list of (weight, edge k, neighbour v, forward?)
    adj: list[list[tuple[int, int, int, bool]]] = [[] for _ in range(n)]
    for k, (a, b) in enumerate(zip(ei, ej)):
        if a == b:
            continue
        w = abs(ids[a] - ids[b])
        adj[a].append((w, k, b, True))
        adj[b].append((w, k, a, False))

    visited = bytearray(n)
    components = 0
    for start in [root_idx, *range(n)]:
        if visited[start]:
            continue
        components += 1
        visited[start] = 1
        heap = [(w, k, start, v, fwd) for (w, k, v, fwd) in adj[start]]
        heapq.heapify(heap)
        while heap:
            _, k, u, v, fwd = heapq.heappop(heap)
            if visited[v]:
                continue
            visited[v] = 1
            if fwd:  # X_v = X_u * Z
                R[v] = R[u] @ ZR[k]
                t[v] = t[u] + R[u] @ Zt[k]
            else:  # X_v = X_u * Z^-1 = (R_u Z_R^T, t_u - R_v Z_t)
                R[v] = R[u] @ ZR[k].T
                t[v] = t[u] - R[v] @ Zt[k]
            for w, k2, x, f2 in adj[v]:
                if not visited[x]:
                    heapq.heappush(heap, (w, k2, v, x, f2))
    g.rotations = R
    g.translations = t
    if components > 1:
        g.warnings = dict(g.warnings)
        g.warnings["spanning_tree_components"] = components
    return g
