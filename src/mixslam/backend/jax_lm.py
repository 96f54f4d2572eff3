"""Levenberg-Marquardt on a JAX device: the whole iteration on the device, the decisions on the host.

The device twin of :func:`mixslam.solve.lm.levenberg_marquardt` with the CG solver
(:class:`mixslam.linear.cgnr.CGSolver`, block-Jacobi or no preconditioner):

* on the device, in two jitted functions per LM iteration: the linearization (residuals and Jacobian blocks
  in the policy's residual precision, the fp64 gradient and its norms), then the step (column scaling, the
  Jacobian and the block-Jacobi inverses stored as the policy says, right-hand side in the policy's ``rhs``
  precision, CGNR with fp32 or fp64 accumulation, the model decrease in fp64), the retraction (SE(2) / SE(3)
  on the right as :func:`mixslam.lie.se2.retract` / :func:`mixslam.lie.se3.retract`; BAL additive with a
  fixed camera's pose frozen; pinhole SE(3)) and the trial cost in the policy's cost precision. The state
  (poses, cameras, points) stays in fp64 on the device for the whole solve;
* on the host, per iteration, a few scalars read back (two transfers) and fed to
  :class:`mixslam.solve.lm_control.LMControl`, the state machine the CPU loop drives too (gain ratio,
  damping, stopping rules, the inexact-Newton forcing of :class:`mixslam.linear.config.Forcing`), so both
  backends take the same decisions on the same numbers.

An overflowing 16-bit store (despite the column scaling) is redone in the next wider format when the
policy allows it, as on the CPU: the step is computed again with the wider storage (a second compiled
variant) and ``fallbacks`` counted.

The functions are compiled ahead of time once per problem shape, policy and device (:func:`compiled`,
timed apart as ``timing["compile"]``) and kept for later solves of the same shapes in the process.
:mod:`.jax_batch` maps the same per-problem functions over a batch with ``jax.vmap``.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..linear.base import DirectStats, LinearStatus, MemoryUse
from ..linear.config import CGConfig, Forcing
from ..precision import THRESHOLDS, Precision, PrecisionPolicy, QuantizationStats, next_wider
from ..solve.config import LMConfig
from ..solve.lm_control import LMControl, StepNumbers
from ..solve.report import SolveReport, Status
from .jax_cgnr import STATUS, model_decrease, pcg
from .jax_device import BackendError, jax, jnp
from .jax_factor import REFACTOR_AFTER, DeviceFactor, FactorPreconditioner
from .jax_linearization import DeviceLinearization, column_sq_norms, gather_rows, gradient, split_stacked
from .jax_products import BlockJacobi, diag_blocks, spd_block_inverse
from .jax_residuals import (
    BundleArrays,
    PoseGraphArrays,
    bundle_arrays,
    bundle_linearization,
    pose_graph_arrays,
    pose_graph_cost,
    pose_graph_linearization,
    reprojection_cost,
)
from .jax_storage import (
    StoredJacobian,
    check_arithmetic,
    device_column_scale,
    quantization_stats,
    quantize,
    scaled_blocks,
    scaled_damping,
)

__all__ = [
    "PRECONDITIONERS",
    "ProblemSpec",
    "StepSpec",
    "DeviceProblem",
    "device_pose_graph",
    "device_bundle",
    "check_policy",
    "lm_control",
    "solve_report",
    "compiled",
    "levenberg_marquardt",
    "backend_name",
    "stored_sizes",
    "memory_use",
    "device_peak_bytes",
    "step_numbers",
    "column_cosine",
    "step_stats",
    "cost_fn",
    "linearize_fn",
    "step_fn",
]

PRECONDITIONERS = ("jacobi", "none", "cholesky")
"""The preconditioners of the device CG (``cholesky``: the complete supernodal factor, pose graphs,
:mod:`.jax_factor`)."""

_F64 = np.dtype(np.float64)


def backend_name(device) -> str:
    """``"jax:cpu"`` or ``"jax:gpu"``: what :attr:`~mixslam.solve.report.SolveReport.backend` records."""
    return f"jax:{'cpu' if device.platform == 'cpu' else 'gpu'}"


def check_policy(policy: PrecisionPolicy) -> None:
    """Refuse a policy the device backend cannot run: 16-bit arithmetic (the naive ``fp16`` preset) is emulated
    by the CPU kernels only; 16-bit storage with fp32 accumulation (``mixed``, ``mixed16``) runs."""
    for name in ("jacobian_accumulate", "preconditioner_accumulate", "krylov"):
        check_arithmetic(getattr(policy, name), name)


# ---------------------------------------------------------------------------------------------------------
# static descriptions (jit static arguments: hashable)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProblemSpec:
    """What the per-problem device functions specialize on, beside the arrays' shapes."""

    kind: str
    """``"pgo"`` or ``"ba"``."""
    residual: str
    """dtype name of the residuals and Jacobian blocks (``float64`` / ``float32``)."""
    cost: str
    """dtype name the LM cost is evaluated in."""
    min_depth: float | None = None
    """BA: the depth clamp (None: the default of each evaluation's dtype, as on the CPU)."""


