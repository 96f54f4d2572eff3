"""Figures 4-5: pose-graph optimization (PGO) on one long household-robot trajectory, in every precision.

Both figures use the pose graph of :func:`long_trajectory_graph`: a wheeled robot touring the simulated
household world of :mod:`mixslam.sim.world` lap after lap, with a keyframe every 0.25 m, wheel-odometry edges
between consecutive keyframes and loop closures at revisits. A problem of N keyframes is the prefix graph
of poses 0..N-1 (:func:`prefix_graph`): the graph a SLAM back-end holds when its N-th keyframe arrives.

4. **Solve time vs keyframes of the growing graph.** Each prefix size of ``sizes.pgo_keyframes`` is solved
   from the same chordal initial guess (computed once per size and passed as the graph's poses with
   ``init="file"``, so the initialization is not timed) by fp64 + Cholesky, fp64 / fp32 / mixed + IC
   (static factor, refreshed only when CG stalls: ``ICConfig.refactor="on_stall"``, the default), fp32 / mixed
   + IC refactored at every linearization (``ICConfig.refactor="always"``) and fp32 / mixed + block-Jacobi CGNR. The
   time is the minimum over ``sizes.repeats`` runs of ``SolveReport.timing["total"] - timing["init"]``: the
   problem analysis (variable numbering, normal-matrix pattern, symbolic factorization) and the LM loop,
   without numba compilation (done once before by :func:`mixslam.pgo.warmup`) and without the input checks
   and the final fp64 cost that :func:`~mixslam.pgo.optimize_pose_graph` does outside its timer. Runs are
   interleaved (every variant once, then the next repeat) and run in the main process, one at a time.
5. **Cumulative ATE histogram over many PGO problems.** ``sizes.pgo_problems`` prefixes of the
   ``sizes.pgo_trajectory_keyframes``-keyframe trajectory, each ending at a keyframe where a loop closure
   arrives (evenly spread over those keyframes), are solved by fp64 + Cholesky, fp32 + IC and mixed + IC
   from the chordal initial guess, and the ATE RMSE (SE(3) alignment) of each solution against the true
   prefix is recorded, with the ATE of the odometry (the graph's initial poses) and of the chordal guess
   for reference. The problems go through the bench's task runner (a process pool or Dask).
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from typing import Any

import numpy as np

from ..eval import ate, stats
from ..linear.config import ICConfig
from ..pgo import PGOConfig, initial_guess, optimize_pose_graph, warmup
from ..problem.pose_graph import PoseGraph
from ..sim.pose_graph import compose_odometry, edge_information, noisy_measurements
from ..sim.world import TrajectoryConfig, WorldConfig, make_world, trajectory_poses
from ..slam import plots
from ..solve.config import LMConfig
from ..solve.report import SolveReport
from .context import BenchContext, FigureResult, new_figure, save_figure
from .report import fp16_arithmetic_note

# -- the long trajectory ---------------------------------------------------------------------------------
WORLD_ROOMS = (3, 2)
"""Rooms of the simulated flat (the default world: a 19-27 m tour through its outer ring of rooms)."""
KEYFRAME_SPACING = 0.25
"""Metres driven between keyframes (a keyframe-based SLAM front end at walking speed): ~95 keyframes a lap."""
ODOMETRY_SIGMA = (0.01, 0.005)
"""(translation m, rotation rad) noise std per axis of an odometry edge (4% of the step, ~1.1 deg per metre
of heading drift: wheel odometry of a small indoor robot)."""
LOOP_SIGMA = (0.05, 0.01)
"""(translation m, rotation rad) noise std per axis of a loop-closure edge (a relative pose estimated from
images taken up to 1 m apart: looser than odometry)."""
LOOP_RECALL = 0.25
"""Probability that a keyframe with a true revisit partner gets one loop closure (place recognition)."""
LOOP_MIN_SEPARATION = 40
"""Loop closures (i, j) have ``j - i > LOOP_MIN_SEPARATION`` keyframes (10 m driven)."""
LOOP_MAX_DISTANCE = 1.0
"""A revisit's keyframe positions are at most this far apart (m) ..."""
LOOP_MAX_ANGLE = 30.0
"""... and its orientations differ by at most this angle (deg)."""

