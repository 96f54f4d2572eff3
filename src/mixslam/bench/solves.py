"""Whole solves of the figure 6-7 problems, timed and cached for the run (figure 7 reuses figure 6's).

BA solves use the :class:`~mixslam.ba.BAConfig` defaults, PGO solves the :class:`~mixslam.pgo.PGOConfig`
defaults (LM at most 100 iterations, CG at most 500 per solve, IC(2) static factor refreshed when CG stalls)
from the problem's chordal guess (``init="file"``). A whole solve's time is the minimum over
``sizes.repeats`` runs (these machines are noisy); numba compilation is done before anything is timed
(:func:`warm_kernels`). Everything runs sequentially in the main process.
"""

from __future__ import annotations

from .context import BenchContext
from .problems import Problem, run_cache

POLICIES = ("fp64", "fp32", "mixed")
"""The precision policies compared (the ``ba`` / ``pgo`` presets of those names)."""
CG_SOLVER = {"ba": "cgnr", "pgo": "ic"}
"""The iterative solver of each problem kind."""
DIRECT_SOLVER = {"ba": "schur", "pgo": "cholesky"}
"""The fp64 direct solver of each problem kind (the accuracy and speed baseline of figure 7)."""

_WARM = {"done": False}


def warm_kernels() -> None:
    """numba compilation / cache load of every kernel the solves use, on tiny problems, once per process."""
    if _WARM["done"]:
        return
    from ..ba import optimize_bundle
    from ..ba import warmup as ba_warmup
    from ..pgo import PGOConfig, optimize_pose_graph
    from ..pgo import warmup as pgo_warmup
    from ..sim.bundle import WindowConfig, simulate_window
    from ..sim.pose_graph import simulate_pose_graph
    from ..solve.config import LMConfig

    ba_warmup("pinhole")
    ba_warmup("bal")
    pgo_warmup()
    lm = LMConfig(max_iterations=2)
    win = simulate_window(WindowConfig(keyframes=12, landmarks_per_frame=30, fixed_frames=2), seed=0).data
    for prec, solver in (("fp64", "schur"),) + tuple((p, "cgnr") for p in POLICIES):
        optimize_bundle(win, precision=prec, solver=solver, lm=lm)
    for dim_kind in ("sphere", "manhattan"):
        g = simulate_pose_graph(dim_kind, 40, seed=0).graph
        for prec, solver in (("fp64", "cholesky"),) + tuple((p, "ic") for p in POLICIES):
            optimize_pose_graph(g, PGOConfig(precision=prec, solver=solver, init="chordal", lm=lm))
    _WARM["done"] = True


def run_once(prob: Problem, precision: str, solver: str):
    """One whole solve of ``prob``; returns its :class:`~mixslam.solve.report.SolveReport`."""
    from ..problem.bundle import BundleData
    from ..problem.pose_graph import PoseGraph

    if prob.kind == "ba":
        from ..ba import optimize_bundle

        assert isinstance(prob.data, BundleData)
        return optimize_bundle(prob.data, precision=precision, solver=solver)[1]
    from ..pgo import PGOConfig, optimize_pose_graph

    assert isinstance(prob.data, PoseGraph)
    return optimize_pose_graph(prob.data, PGOConfig(precision=precision, solver=solver, init="file"))[1]


def solve(ctx: BenchContext, prob: Problem, precision: str, solver: str):
    """The report of the fastest of ``sizes.repeats`` whole solves (cached for the run); None if it failed."""
    cache = run_cache(ctx)
    key = (prob.kind, prob.name, precision, solver)
    if key not in cache["solves"]:
        best = None
        try:
            for _ in range(max(1, int(ctx.config.sizes.repeats))):
                rep = run_once(prob, precision, solver)
                if best is None or rep.timing["total"] < best.timing["total"]:
                    best = rep
        except Exception as exc:  # one failing solve must not hide the others
            cache["notes"].append(f"{prob.name} {precision}/{solver} failed: {type(exc).__name__}: {exc}")
            best = None
        cache["solves"][key] = best
    return cache["solves"][key]


def lm_seconds(rep) -> float:
    """The LM loop's time: the report's total less problem setup and initialization."""
    t = rep.timing
    return t["total"] - t.get("setup", 0.0) - t.get("init", 0.0)