@dataclass(frozen=True)
class StepSpec:
    """The formats and CG settings of one step (a fallback makes a second one with a wider storage)."""

    jacobian_storage: Precision
    jacobian_accumulate: Precision
    preconditioner_storage: Precision
    preconditioner_accumulate: Precision
    rhs: str
    krylov: str
    preconditioner: str
    max_iterations: int
    refresh_every: int
    stagnation_window: int
    min_diagonal: float
    max_diagonal: float
    factor: Any = None
    """``cholesky``: the factor's :class:`~.jax_factor.FactorLayout` (None before the first factorization)."""

    @classmethod
    def of(cls, policy: PrecisionPolicy, preconditioner: str, cg: CGConfig, lm: LMConfig) -> StepSpec:
        return cls(
            policy.jacobian_storage,
            policy.jacobian_accumulate,
            policy.preconditioner_storage,
            policy.preconditioner_accumulate,
            np.dtype(policy.rhs.compute_dtype).name,
            np.dtype(policy.krylov.compute_dtype).name,
            preconditioner,
            cg.max_iterations,
            cg.refresh_every,
            cg.stagnation_window,
            float(lm.min_diagonal),
            float(lm.max_diagonal),
        )

    def widened(self, jacobian: bool, preconditioner: bool) -> StepSpec:
        """The spec with the Jacobian's and/or the preconditioner's storage in the next wider format (and the
        arithmetic widened to contain it), as :func:`mixslam.storage.store` falls back."""
        spec = self
        if jacobian:
            s = next_wider(self.jacobian_storage)
            acc = self.jacobian_accumulate if self.jacobian_accumulate.contains(s) else s
            spec = _replace(spec, jacobian_storage=s, jacobian_accumulate=acc)
        if preconditioner:
            s = next_wider(self.preconditioner_storage)
            acc = self.preconditioner_accumulate if self.preconditioner_accumulate.contains(s) else s
            spec = _replace(spec, preconditioner_storage=s, preconditioner_accumulate=acc)
        return spec


def _replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


# ---------------------------------------------------------------------------------------------------------
# the per-problem device functions (traceable: jitted alone, or vmapped over a batch by jax_batch)
# ---------------------------------------------------------------------------------------------------------
def _so3_exp(w):
    """:func:`mixslam.lie.so3.exp` in fp64 (Rodrigues, with its small-angle series)."""
    th2 = jnp.sum(w * w, axis=-1)
    th = jnp.sqrt(th2)
    small = th < THRESHOLDS[Precision.FP64].small_angle
    safe = jnp.where(small, 1.0, th)
    a = jnp.where(small, 1.0 - th2 / 6.0, jnp.sin(safe) / safe)
    b = jnp.where(small, 0.5 - th2 / 24.0, (1.0 - jnp.cos(safe)) / (safe * safe))
    z = jnp.zeros_like(w[..., 0])
    K = jnp.stack(
        [
            jnp.stack([z, -w[..., 2], w[..., 1]], -1),
            jnp.stack([w[..., 2], z, -w[..., 0]], -1),
            jnp.stack([-w[..., 1], w[..., 0], z], -1),
        ],
        -2,
    )
    KK = jnp.matmul(K, K, precision=jax.lax.Precision.HIGHEST)
    return jnp.eye(3, dtype=w.dtype) + a[..., None, None] * K + b[..., None, None] * KK


