"""The bench's Markdown report: machine, versions, seeds, command, then one section per figure."""

from __future__ import annotations

import functools
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ..atomic import atomic_write_text

PACKAGES = (
    "mixslam",
    "numpy",
    "scipy",
    "numba",
    "matplotlib",
    "cvxopt",
    "gtsam",
    "g2opy",
    "pyceres",
    "dask",
    "distributed",
)


@functools.cache
def fp16_arithmetic_note() -> str:
    """What this CPU's fp16 support means for the kernels: they convert binary16 to fp32 on load (F16C's
    ``vcvtph2ps``, or AVX-512 FP16's ``vcvtsh2ss`` where LLVM picks it) and compute in fp32 either way."""
    have = machine_info().get("avx512fp16")
    if have:
        return (
            "this CPU has AVX-512 FP16 arithmetic, but the kernels do not use it: they convert each fp16 value "
            "to fp32 on load and compute in fp32, as the mixed policies prescribe"
        )
    return "this CPU has no fp16 arithmetic (no AVX-512 FP16): each fp16 value is converted to fp32 on load (F16C)"


def machine_info() -> dict:
    """CPU model, core count, the SIMD features that matter for fp16 (F16C, AVX-512 FP16), memory, OS."""
    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": platform.processor() or "?",
        "logical_cpus": os.cpu_count(),
        "f16c": None,
        "avx512fp16": None,
        "avx2": None,
        "memory_gib": None,
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info.update({"f16c": "f16c" in flags, "avx512fp16": "avx512_fp16" in flags, "avx2": "avx2" in flags})
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import numba

        # numba.config fills its settings in at import (globals().update), which a type checker cannot see
        info["numba_threads"] = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - numba is a core dependency
        pass
    return info


def versions() -> dict:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        root = Path(__file__).resolve().parents[3]
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if rev.returncode == 0:
            out["mixslam_git"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        a = abs(v)
        return f"{v:.4g}" if 1e-3 <= a < 1e5 else f"{v:.3e}"
    return str(v).replace("|", "\\|")


def markdown_table(rows: list) -> str:
    if not rows:
        return ""
    cols = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def interruption_note(meta: dict) -> str:
    """The report's line on an interrupted run: which figure was running, how far its batch got, and which
    figures the report covers."""
    fig = meta.get("interrupted_figure") or {}
    where = f" during figure {fig['number']}" if fig.get("number") is not None else ""
    if "tasks" in fig:
        where += f" ({fig['tasks_finished']} of {fig['tasks']} {fig['label']} finished, not reported)"
    done = ", ".join(str(n) for n in meta.get("figures_finished", [])) or "none"
    asked = ", ".join(str(n) for n in meta.get("figures_requested", []))
    covers = f"this report covers the figures that finished ({done}) of those asked for ({asked})"
    return f"**Interrupted**{where}: {covers}."


def write_report(out: Path, meta: dict, figures: list) -> Path:
    """Write ``out/REPORT.md`` from the run's metadata and the :class:`FigureResult` list."""
    m, v, c = meta["machine"], meta["versions"], meta["config"]
    lines = [
        f"# mixslam bench report ({c['scale']})",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}; wall time {meta['seconds']:.0f} s; "
        f"executor: {meta['executor']}; master seed {c['seed']} (every task derives its own seed from it).",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m.get('memory_gib')} GiB; AVX2 {m['avx2']}, "
        f"F16C {m['f16c']}, AVX-512 FP16 {m['avx512fp16']}",
        f"- {m['platform']}, Python {m['python']}",
        "- " + ", ".join(f"{k} {val}" for k, val in v.items() if val is not None),
        "- not installed: " + (", ".join(k for k, val in v.items() if val is None) or "none"),
        "",
        "fp16 here is storage: values are rounded to IEEE binary16 (round to nearest even, as the hardware "
        "does), stored in 16 bits and converted exactly to fp32 (F16C `vcvtph2ps`, or AVX-512 FP16 "
        "`vcvtsh2ss` where LLVM picks it, in the compiled kernels) for arithmetic, except in the naive "
        "`fp16` policy, whose arithmetic is emulated by rounding to fp16 "
        "after every numpy operation. The original claims were measured on GPUs, where these kernels are "
        "memory-bandwidth bound; see each figure's notes.",
        "",
    ]
    if meta.get("interrupted"):
        lines += [interruption_note(meta), ""]
    if meta.get("failed"):
        lines += ["**Figures that failed:** " + "; ".join(f"{k}: {e}" for k, e in meta["failed"].items()), ""]
    for f in figures:
        lines += [f"## Figure {f.number}. {f.title}", "", f"({f.seconds:.1f} s)", ""]
        for name in f.files:
            if name.endswith(".png"):
                lines += [f"![{name}]({name})", ""]
        data = [name for name in f.files if not name.endswith(".png")]
        if data:
            lines += ["Data: " + ", ".join(f"[{n}]({n})" for n in data), ""]
        if f.table:
            lines += [markdown_table(f.table), ""]
        for n in f.notes:
            lines += [f"- {n}"]
        if f.notes:
            lines += [""]
    path = out / "REPORT.md"
    atomic_write_text(path, "\n".join(lines))
    return path
