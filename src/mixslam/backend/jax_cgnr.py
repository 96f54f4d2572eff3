"""Preconditioned CG on the normal equations on a JAX device, and the damped step of one linearization.

:func:`pcg` is :func:`mixslam.linear.cgnr.pcg` as one ``lax.while_loop`` under ``jax.jit``: the same
recurrences, stopping rules (tolerance, iteration cap, true-residual refresh every ``refresh_every``
iterations, stagnation window, divergence above 1e3, breakdown on pᵀAp <= 0, non-finite values) and the same
answer (the last iterate; the best one seen after a blow-up). Vectors are in the Krylov dtype (fp64 or fp32),
the scalars (α, β, norms) in fp64 and rounded to the Krylov dtype where they scale a vector, as on the CPU.
The whole solve is one device call: no host round trip per iteration.

:func:`cgnr_step` is :meth:`mixslam.linear.cgnr.CGSolver.solve` with the block-Jacobi preconditioner: column
scaling, right-hand side -S Jᵀr from the unquantized Jacobian in the policy's ``rhs`` precision, the LM
damping λ·clamp(diag JᵀJ) scaled (1 for an untouched column), the Jacobian and the preconditioner stored as the
policy says, the right-hand side scaled by a power of two to max|b| ~ 1, δ = S x.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..linear.base import Damping, LinearStatus
from ..linear.config import CGConfig
from ..linear.operators import power_of_two
from ..precision import Precision, PrecisionPolicy, QuantizationStats
from .jax_device import BackendError, jax, jnp, lax
from .jax_linearization import DeviceLinearization, column_sq_norms, gradient
from .jax_products import BlockJacobi, apply_block_jacobi, block_jacobi, jac_matvec, normal_matvec
from .jax_storage import StoredJacobian, check_arithmetic, device_column_scale, store_jacobian

__all__ = ["STATUS", "pcg", "CGNRStep", "cgnr_step", "model_decrease"]

STATUS = (
    LinearStatus.CONVERGED,
    LinearStatus.MAX_ITERATIONS,
    LinearStatus.STAGNATED,
    LinearStatus.BREAKDOWN,
    LinearStatus.NONFINITE,
    LinearStatus.DIVERGED,
)
"""The device status codes 0..5 in order (:func:`pcg` returns the code; ``STATUS[code]`` is its name)."""
_CONV, _MAXIT, _STAG, _BREAK, _NONFIN, _DIV = range(6)
_RUNNING = -1


@partial(jax.jit, static_argnames=("max_iterations", "refresh_every", "stagnation_window", "axis_name"))
def pcg(
    J: StoredJacobian,
    M: BlockJacobi | Callable | None,
    damping,
    b,
    tol,
    *,
    max_iterations: int,
    refresh_every: int = 50,
    stagnation_window: int = 20,
    axis_name: str | None = None,
):
    """CG on (JᵀJ + diag(``damping``)) x = ``b`` in ``b``'s dtype (the Krylov precision), preconditioned by
    ``M`` (None: none; a callable: v -> M⁻¹v). Returns (x, iterations, relative residual (fp64), status
    code of :data:`STATUS`).

    ``axis_name``: the name of a ``jax.vmap`` axis this call is mapped over (a batch of problems). The
    true-residual refresh then asks the batch's largest iteration count (``lax.pmax``: the running problems'
    count, as a finished one's is frozen) whether it is due, so the refresh stays a real ``lax.cond`` taken
    once per ``refresh_every`` iterations; with a per-problem predicate ``vmap`` would turn it into a select
    that computes the extra product at every iteration."""
    dt = b.dtype
    d = damping.astype(dt)
    f64 = jnp.float64

    def dot(x, y):
        return jnp.dot(x, y, precision=lax.Precision.HIGHEST).astype(f64)

    def apply_A(v):
        q = normal_matvec(J, v)[0].astype(dt)
        return q + d * v

    def apply_M(v):
        if M is None:
            return v
        if callable(M):  # a pytree preconditioner (the device Cholesky factor, jax_factor.FactorPreconditioner)
            return M(v).astype(dt)
        return apply_block_jacobi(M, v).astype(dt)

    bnorm = jnp.sqrt(dot(b, b))
    x0 = jnp.zeros_like(b)
    z0 = apply_M(b)
    rz0 = dot(b, z0)
    state0 = dict(
        it=jnp.zeros((), jnp.int32),
        x=x0,
        r=b,
        p=z0,
        rz=rz0,
        best_x=x0,
        best_res=jnp.ones((), f64),
        res=jnp.ones((), f64),
        since=jnp.zeros((), jnp.int32),
        status=jnp.where(jnp.isfinite(bnorm) & (bnorm > 0), _RUNNING, jnp.where(bnorm == 0, _CONV, _NONFIN)).astype(
            jnp.int32
        ),
    )

    def cond(s):
        return (s["status"] == _RUNNING) & (s["it"] < max_iterations)

    def body(s):
        it = s["it"] + 1
        Ap = apply_A(s["p"])
        pAp = dot(s["p"], Ap)
        bad = ~jnp.isfinite(pAp) | (pAp <= 0) | ~jnp.isfinite(s["rz"])

        def stop(_):
            code = jnp.where(jnp.isfinite(pAp) & jnp.isfinite(s["rz"]), _BREAK, _NONFIN).astype(jnp.int32)
            return dict(s, status=code)  # the iteration does not count (the CPU's it -= 1)

        def step(_):
            alpha = s["rz"] / pAp
            x = s["x"] + alpha.astype(dt) * s["p"]
            if refresh_every:
                due_it = it if axis_name is None else lax.pmax(it, axis_name)
                r = lax.cond(
                    due_it % refresh_every == 0,
                    lambda _: b - apply_A(x),
                    lambda _: s["r"] - alpha.astype(dt) * Ap,
                    None,
                )
            else:
                r = s["r"] - alpha.astype(dt) * Ap
            rnorm = jnp.sqrt(dot(r, r))
            res = rnorm / bnorm
            better = res < 0.99 * s["best_res"]
            best_res = jnp.where(better, res, s["best_res"])
            best_x = jnp.where(better, x, s["best_x"])
            since = jnp.where(better, 0, s["since"] + 1)
            status = jnp.select(
                [~jnp.isfinite(rnorm), res <= tol, res > 1e3, since >= stagnation_window],
                [_NONFIN, _CONV, _DIV, _STAG],
                _RUNNING,
            ).astype(jnp.int32)
            z = apply_M(r)
            rz_new = dot(r, z)
            beta = jnp.where(s["rz"] != 0, rz_new / s["rz"], 0.0)
            p = z + beta.astype(dt) * s["p"]
            res = jnp.where(jnp.isfinite(rnorm), res, s["res"])
            return dict(
                it=it, x=x, r=r, p=p, rz=rz_new, best_x=best_x, best_res=best_res, res=res, since=since, status=status
            )

        return lax.cond(bad, stop, step, None)

    s = lax.while_loop(cond, body, state0)
    status = jnp.where(s["status"] == _RUNNING, _MAXIT, s["status"])
    blown = (status == _NONFIN) | (status == _DIV)
    x = jnp.where(blown, s["best_x"], s["x"])
    res = jnp.where(blown, s["best_res"], s["res"])
    res = jnp.where(jnp.isfinite(bnorm) & (bnorm > 0), res, jnp.where(bnorm == 0, 0.0, jnp.nan))
    return x, s["it"], res, status


@dataclass
class CGNRStep:
    """One damped step of a linearization (the CPU's ``LinearResult`` fields), on the device."""

    delta: Any
    """(size,) fp64 step δ (device array; zeros after a non-finite solve)."""
    iterations: int
    relative_residual: float
    status: LinearStatus
    model_decrease: float
    """-gᵀδ - 0.5‖Jδ‖² in fp64 from the unquantized Jacobian."""
    stats: QuantizationStats = field(default_factory=QuantizationStats)
    """The Jacobian's and the preconditioner's storage counts."""
    jacobian: StoredJacobian | None = None
    preconditioner: BlockJacobi | None = None


def model_decrease(lin: DeviceLinearization, g, delta):
    """-gᵀδ - 0.5‖Jδ‖² from the unquantized blocks in fp64 (traceable; the CPU's ``model_decrease``)."""
    J = StoredJacobian(
        lin.A.astype(jnp.float64),
        lin.B.astype(jnp.float64),
        lin.ia,
        lin.ib,
        lin.nv,
        lin.p,
        lin.nb,
        lin.pb,
        Precision.FP64,
        Precision.FP64,
    )
    Jd = jac_matvec(J, delta)
    return -(g @ delta) - 0.5 * jnp.sum(Jd * Jd)


_model_decrease = jax.jit(model_decrease)


def cgnr_step(
    lin: DeviceLinearization,
    damping: Damping | float,
    policy: PrecisionPolicy,
    rtol: float,
    config: CGConfig | None = None,
    *,
    preconditioner: str = "jacobi",
) -> CGNRStep:
    """The damped Gauss-Newton step of ``lin`` by CGNR in the precisions of ``policy`` (``damping``: a
    :class:`~mixslam.linear.base.Damping` or λ), to relative residual ``rtol``, with block-Jacobi
    (``preconditioner="jacobi"``) or none (``"none"``): the device twin of ``CGSolver.solve``."""
    if preconditioner not in ("jacobi", "none"):
        raise BackendError(f"the device backend's preconditioners are 'jacobi' and 'none', got {preconditioner!r}")
    cfg = config or CGConfig()
    damp = damping if isinstance(damping, Damping) else Damping(float(damping))
    check_arithmetic(policy.krylov, "krylov")
    colsq = column_sq_norms(lin)
    scale = device_column_scale(colsq)
    g = gradient(lin, policy.rhs.compute_dtype).astype(jnp.float64)
    d = jnp.where(colsq > 0, damp.lam * jnp.clip(colsq, damp.min_diagonal, damp.max_diagonal) * scale * scale, 1.0)
    J, stats = store_jacobian(lin, scale, policy.jacobian_storage, policy.jacobian_accumulate, policy.fallback)
    M = None
    if preconditioner == "jacobi":
        M, pstats, _ = block_jacobi(
            lin, scale, d, policy.preconditioner_storage, policy.preconditioner_accumulate, policy.fallback
        )
        stats = stats.merge(pstats)
    b = -scale * g
    bmax = float(jnp.max(jnp.abs(b))) if b.size else 0.0
    rhs_scale = float(power_of_two(1.0 / bmax)) if bmax > 0 and math.isfinite(bmax) else 1.0
    kdt = policy.krylov.compute_dtype
    x, it, res, code = pcg(
        J,
        M,
        d,
        (b * rhs_scale).astype(kdt),
        jnp.asarray(rtol, jnp.float64),
        max_iterations=cfg.max_iterations,
        refresh_every=cfg.refresh_every,
        stagnation_window=cfg.stagnation_window,
    )
    delta = scale * x.astype(jnp.float64) / rhs_scale
    status = STATUS[int(code)]
    if not bool(jnp.all(jnp.isfinite(delta))):
        return CGNRStep(jnp.zeros_like(delta), int(it), float("nan"), LinearStatus.NONFINITE, float("nan"), stats, J, M)
    return CGNRStep(delta, int(it), float(res), status, float(_model_decrease(lin, g, delta)), stats, J, M)