def _so2_exp(theta):
    c, s = jnp.cos(theta), jnp.sin(theta)
    return jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], -2)


def _mm(a, b):
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _mv(a, x):
    return jnp.einsum("...ij,...j->...i", a, x, precision=jax.lax.Precision.HIGHEST)


def _se_retract(R, t, d):
    """t + R ρ, R Exp(φ) with d = (ρ, φ) (2D: φ scalar): the CPU's se2 / se3 ``retract``."""
    dim = R.shape[-1]
    Exp = _so2_exp(d[..., 2]) if dim == 2 else _so3_exp(d[..., 3:6])
    return _mm(R, Exp), t + _mv(R, d[..., :dim])


def _pg_retract(pg: PoseGraphArrays, state, delta):
    R, t = state
    d = gather_rows(delta.reshape(pg.nv, pg.p), pg.var_of_pose, pg.nv)  # zeros for fixed poses
    return _se_retract(R, t, d)


def _ba_retract(ba: BundleArrays, state, delta):
    cams, pts = state
    dc, dp = split_stacked(delta, ba.nv, ba.pc, ba.nb, 3)
    step = gather_rows(dc, ba.var_of_cam, ba.nv)
    if ba.model == "bal":
        # a fixed BAL camera keeps its pose (its f, k1, k2 are free): the step's pose part made exactly 0
        frozen = jnp.zeros(cams.shape[0], bool).at[ba.cam_idx].max(ba.frozen_row)
        keep = jnp.arange(ba.pc) >= 6
        step = jnp.where(frozen[:, None] & ~keep[None, :], 0.0, step)
        cams = cams + step
    else:
        free = (ba.var_of_cam >= 0)[:, None]
        R2, t2 = _se_retract(cams[:, :9].reshape(-1, 3, 3), cams[:, 9:12], step)
        cams = jnp.where(free, jnp.concatenate([R2.reshape(-1, 9), t2], axis=1), cams)
    pts = pts + gather_rows(dp, ba.var_of_pt, ba.nb)
    return cams, pts


def _linearize(spec: ProblemSpec, arrays, state) -> DeviceLinearization:
    dt = np.dtype(spec.residual)
    if spec.kind == "pgo":
        return pose_graph_linearization(arrays, state[0], state[1], dt)
    return bundle_linearization(arrays, state[0], state[1], dt, min_depth=spec.min_depth)


def _cost(spec: ProblemSpec, arrays, state, dtype: str):
    dt = np.dtype(dtype)
    if spec.kind == "pgo":
        return pose_graph_cost(arrays, state[0], state[1], dt)
    return reprojection_cost(arrays, state[0], state[1], dt, min_depth=spec.min_depth)


def _state_norm(spec: ProblemSpec, state):
    if spec.kind == "pgo":
        return jnp.linalg.norm(state[1].reshape(-1))
    return jnp.sqrt(jnp.sum(state[0] ** 2) + jnp.sum(state[1] ** 2))


def _retract(spec: ProblemSpec, arrays, state, delta):
    return _pg_retract(arrays, state, delta) if spec.kind == "pgo" else _ba_retract(arrays, state, delta)


def linearize_fn(spec: ProblemSpec, arrays, state):
    """The linearization at ``state`` and its gradient's numbers for the stopping tests: (lin, [max|g|,
    ‖g‖₂, max_i |g_i| / ‖J_i‖]) with g = Jᵀr in fp64 (the CPU's ``lin.gradient(np.float64)``)."""
    lin = _linearize(spec, arrays, state)
    g = gradient(lin, _F64)
    colsq = column_sq_norms(lin)
    if g.size == 0:
        zero = jnp.zeros((), jnp.float64)
        return lin, jnp.stack([zero, zero, zero])
    cos_num = jnp.max(jnp.abs(g) / jnp.sqrt(jnp.maximum(colsq, 1e-300)))
    return lin, jnp.stack([jnp.max(jnp.abs(g)), jnp.linalg.norm(g), cos_num])


