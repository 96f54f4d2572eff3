"""``run_bench``: make the figures, then the report (``REPORT.md`` + ``report.json``) in one folder."""

from __future__ import annotations

import datetime
import json
import sys
import time
import traceback
from pathlib import Path

from ..atomic import atomic_write_text
from ..jsonable import to_jsonable
from ..runner import BatchInterrupted, TaskRunner
from .config import BenchConfig
from .context import BenchContext
from .report import machine_info, versions, write_report

FIGURE_FUNCTIONS = {
    1: ("slam_figures", "figure1"),
    2: ("slam_figures", "figure2"),
    3: ("slam_figures", "figure3"),
    4: ("pgo_figures", "figure4"),
    5: ("pgo_figures", "figure5"),
    6: ("fig6_work_shares", "figure6"),
    7: ("fig7_speed", "figure7"),
    8: ("peers", "figure8"),
}
"""Figure number -> (module in mixslam.bench, function)."""


def figure_function(number: int):
    import importlib

    module, name = FIGURE_FUNCTIONS[number]
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def run_bench(config: BenchConfig, out, command: str = "", stream=None, strict: bool = False) -> dict:
    """Produce ``config.figures`` into ``out``; returns the report dictionary (also written as JSON).

    A figure that raises is recorded as failed (traceback in the JSON report, a line in REPORT.md) and the
    others still run; ``strict`` re-raises instead (the tests use it).

    Interrupted (Ctrl-C; SIGTERM on the command line): the running figure's batch is stopped (its workers
    ended), REPORT.md and report.json are written for the figures that finished, with ``interrupted`` true,
    ``figures_finished`` out of ``figures_requested`` and ``interrupted_figure`` (its number and, when it was
    running a batch, how many of its tasks had finished; its partial tasks are not a figure), and
    :class:`~mixslam.runner.BatchInterrupted` is raised: the figures are its tasks, ``report`` the dictionary.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stream = stream or sys.stderr
    t0 = time.perf_counter()
    figures, failed, tracebacks = [], {}, {}
    requested = sorted(config.figures)
    interrupted: dict | None = None
    with TaskRunner(
        config.executor, config.workers, config.scheduler, progress=config.progress, stream=stream
    ) as runner:
        ctx = BenchContext(config, out, runner, stream)
        number: int | None = None
        try:
            for number in requested:
                ctx.log(f"figure {number} ...")
                t1 = time.perf_counter()
                try:
                    res = figure_function(number)(ctx)
                except Exception as exc:
                    if strict:
                        raise
                    failed[number] = f"{type(exc).__name__}: {exc}"
                    tracebacks[number] = traceback.format_exc()
                    ctx.log(f"figure {number} FAILED: {failed[number]}")
                    continue
                res.seconds = time.perf_counter() - t1
                ctx.log(f"figure {number} done in {res.seconds:.1f} s: {', '.join(res.files)}")
                figures.append(res)
        except KeyboardInterrupt as stop:  # the figure's batch is already stopped (TaskRunner.map)
            interrupted = {"number": number}
            if isinstance(stop, BatchInterrupted):
                interrupted.update({"label": stop.label, "tasks_finished": stop.done, "tasks": stop.total})
        executor = runner.describe()
    import dataclasses

    meta = {
        "command": command or "run_bench(...)",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - t0,
        "executor": executor,
        "machine": machine_info(),
        "versions": versions(),
        "config": dataclasses.asdict(config),
        "failed": failed,
        "interrupted": interrupted is not None,
        "interrupted_figure": interrupted,
        "figures_requested": requested,
        "figures_finished": [f.number for f in figures],
    }
    write_report(out, meta, figures)
    report = {**meta, "figures": [f.to_json() for f in figures], "tracebacks": tracebacks}
    atomic_write_text(out / "report.json", json.dumps(to_jsonable(report), indent=2))
    if interrupted is not None:
        ran = {f.number: f.to_json() for f in figures}
        raise BatchInterrupted(
            [ran.get(n) for n in requested],
            [i for i, n in enumerate(requested) if n in ran or n in failed],
            "figures",
            report=report,
        )
    return report
