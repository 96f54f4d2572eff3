"""fp64 Schur-complement solver of bundle adjustment (the accuracy baseline).

Eliminates the points (their 3x3 diagonal blocks are inverted exactly), solves the dense reduced camera
system with LAPACK's Cholesky and back-substitutes the points. Everything runs in fp64 whatever the
policy's residual precision was (an fp32 linearization is widened exactly).

Decision: the reduced camera system is dense. BA windows and the BAL files used here have at most a few
hundred cameras (49 x 9 = 441 unknowns), where a dense factorization takes well under a millisecond and
beats any sparse one; above ``MAX_DENSE`` unknowns the solver refuses and names the CG solver instead.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg

from ..errors import ConfigError
from ..kernels import normal_matvec
from ..kernels.schur import back_substitute, point_blocks, reduce_cameras
from .base import Damping, LinearResult, LinearSolver, LinearStatus, MemoryUse
from .linearization import Linearization, model_decrease

_F64 = np.dtype(np.float64)

SCHUR_KERNELS = ("schur", _F64, _F64, False)
"""The Schur solver's compiled kernels (point blocks, reduction, back-substitution) as one warm-up entry."""

MAX_DENSE = 6000
"""Largest reduced camera system (cameras x camera tangent size) factored densely."""


def group_by_point(ib: np.ndarray, npts: int):
    """(order, ptr): rows grouped by point, ``order[ptr[j]:ptr[j+1]]`` the rows of point j (fixed: none)."""
    keep = np.flatnonzero(ib >= 0)
    order = keep[np.argsort(ib[keep], kind="stable")].astype(np.int64)
    counts = np.bincount(ib[keep], minlength=npts)
    ptr = np.zeros(npts + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return order, ptr


class SchurSolver(LinearSolver):
    """Levenberg-Marquardt step by landmark elimination: (S δc = b, then δp), all fp64."""

    name = "schur"
    initial_lambda = 1e-5
    """Used only when ``LMConfig.initial_lambda`` is None (bundle adjustment's defaults set 1e-4, as Ceres)."""

    def __init__(self, nc: int, pc: int, npts: int):
        if nc * pc > MAX_DENSE:
            raise ConfigError(
                f"the reduced camera system has {nc * pc} unknowns (> {MAX_DENSE}), too many for the "
                "dense Schur solver; use solver='cg' (CGNR)"
            )
        self.nc, self.pc, self.npts = nc, pc, npts
        self._groups: tuple[np.ndarray, np.ndarray] | None = None
        self._groups_for: np.ndarray | None = None
        self._memory = MemoryUse()

    def memory(self) -> MemoryUse:
        return self._memory

    def kernel_specs(self) -> set:
        return {("normal_matvec", _F64, _F64, False), SCHUR_KERNELS}  # normal_matvec: the true residual

    def solve(self, lin: Linearization, damping: Damping, rtol: float = 0.0) -> LinearResult:
        t0 = time.perf_counter()
        if self._groups is None or lin.ib is not self._groups_for:
            self._groups, self._groups_for = group_by_point(lin.ib, lin.nb), lin.ib
        order, ptr = self._groups
        g = lin.gradient(np.float64)
        colsq = lin.column_sq_norms()
        d = damping.diagonal(colsq)
        A = np.ascontiguousarray(lin.A, dtype=np.float64)
        B = np.ascontiguousarray(lin.B, dtype=np.float64)
        d = np.where(colsq > 0, d, 1.0)  # decoupled columns (a frozen BAL pose): step exactly 0
        da, db = lin.split(d)
        U, Vinv, WT = point_blocks(
            A, lin.ia, B, lin.ib, lin.nv, lin.nb, np.ascontiguousarray(da), np.ascontiguousarray(db)
        )
        ga, gb = lin.split(g)
        S, b = reduce_cameras(U, Vinv, WT, lin.ia, order, ptr, np.ascontiguousarray(ga), np.ascontiguousarray(gb))
        t1 = time.perf_counter()
        status = LinearStatus.CONVERGED
        try:
            dc = scipy.linalg.cho_solve(
                scipy.linalg.cho_factor(S, lower=True, check_finite=False), b, check_finite=False
            )
        except (np.linalg.LinAlgError, ValueError):
            status = LinearStatus.NONFINITE
            dc = np.zeros(lin.nv * lin.p)
        dp = back_substitute(Vinv, WT, lin.ia, order, ptr, np.ascontiguousarray(gb), dc.reshape(lin.nv, lin.p))
        delta = np.concatenate([dc, dp.reshape(-1)])
        t2 = time.perf_counter()
        if not np.all(np.isfinite(delta)):
            return LinearResult(
                np.zeros_like(delta),
                1,
                float("nan"),
                LinearStatus.NONFINITE,
                float("nan"),
                times={"schur": t1 - t0, "factor_solve": t2 - t1},
            )
        self._memory = MemoryUse(reduced_system_bytes=S.nbytes, point_blocks_bytes=Vinv.nbytes + WT.nbytes)
        # The true relative residual of the damped normal equations, ‖(JᵀJ + D) δ + g‖ / ‖g‖, in fp64.
        Hd = np.empty_like(delta)
        (pa, pb), (oa, ob) = lin.split(delta), lin.split(Hd)
        normal_matvec(A, lin.ia, B, lin.ib, pa, pb, oa, ob)
        res = float(np.linalg.norm(Hd + d * delta + g)) / max(float(np.linalg.norm(g)), 1e-300)
        return LinearResult(
            delta, 1, res, status, model_decrease(lin, g, delta), times={"schur": t1 - t0, "factor_solve": t2 - t1}
        )