# -- figure 4 ----------------------------------------------------------------------------------------------
VARIANTS = (
    # label, precision, solver, IC refactor rule (None: the ICConfig default, "on_stall")
    ("fp64 cholesky", "fp64", "cholesky", None),
    ("fp64 ic", "fp64", "ic", None),
    ("fp32 ic", "fp32", "ic", None),
    ("mixed ic", "mixed", "ic", None),
    ("fp32 ic refactor", "fp32", "ic", "always"),
    ("mixed ic refactor", "mixed", "ic", "always"),
    ("fp32 cgnr", "fp32", "cgnr", None),
    ("mixed cgnr", "mixed", "cgnr", None),
)
"""Figure 4's solver variants. "ic" alone is the static (reused) factor; "ic refactor" refactors at every
linearization."""
LM_MAX_ITERATIONS = 100
"""LM iterations at most (both figures)."""

# -- figure 5 ----------------------------------------------------------------------------------------------
ATE_POLICIES = (("fp64", "fp64", "cholesky"), ("fp32", "fp32", "ic"), ("mixed", "mixed", "ic"))
"""Figure 5's policies: (name, precision, solver)."""
# identical curves must stay visible on top of each other: wide solid, then dashed, then dotted
_STYLES5 = {
    "fp64": {"color": "tab:blue", "linestyle": "-", "linewidth": 3.0, "alpha": 0.6},
    "fp32": {"color": "tab:green", "linestyle": "--", "linewidth": 1.8},
    "mixed": {"color": "tab:red", "linestyle": ":", "linewidth": 1.8},
    "odometry": {"color": "tab:gray", "linestyle": "-.", "linewidth": 1.4},
}


def long_trajectory_graph(keyframes: int, seed: int):
    """The long household-robot pose graph: returns ``(graph, truth_R, truth_t)`` (fp64, 3D poses).

    Trajectory: :func:`mixslam.sim.world.make_world` (``WORLD_ROOMS`` rooms, seed ``seed``) and its tour driven
    lap after lap by a wheeled robot (planar: camera height 1.05-1.25 m with small bumps and tilts, a lateral
    wobble that differs each lap), one keyframe every ``KEYFRAME_SPACING`` = 0.25 m, the true poses those of
    the keyframe camera (:func:`mixslam.sim.world.trajectory_poses`). Planar motion, but 3D poses (SE(3)).

    Edges: odometry between consecutive keyframes with noise ``ODOMETRY_SIGMA`` = (0.01 m, 0.005 rad) per
    axis; loop closures at true revisits (positions within 1 m, orientations within 30 deg, more than 40
    keyframes apart): each keyframe with a revisit partner gets, with probability ``LOOP_RECALL`` = 0.25, one
    closure to a partner drawn uniformly, with noise ``LOOP_SIGMA`` = (0.05 m, 0.01 rad). Noise is applied
    as in :func:`mixslam.sim.pose_graph.simulate_pose_graph` (``Z_R = R_rel Exp(w)``, ``Z_t = t_rel + v``;
    information = inverse covariance of the g2o error: ``I / sigma_t^2`` and ``4 I / sigma_r^2``).
    Odometry edges come first (edge k joins k and k + 1), then the loop closures sorted by newer keyframe.

    Initial poses: the composed odometry from the true first pose; pose 0 is fixed.
    """
    keyframes = int(keyframes)
    if keyframes < 2:
        raise ValueError(f"keyframes must be at least 2, got {keyframes}")
    world = make_world(WorldConfig(rooms=WORLD_ROOMS), seed)
    R, t, _ = trajectory_poses(
        world, TrajectoryConfig(keyframes=keyframes, speed=KEYFRAME_SPACING, planar=True), int(seed)
    )
    loops = _loop_closures(R, t, np.random.default_rng([int(seed), 40]))
    n = keyframes
    odo = np.arange(n - 1, dtype=np.int64)
    rng = np.random.default_rng([int(seed), 41])
    Zr_o, Zt_o = noisy_measurements(R, t, odo, odo + 1, ODOMETRY_SIGMA[0], ODOMETRY_SIGMA[1], rng)
    Zr_l, Zt_l = noisy_measurements(R, t, loops[:, 0], loops[:, 1], LOOP_SIGMA[0], LOOP_SIGMA[1], rng)
    info = np.concatenate(
        [
            edge_information(3, ODOMETRY_SIGMA[0], ODOMETRY_SIGMA[1], n - 1),
            edge_information(3, LOOP_SIGMA[0], LOOP_SIGMA[1], loops.shape[0]),
        ]
    )
    R0, t0 = compose_odometry(R[0], t[0], Zr_o, Zt_o)
    fixed = np.zeros(n, dtype=bool)
    fixed[0] = True
    graph = PoseGraph(
        dim=3,
        ids=np.arange(n, dtype=np.int64),
        rotations=R0,
        translations=t0,
        edge_i=np.concatenate([odo, loops[:, 0]]),
        edge_j=np.concatenate([odo + 1, loops[:, 1]]),
        meas_rotations=np.concatenate([Zr_o, Zr_l]),
        meas_translations=np.concatenate([Zt_o, Zt_l]),
        information=info,
        fixed=fixed,
        has_initial_guess=True,
        source=f"<long trajectory n={n} seed={seed}>",
    )
    return graph, R, t


