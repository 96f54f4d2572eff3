"""Preconditioned conjugate gradients on the normal equations (CGNR), matrix-free.

Solves (JᵀJ + diag(d)) x = b without ever forming JᵀJ: each iteration runs one fused JᵀJ·p pass over the
stored Jacobian. Vectors and scalars live in the Krylov precision of the policy (see
:class:`~mixslam.linear.operators.KrylovArith`). The loop has an inexact-Newton tolerance, an iteration
cap, a periodic true-residual refresh, and a safeguard that stops on non-finite or growing values and
returns the best iterate seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..kernels import krylov
from ..precision import PrecisionPolicy, QuantizationStats
from ..storage import kernel_types
from .base import Damping, LinearResult, LinearSolver, LinearStatus, MemoryUse, Preconditioner
from .config import CGConfig, Forcing
from .linearization import Linearization, blocks_dtype, model_decrease
from .operators import JacobianOperator, KrylovArith, column_scale, power_of_two


@dataclass
class CGResult:
    x: np.ndarray
    """Solution (best iterate) in the Krylov dtype."""
    iterations: int
    relative_residual: float
    """‖b - A x‖ / ‖b‖ (recurrence value, refreshed periodically)."""
    status: LinearStatus
    """``converged``, ``max_iterations``, ``stagnated``, ``breakdown``, ``nonfinite`` or ``diverged``."""
    times: dict = field(default_factory=dict)
    """The solve's own timing record: seconds and calls of the operator products (``products_s``,
    ``products_calls``) and of the preconditioner (``preconditioner_s``, ``preconditioner_calls``)."""


class _Timed:
    """Seconds and calls of one operation inside CG (two clock reads per call: noise next to a kernel)."""

    def __init__(self):
        self.seconds, self.calls = 0.0, 0


def _stop(res: float, tol: float, since_best: int, stagnation_window: int) -> LinearStatus | None:
    """The CG loops' stopping verdict after an iteration with relative residual ``res`` (None: go on)."""
    if res <= tol:
        return LinearStatus.CONVERGED
    if res > 1e3:
        return LinearStatus.DIVERGED
    if since_best >= stagnation_window:
        return LinearStatus.STAGNATED
    return None


