"""Many seeded trajectories, every policy on each: the data behind the ATE tables and histograms.

Trajectory ``i`` of a study with seed ``S`` uses the seed :func:`trajectory_seed` (S, i) for its world, its
run and its loop proposals, the same for every policy, so policies are compared on identical inputs.
Trajectories run in parallel processes (``workers``); the results do not depend on the worker count.

ATE is measured after an SE(3) alignment of the whole trajectory to the ground truth (keyframe 0 is at the
truth anyway; the alignment removes nothing the estimator could know). The report's ``ate_vo`` / ``ate_lc``
statistics pool the per-keyframe errors of every trajectory; each trajectory also lists its own RMSE.
``ate_lc`` is the final loop-closed trajectory (pose graph, then global BA); ``ate_pgo`` the pose graph's
alone (equal to ``ate_lc`` when the global BA is off or did not run).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from numbers import Integral
from typing import Any

import numpy as np

from ..errors import ConfigError, check_config_fields, check_seed
from ..eval import ALIGN_MODES, ate, stats
from ..runner import BatchInterrupted, TaskRunner
from ..sim.world import CameraConfig, TrajectoryConfig, WorldConfig, make_world, simulate_run
from ..solve.report import SolveCounters, time_stats
from .pipeline import PipelineConfig, run_pipeline
from .vo import VOConfig

POLICIES = ("fp64", "fp32", "mixed", "fp16")
LOOP_COUNTS = (
    "loop_candidates",
    "loop_candidates_aliased",
    "loops_accepted",
    "loops_wrong",
    "loops_rejected",
    "loops_rejected_wrong",
    "loops_wrong_kept",
)
"""The loop-closure counts of a trajectory's row that :func:`summarize` totals over the study (``loops``):
candidates (aliased among them), loops admitted by the verification, false loops admitted (measurement off
the truth, :func:`mixslam.slam.pipeline.loop_is_wrong`), loops GNC rejected (false ones among them), false
loops left in the final trajectory."""
MIN_KEYFRAMES = 3
"""Fewest keyframes of a study run: the se3/sim3 alignment before the ATE needs 3 poses."""


@dataclass(frozen=True)
class StudyConfig:
    """One study: the simulated worlds and runs, and the pipeline applied to them."""

    world: WorldConfig = field(default_factory=WorldConfig)
    """The household world (rooms, landmarks)."""
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    """The robot's run (keyframes, speed, odometry noise)."""
    camera: CameraConfig = field(default_factory=CameraConfig)
    """The pinhole camera (intrinsics, pixel noise, outliers)."""
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    """VO window, loop verification, pose graph."""
    align: str = "se3"
    """Alignment before ATE: ``se3``, ``sim3`` or ``none``."""

    def __post_init__(self):
        for name, cls in (
            ("world", WorldConfig),
            ("trajectory", TrajectoryConfig),
            ("camera", CameraConfig),
            ("pipeline", PipelineConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"StudyConfig.{name} must be a {cls.__name__}, got {getattr(self, name)!r}")
        check_config_fields(self, choices={"align": ALIGN_MODES})
        kf = self.trajectory.keyframes
        least = MIN_KEYFRAMES if self.align != "none" else 2
        if kf is not None and kf < least:
            raise ConfigError(
                f"StudyConfig.trajectory.keyframes must be an integer >= {least} (the {self.align!r} "
                f"alignment of the ATE needs {least} poses), got {kf!r}"
            )


def demo_config() -> StudyConfig:
    """The embedded default of ``mixslam demo``: a smaller run (150 keyframes, about one and a half laps of
    a 2 x 2-room flat) and a 30-keyframe window solved every 5 keyframes, so all four policies finish in
    well under a minute on 2 cores."""
    return StudyConfig(
        world=WorldConfig(rooms=(2, 2)),
        trajectory=TrajectoryConfig(keyframes=150),
        pipeline=PipelineConfig(vo=VOConfig(window=30, fixed=5, ba_every=5)),
    )


def trajectory_seed(seed: int, i: int) -> int:
    """The seed of trajectory ``i`` in a study seeded with ``seed`` (independent streams per i)."""
    seed = check_seed(seed, "trajectory_seed: seed")
    i = check_seed(i, "trajectory_seed: i")
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])


def check_policies(policies, where: str) -> tuple:
    """``policies`` as a tuple of known precision policy names, or :class:`ConfigError` naming ``where``."""
    from ..precision import PRESETS

    known = sorted(PRESETS["ba"])
    if isinstance(policies, str):
        policies = (policies,)
    policies = tuple(policies)
    bad = [p for p in policies if p not in known]
    if bad or not policies:
        raise ConfigError(f"{where}: policies must be a non-empty list of {known}, got {list(policies)!r}")
    return policies