def _loop_closures(R: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(q, 2) int64 closures (i, j), i < j, sorted by j: at most one per keyframe j (see
    :func:`long_trajectory_graph`)."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(t).query_pairs(LOOP_MAX_DISTANCE, output_type="ndarray").astype(np.int64).reshape(-1, 2)
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 1] - pairs[:, 0] > LOOP_MIN_SEPARATION]
    tr = np.einsum("nij,nij->n", R[pairs[:, 0]], R[pairs[:, 1]])  # trace(R_i^T R_j)
    pairs = pairs[0.5 * (tr - 1.0) >= math.cos(math.radians(LOOP_MAX_ANGLE))]
    pairs = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]
    js, start, count = np.unique(pairs[:, 1], return_index=True, return_counts=True)
    keep, pick = rng.random(js.size) < LOOP_RECALL, rng.random(js.size)
    idx = start + np.minimum((pick * count).astype(np.int64), count - 1)
    return pairs[idx[keep]].reshape(-1, 2)


def prefix_graph(graph: PoseGraph, n: int) -> PoseGraph:
    """The graph of poses 0..n-1 and the edges with both ends below ``n`` (a copy; poses as in ``graph``)."""
    n = int(n)
    if not 2 <= n <= graph.num_poses:
        raise ValueError(f"prefix size must be in 2..{graph.num_poses}, got {n}")
    keep = (graph.edge_i < n) & (graph.edge_j < n)
    g = replace(
        graph,
        ids=graph.ids[:n].copy(),
        rotations=graph.rotations[:n].copy(),
        translations=graph.translations[:n].copy(),
        edge_i=graph.edge_i[keep].copy(),
        edge_j=graph.edge_j[keep].copy(),
        meas_rotations=graph.meas_rotations[keep].copy(),
        meas_translations=graph.meas_translations[keep].copy(),
        information=graph.information[keep].copy(),
        fixed=graph.fixed[:n].copy(),
        edge_lines=None if graph.edge_lines is None else graph.edge_lines[keep].copy(),
        warnings=dict(graph.warnings),
        source=f"{graph.source}[:{n}]",
    )
    g.validate()
    return g


def loop_keyframes(graph: PoseGraph) -> np.ndarray:
    """Sorted keyframes at which a loop closure arrives (the newer end of every non-consecutive edge)."""
    loop = np.abs(graph.edge_j - graph.edge_i) != 1
    return np.unique(np.maximum(graph.edge_i, graph.edge_j)[loop])


def _config(precision: str, solver: str, ic_refactor: str | None = None) -> PGOConfig:
    ic = ICConfig() if ic_refactor is None else ICConfig(refactor=ic_refactor)
    return PGOConfig(
        precision=precision, solver=solver, init="file", lm=LMConfig(max_iterations=LM_MAX_ITERATIONS), ic=ic
    )