def pcg(
    op: JacobianOperator,
    damping: np.ndarray,
    b: np.ndarray,
    precond,
    arith: KrylovArith,
    *,
    tol: float,
    max_iterations: int,
    refresh_every: int = 50,
    stagnation_window: int = 20,
) -> CGResult:
    """Preconditioned CG on (JᵀJ + diag(damping)) x = b, everything in ``arith``'s precision.

    ``precond`` has an ``apply(r)`` method, or is None (no preconditioning).
    """
    dt = arith.dtype
    b = arith.round(b)
    d = arith.round(damping)
    n = b.size
    bnorm = np.sqrt(arith.dot(b, b))
    x = np.zeros(n, dt)
    products, applies = _Timed(), _Timed()

    def record() -> dict:
        return {
            "products_s": products.seconds,
            "products_calls": products.calls,
            "preconditioner_s": applies.seconds,
            "preconditioner_calls": applies.calls,
        }

    if not np.isfinite(bnorm) or bnorm == 0.0:
        return CGResult(
            x,
            0,
            0.0 if bnorm == 0.0 else float("nan"),
            LinearStatus.CONVERGED if bnorm == 0.0 else LinearStatus.NONFINITE,
            record(),
        )
    q = np.empty(n, dt)

    def apply_A(v):
        t0 = time.perf_counter()
        op.normal_matvec(v, q)
        products.seconds += time.perf_counter() - t0
        products.calls += 1
        return arith.axpy(1.0, arith.mul(d, v), arith.round(q))

    def apply_M(v):
        t0 = time.perf_counter()
        z = precond.apply(v)
        applies.seconds += time.perf_counter() - t0
        applies.calls += 1
        return z

    if not arith.r16:
        return _pcg_fused(
            apply_M if precond is not None else None,
            op,
            d,
            b,
            bnorm,
            q,
            tol,
            max_iterations,
            refresh_every,
            stagnation_window,
            products,
            record,
        )
    r = b.copy()
    z = arith.round(apply_M(r)) if precond is not None else r.copy()
    p = z.copy()
    rz = arith.dot(r, z)
    best_x, best_res = x.copy(), 1.0
    res = 1.0
    since_best = 0
    status = LinearStatus.MAX_ITERATIONS
    it = 0
    for it in range(1, max_iterations + 1):
        Ap = apply_A(p)
        pAp = arith.dot(p, Ap)
        if not np.isfinite(pAp) or pAp <= 0.0 or not np.isfinite(rz):
            status = LinearStatus.NONFINITE if not np.isfinite(pAp) or not np.isfinite(rz) else LinearStatus.BREAKDOWN
            it -= 1
            break
        alpha = rz / pAp
        x = arith.axpy(alpha, p, x)
        if refresh_every and it % refresh_every == 0:
            r = arith.axpy(-1.0, apply_A(x), b)  # true residual, against drift
        else:
            r = arith.axpy(-alpha, Ap, r)
        rnorm = np.sqrt(arith.dot(r, r))
        if not np.isfinite(rnorm):
            status = LinearStatus.NONFINITE
            break
        res = rnorm / bnorm
        if res < 0.99 * best_res:
            best_res, since_best = res, 0
            best_x = x  # axpy rebinds x to a new array, never mutates it
        else:
            since_best += 1
        if (stop := _stop(res, tol, since_best, stagnation_window)) is not None:
            status = stop
            break
        z = arith.round(apply_M(r)) if precond is not None else r
        rz_new = arith.dot(r, z)
        beta = rz_new / rz if rz != 0 else 0.0
        rz = rz_new
        p = arith.axpy(beta, p, z)
    if status in (LinearStatus.NONFINITE, LinearStatus.DIVERGED):
        # Every CG iterate lowers the quadratic model, so otherwise the last one is the best answer; only
        # after a blow-up fall back to the iterate with the smallest residual seen.
        x, res = best_x, best_res
    return CGResult(x, it, float(res), status, record())


def _pcg_fused(apply_M, op, d, b, bnorm, q, tol, max_iterations, refresh_every, stagnation_window, products, record):
    """:func:`pcg` in fp32/fp64 with the vector updates fused and in place (:mod:`mixslam.kernels.krylov`):
    the same iteration, stopping rules and safeguards, three vector passes per iteration instead of about ten
    numpy passes and allocations."""
    n = b.size
    x = np.zeros(n, b.dtype)
    best = np.zeros(n, b.dtype)
    r = b.copy()
    z = np.asarray(apply_M(r), dtype=b.dtype) if apply_M is not None else r
    p = np.array(z, dtype=b.dtype)
    rz = float(krylov.dot(r, z))
    best_res, best_is_x = 1.0, False  # best iterate: ``best``, or x itself when the last iterate improved
    res = 1.0
    since_best = 0
    status = LinearStatus.MAX_ITERATIONS
    it = 0

    def product(v):
        t0 = time.perf_counter()
        op.normal_matvec(v, q)
        products.seconds += time.perf_counter() - t0
        products.calls += 1
        return float(krylov.add_damping_dot(q, d, v))

    for it in range(1, max_iterations + 1):
        pAp = product(p)
        if not np.isfinite(pAp) or pAp <= 0.0 or not np.isfinite(rz):
            status = LinearStatus.NONFINITE if not np.isfinite(pAp) or not np.isfinite(rz) else LinearStatus.BREAKDOWN
            it -= 1
            break
        alpha = rz / pAp
        if refresh_every and it % refresh_every == 0:
            if best_is_x:
                np.copyto(best, x)
            x += x.dtype.type(alpha) * p
            product(x)  # q = (JᵀJ + diag(d)) x
            np.subtract(b, q, out=r)  # true residual, against drift
            rr = float(krylov.dot(r, r))
        else:
            rr = float(krylov.step(x, r, p, q, alpha, best, best_is_x))
        best_is_x = False
        rnorm = np.sqrt(rr)
        if not np.isfinite(rnorm):
            status = LinearStatus.NONFINITE
            break
        res = rnorm / bnorm
        if res < 0.99 * best_res:
            best_res, since_best, best_is_x = res, 0, True
        else:
            since_best += 1
        if (stop := _stop(res, tol, since_best, stagnation_window)) is not None:
            status = stop
            break
        z = np.asarray(apply_M(r), dtype=b.dtype) if apply_M is not None else r
        rz_new = float(krylov.dot(r, z))
        beta = rz_new / rz if rz != 0 else 0.0
        rz = rz_new
        krylov.direction(p, z, beta)
    if status in (LinearStatus.NONFINITE, LinearStatus.DIVERGED):
        # as in pcg: after a blow-up, the iterate with the smallest residual seen
        return CGResult(x if best_is_x else best, it, float(best_res), status, record())
    return CGResult(x, it, float(res), status, record())