def run_trajectory(seed: int, policies=POLICIES, config: StudyConfig | None = None, keep: bool = False) -> dict:
    """World, run and every policy's pipeline for one seed. Returns a JSON-ready dict (and, with ``keep``,
    the run and the pipeline results under ``"_objects"``)."""
    cfg = _check_study(config)
    seed = check_seed(seed, "run_trajectory: seed")
    policies = check_policies(policies, "run_trajectory")
    world = make_world(cfg.world, seed)
    run = simulate_run(world, cfg.trajectory, cfg.camera, seed)
    out: dict[str, Any] = {
        "seed": int(seed),
        "keyframes": int(len(run.R_wc)),
        "observations": int(run.num_observations),
        "path_length_m": float(run.distance[-1]) if len(run.distance) else 0.0,
        "policies": {},
    }
    objects: dict[str, Any] = {"world": world, "run": run, "results": {}}
    for name in policies:
        t0 = time.perf_counter()
        res = run_pipeline(run, name, cfg.pipeline, seed)
        e_vo = ate(run.R_wc, run.t_wc, res.vo_R, res.vo_t, mode=cfg.align)
        e_lc = ate(run.R_wc, run.t_wc, res.lc_R, res.lc_t, mode=cfg.align)
        e_pgo = ate(run.R_wc, run.t_wc, res.pgo_R, res.pgo_t, mode=cfg.align)
        g = res.gba
        ba, pg = res.vo.ba, res.pgo
        gs = g.solves if g else SolveCounters()
        out["policies"][name] = {
            "ate_vo_rmse": float(np.sqrt(np.mean(e_vo**2))),
            "ate_lc_rmse": float(np.sqrt(np.mean(e_lc**2))),
            "ate_pgo_rmse": float(np.sqrt(np.mean(e_pgo**2))),
            "ate_vo": stats(e_vo),
            "ate_lc": stats(e_lc),
            "ate_pgo": stats(e_pgo),
            "errors_vo": e_vo.tolist(),
            "errors_lc": e_lc.tolist(),
            "errors_pgo": e_pgo.tolist(),
            "seconds": time.perf_counter() - t0,
            "vo_seconds": res.vo.seconds,
            "vo_ba_seconds": ba.seconds,
            "vo_window_time_s": time_stats(ba.solve_seconds, cfg.pipeline.vo.budget_s),
            "vo_window_seconds": list(ba.solve_seconds),
            "pgo_seconds": pg.seconds,
            "ba_solves": ba.solves,
            "ba_lm_iterations": ba.iterations,
            "ba_cg_iterations": ba.linear_iterations,
            "ba_not_converged": ba.not_converged,
            "pgo_solves": pg.solves,
            "pgo_iterations": pg.iterations,
            "pgo_cg_iterations": pg.linear_iterations,
            "pgo_not_converged": pg.not_converged,
            "gba_ran": g is not None,
            "gba_ok": bool(g.ok) if g else False,
            "gba_reason": g.reason if g else "",
            "gba_seconds": g.seconds if g else 0.0,
            "gba_iterations": gs.iterations,
            "gba_cg_iterations": gs.linear_iterations,
            "gba_not_converged": gs.not_converged,
            "gba_fused_tracks": g.fused if g else 0,
            "gba_points": g.points if g else 0,
            "gba_observations": g.observations if g else 0,
            "gba_gated": g.gated if g else 0,
            "fp16_overflows": ba.overflows + pg.overflows + gs.overflows,
            "fallbacks": ba.fallbacks + pg.fallbacks + gs.fallbacks,
            "loop_candidates": res.candidates,
            "loop_candidates_true": res.true_candidates,
            "loops_accepted": res.accepted,
            "loops_accepted_false": res.accepted_false,
            "loop_policy": res.loop_policy,
            "loop_candidates_aliased": res.aliased_candidates,
            "loops_wrong": res.wrong,
            "loops_rejected": res.rejected,
            "loops_rejected_wrong": res.rejected_wrong,
            "loops_wrong_kept": res.wrong_kept,
            "observations_gated": res.vo.gated,
        }
        objects["results"][name] = res
    if keep:
        out["_objects"] = objects
    return out


def run_study(
    trajectories: int,
    seed: int = 0,
    policies=POLICIES,
    config: StudyConfig | None = None,
    workers: int = 1,
    progress: bool = False,
    stream=None,
    runner=None,
) -> dict:
    """Every trajectory with every policy; returns the REPORT.json dictionary (see :func:`summarize`), with
    ``trajectories`` (asked for), ``trajectories_finished`` and ``interrupted`` (False).

    ``runner``: a :class:`mixslam.runner.TaskRunner` (process pool or Dask); by default one is made
    from ``workers`` (serial for 1). Each trajectory carries its own seed, so the report does not depend on
    the runner or the worker count.

    Interrupted (Ctrl-C, or SIGTERM on the command line): the workers are stopped and the
    :class:`~mixslam.runner.BatchInterrupted` propagates with ``report`` set to the same dictionary made from
    the trajectories that finished (``interrupted`` True, ``trajectories_finished`` below ``trajectories``).
    """
    # Everything checked here, before any worker starts: a bad value is one ConfigError, not a worker traceback.
    cfg = _check_study(config)
    seed = check_seed(seed, "run_study: seed")
    policies = check_policies(policies, "run_study")
    if isinstance(trajectories, bool) or not isinstance(trajectories, Integral) or trajectories < 1:
        raise ConfigError(f"run_study: trajectories must be an integer >= 1, got {trajectories!r}")
    if runner is None and (isinstance(workers, bool) or not isinstance(workers, Integral) or workers < 1):
        raise ConfigError(f"run_study: workers must be an integer >= 1, got {workers!r}")
    seeds = [trajectory_seed(seed, i) for i in range(trajectories)]
    t0 = time.perf_counter()
    own = runner is None
    runner = runner or TaskRunner("process", workers, progress=progress, stream=stream or sys.stderr)

    def report(results: list, interrupted: bool) -> dict:
        out = summarize(results, policies)
        out.update(
            {
                "seed": int(seed),
                "trajectories": int(trajectories),
                "trajectories_finished": len(results),
                "interrupted": interrupted,
                "workers": int(runner.workers),
                "executor": runner.describe(),
                "seconds": time.perf_counter() - t0,
                "align": cfg.align,
                "config": _config_dict(cfg),
            }
        )
        return out

    try:
        results = runner.map(run_trajectory, [(s, tuple(policies), cfg) for s in seeds], label="trajectories")
    except BatchInterrupted as stop:
        stop.report = report(stop.finished_results(), interrupted=True)
        raise
    finally:
        if own:
            runner.close()
    return report(results, interrupted=False)