def _solve_seconds(report) -> float:
    return float(report.timing["total"] - report.timing.get("init", 0.0))


def _ratio(a, b) -> float:
    a, b = float(a), float(b)
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else float("nan")


# -- figure 4 ----------------------------------------------------------------------------------------------
def _escalation_note(ic_rows: list) -> str:
    n = sum(bool(r["ic_escalated"]) for r in ic_rows)
    if not n:
        return "No IC solve escalated to the complete minimum-degree factor (ICConfig.escalate)."
    which = sorted({f"{r['variant']} at {r['keyframes']}" for r in ic_rows if r["ic_escalated"]})
    return (
        f"{n} of {len(ic_rows)} IC solves escalated to the complete minimum-degree factor "
        f"(ICConfig.escalate: a freshly computed factor still left CG above 10% residual): " + ", ".join(which) + "."
    )


def figure4(ctx: BenchContext) -> FigureResult:
    """PGO solve time vs keyframes of the growing graph, every variant of :data:`VARIANTS` (see the module
    docstring): one CSV row per (size, variant), a log-log plot of the solve and linear-solve times."""
    s = ctx.config.sizes
    sizes = sorted({int(v) for v in s.pgo_keyframes if int(v) >= 2})
    notes = []
    if not sizes:
        return FigureResult(
            4, "PGO solve time vs keyframes in the growing graph", notes=["no pgo_keyframes size >= 2: nothing to do"]
        )
    title = "PGO solve time vs keyframes in the growing graph"
    length = sizes[-1]
    warmup()
    from .solves import warm_kernels

    warm_kernels()  # every kernel a timed solve touches (block-Jacobi, scaling) compiled or loaded before timing
    graph, _, _ = long_trajectory_graph(length, ctx.config.seed)
    ctx.log(f"  figure 4: trajectory of {length} keyframes, {graph.num_edges - (length - 1)} loop closures")
    loop_frames = loop_keyframes(graph)
    first_loop = int(loop_frames[0]) if loop_frames.size else None
    chains = [n for n in sizes if first_loop is None or n <= first_loop]
    if chains:
        notes.append(
            f"Skipped {', '.join(map(str, chains))} keyframes: no loop closure yet (the first arrives at "
            f"keyframe {first_loop}), and an odometry chain is solved exactly by its initial guess."
        )
        sizes = [n for n in sizes if n not in chains]
    if not sizes:
        return FigureResult(4, title, notes=notes)
    rows: list[dict[str, Any]] = []
    by: dict[tuple[int, str], dict[str, Any]] = {}
    for n in sizes:
        g = prefix_graph(graph, n)
        start = initial_guess(g, "chordal")
        loops = g.num_edges - (n - 1)
        best: dict[str, SolveReport] = {}
        for _ in range(max(1, int(s.repeats))):
            for label, precision, solver, refactor in VARIANTS:
                _, rep = optimize_pose_graph(start, _config(precision, solver, refactor))
                if label not in best or _solve_seconds(rep) < _solve_seconds(best[label]):
                    best[label] = rep
        base = best["fp64 cholesky"].final_cost
        for label, precision, solver, refactor in VARIANTS:
            rep = best[label]
            ic = rep.preconditioner_stats  # None: no IC factor (Cholesky, block-Jacobi)
            row: dict[str, Any] = {
                "keyframes": n,
                "edges": g.num_edges,
                "loop_closures": loops,
                "variant": label,
                "precision": precision,
                "solver": solver,
                "ic_refactor": (refactor or ICConfig().refactor) if solver == "ic" else "",
                "solve_s": _solve_seconds(rep),
                "linear_solve_s": float(rep.timing["linear_solve"]),
                "jacobian_s": float(rep.timing["jacobian"]),
                "residual_s": float(rep.timing["residual"]),
                "setup_s": float(rep.timing.get("setup", 0.0)),
                "lm_iterations": int(rep.iterations),
                "cg_iterations": int(rep.linear_iterations),
                "linear_s_per_cg_iteration": _ratio(rep.timing["linear_solve"], rep.linear_iterations),
                "ic_factorizations": int(ic.factorizations) if ic is not None else 0,
                "ic_escalated": bool(ic.escalated) if ic is not None else False,
                "initial_cost": float(rep.initial_cost),
                "final_cost": float(rep.final_cost),
                "cost_rel_fp64_cholesky": (float(rep.final_cost) - base) / base if base > 0 else float("nan"),
                "fp16_overflows": int(rep.quantization.overflows),
                "status": rep.status.value,
            }
            rows.append(row)
            by[(n, label)] = row
        done = {lab: by[(n, lab)] for lab, *_ in VARIANTS}
        ctx.log(
            f"  figure 4: {n} keyframes ({loops} loops): "
            + ", ".join(f"{lab} {done[lab]['solve_s']:.3f} s" for lab in done)
        )
    files = [ctx.write_csv("fig4_pgo_time.csv", rows)]
    files.append(_plot_fig4(ctx, sizes, by))

    n = sizes[-1]
    table = []
    for label, precision, solver, _refactor in VARIANTS:
        r = by[(n, label)]
        ref32 = by.get((n, label.replace(precision, "fp32", 1))) if precision != "fp32" else r
        table.append(
            {
                "keyframes": n,
                "variant": label,
                "solve_s": r["solve_s"],
                "linear_s": r["linear_solve_s"],
                "time_vs_fp32": _ratio(r["solve_s"], ref32["solve_s"]) if ref32 else float("nan"),
                "linear_vs_fp32": _ratio(r["linear_solve_s"], ref32["linear_solve_s"]) if ref32 else float("nan"),
                "time_vs_fp64_cholesky": _ratio(r["solve_s"], by[(n, "fp64 cholesky")]["solve_s"]),
                "lm_iterations": r["lm_iterations"],
                "cg_iterations": r["cg_iterations"],
                "us_per_cg_iteration": (1e6 * r["linear_s_per_cg_iteration"] if solver != "cholesky" else float("nan")),
                "cost_rel_fp64": r["cost_rel_fp64_cholesky"],
                "status": r["status"],
            }
        )

    def q(a, b, key="solve_s"):
        return _ratio(by[(n, a)][key], by[(n, b)][key])

    summary = {
        "largest_keyframes": n,
        "largest_edges": by[(n, "fp64 cholesky")]["edges"],
        "mixed_ic_over_fp32_ic_time": q("mixed ic", "fp32 ic"),
        "mixed_ic_over_fp32_ic_linear": q("mixed ic", "fp32 ic", "linear_solve_s"),
        "mixed_cgnr_over_fp32_cgnr_linear": q("mixed cgnr", "fp32 cgnr", "linear_solve_s"),
        "mixed_ic_over_fp32_ic_per_cg_iteration": q("mixed ic", "fp32 ic", "linear_s_per_cg_iteration"),
        "mixed_cgnr_over_fp32_cgnr_per_cg_iteration": q("mixed cgnr", "fp32 cgnr", "linear_s_per_cg_iteration"),
        "mixed_ic_over_fp64_cholesky_time": q("mixed ic", "fp64 cholesky"),
        "fp32_ic_over_fp64_cholesky_time": q("fp32 ic", "fp64 cholesky"),
        "refactor_over_reuse_mixed": q("mixed ic refactor", "mixed ic"),
        "refactor_over_reuse_fp32": q("fp32 ic refactor", "fp32 ic"),
        "max_abs_cost_rel_fp64_ic_variants": max(
            abs(by[(n, lab)]["cost_rel_fp64_cholesky"]) for lab, _, solver, _ in VARIANTS if solver == "ic"
        ),
        "fp16_overflows": int(sum(r["fp16_overflows"] for r in rows)),
        "not_converged": int(sum(r["status"] != "converged" for r in rows)),
    }
    notes.append(
        "Solve time = SolveReport.timing['total'] - timing['init'] (problem analysis + LM loop; the "
        "chordal initial guess is computed once per size and not timed, numba compilation excluded), "
        f"minimum over {max(1, int(s.repeats))} interleaved repeats, in the main process."
    )
    notes.append(
        "Times mix the cost of an iteration with the number of LM and CG iterations, which differ between "
        "variants (the lm_iterations and cg_iterations columns); the linear-solve time per CG iteration "
        "(us_per_cg_iteration, which includes the IC factorizations and the Jacobian quantization) "
        "separates the two."
    )
    notes.append(
        "'ic' is the static IC(2) factor computed at the first linearization and refreshed only when CG "
        "stalls (ICConfig.refactor='on_stall'); 'ic refactor' recomputes it at every linearization "
        "(ICConfig.refactor='always'). " + _escalation_note([r for r in rows if r["solver"] == "ic"])
    )
    notes.append(
        f"The table is the largest graph ({n} keyframes); every size is in the CSV and the plot. There, "
        f"mixed/fp32 IC took {q('mixed ic', 'fp32 ic'):.2f}x the solve time with "
        f"{by[(n, 'mixed ic')]['cg_iterations']} vs {by[(n, 'fp32 ic')]['cg_iterations']} CG iterations; "
        f"per CG iteration it is {q('mixed ic', 'fp32 ic', 'linear_s_per_cg_iteration'):.2f}x. Linear-solve "
        "time mixed/fp32 IC per size: "
        + ", ".join(
            f"{m}: {_ratio(by[(m, 'mixed ic')]['linear_solve_s'], by[(m, 'fp32 ic')]['linear_solve_s']):.2f}"
            for m in sizes
        )
        + ". Differences in iteration counts, not faster kernels, drive the ratios."
    )
    from .fig7_kernels import l3_cache_bytes

    l3 = l3_cache_bytes()
    notes.append(
        "The PGO mixed policy stores only the preconditioner (the IC factor) in fp16; the Jacobian stays fp32. "
        "On this CPU the 16-bit factor is converted to fp32 for every operation "
        f"({fp16_arithmetic_note()}) and the L3 ({l3 / 2**20:.0f} MiB) holds these factors whole, so "
        "halving the bytes saves less than on the GPU of the original claim, where the triangular "
        "solves are bandwidth-bound."
    )
    bad = [f"{r['variant']} at {r['keyframes']}" for r in rows if r["status"] != "converged"]
    if bad:
        notes.append(f"Not converged (status other than 'converged'; final costs in the CSV): {', '.join(bad)}.")
    return FigureResult(4, title, files, table, summary, notes)


