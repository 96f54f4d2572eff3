"""What every figure gets (:class:`BenchContext`) and returns (:class:`FigureResult`)."""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from ..atomic import atomic_write, atomic_write_text
from ..jsonable import to_jsonable
from ..runner import TaskRunner
from .config import BenchConfig


@dataclass
class FigureResult:
    """One figure of the report: its files, its table, its headline numbers and its caveats."""

    number: int
    """1-8, as numbered in the report."""
    title: str
    """One line, shown as the report's section heading."""
    files: list = field(default_factory=list)
    """Paths relative to the output folder (PNG and CSV), in the order the report shows them."""
    table: list = field(default_factory=list)
    """Rows (dicts with the same keys) shown as the section's Markdown table."""
    summary: dict = field(default_factory=dict)
    """Headline numbers (JSON-ready), quoted by the report's summary and by the README."""
    notes: list = field(default_factory=list)
    """Caveats in plain sentences: what was skipped and why, where this CPU differs from the claim's GPU."""
    seconds: float = 0.0
    """Wall time of the figure (filled in by the runner)."""

    def to_json(self) -> dict:
        return {
            "number": self.number,
            "title": self.title,
            "files": list(self.files),
            "table": self.table,
            "summary": self.summary,
            "notes": list(self.notes),
            "seconds": self.seconds,
        }


@dataclass
class BenchContext:
    """The run's configuration, output folder, task runner and log, shared by the figures."""

    config: BenchConfig
    out: Path
    runner: TaskRunner
    stream: TextIO | None = None
    shared: dict = field(default_factory=dict)
    """Results one figure computes and another reuses (figures 2 and 3 share one study)."""

    def log(self, message: str) -> None:
        if self.config.progress:
            (self.stream or sys.stderr).write(message + "\n")
            (self.stream or sys.stderr).flush()

    def path(self, name: str) -> Path:
        p = self.out / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_csv(self, name: str, rows: list, columns: list | None = None) -> str:
        """Write ``rows`` (dicts) to ``out/name``; returns ``name`` for :attr:`FigureResult.files`."""
        write_csv(self.path(name), rows, columns)
        return name

    def write_json(self, name: str, data) -> str:
        """Write ``data`` as JSON (through :func:`mixslam.jsonable.to_jsonable`) to ``out/name``; returns ``name``."""
        atomic_write_text(self.path(name), json.dumps(to_jsonable(data), indent=2))
        return name


def write_csv(path, rows: list, columns: list | None = None) -> None:
    """Write ``rows`` (dicts) to the CSV file ``path``, one column per name of ``columns`` (default: every key,
    in the order first seen); a missing key is an empty cell, keys not in ``columns`` are left out."""
    columns = columns or _columns(rows)
    with atomic_write(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k, "")) for k in columns})


def _columns(rows: list) -> list:
    cols = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def _cell(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return repr(v) if math.isfinite(v) else str(v)
    return v


def new_figure(figsize=(7.0, 5.0)):
    """A matplotlib Figure on the Agg canvas (no pyplot state, safe in worker processes)."""
    from ..slam import plots

    return plots.new_figure(figsize)


def save_figure(ctx: BenchContext, fig, name: str) -> str:
    """Save ``fig`` as PNG to ``ctx.out/name``; returns ``name`` for :attr:`FigureResult.files`."""
    from ..slam import plots

    plots.save_png(fig, ctx.path(name))
    return name
