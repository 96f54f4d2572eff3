"""Seeded pose-graph simulators with ground truth.

Each simulator draws a true trajectory, an odometry chain (edge k joins poses k and k+1, k = 0..n-2) and
loop closures, then noisy measurements

    Z_R = R_true_rel Exp(w),  w ~ N(0, rotation_sigma^2 I)      (2D: w is an angle)
    Z_t = t_true_rel + v,     v ~ N(0, translation_sigma^2 I)

with information matrices that are the inverse covariance of the g2o error this noise produces at the
truth (g2o order, translation block first):

* translation block ``I / translation_sigma^2``;
* rotation block ``4 I / rotation_sigma^2`` in 3D (the g2o error is the quaternion vector ~ theta/2),
  ``1 / rotation_sigma^2`` in 2D (the g2o error is the angle itself).

A zero sigma gives exact measurements; the corresponding block then gets unit information (a finite
stand-in for "infinitely certain"). The initial guess is the composition of the noisy odometry from the
true first pose, so it drifts; pose 0 is fixed. Everything is drawn from ``numpy.random.default_rng(seed)``
so a seed reproduces the graph bit for bit.

Kinds (steps are about 1 m long in all of them):

``"manhattan"`` (2D, or planar in 3D with ``dim=3``)
    a random walk on a unit grid inside a square (Olson's Manhattan world): go straight or turn by
    +-90 degrees then step one cell; loop closures between non-recent poses at most 1 m apart (revisits).
``"grid3d"`` (3D)
    the same on a cubic lattice; the pose's x axis points along the motion.
``"sphere"`` (3D)
    g2o's ``create_sphere`` layout: rings of ``round(sqrt(n))`` poses stacked into a sphere along a
    spiral, odometry around the rings, one loop closure from each pose to the pose below it.
``"circle"`` (2D, or 3D)
    several laps around one circle; loop closures between each pose and the same place one lap earlier.

``loop_closure_prob`` is the probability that each candidate loop closure is kept (default: 0.5 for
manhattan/grid3d/circle, 1.0 for sphere as in g2o). For manhattan/grid3d at most 2 closures per pose are kept.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, check_seed
from ..lie import so2, so3
from ..problem.pose_graph import PoseGraph

__all__ = [
    "simulate_pose_graph",
    "SimulatedPoseGraph",
    "KINDS",
    "noisy_measurements",
    "edge_information",
    "compose_odometry",
]

KINDS = ("manhattan", "grid3d", "sphere", "circle")
_DIMS = {"manhattan": (2, 3), "grid3d": (3,), "sphere": (3,), "circle": (2, 3)}
_DEFAULT_LOOP_PROB = {"manhattan": 0.5, "grid3d": 0.5, "sphere": 1.0, "circle": 0.5}
_MIN_LOOP_GAP = 10  # manhattan/grid3d: no closures between poses fewer than this many steps apart
_MAX_LOOPS_PER_POSE = 2  # manhattan/grid3d: at most this many closures end at one pose
_LOOP_RADIUS = 1.0 + 1e-9


class SimulatedPoseGraph(NamedTuple):
    """What :func:`simulate_pose_graph` returns (unpacks as ``graph, truth_rotations, truth_translations``)."""

    graph: PoseGraph
    truth_rotations: np.ndarray
    """(n, d, d) true rotations."""
    truth_translations: np.ndarray
    """(n, d) true positions."""


def simulate_pose_graph(
    kind: str,
    num_poses: int,
    *,
    seed: int,
    translation_sigma: float = 0.05,
    rotation_sigma: float = 0.01,
    loop_closure_prob: float | None = None,
    dim: int | None = None,
) -> SimulatedPoseGraph:
    """Simulate a pose graph; returns ``(graph, truth_rotations, truth_translations)``.

    ``kind`` is one of :data:`KINDS`; ``dim`` defaults to the kind's natural dimension (2 for manhattan and
    circle, 3 for grid3d and sphere). Sigmas are in metres and radians.
    """
    where = "simulate_pose_graph"
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown pose-graph kind {kind!r}; expected one of {', '.join(KINDS)}")
    if dim is None:
        dim = _DIMS[kind][0]
    if dim not in _DIMS[kind]:
        raise ConfigError(f"{where}: kind {kind!r} supports dim in {_DIMS[kind]}, got dim={dim!r}")
    if isinstance(num_poses, bool) or not isinstance(num_poses, Integral) or num_poses < 2:
        raise ConfigError(f"{where}: num_poses must be an integer >= 2, got {num_poses!r}")
    num_poses = int(num_poses)
    seed = check_seed(seed, f"{where}: seed")
    for name, val in (("translation_sigma", translation_sigma), ("rotation_sigma", rotation_sigma)):
        if isinstance(val, bool) or not isinstance(val, Real) or not math.isfinite(val) or val < 0:
            raise ConfigError(f"{where}: {name} must be a finite number >= 0, got {val!r}")
    if loop_closure_prob is None:
        loop_closure_prob = _DEFAULT_LOOP_PROB[kind]
    p = loop_closure_prob
    if isinstance(p, bool) or not isinstance(p, Real) or not 0 <= p <= 1:
        raise ConfigError(f"{where}: loop_closure_prob must be a number in [0, 1], got {loop_closure_prob!r}")

    rng = np.random.default_rng(seed)
    n = num_poses
    if kind == "manhattan":
        R, t, cand = _manhattan(n, rng)
    elif kind == "grid3d":
        R, t, cand = _grid3d(n, rng)
    elif kind == "sphere":
        R, t, cand = _sphere(n)
    else:
        R, t, cand = _circle(n)
    if R.shape[-1] == 2 and dim == 3:
        R, t = _lift(R, t)

    loops = _select_loops(
        cand, loop_closure_prob, rng, cap=_MAX_LOOPS_PER_POSE if kind in ("manhattan", "grid3d") else None
    )
    odo = np.arange(n - 1, dtype=np.int64)
    ei = np.concatenate([odo, loops[:, 0]])
    ej = np.concatenate([odo + 1, loops[:, 1]])

    Zr, Zt = noisy_measurements(R, t, ei, ej, translation_sigma, rotation_sigma, rng)
    info = edge_information(dim, translation_sigma, rotation_sigma, ei.size)
    R0, t0 = compose_odometry(R[0], t[0], Zr[: n - 1], Zt[: n - 1])

    fixed = np.zeros(n, dtype=bool)
    fixed[0] = True
    graph = PoseGraph(
        dim=dim,
        ids=np.arange(n, dtype=np.int64),
        rotations=R0,
        translations=t0,
        edge_i=ei,
        edge_j=ej,
        meas_rotations=Zr,
        meas_translations=Zt,
        information=info,
        fixed=fixed,
        has_initial_guess=True,
        source=f"<sim {kind} n={n} dim={dim} seed={seed}>",
    )
    return SimulatedPoseGraph(graph, R, t)


# -- trajectories ----------------------------------------------------------------------------------------
def _manhattan(n: int, rng: np.random.Generator):
    side = max(3, int(round(math.sqrt(n / 2.0))))
    dirs = ((1, 0), (0, 1), (-1, 0), (0, -1))
    u = rng.random(n).tolist()
    order = rng.random((n, 3)).argsort(axis=1).tolist()  # random fallback order of (left, right, back)
    fallback = (1, 3, 2)
    heading = [0] * n
    pos = [(side // 2, side // 2)] * n
    h, (x, y) = 0, pos[0]
    for k in range(1, n):
        uk = u[k]
        turn = 0 if uk < 0.7 else (1 if uk < 0.85 else 3)
        for tr in [turn] + [fallback[o] for o in order[k]]:
            nh = (h + tr) % 4
            qx, qy = x + dirs[nh][0], y + dirs[nh][1]
            if 0 <= qx < side and 0 <= qy < side:
                break
        h, x, y = nh, qx, qy
        heading[k] = h
        pos[k] = (x, y)
    R = np.rint(so2.exp(np.array(heading) * (np.pi / 2.0)))  # exact 0/+-1 entries
    t = np.array(pos, dtype=np.float64)
    return R, t, _near_pairs(t)


# Lattice directions by id: 2*axis + (0 for +, 1 for -); id ^ 1 is the opposite direction.
_DIRS3 = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


def _grid3d(n: int, rng: np.random.Generator):
    side = max(3, int(round((n / 2.0) ** (1.0 / 3.0))))
    dirs = [tuple(int(v) for v in d) for d in _DIRS3]
    u = rng.random(n).tolist()
    pick = rng.random((n, 4)).argsort(axis=1).tolist()
    c0, c1, c2 = 0, 2, 4  # body axes (x, y, z) as direction ids: start with R = I
    p = [side // 2] * 3
    cols = [(c0, c1, c2)] * n
    pos = [tuple(p)] * n
    for k in range(1, n):
        # Candidates: straight first (prob 0.6), then the 4 perpendicular directions in random order,
        # reversing only when boxed in.
        side_dirs = (c1, c1 ^ 1, c2, c2 ^ 1)
        perp = [side_dirs[i] for i in pick[k]]
        cands = ([c0] + perp) if u[k] < 0.6 else (perp + [c0])
        cands.append(c0 ^ 1)
        for dn in cands:
            q = [p[0] + dirs[dn][0], p[1] + dirs[dn][1], p[2] + dirs[dn][2]]
            if 0 <= q[0] < side and 0 <= q[1] < side and 0 <= q[2] < side:
                break
        if dn == c0:
            pass
        elif dn == c0 ^ 1:  # 180 degrees about the body z axis
            c0, c1 = c0 ^ 1, c1 ^ 1
        elif dn >> 1 == c1 >> 1:  # dn = s*c1: 90 degrees about c2: c0 -> dn, c1 -> -s*c0
            c0, c1 = dn, (c0 ^ 1) if dn == c1 else c0
        else:  # dn = s*c2: 90 degrees about -c1: c0 -> dn, c2 -> -s*c0
            c0, c2 = dn, (c0 ^ 1) if dn == c2 else c0
        p = q
        cols[k] = (c0, c1, c2)
        pos[k] = tuple(p)
    R = np.swapaxes(_DIRS3[np.array(cols)], 1, 2).astype(np.float64)  # R[k][:, a] = direction cols[k][a]
    t = np.array(pos, dtype=np.float64)
    return R, t, _near_pairs(t)


def _sphere(n: int):
    per_ring = max(8, int(round(math.sqrt(n))))
    rings = -(-n // per_ring)
    radius = per_ring / (2.0 * np.pi)
    idx = np.arange(n)
    yaw = -np.pi + 2.0 * np.pi * (idx % per_ring) / per_ring
    pitch = -0.5 * np.pi + idx * np.pi / (rings * per_ring)
    R = so3.exp(np.stack([np.zeros(n), np.zeros(n), yaw], axis=1)) @ so3.exp(
        np.stack([np.zeros(n), pitch, np.zeros(n)], axis=1)
    )
    t = R[:, :, 0] * radius
    j = np.arange(per_ring, n, dtype=np.int64)
    return R, t, np.stack([j - per_ring, j], axis=1)


def _circle(n: int):
    laps = max(2, int(round(math.sqrt(n) / 5.0)))
    per_lap = -(-n // laps)
    radius = per_lap / (2.0 * np.pi)
    phi = 2.0 * np.pi * np.arange(n) / per_lap
    R = so2.exp(phi + 0.5 * np.pi)
    t = radius * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    j = np.arange(per_lap, n, dtype=np.int64)
    return R, t, np.stack([j - per_lap, j], axis=1)


def _near_pairs(t: np.ndarray) -> np.ndarray:
    """Pairs (i, j), i < j - gap, of poses at most ~1 m apart, sorted."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(t).query_pairs(_LOOP_RADIUS, output_type="ndarray").astype(np.int64)
    if pairs.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 1] - pairs[:, 0] >= _MIN_LOOP_GAP]
    return pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]