def _variant_style(label: str, precision: str, solver: str, refactor: str | None) -> dict:
    colors = {
        ("fp64", "cholesky"): "black",
        ("fp64", "ic"): "tab:blue",
        ("fp32", "ic"): "tab:green",
        ("mixed", "ic"): "tab:red",
        ("fp32", "cgnr"): "tab:olive",
        ("mixed", "cgnr"): "tab:purple",
    }
    markers = {"cholesky": "s", "ic": "o", "cgnr": "^"}
    return {
        "color": colors.get((precision, solver), "tab:gray"),
        "marker": markers.get(solver, "x"),
        "linestyle": "--" if refactor == "always" else "-",
        "linewidth": 1.4,
        "markersize": 4,
    }


def _plot_fig4(ctx: BenchContext, sizes: list, by: dict) -> str:
    from matplotlib.ticker import NullFormatter

    fig = new_figure((11.0, 4.6))
    axes = fig.subplots(1, 2)
    for ax, key, what in ((axes[0], "solve_s", "solve time [s]"), (axes[1], "linear_solve_s", "linear-solve time [s]")):
        for label, precision, solver, refactor in VARIANTS:
            y = np.array([by[(n, label)][key] for n in sizes], dtype=np.float64)
            ax.plot(sizes, np.maximum(y, 1e-6), label=label, **_variant_style(label, precision, solver, refactor))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(n) for n in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("keyframes in the pose graph")
        ax.set_ylabel(what)
        ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    axes[0].set_title("PGO solve (chordal start, init not timed)")
    axes[1].set_title("of which linear solves")
    axes[0].legend(fontsize="small")
    return save_figure(ctx, fig, "fig4_pgo_time.png")