def _store(blocks, precision: Precision):
    """(stored arrays, counts (4,) summed, max_abs) of a list of arrays stored as one operand."""
    q = [quantize(b, precision) for b in blocks]
    counts = sum(c for _, c, _ in q)
    max_abs = jnp.max(jnp.stack([m for _, _, m in q]))
    return [s for s, _, _ in q], counts, max_abs


def step_fn(
    spec: ProblemSpec,
    step: StepSpec,
    arrays,
    state,
    lin: DeviceLinearization,
    lam,
    rtol,
    active,
    factor=None,
    axis_name=None,
):
    """One damped CGNR step of ``lin`` (the CPU's ``CGSolver.solve`` with block-Jacobi or none), its
    retraction and the trial's cost and state norm. ``active`` False: a zero right-hand side (0 CG
    iterations; a batch's finished problem). Returns (trial state, a dict of device scalars and counts)."""
    colsq = column_sq_norms(lin)
    scale = device_column_scale(colsq)
    g = gradient(lin, np.dtype(step.rhs)).astype(jnp.float64)
    d = scaled_damping(colsq, scale, lam, step.min_diagonal, step.max_diagonal)
    As, Bs = scaled_blocks(lin, scale)
    (qa, qb), jc, jm = _store([As, Bs], step.jacobian_storage)
    J = StoredJacobian(
        qa, qb, lin.ia, lin.ib, lin.nv, lin.p, lin.nb, lin.pb, step.jacobian_storage, step.jacobian_accumulate
    )
    M: Any = None
    pc = jnp.zeros(4, jc.dtype)
    pm = jnp.zeros((), jnp.float64)
    shifted = jnp.zeros((), jnp.int32)
    if step.preconditioner == "jacobi":
        Da, Db = diag_blocks(lin, scale)
        da, db = split_stacked(d, lin.nv, lin.p, lin.nb, lin.pb)
        inv_a, sh = spd_block_inverse(Da, da)
        invs = [inv_a]
        shifted = shifted + sh.astype(jnp.int32)
        if Db is not None:
            inv_b, sh_b = spd_block_inverse(Db, db)
            invs.append(inv_b)
            shifted = shifted + sh_b.astype(jnp.int32)
        stored, pc, pm = _store(invs, step.preconditioner_storage)
        M = BlockJacobi(
            stored[0],
            stored[1] if len(stored) > 1 else None,
            step.preconditioner_storage,
            step.preconditioner_accumulate,
        )
    if step.preconditioner == "cholesky":  # the host-built factor, applied to this step's scaling
        M = FactorPreconditioner(factor, scale, step.factor)

    b = -scale * g
    bmax = jnp.max(jnp.abs(b)) if b.size else jnp.zeros((), jnp.float64)
    ok = (bmax > 0) & jnp.isfinite(bmax)
    # power of two nearest to 1/max|b| (exact scaling), as linear.operators.power_of_two
    e = jnp.round(jnp.log2(1.0 / jnp.where(ok, bmax, 1.0))).astype(jnp.int32)
    rhs_scale = jnp.where(ok, jnp.ldexp(jnp.ones((), jnp.float64), e), 1.0)
    kdt = np.dtype(step.krylov)
    bk = jnp.where(active, b * rhs_scale, 0.0).astype(kdt)
    x, it, res, code = pcg(
        J,
        M,
        d,
        bk,
        rtol,
        max_iterations=step.max_iterations,
        refresh_every=step.refresh_every,
        stagnation_window=step.stagnation_window,
        axis_name=axis_name,
    )
    delta = scale * x.astype(jnp.float64) / rhs_scale
    finite = jnp.all(jnp.isfinite(delta))
    delta = jnp.where(finite, delta, 0.0)
    mdec = model_decrease(lin, g, delta)
    trial = _retract(spec, arrays, state, delta)
    new_cost = _cost(spec, arrays, trial, spec.cost)
    out = {
        "iterations": it,
        "relative_residual": res,
        "code": code,
        "finite": finite,
        "model_decrease": mdec,
        "step_norm": jnp.linalg.norm(delta),
        "new_cost": new_cost,
        "xnorm": _state_norm(spec, trial),
        "jacobian_counts": jc,
        "jacobian_max": jm,
        "preconditioner_counts": pc,
        "preconditioner_max": pm,
        "shifted": shifted,
    }
    return trial, out


