"""Shared test helpers: the one tolerance rule, derived from the unit roundoff of the precision under test."""
from __future__ import annotations

import numpy as np

from mixslam.precision import Precision, PrecisionPolicy

#: The formats a linear solve's answer depends on. The preconditioner's storage and arithmetic are left out:
#: they change how fast CG converges, not what it converges to.
SOLUTION_FIELDS = ("jacobian_storage", "jacobian_accumulate", "rhs", "krylov")


def unit_roundoff(precision: str | Precision | PrecisionPolicy) -> float:
    """u of a format; of a policy, the largest u among the formats its linear solve's answer depends on."""
    if isinstance(precision, PrecisionPolicy):
        return max(getattr(precision, name).unit_roundoff for name in SOLUTION_FIELDS)
    return Precision.parse(precision).unit_roundoff


def tol_for(precision: str | Precision | PrecisionPolicy, n: int = 1, kappa: float = 1.0, c: float = 10.0) -> float:
    """Relative tolerance c · n · u · κ: the forward error bound of a computation whose backward error is n
    roundings of unit roundoff u (one per term of a length-n sum, or one per stored operand entry), on a problem
    of condition number κ; c is the safety factor (rounding errors rarely add up to the worst case, and never
    more than the first-order bound by much when n · u · κ < 1)."""
    return c * n * unit_roundoff(precision) * kappa


def random_ba(seed: int, nc: int = 5, npts: int = 30, pc: int = 6, fixed_cam: int = 0, fixed_pt: int | None = None,
              spread: float = 1.0):
    """A BA-like linearization: 2-row observations of (camera, point), each point seen by 2..nc cameras; camera
    ``fixed_cam`` (and point ``fixed_pt``) fixed; camera columns scaled by exp(spread · N(0, 1))."""
    from mixslam.linear.linearization import Linearization

    rng = np.random.default_rng(seed)
    rows_c, rows_p = [], []
    for j in range(npts):
        for c in rng.choice(nc, size=rng.integers(2, nc + 1), replace=False):
            rows_c.append(c)
            rows_p.append(j)
    cam, pt = np.array(rows_c), np.array(rows_p)
    m = cam.size
    var_c = np.where(np.arange(nc) == fixed_cam, -1, np.cumsum(np.arange(nc) != fixed_cam) - 1)
    var_p = np.arange(npts) if fixed_pt is None else np.where(
        np.arange(npts) == fixed_pt, -1, np.cumsum(np.arange(npts) != fixed_pt) - 1)
    A = rng.normal(size=(m, 2, pc)) * np.exp(rng.normal(size=pc) * spread)[None, None, :]
    B = rng.normal(size=(m, 2, 3))
    r = rng.normal(size=(m, 2))
    nb = npts if fixed_pt is None else npts - 1
    return Linearization(r, A, B, var_c[cam].astype(np.int64), var_p[pt].astype(np.int64), nc - 1, pc, nb, 3)


def write_small_bal(path, nc: int, npts: int, seed: int):
    """A small synthetic BAL problem file (nc cameras seeing npts points, noisy pixels, perturbed start)."""
    from mixslam.io.bal import write_bal
    from mixslam.problem.bundle import BundleData
    from mixslam.problem.camera import bal_project

    rng = np.random.default_rng(seed)
    cams = np.zeros((nc, 9))
    cams[:, :3] = rng.normal(scale=0.1, size=(nc, 3))
    cams[:, 3:6] = rng.normal(scale=0.3, size=(nc, 3))
    cams[:, 6] = 600.0
    pts = rng.normal(size=(npts, 3)) + np.array([0.0, 0.0, -6.0])
    ci, pi = np.repeat(np.arange(nc), npts), np.tile(np.arange(npts), nc)
    obs = bal_project(cams[ci], pts[pi])[0] + rng.normal(scale=0.5, size=(ci.size, 2))
    start = BundleData("bal", cams + rng.normal(scale=1e-3, size=cams.shape) * [1, 1, 1, 1, 1, 1, 0, 0, 0],
                       pts + rng.normal(scale=0.02, size=pts.shape), obs, ci, pi)
    write_bal(path, start)
    return path


def depth_guard_case(model: str):
    """One camera and five observations whose points sit at P.z = 0, -0.0, tiny behind (1e-12), behind (far)
    and in front: the depth guard's cases, for the CPU and the device reprojections (``bal`` or ``pinhole``)."""
    from mixslam.problem.bundle import BundleData

    if model == "bal":
        cams = np.zeros((1, 9))
        cams[0, 6:9] = [500.0, 0.1, 0.05]
        pts = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, -0.0], [0.3, 0.2, 1e-12], [1.0, -2.0, 5.0], [0.4, 0.3, -6.0]])
        K = np.zeros(4)
    else:
        cams = np.concatenate([np.eye(3).ravel(), np.zeros(3)])[None]
        pts = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, -0.0], [0.3, 0.2, -1e-12], [1.0, -2.0, -5.0], [0.4, 0.3, 6.0]])
        K = np.array([500.0, 510.0, 320.0, 240.0])
    m = len(pts)
    return BundleData(model, cams, pts, np.full((m, 2), 7.0), np.zeros(m, int), np.arange(m), intrinsics=K)