# -- figure 5 ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _cached_trajectory(keyframes: int, seed: int):
    return long_trajectory_graph(keyframes, seed)


def problem_sizes(graph: PoseGraph, count: int) -> np.ndarray:
    """Prefix sizes of figure 5's problems: ``count`` loop-closure keyframes spread evenly over all of them
    (all of them when there are fewer), each problem ending at (and including) that keyframe."""
    ks = loop_keyframes(graph)
    count = int(count)
    if count <= 0 or ks.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ks.size > count:
        ks = ks[np.unique(np.round(np.linspace(0, ks.size - 1, count)).astype(np.int64))]
    return (ks + 1).astype(np.int64)


def _ate_rmse(truth_R, truth_t, R, t) -> float:
    e = ate(truth_R, truth_t, R, t, mode="se3")
    return float(np.sqrt(np.mean(e * e)))


def _solve_problem(keyframes: int, seed: int, problem_index: int, n: int) -> dict:
    """One problem of figure 5: the prefix of ``n`` keyframes of the long trajectory (rebuilt from
    ``(keyframes, seed)`` in this process and cached), solved from the chordal guess in each of
    :data:`ATE_POLICIES`; returns the CSV row."""
    graph, truth_R, truth_t = _cached_trajectory(int(keyframes), int(seed))
    g = prefix_graph(graph, n)
    tR, tt = truth_R[:n], truth_t[:n]
    start = initial_guess(g, "chordal")
    row = {
        "problem": int(problem_index),
        "keyframes": int(n),
        "edges": g.num_edges,
        "loop_closures": g.num_edges - (int(n) - 1),
        "ate_odometry_m": _ate_rmse(tR, tt, g.rotations, g.translations),
        "ate_chordal_m": _ate_rmse(tR, tt, start.rotations, start.translations),
    }
    for name, precision, solver in ATE_POLICIES:
        out, rep = optimize_pose_graph(start, _config(precision, solver))
        row[f"ate_{name}_m"] = _ate_rmse(tR, tt, out.rotations, out.translations)
        row[f"cost_{name}"] = float(rep.final_cost)
        row[f"lm_iterations_{name}"] = int(rep.iterations)
        row[f"cg_iterations_{name}"] = int(rep.linear_iterations)
        row[f"solve_s_{name}"] = _solve_seconds(rep)
        row[f"fp16_overflows_{name}"] = int(rep.quantization.overflows)
        row[f"status_{name}"] = rep.status.value
    return row