def cost_fn(spec: ProblemSpec, arrays, state):
    """(LM cost in the policy's cost precision, fp64 cost, state norm) of ``state``."""
    return (
        _cost(spec, arrays, state, spec.cost),
        _cost(spec, arrays, state, "float64"),
        _state_norm(spec, state),
    )


# ---------------------------------------------------------------------------------------------------------
# compiled once per shape
# ---------------------------------------------------------------------------------------------------------
_COMPILED: dict = {}


def _signature(args) -> tuple:
    leaves, tree = jax.tree_util.tree_flatten(args)
    devs = tuple(sorted(str(d) for leaf in leaves[:1] for d in leaf.devices()))
    return tree, tuple((tuple(x.shape), str(x.dtype)) for x in leaves), devs


def compiled(fn, statics: tuple, args: tuple, *, batched: bool = False) -> tuple[Any, float]:
    """``fn(*statics, *args)`` compiled ahead of time for these arguments' shapes and device (``batched``:
    ``jax.vmap`` over the leading axis of every argument, named ``"batch"``); returns (the compiled callable
    taking ``args``, the seconds spent compiling now: 0 when it was compiled before in this process)."""
    key = (fn.__name__, statics, batched, _signature(args))
    hit = _COMPILED.get(key)
    if hit is not None:
        return hit, 0.0
    t0 = time.perf_counter()
    if batched:

        def mapped(*a):
            return jax.vmap(lambda *x: fn(*statics, *x, **_axis(fn, "batch")), axis_name="batch")(*a)

        exe = jax.jit(mapped).lower(*args).compile()
    else:
        exe = jax.jit(lambda *a: fn(*statics, *a, **_axis(fn, None))).lower(*args).compile()
    _COMPILED[key] = exe
    return exe, time.perf_counter() - t0


def _axis(fn, name):
    return {"axis_name": name} if fn is step_fn else {}


# ---------------------------------------------------------------------------------------------------------
# device problems
# ---------------------------------------------------------------------------------------------------------
@dataclass
class DeviceProblem:
    """A problem's arrays and state on a device, with its static description."""

    spec: ProblemSpec
    arrays: Any
    """:class:`~.jax_residuals.PoseGraphArrays` or :class:`~.jax_residuals.BundleArrays`."""
    state: tuple
    """(R, t) or (cameras, points), fp64 device arrays."""
    size: int
    """Unknowns (the stacked update's length)."""
    device: Any

    def host_state(self, state=None) -> tuple:
        s = self.state if state is None else state
        return tuple(np.asarray(x) for x in s)


def _spec(kind: str, policy: PrecisionPolicy, min_depth: float | None = None) -> ProblemSpec:
    res = np.dtype(policy.residual.compute_dtype)
    cost = np.dtype(policy.cost.compute_dtype)
    return ProblemSpec(kind, res.name, cost.name, None if min_depth is None else float(min_depth))


def device_pose_graph(graph, policy: PrecisionPolicy, device) -> DeviceProblem:
    """A :class:`~mixslam.problem.pose_graph.PoseGraph` (its poses the initial state) on ``device``."""
    pg = pose_graph_arrays(graph, device)
    state = (
        jax.device_put(np.ascontiguousarray(graph.rotations, np.float64), device),
        jax.device_put(np.ascontiguousarray(graph.translations, np.float64), device),
    )
    return DeviceProblem(_spec("pgo", policy), pg, state, pg.nv * pg.p, device)


