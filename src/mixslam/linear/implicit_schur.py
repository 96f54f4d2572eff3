"""Iterative Schur (implicit reduced camera system) for bundle adjustment with many cameras.

Conjugate gradients on the reduced camera system S δc = b without forming S (Ceres' ITERATIVE_SCHUR): every
product S x = (AᵀA + D_c) x - AᵀB V⁻¹ BᵀA x is two passes over the stored Jacobian blocks
(:func:`~mixslam.kernels.schur.implicit_schur_matvec`), preconditioned by the camera diagonal blocks of S
(Schur-Jacobi). Memory is O(observations + cameras · pc²), so it serves reduced systems far beyond the dense
Schur solver's :data:`~mixslam.linear.schur.MAX_DENSE`.

Precision decisions (all from the policy): the column-scaled Jacobian blocks the products read are stored in
``jacobian_storage`` (the ``mixed`` preset: fp16 bits, read with the hardware conversion) and the products
accumulate in ``jacobian_accumulate``; the Krylov vectors, the products' point inverses and the Schur-Jacobi
preconditioner are held in the ``krylov`` format (fp32 or fp64; a 16-bit ``preconditioner_storage`` is not
applied to the small camera blocks); the reduced right-hand
side b = -g_c + W V⁻¹ g_p and the back-substitution δp = V⁻¹(-g_p - Wᵀ δc) use the unquantized Jacobian in
fp64 (as the right-hand side of every policy). 16-bit arithmetic (the naive ``fp16`` preset) is refused: CG
on a 16-bit reduced system does not converge. The scaling is the CG solvers' power-of-two Jacobi scaling
(:func:`~mixslam.linear.operators.column_scale`), so fp16 storage neither overflows nor underflows.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import ConfigError
from ..kernels.schur import implicit_back, implicit_point_blocks, implicit_rhs, implicit_schur_matvec
from ..precision import PrecisionPolicy, is_16bit
from ..storage import kernel_types
from .base import Damping, LinearResult, LinearStatus, MemoryUse
from .cgnr import KrylovSolver
from .config import CGConfig
from .linearization import Linearization, model_decrease
from .operators import column_scale, power_of_two

__all__ = ["ImplicitSchurSolver"]

_F64 = np.dtype(np.float64)


class ImplicitSchurSolver(KrylovSolver):
    """PCG on the implicit reduced camera system with the Schur-Jacobi preconditioner."""

    name = "iterative_schur"
    initial_lambda = 1e-5
    layout = "rows"  # its kernels read the row blocks

    def __init__(self, policy: PrecisionPolicy, config: CGConfig | None = None):
        for field in ("jacobian_accumulate", "krylov", "preconditioner_accumulate"):
            if is_16bit(getattr(policy, field)):
                raise ConfigError(
                    f"the iterative_schur solver needs fp32 or fp64 arithmetic; policy {policy.name!r} has "
                    f"{field}={getattr(policy, field).value} (use 'cg' for 16-bit arithmetic)"
                )
        super().__init__(policy, config)
        self.dtype = np.dtype(policy.krylov.compute_dtype)

    def kernel_specs(self) -> set:
        pol = self.policy
        store_dt, _, _ = kernel_types(pol.jacobian_storage, pol.jacobian_accumulate)
        return {("implicit_schur", store_dt, self.dtype, False), ("implicit_schur", _F64, _F64, False)}

    def solve(self, lin: Linearization, damping: Damping, rtol: float) -> LinearResult:
        times: dict = {}
        t0 = time.perf_counter()
        if lin.pb != 3:
            raise ConfigError("the iterative_schur solver is for bundle adjustment (a camera and a point set)")
        colsq = lin.column_sq_norms()
        scale = column_scale(colsq)
        g = lin.gradient(np.float64)
        d = np.where(colsq > 0, damping.diagonal(colsq), 1.0)  # unscaled damping; a frozen column moves 0
        ds = d * scale * scale
        op, stats = self._stored_jacobian(lin, scale)
        dt = self.dtype
        # fp64 point inverses of the unquantized, unscaled Jacobian: the reduced right-hand side and the
        # back-substitution.
        A64, B64 = np.ascontiguousarray(lin.A, np.float64), np.ascontiguousarray(lin.B, np.float64)
        da, db = lin.split(d)
        Linv64 = np.empty((lin.nb, 3, 3))
        implicit_point_blocks(A64, lin.ia, B64, lin.ib, da, db, Linv64, np.empty((0, lin.p, lin.p)))
        ga, gb = lin.split(g)
        bc = np.empty((lin.nv, lin.p))
        tp = np.empty((lin.nb, 3))
        implicit_rhs(A64, lin.ia, B64, lin.ib, Linv64, -ga, -gb, bc, tp)
        # The products' point inverses and the Schur-Jacobi blocks in the Krylov format, from the stored
        # (scaled, possibly fp16) blocks.
        dsa, dsb = (np.ascontiguousarray(x, dt) for x in lin.split(ds))
        Linv = np.empty((lin.nb, 3, 3), dt)
        Mb = np.empty((lin.nv, lin.p, lin.p), dt)
        implicit_point_blocks(op.A, lin.ia, op.B, lin.ib, dsa, dsb, Linv, Mb)
        Minv = _spd_block_inverses(Mb)
        t1 = time.perf_counter()
        times["preconditioner"] = t1 - t0
        sa = lin.split(scale)[0]
        b = (sa * bc).reshape(-1)
        bnorm = float(np.linalg.norm(b))
        rhs_scale = float(power_of_two(1.0 / np.max(np.abs(b)))) if bnorm > 0 and np.isfinite(bnorm) else 1.0
        y = np.empty((lin.A.shape[0], 2), dt)
        tw = np.empty((lin.nb, 3), dt)

        def matvec(x: np.ndarray) -> np.ndarray:
            out = np.empty((lin.nv, lin.p), dt)
            implicit_schur_matvec(op.A, lin.ia, op.B, lin.ib, Linv, dsa, x.reshape(lin.nv, lin.p), out, y, tw)
            return out.reshape(-1)

        def precond(r: np.ndarray) -> np.ndarray:
            return np.einsum("cab,cb->ca", Minv, r.reshape(lin.nv, lin.p)).reshape(-1)

        x, iters, rel, status = _pcg(matvec, precond, (b * rhs_scale).astype(dt), rtol, self.config.max_iterations)
        t2 = time.perf_counter()
        times["cg"] = t2 - t1
        dc = sa * (x.astype(np.float64) / rhs_scale).reshape(lin.nv, lin.p)
        dp = np.empty((lin.nb, 3))
        implicit_back(A64, lin.ia, B64, lin.ib, Linv64, -gb, dc, dp, tp)
        delta = np.concatenate([dc.reshape(-1), dp.reshape(-1)])
        times["back_substitute"] = time.perf_counter() - t2
        self._memory = MemoryUse(
            jacobian_bytes=op.nbytes, preconditioner_bytes=Minv.nbytes, point_blocks_bytes=Linv.nbytes + Linv64.nbytes
        )
        if not np.all(np.isfinite(delta)):
            return LinearResult(np.zeros_like(delta), iters, float("nan"), LinearStatus.NONFINITE, float("nan"), stats)
        return LinearResult(delta, iters, rel, status, model_decrease(lin, g, delta), stats, times)


def _spd_block_inverses(M: np.ndarray) -> np.ndarray:
    """Inverses of the symmetric blocks (nc, p, p); a block that is not positive definite in its format (a
    camera no point constrains) is replaced by the inverse of its diagonal."""
    try:
        return np.linalg.inv(M)
    except np.linalg.LinAlgError:
        out = np.empty_like(M)
        for c in range(M.shape[0]):
            try:
                out[c] = np.linalg.inv(M[c])
            except np.linalg.LinAlgError:
                out[c] = np.diag(1.0 / np.maximum(np.abs(np.diag(M[c])), 1e-30))
        return out


def _pcg(matvec, precond, b: np.ndarray, rtol: float, max_iterations: int):
    """Preconditioned CG in the dtype of ``b`` to ‖b - S x‖ ≤ rtol ‖b‖ (recurrence residual)."""
    x = np.zeros_like(b)
    bnorm = float(np.linalg.norm(b))
    if bnorm == 0.0:
        return x, 0, 0.0, LinearStatus.CONVERGED
    r = b.copy()
    z = precond(r)
    p = z.copy()
    rz = float(r @ z)
    rel = 1.0
    for it in range(1, max_iterations + 1):
        q = matvec(p)
        pq = float(p @ q)
        if not (pq > 0.0) or not np.isfinite(rz):
            return x, it - 1, rel, LinearStatus.BREAKDOWN
        alpha = rz / pq
        x += b.dtype.type(alpha) * p
        r -= b.dtype.type(alpha) * q
        rel = float(np.linalg.norm(r)) / bnorm
        if rel <= rtol:
            return x, it, rel, LinearStatus.CONVERGED
        z = precond(r)
        rz_new = float(r @ z)
        p = z + b.dtype.type(rz_new / rz) * p
        rz = rz_new
    return x, max_iterations, rel, LinearStatus.MAX_ITERATIONS