class KrylovSolver(LinearSolver):
    """What the iterative solvers share: the policy, the CG settings, the inexact-Newton forcing sequence, and
    the Jacobian stored in the policy's format once per linearization (a rejected step's re-solve reuses it,
    and its quantization is not counted twice)."""

    def __init__(self, policy: PrecisionPolicy, config: CGConfig | None = None):
        self.policy = policy
        self.config = config or CGConfig()
        self.forcing = Forcing(self.config)
        self._op: JacobianOperator | None = None
        self._op_for: Linearization | None = None
        self._memory = MemoryUse()

    layout = "auto"
    """The stored Jacobian's layout (:class:`~mixslam.linear.operators.JacobianOperator`): CGNR only multiplies
    by it, so the camera-major batches serve bundle adjustment; the implicit Schur kernels read row blocks."""

    def next_tolerance(self, gnorm: float, g0norm: float) -> float:
        return self.forcing.next(gnorm, g0norm)

    def tighten_tolerance(self, relative_residual: float) -> None:
        self.forcing.tighten(relative_residual)

    def memory(self) -> MemoryUse:
        return self._memory

    def _is_new(self, lin: Linearization) -> bool:
        return self._op_for is not lin or self._op is None

    def _stored_jacobian(self, lin: Linearization, scale: np.ndarray) -> tuple[JacobianOperator, QuantizationStats]:
        """(the column-scaled Jacobian of ``lin`` in the policy's storage, the statistics of storing it now)."""
        if not self._is_new(lin):
            assert self._op is not None
            return self._op, QuantizationStats()
        pol = self.policy
        like = self._op.camera_major if self._op is not None else None
        self._op = JacobianOperator.from_linearization(
            lin, scale, pol.jacobian_storage, pol.jacobian_accumulate, pol.fallback, layout=self.layout, like=like
        )
        self._op_for = lin
        return self._op, self._op.stats