def device_bundle(data, policy: PrecisionPolicy, device, min_depth: float | None = None) -> DeviceProblem:
    """A :class:`~mixslam.problem.bundle.BundleData` (its cameras and points the initial state) on ``device``."""
    ba = bundle_arrays(data, device)
    state = (
        jax.device_put(np.ascontiguousarray(data.cameras, np.float64), device),
        jax.device_put(np.ascontiguousarray(data.points, np.float64), device),
    )
    return DeviceProblem(_spec("ba", policy, min_depth), ba, state, ba.nv * ba.pc + ba.nb * 3, device)


# ---------------------------------------------------------------------------------------------------------
# the host side: the device's scalars fed to the solve layer's LM decisions (mixslam.solve.lm_control)
# ---------------------------------------------------------------------------------------------------------
def step_numbers(out: dict, i: int | None = None) -> StepNumbers:
    """The host copy of :func:`step_fn`'s outputs (problem ``i`` of a batch) as the decisions read them."""

    def v(name):
        x = out[name]
        return x if i is None else x[i]

    finite = bool(v("finite"))
    status = STATUS[int(v("code"))] if finite else LinearStatus.NONFINITE
    return StepNumbers(
        int(v("iterations")),
        float(v("relative_residual")) if finite else float("nan"),
        status,
        float(v("model_decrease")) if finite else float("nan"),
        float(v("step_norm")),
        float(v("new_cost")),
        float(v("xnorm")),
    )


def column_cosine(cos_num: float, cost: float) -> float:
    """max_i |g_i| / (‖J_i‖ ‖r‖) from :func:`linearize_fn`'s numerator max_i |g_i| / ‖J_i‖ and the cost
    0.5 ‖r‖² (the CPU's :func:`mixslam.solve.lm.max_cosine`)."""
    return 0.0 if cost <= 0.0 else float(cos_num / math.sqrt(2.0 * cost))


def step_stats(out: dict, i: int | None, jacobian_size: int, preconditioner_size: int, new_lin: bool):
    """:class:`~mixslam.precision.QuantizationStats` of a step (the Jacobian's only at a new linearization,
    as the CPU stores it once per linearization; the preconditioner's at every step)."""

    def v(name):
        return out[name] if i is None else out[name][i]

    stats = QuantizationStats()
    if new_lin:
        stats = stats.merge(quantization_stats(jacobian_size, v("jacobian_counts"), v("jacobian_max")))
    if preconditioner_size:
        stats = stats.merge(
            quantization_stats(preconditioner_size, v("preconditioner_counts"), v("preconditioner_max"))
        )
    return stats


def lm_control(lm: LMConfig, cg: CGConfig, initial_lambda: float) -> LMControl:
    """The decisions of one problem's solve, with the CG's forcing sequence (:class:`Forcing`, as
    :class:`mixslam.linear.cgnr.CGSolver` asks its solves)."""
    forcing = Forcing(cg)
    return LMControl(lm, initial_lambda, next_tolerance=forcing.next, tighten_tolerance=forcing.tighten)


def solve_report(
    ctl: LMControl, initial_cost: float, policy: PrecisionPolicy, preconditioner: str, backend: str
) -> SolveReport:
    """The :class:`~mixslam.solve.report.SolveReport` of a device solve so far (costs in the LM precision:
    the caller sets the fp64 ones)."""
    report = SolveReport(
        Status.FAILED,
        "",
        initial_cost,
        initial_cost,
        0,
        0,
        precision=policy.name,
        solver="cg",
        preconditioner=preconditioner,
        policy=policy,
        backend=backend,
    )
    return ctl.finish(report)


def _host(tree):
    return jax.device_get(tree)