def _check_study(config) -> StudyConfig:
    if config is None:
        return StudyConfig()
    if not isinstance(config, StudyConfig):
        raise ConfigError(f"config must be a StudyConfig, got {type(config).__name__}")
    return config


def summarize(results: list, policies) -> dict:
    """``{"policies": {NAME: {"ate_vo": STATS, "ate_lc": STATS, "loops": COUNTS, "trajectories": [...]}}}``
    with the pooled per-keyframe statistics, the loop counts (:data:`LOOP_COUNTS`) summed over the
    trajectories (None without any) and each trajectory's RMSE, plus mixed/fp64-style ratios against ``fp64``.
    Without results (a study interrupted before its first trajectory finished) the statistics are None and
    there are no ratios."""
    out: dict[str, Any] = {"policies": {}}
    for name in policies:
        rows: list[dict] = []
        errs: dict[str, list] = {"vo": [], "lc": [], "pgo": []}
        windows: list[float] = []
        budget = VOConfig().budget_s
        for r in results:
            p = r["policies"][name]
            for stage, e in errs.items():
                e.extend(p.get(f"errors_{stage}", p["errors_lc"] if stage == "pgo" else []))
            windows.extend(p.get("vo_window_seconds", []))
            budget = (p.get("vo_window_time_s") or {}).get("budget", budget)
            rows.append(
                {
                    "seed": r["seed"],
                    **{
                        k: v
                        for k, v in p.items()
                        if (not k.startswith(("errors_", "ate_")) or k.endswith("_rmse")) and k != "vo_window_seconds"
                    },
                }
            )
        out["policies"][name] = {
            **{f"ate_{stage}": stats(np.asarray(e)) if e else None for stage, e in errs.items()},
            "vo_window_time_s": time_stats(windows, budget),
            "loops": {k: int(sum(t.get(k, 0) for t in rows)) for k in LOOP_COUNTS} if rows else None,
            "trajectories": rows,
        }
    if "fp64" in policies and results:
        ref = {r["seed"]: r for r in out["policies"]["fp64"]["trajectories"]}
        for name in policies:
            if name == "fp64":
                continue
            for stage in ("vo", "pgo", "lc"):
                ratio = np.array(
                    [
                        t[f"ate_{stage}_rmse"] / ref[t["seed"]][f"ate_{stage}_rmse"]
                        for t in out["policies"][name]["trajectories"]
                    ]
                )
                out["policies"][name][f"ratio_to_fp64_{stage}"] = {
                    "median": float(np.median(ratio)),
                    "max": float(np.max(ratio)),
                    "min": float(np.min(ratio)),
                    "worse_than_5pct": int(np.sum(ratio > 1.05)),
                }
    return out


def _config_dict(cfg: StudyConfig) -> dict:
    import dataclasses

    def conv(x):
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, tuple):
            return list(x)
        return x

    return conv(cfg)


def with_overrides(
    cfg: StudyConfig,
    keyframes: int | None = None,
    window: int | None = None,
    wheel_odometry: bool | None = None,
    global_ba: bool | None = None,
) -> StudyConfig:
    """The study config with the command line's --keyframes / --window / --no-wheel-odometry /
    --no-global-ba applied."""
    if global_ba is not None:
        gba = replace(cfg.pipeline.global_ba, enabled=bool(global_ba))
        cfg = replace(cfg, pipeline=replace(cfg.pipeline, global_ba=gba))
    if wheel_odometry is not None:
        cfg = replace(cfg, pipeline=replace(cfg.pipeline, wheel_odometry=bool(wheel_odometry)))
    if keyframes is not None:
        cfg = replace(cfg, trajectory=replace(cfg.trajectory, keyframes=keyframes))
    if window is not None:
        vo = replace(cfg.pipeline.vo, window=window, fixed=min(cfg.pipeline.vo.fixed, max(window - 2, 1)))
        cfg = replace(cfg, pipeline=replace(cfg.pipeline, vo=vo))
    return cfg