def figure5(ctx: BenchContext) -> FigureResult:
    """Cumulative histogram of the ATE RMSE of many PGO problems cut from one long trajectory, in fp64
    (Cholesky), fp32 and mixed (IC), with the odometry for reference (see the module docstring)."""
    s = ctx.config.sizes
    title = "Cumulative ATE over PGO problems from one long trajectory: mixed vs fp32 vs fp64"
    keyframes, seed = int(s.pgo_trajectory_keyframes), int(ctx.config.seed)
    graph, _, _ = _cached_trajectory(keyframes, seed)
    ns = problem_sizes(graph, s.pgo_problems)
    nloops = loop_keyframes(graph).size
    ctx.log(f"  figure 5: {ns.size} problems from a {keyframes}-keyframe trajectory ({nloops} loop-closure keyframes)")
    if ns.size == 0:
        return FigureResult(5, title, notes=[f"the {keyframes}-keyframe trajectory has no loop closure: no problem"])
    rows = ctx.runner.map(
        _solve_problem, [(keyframes, seed, k, int(n)) for k, n in enumerate(ns)], label="PGO problems"
    )
    files = [ctx.write_csv("fig5_pgo_ate.csv", rows)]
    series = {name: np.array([r[f"ate_{name}_m"] for r in rows]) for name, _, _ in ATE_POLICIES}
    series["odometry"] = np.array([r["ate_odometry_m"] for r in rows])
    plots.write_cumulative_csv(ctx.path("fig5_pgo_ate_cdf.csv"), series)
    files.append("fig5_pgo_ate_cdf.csv")
    files.append(_plot_fig5(ctx, series, len(rows), keyframes))

    ref = series["fp64"]
    table: list[dict] = []
    summary: dict[str, Any] = {
        "problems": len(rows),
        "trajectory_keyframes": keyframes,
        "largest_problem_keyframes": int(ns.max()),
        "smallest_problem_keyframes": int(ns.min()),
    }
    for name, v in series.items():
        st = stats(v)
        ratio = v / ref
        table.append(
            {
                "policy": name,
                "max_m": st["max"],
                "p99_m": st["p99"],
                "p90_m": st["p90"],
                "mean_m": st["mean"],
                "median_m": st["median"],
                "median_ratio_to_fp64": float(np.median(ratio)),
                "max_ratio_to_fp64": float(np.max(ratio)),
            }
        )
        if name in ("fp32", "mixed"):
            summary[f"{name}_median_ratio_to_fp64"] = float(np.median(ratio))
            summary[f"{name}_max_ratio_to_fp64"] = float(np.max(ratio))
        summary[f"{name}_mean_ate_m"] = st["mean"]
    summary["mixed_worse_than_fp64_by_1pct"] = int(np.sum(series["mixed"] > 1.01 * ref))
    summary["mixed_worse_than_fp64_by_5pct"] = int(np.sum(series["mixed"] > 1.05 * ref))
    summary["fp32_worse_than_fp64_by_1pct"] = int(np.sum(series["fp32"] > 1.01 * ref))
    for name, _, _ in ATE_POLICIES:
        summary[f"{name}_not_converged"] = int(sum(r[f"status_{name}"] != "converged" for r in rows))
    summary["fp16_overflows"] = int(sum(r["fp16_overflows_mixed"] for r in rows))
    notes = [
        f"Problems: prefixes of one {keyframes}-keyframe trajectory (seed {seed}) ending at "
        f"{ns.size} of its {nloops} loop-closure keyframes (evenly spread), {int(ns.min())}-{int(ns.max())} "
        "keyframes; every policy starts from the same chordal initial guess (the usual initialization of a "
        "PGO back-end; computed once per problem, so the policies see identical inputs).",
        "ATE = RMSE of the per-keyframe position errors after SE(3) alignment to the true prefix; "
        "'odometry' is the composed odometry (the graph's initial poses), for reference.",
        "The problems are nested prefixes of one trajectory, so they are strongly correlated: the histogram "
        "shows the spread over the trajectory's growth, not over independent runs (the original claim used "
        "800 problems; the 'full' preset uses pgo_problems=800).",
    ]
    bad = {name: summary[f"{name}_not_converged"] for name, _, _ in ATE_POLICIES if summary[f"{name}_not_converged"]}
    if bad:
        notes.append(f"Solves not converged (per policy): {bad}; their best iterate is scored.")
    return FigureResult(5, title, files, table, summary, notes)


def _plot_fig5(ctx: BenchContext, series: dict, count: int, keyframes: int) -> str:
    fig = new_figure((7.0, 4.8))
    ax = fig.add_subplot()
    floor = (
        min(float(v[v > 0].min()) for v in series.values() if np.any(v > 0)) / 10.0
        if any(np.any(v > 0) for v in series.values())
        else 1e-12
    )
    for name, v in series.items():
        x = np.sort(np.maximum(v[np.isfinite(v)], floor))
        if x.size == 0:
            continue
        c = np.arange(1, x.size + 1) / x.size
        ax.step(
            np.concatenate([x[:1], x]),
            np.concatenate([[0.0], c]),
            where="post",
            label=f"{name} (median {np.median(x):.4g} m)",
            **_STYLES5.get(name, {"color": "black"}),
        )
    ax.set_xscale("log")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("ATE RMSE [m] (SE(3) alignment)")
    ax.set_ylabel("fraction of problems with ATE <= x")
    ax.set_title(f"{count} PGO problems from one {keyframes}-keyframe trajectory")
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    ax.legend(loc="lower right", fontsize="small")
    return save_figure(ctx, fig, "fig5_pgo_ate_cdf.png")
