"""The problems of figures 6 and 7, and the cache they share for one bench run.

**BA**: ``sizes.ba_window_seeds`` simulated 50-keyframe sliding windows (:func:`~mixslam.sim.bundle.simulate_window`
with the default :class:`~mixslam.sim.bundle.WindowConfig`, seed 0, 1, ...) and, when ``sizes.use_data`` and the
data folder is there, the BAL files of ``sizes.ba_files``. **PGO**: one simulated sphere graph
(:func:`~mixslam.sim.pose_graph.simulate_pose_graph`, ``"sphere"``, seed 0, :data:`PGO_SIM_POSES` poses) and,
with the data, the g2o files of ``sizes.pgo_files``. Every PGO problem holds the graph at its chordal initial
guess, computed once per graph, so that the solves (``init="file"``, :mod:`mixslam.bench.solves`) do not time
the initialization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .context import BenchContext

if TYPE_CHECKING:
    from ..problem.bundle import BundleData
    from ..problem.pose_graph import PoseGraph

PGO_SIM_POSES = {"quick": 400, "default": 2500, "full": 2500}
"""Poses of the simulated sphere graph, per bench scale."""


@dataclass
class Problem:
    kind: str
    """``ba`` or ``pgo``."""
    name: str
    data: BundleData | PoseGraph
    """BundleData (BA) or the PoseGraph at its chordal initial guess (PGO)."""
    simulated: bool


_CACHE: dict = {"ctx": None}


def run_cache(ctx: BenchContext) -> dict:
    """Per-run cache shared by figures 6 and 7: ``problems`` (by kind), ``solves`` (by problem, precision and
    solver) and ``notes`` (skipped files, failed solves). Reset when a different context asks."""
    if _CACHE.get("ctx") is not ctx:
        _CACHE.clear()
        _CACHE.update(ctx=ctx, problems={}, solves={}, notes=[])
    return _CACHE


def problems(ctx: BenchContext, kind: str) -> list:
    """The figure's problems of ``kind`` (see the module docstring); missing data files are noted and skipped."""
    cache = run_cache(ctx)
    if kind in cache["problems"]:
        return cache["problems"][kind]
    sizes = ctx.config.sizes
    out = []
    if kind == "ba":
        from ..sim.bundle import WindowConfig, simulate_window

        for i in range(int(sizes.ba_window_seeds)):
            seed = ctx.config.seed + i
            out.append(Problem("ba", f"ba-window-seed{seed}", simulate_window(WindowConfig(), seed=seed).data, True))
        for path in _data_files(ctx, "ba", sizes.ba_files):
            from ..io.bal import read_bal

            out.append(Problem("ba", path.name, read_bal(path), False))
    else:
        from ..pgo import initial_guess
        from ..sim.pose_graph import simulate_pose_graph

        n = PGO_SIM_POSES.get(ctx.config.scale, 2500)
        g = simulate_pose_graph("sphere", n, seed=ctx.config.seed).graph
        out.append(Problem("pgo", f"sphere{n}-sim", initial_guess(g, "chordal"), True))
        for path in _data_files(ctx, "pgo", sizes.pgo_files):
            from ..io import read_pose_graph

            out.append(Problem("pgo", path.name, initial_guess(read_pose_graph(path), "chordal"), False))
    cache["problems"][kind] = out
    return out


def _data_files(ctx: BenchContext, sub: str, names) -> list:
    from ..data import data_dir

    if not ctx.config.sizes.use_data or not names:
        return []
    root = data_dir()
    notes = run_cache(ctx)["notes"]
    if root is None:
        msg = f"{sub.upper()} data files skipped: the data folder was not found (set MIXSLAM_DATA)."
        if msg not in notes:
            notes.append(msg)
        return []
    out = []
    for name in names:
        p = root / sub / name
        if p.is_file():
            out.append(p)
        else:
            msg = f"{sub}/{name} skipped: not in the data folder."
            if msg not in notes:
                notes.append(msg)
    return out