class CGSolver(KrylovSolver):
    """CGNR on the column-scaled Jacobian with any :class:`~mixslam.linear.base.Preconditioner`, every
    operation in the precision the policy names.

    The damped system (JᵀJ + λD) δ = -Jᵀr is solved as (S JᵀJ S + λ S D S) x = -S Jᵀr, δ = S x, with S the
    power-of-two Jacobi scaling of :func:`~mixslam.linear.operators.column_scale`. The Jacobian is stored
    (``jacobian_storage``) once per linearization and reused by a rejected step's re-solve.
    """

    name = "cg"
    initial_lambda = 1e-5
    """Measured on the 11 reference pose graphs: the damping also conditions the inexact solves (with 1e-8
    mixed+IC on kitti_00 stops 4e-5 above the optimum instead of 2e-8)."""
    preconditioner: Preconditioner  # CG always has one (``none`` is the identity)

    def __init__(self, policy: PrecisionPolicy, preconditioner: Preconditioner, config: CGConfig | None = None):
        super().__init__(policy, config)
        self.preconditioner = preconditioner
        self.arith = KrylovArith(policy.krylov)

    def _pcg(self, op, damping, b, rtol) -> CGResult:
        pre = None if self.preconditioner.is_identity else self.preconditioner
        cfg = self.config
        return pcg(
            op,
            damping,
            b,
            pre,
            self.arith,
            tol=rtol,
            max_iterations=cfg.max_iterations,
            refresh_every=cfg.refresh_every,
            stagnation_window=cfg.stagnation_window,
        )

    def solve(self, lin: Linearization, damping: Damping, rtol: float) -> LinearResult:
        pol = self.policy
        times: dict = {}
        t0 = time.perf_counter()
        colsq = lin.column_sq_norms()
        scale = column_scale(colsq)
        rhs_dtype = np.dtype(pol.rhs.compute_dtype)
        g = lin.gradient(rhs_dtype).astype(np.float64)
        # A column no residual touches (a BAL camera's frozen pose) is decoupled with a zero right-hand side:
        # damping 1 keeps its preconditioner entries O(1) (not 1/(λ·min_diagonal)) and its step exactly 0.
        d = np.where(colsq > 0, damping.diagonal(colsq) * scale * scale, 1.0)
        new_linearization = self._is_new(lin)
        op, stats = self._stored_jacobian(lin, scale)
        t1 = time.perf_counter()
        times["quantize"] = t1 - t0
        pre = self.preconditioner
        stats = stats.merge(pre.prepare(lin, scale, d, new_linearization, times))
        t2 = time.perf_counter()
        times["preconditioner"] = t2 - t1
        self.arith.overflows = 0
        b = -scale * g
        # Power-of-two scaling of the right-hand side to max|b| ~ 1 (exact; keeps 16-bit vectors in range).
        bmax = float(np.max(np.abs(b))) if b.size else 0.0
        rhs_scale = float(power_of_two(1.0 / bmax)) if bmax > 0 and np.isfinite(bmax) else 1.0
        b = b * rhs_scale
        res = self._pcg(op, d, b, rtol)
        cg_times = [res.times]
        while (more := pre.retry(lin, scale, d, res, times)) is not None:
            stats = stats.merge(more)
            again = self._pcg(op, d, b, rtol)
            again.iterations += res.iterations
            res = again
            cg_times.append(res.times)
        pre.end_solve()
        if self.arith.overflows:
            stats = stats.merge(QuantizationStats(overflows=self.arith.overflows))
        t3 = time.perf_counter()
        times["cg"] = t3 - t2
        for key in ("products_s", "products_calls", "preconditioner_s", "preconditioner_calls"):
            times[key] = sum(t[key] for t in cg_times)
        times["cg_s"], times["cg_calls"] = t3 - t2, len(cg_times)
        delta = scale * res.x.astype(np.float64) / rhs_scale
        self._memory = MemoryUse(jacobian_bytes=op.nbytes, preconditioner_bytes=pre.nbytes)
        if not np.all(np.isfinite(delta)):
            return LinearResult(
                np.zeros_like(delta), res.iterations, float("nan"), LinearStatus.NONFINITE, float("nan"), stats, times
            )
        return LinearResult(
            delta, res.iterations, res.relative_residual, res.status, model_decrease(lin, g, delta), stats, times
        )

    def kernel_specs(self) -> set:
        pol = self.policy
        store_dt, _, acc16 = kernel_types(pol.jacobian_storage, pol.jacobian_accumulate)
        krylov = np.dtype(pol.krylov.compute_dtype)
        rhs = np.dtype(pol.rhs.compute_dtype)  # the gradient in the policy's right-hand-side precision
        blocks = blocks_dtype(pol.residual.compute_dtype, rhs)
        specs = {("normal_matvec", store_dt, krylov, acc16), ("jac_rmatvec", blocks, rhs, False)}
        return specs | self.preconditioner.kernel_specs()
