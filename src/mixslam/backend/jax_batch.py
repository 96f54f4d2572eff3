"""Many problems of the same shape solved in one call: the per-problem device functions of :mod:`.jax_lm`
mapped over the batch with ``jax.vmap``, one :class:`~mixslam.solve.lm_control.LMControl` per problem on the
host.

Pose graphs with the same number of poses and edges (the same dimension and number of fixed poses), or
bundle-adjustment problems (VO windows, BAL problems) with the same numbers of cameras, points and
observations (the same model, the same free-variable counts and the same sigma) form a batch; their
measurements, information matrices, observation indices and initial states may differ. Every problem has
its own damping, forcing sequence, stopping rules and report; a problem that has stopped keeps its state
(its update is masked) and takes a zero right-hand side (0 CG iterations) while the others go on. One LM
iteration of the batch is two device calls, whatever its size: the linearization (only when some problem
needs a new one: a rejected step's re-solve reuses it) and the step, with the batch's CG iterations run
together (the batch's ``lax.while_loop`` runs until its last problem has stopped; finished problems are
masked).

A 16-bit store that overflows in some problems is redone, for the whole batch, with the next wider storage
and the wider result kept for those problems only (per-problem semantics of ``PrecisionPolicy.fallback``).

The batch starts from the problems' own states (``init="file"``: initialize pose graphs first, e.g. with
:func:`mixslam.pgo.initial_guess`), reports costs in fp64 computed on the device, and has no robust losses
(as the single-problem device backend).
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from ..errors import ConfigError
from ..linear.cgnr import CGSolver
from ..precision import Precision, PrecisionPolicy
from ..solve.report import SolveReport, Status
from .choice import jax_preconditioner
from .jax_device import device as jax_device
from .jax_device import jax, jnp
from .jax_lm import (
    StepSpec,
    backend_name,
    check_policy,
    column_cosine,
    compiled,
    cost_fn,
    device_bundle,
    device_peak_bytes,
    device_pose_graph,
    linearize_fn,
    lm_control,
    memory_use,
    solve_report,
    step_fn,
    step_numbers,
    step_stats,
    stored_sizes,
)

__all__ = ["solve_batch"]


def _kind(problems) -> str:
    from ..problem.bundle import BundleData
    from ..problem.pose_graph import PoseGraph

    if not problems:
        raise ConfigError("solve_batch: no problems given")
    if all(isinstance(p, PoseGraph) for p in problems):
        return "pgo"
    if all(isinstance(p, BundleData) for p in problems):
        return "ba"
    raise ConfigError("solve_batch: problems must be all PoseGraph or all BundleData objects")


def _shape_of(problem, kind: str) -> dict:
    if kind == "pgo":
        return {
            "dim": problem.dim,
            "poses": problem.num_poses,
            "edges": problem.num_edges,
            "fixed poses": int(np.sum(problem.fixed)),
        }
    return {
        "model": problem.model,
        "cameras": problem.num_cameras,
        "points": problem.num_points,
        "observations": problem.num_observations,
        "fixed cameras": int(np.sum(problem.fixed_cameras)),
        "fixed points": int(np.sum(problem.fixed_points)),
        "sigma": float(problem.sigma),
    }


def _check_shapes(problems, kind: str) -> None:
    """Refuse a batch whose problems differ in shape, naming the first that does and how."""
    ref = _shape_of(problems[0], kind)
    for i, p in enumerate(problems[1:], start=1):
        shape = _shape_of(p, kind)
        diff = [f"{k} {shape[k]} (problem 0: {ref[k]})" for k in ref if shape[k] != ref[k]]
        if diff:
            raise ConfigError(
                f"solve_batch: problem {i} differs in shape from problem 0: {', '.join(diff)}; a batch needs "
                f"the same {', '.join(ref)} in every problem (solve the others apart)"
            )


def _stack(trees: list, device):
    """The per-problem pytrees stacked along a new leading axis, put on ``device`` in one transfer each."""
    return jax.tree_util.tree_map(lambda *xs: jax.device_put(np.stack([np.asarray(x) for x in xs]), device), *trees)


def _row(tree, i: int):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def _select(mask, new, old):
    """Per-problem choice between two stacked pytrees (``mask`` (n,) bool on the device)."""

    def pick(a, b):
        m = mask.reshape(mask.shape + (1,) * (a.ndim - 1))
        return jnp.where(m, a, b)

    return jax.tree_util.tree_map(pick, new, old)


def solve_batch(problems, config) -> list[tuple[object, SolveReport]]:
    """Solve a batch of same-shaped problems on the device (``config.device``); returns one (solution, report)
    per problem, in order: :class:`~mixslam.problem.pose_graph.PoseGraph` with the optimized poses, or
    :class:`~mixslam.problem.bundle.BundleData` with the optimized cameras and points.

    ``problems``: all :class:`~mixslam.problem.pose_graph.PoseGraph` or all
    :class:`~mixslam.problem.bundle.BundleData`; ``config``: a :class:`mixslam.pgo.PGOConfig` /
    :class:`mixslam.ba.BAConfig` (``backend`` is taken as ``"jax"``; its precision, solver and
    preconditioner, ``lm``, ``cg``, ``device`` and, for BA, ``min_depth`` are used). Problems of different
    shapes raise :class:`~mixslam.errors.ConfigError`."""
    kind = _kind(problems)
    if config.backend != "jax":
        config = dataclasses.replace(config, backend="jax")  # validated again as a jax configuration
    policy = PrecisionPolicy.preset(config.precision, problem=kind)
    check_policy(policy)
    dev = jax_device(config.device)
    preconditioner = jax_preconditioner(config)
    for p in problems:
        p.validate()
    _check_shapes(problems, kind)
    t_start = time.perf_counter()
    cpu = jax.devices("cpu")[0]
    if kind == "pgo":
        singles = [device_pose_graph(g, policy, cpu) for g in problems]
    else:
        singles = [device_bundle(d, policy, cpu, config.min_depth) for d in problems]
    spec = singles[0].spec
    n = len(problems)
    arrays = _stack([s.arrays for s in singles], dev)
    state = _stack([s.state for s in singles], dev)
    size = singles[0].size
    t_setup = time.perf_counter() - t_start

    step = StepSpec.of(policy, preconditioner, config.cg, config.lm)
    timing = {"compile": 0.0, "residual": 0.0, "jacobian": 0.0, "linear_solve": 0.0, "update": 0.0}
    cost_exe, c0 = compiled(cost_fn, (spec,), (arrays, state), batched=True)
    lin_exe, c1 = compiled(linearize_fn, (spec,), (arrays, state), batched=True)
    lin_shape = jax.eval_shape(lambda a, s: jax.vmap(lambda x, y: linearize_fn(spec, x, y))(a, s), arrays, state)[0]
    vec = jnp.zeros(n, jnp.float64)
    on = jnp.ones(n, bool)
    step_args = (arrays, state, lin_shape, vec, vec, on)
    step_exe, c2 = compiled(step_fn, (spec, step), step_args, batched=True)
    timing["compile"] += c0 + c1 + c2
    per_shape = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), lin_shape)
    jac_size, pre_size = stored_sizes(singles[0], per_shape.A.shape, preconditioner)

    t_loop = time.perf_counter()
    state0 = state
    costs0 = jax.device_get(cost_exe(arrays, state))
    ctls = [lm_control(config.lm, config.cg, CGSolver.initial_lambda) for _ in range(n)]
    if size == 0:
        for ctl in ctls:
            ctl.stop(Status.CONVERGED, "no free variable (every one is fixed): the input is returned unchanged")
    for i, ctl in enumerate(ctls):
        if not ctl.done:
            ctl.start(float(costs0[0][i]), float(costs0[2][i]))
    lin = None
    new_lin = np.zeros(n, bool)
    wide: dict = {}
    while True:
        t_it = time.perf_counter()
        running = np.array([ctl.begin() for ctl in ctls])
        if not running.any():
            break
        needs = running & np.array([ctl.needs_linearization for ctl in ctls])
        if needs.any() or lin is None:
            t0 = time.perf_counter()
            lin, norms = lin_exe(arrays, state)  # a rejected problem's state is unchanged: same linearization
            norms = np.asarray(jax.device_get(norms))
            timing["jacobian"] += time.perf_counter() - t0
            for i in (int(k) for k in np.flatnonzero(needs)):
                new_lin[i] = True
                gi, g2, cn = (float(v) for v in norms[i])
                if not ctls[i].linearized(gi, g2, functools.partial(column_cosine, cn)):
                    running[i] = False
        if not running.any():
            break
        t0 = time.perf_counter()
        lam = jnp.asarray([ctl.lam for ctl in ctls], jnp.float64)
        rtol = jnp.asarray([ctl.eta if r else 1.0 for ctl, r in zip(ctls, running)], jnp.float64)
        active = jax.device_put(running, dev)
        trial, out_dev = step_exe(arrays, state, lin, lam, rtol, active)
        out = jax.device_get(out_dev)
        fallbacks = np.zeros(n, int)
        jac_over = (out["jacobian_counts"][:, 1] > 0) & running
        pre_over = (out["preconditioner_counts"][:, 1] > 0) & running
        jac_over &= step.jacobian_storage is not Precision.FP64
        pre_over &= step.preconditioner_storage is not Precision.FP64
        redo = (jac_over | pre_over) if policy.fallback else np.zeros(n, bool)
        if redo.any():  # the wider storage for the whole batch, kept where a store overflowed
            wspec = step.widened(bool(jac_over.any()), bool(pre_over.any()))
            if wspec not in wide:
                wide[wspec], cw = compiled(step_fn, (spec, wspec), step_args, batched=True)
                timing["compile"] += cw
            wtrial, wout = wide[wspec](arrays, state, lin, lam, rtol, active)
            mask = jax.device_put(redo, dev)
            trial = _select(mask, wtrial, trial)
            wout = jax.device_get(wout)
            keep = ("jacobian_counts", "jacobian_max", "preconditioner_counts", "preconditioner_max")
            out = {
                k: (v if k in keep else np.where(redo.reshape((n,) + (1,) * (np.ndim(v) - 1)), wout[k], v))
                for k, v in out.items()
            }
            fallbacks = jac_over.astype(int) + pre_over.astype(int)
        timing["linear_solve"] += time.perf_counter() - t0
        elapsed = time.perf_counter() - t_it
        accept = np.zeros(n, bool)
        for i in (int(k) for k in np.flatnonzero(running)):
            stats = step_stats(out, i, jac_size, pre_size, bool(new_lin[i]))
            stats.fallbacks += int(fallbacks[i])
            new_lin[i] = False
            accept[i] = ctls[i].stepped(step_numbers(out, i), stats, elapsed)
            ctls[i].end_iteration()
        if accept.any():
            state = _select(jax.device_put(accept, dev), trial, state)
    t_end = time.perf_counter()
    final = jax.device_get(cost_exe(arrays, state))
    host_state = jax.device_get(state)
    timing["total"] = t_setup + (t_end - t_loop)
    timing["setup"] = t_setup
    peak = device_peak_bytes(dev)
    if peak is not None:
        timing["device_peak_bytes"] = peak
    timing["batch_size"] = n
    memory = memory_use(singles[0], per_shape, step)
    del state0
    results = []
    for i, (p, ctl) in enumerate(zip(problems, ctls)):
        rep = solve_report(ctl, float(costs0[1][i]), policy, preconditioner, backend_name(dev))
        rep.initial_cost = float(costs0[1][i])
        rep.final_cost = float(final[1][i])
        rep.timing = dict(timing)
        rep.memory = memory
        rep.init = "file"
        a, b = (np.asarray(x[i]) for x in host_state)
        results.append((p.with_poses(a, b) if kind == "pgo" else p.with_state(a, b), rep))
    return results
