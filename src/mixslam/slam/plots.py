"""PNG plots of the SLAM pipeline (matplotlib, Agg, no pyplot).

Every figure is a :class:`matplotlib.figure.Figure` with its own
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`: nothing is registered with pyplot, no backend is
selected globally and no rcParams are changed, so the functions are safe to call from threads and worker
processes, and a figure is freed with its last reference. Each function creates the parent folders of
``path``, writes one PNG at :data:`DPI` and returns the :class:`~pathlib.Path` written.

Robustness: empty inputs give an (almost) empty figure with a note instead of an error; NaN/inf values are
skipped and counted in the legend label; on log axes non-positive values are clipped to a floor one decade
below the smallest positive value plotted (:func:`_log_floor`), also counted in the label.

* :func:`plot_top_view`: x-y view of the ground truth and any number of estimated trajectories, with the
  floor plan (walls, furniture) of a :class:`~mixslam.sim.world.World` and the loop-closure pairs;
* :func:`plot_error_over_time`: per-keyframe error curves;
* :func:`plot_cumulative_histograms` / :func:`write_cumulative_csv`: empirical CDFs of a per-trajectory
  error over the runs of each policy;
* :func:`plot_ate_table`: grouped bars of the ATE statistics without / with loop closure per policy.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..atomic import atomic_write

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "DPI",
    "new_figure",
    "save_png",
    "plot_top_view",
    "plot_error_over_time",
    "plot_cumulative_histograms",
    "write_cumulative_csv",
    "plot_ate_table",
]

DPI = 120
"""Resolution of the PNGs written."""

# fixed styles of the trajectory / series names the pipeline uses; other names cycle through _PALETTE
_KNOWN_STYLES = {
    "vo": {"color": "tab:orange", "linestyle": "--"},
    "loop-closed": {"color": "tab:blue", "linestyle": "-"},
    "lc": {"color": "tab:blue", "linestyle": "-"},
}
_PALETTE = [
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
    "tab:blue",
    "tab:orange",
]
_LINESTYLES = ["-", "--", "-.", ":"]
_NO_DATA = "no data"


# -- helpers -------------------------------------------------------------------------------------------------
def new_figure(figsize=(7.0, 5.0)) -> Figure:
    """A Figure with its own Agg canvas (no pyplot state; safe in threads and worker processes)."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path, tight: bool = False) -> Path:
    """Write ``fig`` as PNG; ``tight`` crops to the drawn artists (for a legend outside the axes)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(p, "wb") as f:  # a complete PNG or the previous file, never half of one
        fig.savefig(f, dpi=DPI, format="png", bbox_inches="tight" if tight else None)
    return p


def _styles(names) -> dict:
    """A colour and line style per name: the fixed ones of :data:`_KNOWN_STYLES`, then the palette (colours
    already taken by fixed names skipped), line styles cycling once the palette is used up."""
    out, taken = {}, set()
    for name in names:
        s = _KNOWN_STYLES.get(str(name).strip().lower())
        if s is not None:
            out[name] = dict(s)
            taken.add(s["color"])
    free = [c for c in _PALETTE if c not in taken] or list(_PALETTE)
    k = 0
    for name in names:
        if name not in out:
            out[name] = {"color": free[k % len(free)], "linestyle": _LINESTYLES[(k // len(free)) % 4]}
            k += 1
    return out


def _as_1d(v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a.reshape(-1)


def _log_floor(arrays) -> float:
    """A positive floor for log axes: a decade below the smallest positive finite value (1e-12 if none)."""
    lo = math.inf
    for a in arrays:
        a = np.asarray(a, dtype=np.float64)
        pos = a[np.isfinite(a) & (a > 0)]
        if pos.size:
            lo = min(lo, float(pos.min()))
    return lo / 10.0 if math.isfinite(lo) else 1e-12


def _notes(n_bad: int, n_clipped: int = 0, floor: float = 0.0) -> str:
    parts = []
    if n_bad:
        parts.append(f"{n_bad} NaN skipped")
    if n_clipped:
        parts.append(f"{n_clipped} <=0 clipped to {floor:.1g}")
    return f" [{'; '.join(parts)}]" if parts else ""


def _empty_note(ax, text=_NO_DATA):
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _xy(a, what: str) -> np.ndarray:
    """(n, >=2) positions as an (n, 2) float array (a 0-size input gives (0, 2))."""
    p = np.asarray(a, dtype=np.float64)
    if p.size == 0:
        return np.zeros((0, 2))
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{what} must be an (n, 3) (or (n, 2)) array, got shape {p.shape}")
    return p[:, :2]


# -- top view ------------------------------------------------------------------------------------------------
def plot_top_view(
    path, truth_t, trajectories: Mapping[str, np.ndarray] | None = None, world=None, title: str = "", loops=None
) -> Path:
    """x-y top view (metres, equal aspect) of the ground-truth positions ``truth_t`` (n, 3) (black line) and
    of each named trajectory (n_i, 3) of ``trajectories`` in its own colour ("VO" dashed orange,
    "loop-closed" solid blue, other names from a palette). With ``world`` (a
    :class:`~mixslam.sim.world.World`) its walls are drawn as dark segments and its furniture boxes as light
    grey rectangles. ``loops``: optional (q, 2) int keyframe pairs (of a wider array, e.g. the (q, 3)
    ``(i, j, is_true)`` of :func:`~mixslam.sim.world.loop_candidates`, the first two columns), drawn as
    thin grey lines between their ground-truth positions (pairs out of range or on a non-finite position
    are skipped). Rows with NaN are left out (gaps in the line), counted in the legend. Returns
    ``Path(path)``."""
    trajectories = dict(trajectories or {})
    fig = new_figure((7.5, 6.0))
    ax = fig.add_subplot()
    drawn = False

    if world is not None:
        furniture = np.asarray(getattr(world, "furniture", np.zeros((0, 2, 3))), dtype=np.float64)
        for i, box in enumerate(furniture.reshape(-1, 2, 3)):
            (x0, y0), (x1, y1) = box[0, :2], box[1, :2]
            ax.add_patch(
                Rectangle(
                    (min(x0, x1), min(y0, y1)),
                    abs(x1 - x0),
                    abs(y1 - y0),
                    facecolor="0.85",
                    edgecolor="0.6",
                    linewidth=0.6,
                    zorder=1,
                    label="furniture" if i == 0 else None,
                )
            )
            drawn = True
        walls = np.asarray(world.walls, dtype=np.float64).reshape(-1, 2, 2)
        if walls.shape[0]:
            # matplotlib's stub types segments as a Sequence; an (n, 2, 2) array is accepted at run time
            segs = LineCollection(walls, colors="0.15", linewidths=2.0, zorder=2, label="walls")  # type: ignore[arg-type]
            ax.add_collection(segs)
            drawn = True

    truth = _xy(truth_t, "truth_t")
    if loops is not None and truth.shape[0]:
        pairs = np.asarray(loops)
        pairs = pairs[:, :2] if pairs.ndim == 2 and pairs.shape[1] >= 2 else pairs.reshape(-1, 2)
        if pairs.size:
            pairs = pairs.astype(np.int64)
            n = truth.shape[0]
            ok = (pairs >= 0).all(axis=1) & (pairs < n).all(axis=1)
            pairs = pairs[ok]
            segs = truth[pairs]  # (q, 2, 2)
            segs = segs[np.isfinite(segs).all(axis=(1, 2))]
            if segs.shape[0]:
                ax.add_collection(
                    LineCollection(
                        segs, colors="0.55", linewidths=0.5, alpha=0.7, zorder=3, label=f"loops ({segs.shape[0]})"
                    )
                )
                drawn = True

    if truth.shape[0]:
        bad = int((~np.isfinite(truth).all(axis=1)).sum())
        t = np.where(np.isfinite(truth).all(axis=1, keepdims=True), truth, np.nan)
        ax.plot(t[:, 0], t[:, 1], color="black", linewidth=1.6, zorder=4, label="ground truth" + _notes(bad))
        drawn = True

    styles = _styles(list(trajectories))
    for name, traj in trajectories.items():
        p = _xy(traj, f"trajectories[{name!r}]")
        if p.shape[0] == 0:
            ax.plot([], [], label=f"{name} ({_NO_DATA})", **styles[name])
            continue
        fin = np.isfinite(p).all(axis=1)
        p = np.where(fin[:, None], p, np.nan)
        ax.plot(p[:, 0], p[:, 1], linewidth=1.3, zorder=5, label=str(name) + _notes(int((~fin).sum())), **styles[name])
        drawn = drawn or bool(fin.any())

    if not drawn:
        _empty_note(ax)
    ax.autoscale_view()
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    return save_png(fig, path)


# -- error over time -----------------------------------------------------------------------------------------
def plot_error_over_time(
    path, errors: Mapping[str, np.ndarray], title: str = "", ylabel: str = "ATE [m]", log: bool = True
) -> Path:
    """Per-keyframe error curves (keyframe index on x), one per name of ``errors`` ((n_i,) arrays). With
    ``log`` the y axis is logarithmic and values <= 0 are clipped to a floor a decade below the smallest
    positive value; NaN/inf values are left out (gaps). Counts of both go into the legend labels."""
    errors = {k: _as_1d(v) for k, v in (errors or {}).items()}
    fig = new_figure((8.0, 4.5))
    ax = fig.add_subplot()
    floor = _log_floor(errors.values()) if log else 0.0
    styles = _styles(list(errors))
    any_data = False
    for name, e in errors.items():
        fin = np.isfinite(e)
        y = np.where(fin, e, np.nan)
        clipped = 0
        if log:
            low = fin & (y <= 0)
            clipped = int(low.sum())
            y = np.where(low, floor, y)
        label = str(name) + (f" ({_NO_DATA})" if e.size == 0 else _notes(int((~fin).sum()), clipped, floor))
        ax.plot(np.arange(e.size), y, linewidth=1.1, label=label, **styles[name])
        any_data = any_data or bool(fin.any())
    if log and any_data:
        ax.set_yscale("log")
    if not any_data:
        _empty_note(ax)
    ax.set_xlabel("keyframe")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    if title:
        ax.set_title(title)
    outside = len(errors) > 6  # many curves: the legend goes beside the axes, not over the data
    if errors:
        if outside:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        else:
            ax.legend(loc="best", fontsize="small")
    return save_png(fig, path, tight=outside)


# -- cumulative histograms -----------------------------------------------------------------------------------
def _cdf(v) -> tuple[np.ndarray, np.ndarray, int]:
    """Sorted finite values, their empirical CDF ``i / n`` (i = 1..n) and the number of non-finite ones."""
    a = _as_1d(v)
    fin = np.isfinite(a)
    x = np.sort(a[fin])
    return x, np.arange(1, x.size + 1, dtype=np.float64) / max(x.size, 1), int((~fin).sum())


def plot_cumulative_histograms(
    path, values: Mapping[str, ArrayLike], title: str = "", xlabel: str = "ATE RMSE [m]", log_x: bool = True
) -> Path:
    """Empirical CDFs (fraction of trajectories with error <= x, a step plot) of each named policy of
    ``values`` (1-D arrays, one value per trajectory) on one axes; log x by default (values <= 0 clipped to a
    floor a decade below the smallest positive value). The legend gives each policy's count n and median
    (of the finite values; NaN/inf are skipped and counted)."""
    values = {k: _as_1d(v) for k, v in (values or {}).items()}
    fig = new_figure((7.0, 4.8))
    ax = fig.add_subplot()
    floor = _log_floor(values.values()) if log_x else 0.0
    styles = _styles(list(values))
    any_data = False
    for name, v in values.items():
        x, c, bad = _cdf(v)
        if x.size == 0:
            ax.plot([], [], label=f"{name} (n=0{', ' + str(bad) + ' NaN' if bad else ''})", **styles[name])
            continue
        med = float(np.median(x))
        clipped = 0
        if log_x:
            clipped = int((x <= 0).sum())
            x = np.maximum(x, floor)
        label = f"{name} (n={x.size}, median={med:.3g})" + _notes(bad, clipped, floor)
        ax.step(
            np.concatenate([x[:1], x]),
            np.concatenate([[0.0], c]),
            where="post",
            linewidth=1.4,
            label=label,
            **styles[name],
        )
        any_data = True
    if log_x and any_data:
        ax.set_xscale("log")
    if not any_data:
        _empty_note(ax)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of trajectories <= x")
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    if title:
        ax.set_title(title)
    if values:
        ax.legend(loc="lower right", fontsize="small")
    return save_png(fig, path)


def write_cumulative_csv(path, values: Mapping[str, ArrayLike]) -> Path:
    """CSV of the empirical CDFs of :func:`plot_cumulative_histograms`: header ``policy,value,cdf``, then for
    each policy (in the order of ``values``) one row per finite value in ascending order with its CDF
    ``i / n`` (n = number of finite values; NaN/inf are left out). Values are written with ``repr`` (exact
    round trip)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["policy", "value", "cdf"])
        for name, v in (values or {}).items():
            x, c, _ = _cdf(v)
            for xi, ci in zip(x.tolist(), c.tolist()):
                w.writerow([name, repr(xi), repr(ci)])
    return p