def _select_loops(cand: np.ndarray, prob: float, rng: np.random.Generator, cap: int | None) -> np.ndarray:
    cand = np.asarray(cand, dtype=np.int64).reshape(-1, 2)
    keep = rng.random(cand.shape[0]) < prob
    sel = cand[keep]
    if cap is not None and sel.shape[0]:
        sel = sel[rng.permutation(sel.shape[0])]
        sel = sel[np.argsort(sel[:, 1], kind="stable")]
        first = np.r_[True, sel[1:, 1] != sel[:-1, 1]]
        start = np.maximum.accumulate(np.where(first, np.arange(sel.shape[0]), 0))
        sel = sel[np.arange(sel.shape[0]) - start < cap]
        sel = sel[np.lexsort((sel[:, 0], sel[:, 1]))]
    return sel


def _lift(R2: np.ndarray, t2: np.ndarray):
    n = R2.shape[0]
    R = np.zeros((n, 3, 3))
    R[:, :2, :2] = R2
    R[:, 2, 2] = 1.0
    t = np.zeros((n, 3))
    t[:, :2] = t2
    return R, t


# -- measurements ----------------------------------------------------------------------------------------
def noisy_measurements(R, t, ei, ej, sigma_t, sigma_r, rng):
    """Relative poses of edges ``ei -> ej`` with noise: ``Z_R = R_rel Exp(w)``, ``Z_t = t_rel + v``, ``w`` and
    ``v`` normal with std ``sigma_r`` (rad) and ``sigma_t`` (m) per axis. Returns (Z_R, Z_t)."""
    d = R.shape[-1]
    m = ei.size
    Rit = np.swapaxes(R[ei], 1, 2)
    R_rel = Rit @ R[ej]
    t_rel = np.einsum("mab,mb->ma", Rit, t[ej] - t[ei])
    if d == 3:
        w = rng.normal(0.0, 1.0, (m, 3)) * sigma_r
        Zr = R_rel @ so3.exp(w)
    else:
        w = rng.normal(0.0, 1.0, m) * sigma_r
        Zr = R_rel @ so2.exp(w)
    Zt = t_rel + rng.normal(0.0, 1.0, (m, d)) * sigma_t
    return Zr, Zt