def stored_sizes(problem: DeviceProblem, lin_shape: tuple, preconditioner: str) -> tuple[int, int]:
    """(values in the stored Jacobian, values in the stored block-Jacobi inverses; 0 without it) of a problem
    whose linearization's A blocks have shape ``lin_shape``."""
    arrays = problem.arrays
    if problem.spec.kind == "pgo":
        m, k, p = lin_shape
        jac = 2 * m * k * p
        pre = arrays.nv * p * p
    else:
        m, pc = lin_shape[0], arrays.pc
        jac = m * 2 * (pc + 3)
        pre = arrays.nv * pc * pc + arrays.nb * 9
    return jac, (pre if preconditioner == "jacobi" else 0)


def levenberg_marquardt(
    problem: DeviceProblem,
    policy: PrecisionPolicy,
    lm: LMConfig,
    cg: CGConfig,
    preconditioner: str = "jacobi",
    initial_lambda: float = 1e-5,
) -> tuple[tuple, SolveReport]:
    """Minimize the problem's cost from its state on its device; returns (the best state as numpy arrays,
    :class:`~mixslam.solve.report.SolveReport` with the LM-precision costs, ``timing`` and the device's
    peak memory where JAX reports it).

    ``initial_lambda`` is the damping when ``lm.initial_lambda`` is None (the CPU CG solver's 1e-5)."""
    if preconditioner not in PRECONDITIONERS:
        raise BackendError(f"the device backend's preconditioners are {list(PRECONDITIONERS)}, got {preconditioner!r}")
    check_policy(policy)
    t_start = time.perf_counter()
    spec = problem.spec
    step = StepSpec.of(policy, preconditioner, cg, lm)
    arrays, state = problem.arrays, problem.state
    timing = {"compile": 0.0, "residual": 0.0, "jacobian": 0.0, "linear_solve": 0.0, "update": 0.0}

    lam0 = jnp.zeros((), jnp.float64)
    cost_exe, c0 = compiled(cost_fn, (spec,), (arrays, state))
    lin_exe, c1 = compiled(linearize_fn, (spec,), (arrays, state))
    lin_shape = jax.eval_shape(lambda a, s: linearize_fn(spec, a, s), arrays, state)[0]
    active = jnp.ones((), bool)
    step_args: tuple = (arrays, state, lin_shape, lam0, lam0, active)
    chol = preconditioner == "cholesky"
    if chol and spec.kind != "pgo":
        raise BackendError("the device Cholesky preconditioner is for pose graphs; bundle adjustment: jacobi or none")
    dfac: DeviceFactor | None = None
    last_cg = 0
    refactor_log = {"factorizations": 0, "reused": 0}
    c2 = 0.0
    step_exe = None
    if not chol:  # the Cholesky step is compiled once the factor's layout is known (first linearization)
        step_exe, c2 = compiled(step_fn, (spec, step), step_args)
    timing["compile"] += c0 + c1 + c2
    jac_size, pre_size = stored_sizes(problem, lin_shape.A.shape, preconditioner)

    t0 = time.perf_counter()
    cost0, _, xnorm0 = (float(v) for v in _host(cost_exe(arrays, state)))
    timing["residual"] += time.perf_counter() - t0
    ctl = lm_control(lm, cg, initial_lambda)
    ctl.start(cost0, xnorm0)  # False: the loop below does not run
    lin = None
    wide: dict = {}
    while ctl.begin():
        if ctl.needs_linearization:
            t0 = time.perf_counter()
            lin, norms = lin_exe(arrays, state)
            gi, g2, cn = (float(v) for v in _host(norms))
            timing["jacobian"] += time.perf_counter() - t0
            new_lin = True
            if not ctl.linearized(gi, g2, functools.partial(column_cosine, cn)):
                break
            if chol:  # factor at the first linearization, refactor when the last step's CG ran long
                if dfac is None or last_cg > REFACTOR_AFTER:
                    t0 = time.perf_counter()
                    if dfac is None:
                        dfac = DeviceFactor(lin, policy, problem.device, step.krylov)
                    dfac.factor(lin, float(ctl.lam), step.min_diagonal, step.max_diagonal)
                    refactor_log["factorizations"] += 1
                    dt = time.perf_counter() - t0  # host assembly, factorization and copy: part of the linear solve
                    timing["factor"] = timing.get("factor", 0.0) + dt
                    timing["linear_solve"] += dt
                    if step.factor != dfac.layout:
                        step = _replace(step, factor=dfac.layout)
                        step_args = (arrays, state, lin_shape, lam0, lam0, active, dfac.operands())
                        step_exe, cw = compiled(step_fn, (spec, step), step_args)
                        timing["compile"] += cw
                else:
                    refactor_log["reused"] += 1
        t0 = time.perf_counter()
        lam = jnp.asarray(ctl.lam, jnp.float64)
        rtol = jnp.asarray(ctl.eta, jnp.float64)
        extra = (dfac.operands(),) if dfac is not None else ()
        assert step_exe is not None
        trial, out = step_exe(arrays, state, lin, lam, rtol, active, *extra)
        out = _host(out)
        last_cg = int(out["iterations"])
        fallbacks = 0
        jac_over = int(out["jacobian_counts"][1]) > 0 and step.jacobian_storage is not Precision.FP64
        pre_over = int(out["preconditioner_counts"][1]) > 0 and step.preconditioner_storage is not Precision.FP64
        if policy.fallback and (jac_over or pre_over):  # redo the step with the wider storage (storage.store)
            wspec = step.widened(jac_over, pre_over)
            if wspec not in wide:
                wide[wspec], cw = compiled(step_fn, (spec, wspec), step_args)
                timing["compile"] += cw
            counts = {
                k: out[k] for k in ("jacobian_counts", "jacobian_max", "preconditioner_counts", "preconditioner_max")
            }
            trial, out = wide[wspec](arrays, state, lin, lam, rtol, active, *extra)
            out = {**_host(out), **counts}
            fallbacks = int(jac_over) + int(pre_over)
        timing["linear_solve"] += time.perf_counter() - t0
        stats = step_stats(out, None, jac_size, pre_size, new_lin)
        stats.fallbacks += fallbacks
        new_lin = False
        if ctl.stepped(step_numbers(out), stats):
            state = trial
        ctl.end_iteration()
    report = solve_report(ctl, cost0, policy, preconditioner, backend_name(problem.device))
    report.memory = memory_use(problem, lin_shape, step)
    if dfac is not None:
        report.memory.preconditioner_bytes = dfac.nbytes
        fmt = "fp16 panels" if dfac.store16 else np.dtype(dfac.factor_dtype).name.replace("float", "fp")
        report.direct = DirectStats(
            factor=fmt,
            backend=f"mixslam, triangular solves on {backend_name(problem.device)}",
            steps=refactor_log["factorizations"] + refactor_log["reused"],
            factorizations=refactor_log["factorizations"],
            reuses=refactor_log["reused"],
            cg_iterations=int(report.linear_iterations),
        )
    report.timing = {**timing, "total": time.perf_counter() - t_start - timing["compile"]}
    peak = device_peak_bytes(problem.device)
    if peak is not None:
        report.timing["device_peak_bytes"] = peak
    return problem.host_state(state), report


def memory_use(problem: DeviceProblem, lin_shape, step: StepSpec) -> MemoryUse:
    """The bytes of the stored Jacobian and preconditioner (``lin_shape``: the linearization's shapes)."""
    jac, pre = stored_sizes(problem, lin_shape.A.shape, step.preconditioner)
    nbytes = {Precision.FP64: 8, Precision.FP32: 4, Precision.FP16: 2, Precision.BF16: 2}
    return MemoryUse(
        jacobian_bytes=jac * nbytes[step.jacobian_storage],
        preconditioner_bytes=pre * nbytes[step.preconditioner_storage] if pre else None,
    )


def device_peak_bytes(device) -> int | None:
    """The device's peak allocated bytes so far (``memory_stats()["peak_bytes_in_use"]``; None where JAX
    reports no statistics, as on the CPU)."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without statistics raise various errors
        return None
    if not stats:
        return None
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else int(peak)