# -- ATE table -----------------------------------------------------------------------------------------------
_TABLE_STATS = ("max", "p99", "p90", "mean")
_TABLE_KINDS = {
    "VO": ("no loop closure", "tab:orange"),
    "PGO": ("pose graph only", "tab:olive"),
    "LC": ("loop closure", "tab:blue"),
}


def plot_ate_table(path, table: Mapping[str, Mapping[str, float]], title: str = "") -> Path:
    """Grouped bars of the ATE statistics (max, p99, p90, mean; one panel each, log y) of ``table``, whose
    keys are "<policy> VO" (no loop closure), "<policy> PGO" (pose graph only) or "<policy> LC" (loop
    closure) and values stats dicts
    (:func:`mixslam.eval.metrics.stats`). Policies go along x, with one bar per kind; a key without such a
    suffix is its own policy, drawn as a third kind. Missing, NaN or non-positive statistics are left out."""
    rows: dict[str, dict[str, dict]] = {}
    for key, st in (table or {}).items():
        head, _, tail = str(key).rpartition(" ")
        kind = tail.upper() if head and tail.upper() in _TABLE_KINDS else ""
        policy = head if kind else str(key)
        rows.setdefault(policy, {})[kind] = dict(st or {})
    policies = list(rows)
    kinds = [k for k in _TABLE_KINDS if any(k in r for r in rows.values())]
    if any("" in r for r in rows.values()):
        kinds.append("")
    fig = new_figure((3.0 + 2.2 * len(_TABLE_STATS), 4.2))
    axes = fig.subplots(1, len(_TABLE_STATS), sharey=True, squeeze=False)[0]
    heights = [
        float(r[k][s])
        for r in rows.values()
        for k in r
        for s in _TABLE_STATS
        if s in r[k] and r[k][s] is not None and np.isfinite(float(r[k][s])) and float(r[k][s]) > 0
    ]
    width = 0.8 / max(len(kinds), 1)
    x = np.arange(len(policies))
    for ax, s in zip(axes, _TABLE_STATS):
        for j, kind in enumerate(kinds):
            label, color = _TABLE_KINDS.get(kind, ("value", "tab:green"))
            xs, hs = [], []
            for i, pol in enumerate(policies):
                entry = rows[pol].get(kind)
                h = None if entry is None or entry.get(s) is None else float(entry[s])
                if h is not None and np.isfinite(h) and h > 0:
                    xs.append(x[i] + (j - (len(kinds) - 1) / 2) * width)
                    hs.append(h)
            if xs:
                ax.bar(xs, hs, width=width, color=color, label=label)
        ax.set_title(s)
        ax.set_xticks(x, policies, rotation=30, ha="right", fontsize="small")
        ax.grid(True, axis="y", which="both", linewidth=0.3, alpha=0.5)
    if heights:
        for ax in axes:
            ax.set_yscale("log")
        axes[0].set_ylim(min(heights) / 2.0, max(heights) * 2.0)
        axes[0].legend(loc="best", fontsize="small")
    else:
        _empty_note(axes[0])
    axes[0].set_ylabel("ATE [m]")
    if title:
        fig.suptitle(title)
    return save_png(fig, path)