def edge_information(dim, sigma_t, sigma_r, m):
    """(m, k, k) information of the noise of :func:`noisy_measurements` in the g2o error convention:
    ``I / sigma_t^2`` and ``4 I / sigma_r^2`` in 3D (quaternion-vector error), ``1 / sigma_r^2`` in 2D."""
    it = 1.0 / sigma_t**2 if sigma_t > 0 else 1.0
    if dim == 3:
        ir = 4.0 / sigma_r**2 if sigma_r > 0 else 1.0
        diag = np.array([it, it, it, ir, ir, ir])
    else:
        ir = 1.0 / sigma_r**2 if sigma_r > 0 else 1.0
        diag = np.array([it, it, ir])
    return np.broadcast_to(np.diag(diag), (m, diag.size, diag.size)).copy()


def compose_odometry(R0, t0, Zr, Zt):
    """Poses X_0 = (R0, t0), X_{k+1} = X_k Z_k, via a log-depth prefix product of homogeneous matrices."""
    d = R0.shape[-1]
    n = Zr.shape[0] + 1
    T = np.zeros((n, d + 1, d + 1))
    T[:, d, d] = 1.0
    T[0, :d, :d], T[0, :d, d] = R0, t0
    T[1:, :d, :d], T[1:, :d, d] = Zr, Zt
    off = 1
    while off < n:
        T[off:] = T[:-off] @ T[off:]
        off *= 2
    return T[:, :d, :d].copy(), T[:, :d, d].copy()
