"""False loop closures for pose graphs (``mixslam corrupt``), after the outlier generator of Vertigo
(Sünderhauf and Protzel's switchable-constraints library, the usual benchmark of robust back-ends).

:func:`corrupt_pose_graph` returns a copy of a graph with ``n_out`` wrong loop closures appended after its own
edges (which stay unchanged and in their order), and the indices of the added edges in the copy.

Loop closures
    An edge whose two vertex *ids* are not consecutive (``|id_i - id_j| != 1``, :func:`loop_closure_mask`);
    the others are odometry. Every added edge joins two poses at least 2 apart in index, hence in id (the
    ids are sorted and distinct), so it is a loop closure by the same rule.

How many (:func:`num_outliers`)
    An integer ``outliers >= 1`` is the count. A float in (0, 1) is the share of outliers among the
    *output's* loop closures: ``n_out = round(f * L / (1 - f))`` with ``L`` the input's loop closures and
    Python's ``round`` (half to even); it may round to 0 on a graph with few loop closures (the copy then has
    no added edge). A fraction on a graph without loop closures is refused (give a count).

Which poses (``mode``, Vertigo's modes)
    ``"random"``: (i, j) uniform over the ordered pairs of pose indices with ``|i - j| >= 2``. ``"local"``:
    uniform over the ordered pairs with ``LOCAL_MIN_GAP <= |i - j| <= LOCAL_MAX_GAP`` (2..20) inside the
    graph (near-in-time false matches, as perceptual aliasing along a corridor). ``"group"``: groups of
    ``group_size`` consecutive edges ``(i + q, j + q)``, ``q = 0..K-1``, with the starts i, j uniform over
    the pairs ``|i - j| >= 2`` that keep both runs inside the graph; the last group is shorter when
    ``group_size`` does not divide ``n_out``. Every edge of a group carries the same measurement (Vertigo's
    grouped outliers): the group supports one wrong alignment of the two runs instead of contradicting
    itself, the hard case for robust back-ends. Pairs are drawn with replacement (an added edge may repeat
    another, or an edge of the file).

Measurement (far from the truth)
    A uniformly random rotation (2D: angle uniform in [-pi, pi); 3D: a uniform unit quaternion, a normalized
    4D normal draw) and a translation uniform in the box ``[-e/2, e/2]`` per axis, ``e`` the extent of the
    poses' translations along that axis (bounding box of the graph's poses; at least 1 unit).

Information
    Every added edge gets one matrix: the information of the file's loop closure whose information has the
    median trace (the lower median for an even count; the first in file order among equal traces), so the
    outliers weigh as much as a typical true loop closure and a robust back-end cannot tell them apart by
    their weight. A graph without loop closures lends the median of its odometry edges instead.

Randomness: ``numpy.random.default_rng(seed)``, drawn in a fixed order (pairs, then rotations, then
translations): the same graph, arguments and seed give the same edges bit for bit, so the same files byte for
byte.
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, check_seed
from ..lie import so2, so3
from ..problem.pose_graph import PoseGraph

__all__ = [
    "MODES",
    "LOCAL_MIN_GAP",
    "LOCAL_MAX_GAP",
    "CorruptedPoseGraph",
    "corrupt_pose_graph",
    "loop_closure_mask",
    "num_outliers",
    "parse_outliers",
    "sidecar_path",
]

MODES = ("random", "local", "group")
"""The outlier modes of :func:`corrupt_pose_graph` (see the module docstring)."""
LOCAL_MIN_GAP = 2
"""``local`` mode: fewest poses (in index) between the two ends of an outlier (1 would be odometry)."""
LOCAL_MAX_GAP = 20
"""``local`` mode: most poses (in index) between the two ends of an outlier."""
MIN_EXTENT = 1.0
"""Smallest side (in the graph's length unit) of the box the outliers' translations are drawn from."""

_RULE = "a fraction in (0, 1) (the share of outliers among the output's loop closures) or a count (an integer >= 1)"


class CorruptedPoseGraph(NamedTuple):
    """What :func:`corrupt_pose_graph` returns (unpacks as ``graph, added``)."""

    graph: PoseGraph
    """The copy: every edge of the input, in its order, then the added edges."""
    added: np.ndarray
    """(n_out,) int64 0-based indices of the added edges in ``graph``'s edge order (its last n_out edges)."""


def loop_closure_mask(graph: PoseGraph) -> np.ndarray:
    """(m,) bool: the edges of ``graph`` whose two vertex ids are not consecutive (``|id_i - id_j| != 1``)."""
    ids = np.asarray(graph.ids, dtype=np.int64)
    return np.abs(ids[graph.edge_i] - ids[graph.edge_j]) != 1


def sidecar_path(path) -> Path:
    """Where the outliers' JSON record of the graph written to ``path`` goes: the same folder, ``.outliers.json``
    instead of the last suffix (``a/bad.g2o`` -> ``a/bad.outliers.json``, ``out`` -> ``out.outliers.json``)."""
    p = Path(os.fspath(path))
    if p.name in ("", ".", ".."):
        raise ConfigError(f"output path {str(path)!r} names no file")
    return p.with_name(f"{p.stem if p.suffix else p.name}.outliers.json")


def _check_outliers(value, name: str) -> float | int:
    """``value`` as a count (int >= 1) or a fraction (float in (0, 1)), else ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{name} must be {_RULE}, got {value!r}")
    if isinstance(value, Integral):
        if value < 1:
            raise ConfigError(f"{name} must be {_RULE}, got {value!r}")
        return int(value)
    f = float(value)
    if not 0.0 < f < 1.0:  # NaN fails too
        hint = "; give counts as integers" if math.isfinite(f) and f >= 1 and f.is_integer() else ""
        raise ConfigError(f"{name} must be {_RULE}, got {value!r}{hint}")
    return f


def parse_outliers(text: str, name: str = "--outliers") -> float | int:
    """The command line's ``--outliers``: a value containing ``.`` or below 1 is a fraction (``0.2``, ``1e-1``),
    any other a count (``50``, ``1e3``). Returns the checked value (float fraction in (0, 1) or int count >= 1);
    :class:`ConfigError` naming ``name``, the text and the rule otherwise."""
    s = str(text).strip()
    try:
        value = float(s)
    except ValueError:
        raise ConfigError(f"{name} must be {_RULE}, got {text!r}") from None
    if "." in s or not value >= 1:  # NaN goes this way and is refused as a fraction
        parsed: float | int = value
    elif value.is_integer():
        parsed = int(value)
    else:
        raise ConfigError(f"{name} must be {_RULE}, got {text!r}")
    try:
        return _check_outliers(parsed, name)
    except ConfigError:
        hint = "; give counts as integers" if "." in s and math.isfinite(value) and value >= 1 else ""
        raise ConfigError(f"{name} must be {_RULE}, got {text!r}{hint}") from None


def num_outliers(
    outliers: float | int, num_loop_closures: int, *, name: str = "outliers", source: str = "the graph"
) -> int:
    """The number of edges ``outliers`` asks for on a graph with ``num_loop_closures`` loop closures: the count
    itself, or ``round(f * L / (1 - f))`` for a fraction ``f`` (see the module docstring). :class:`ConfigError`
    naming ``name`` for a value that is neither, or a fraction when ``source`` has no loop closures."""
    value = _check_outliers(outliers, name)
    if isinstance(value, int):
        return value
    if num_loop_closures <= 0:
        raise ConfigError(
            f"{name} {outliers!r} is a share of the output's loop closures, but {source} has no loop closures "
            "(edges whose vertex ids are not consecutive); give a count of outliers instead (an integer >= 1)"
        )
    return int(round(value * num_loop_closures / (1.0 - value)))


def corrupt_pose_graph(
    graph: PoseGraph,
    outliers: float | int,
    mode: str = "random",
    group_size: int = 10,
    seed: int = 0,
) -> CorruptedPoseGraph:
    """``graph`` with false loop closures appended (see the module docstring for every rule).

    ``outliers``: a count (int >= 1) or the share (float in (0, 1)) of outliers among the output's loop
    closures. ``mode``: one of :data:`MODES`. ``group_size``: edges per group in ``"group"`` mode (int >= 1;
    checked in every mode). Returns ``(graph, added)``: a copy with every original edge unchanged and in its
    order followed by the ``n_out`` added edges, and their 0-based indices ``m .. m + n_out - 1`` (``m`` the
    input's edge count). The input is not modified.

    Raises :class:`ConfigError` (a ``ValueError``) for a bad ``outliers``, ``mode``, ``group_size`` or ``seed``,
    a fraction on a graph without loop closures, a graph of fewer than 3 poses (no two poses are
    non-consecutive) or without edges (no information to copy), and a group longer than ``num_poses - 2``.
    """
    where = "corrupt_pose_graph"
    if not isinstance(graph, PoseGraph):
        raise ConfigError(f"{where}: graph must be a PoseGraph, got {type(graph).__name__}")
    if mode not in MODES:
        raise ConfigError(f"{where}: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, Integral) or group_size < 1:
        raise ConfigError(f"{where}: group_size must be an integer >= 1, got {group_size!r}")
    group_size = int(group_size)
    seed = check_seed(seed, f"{where}: seed")
    loops = loop_closure_mask(graph)
    count = num_outliers(outliers, int(loops.sum()), name=f"{where}: outliers", source=graph.source)
    n, m = graph.num_poses, graph.num_edges
    if count > 0 and n < 3:
        raise ConfigError(
            f"{where}: {graph.source} has {n} pose(s); an outlier joins two poses at least 2 apart, so the graph "
            "needs at least 3 poses"
        )
    if count > 0 and m == 0:
        raise ConfigError(f"{where}: {graph.source} has no edges to copy the outliers' information matrix from")
    longest = min(group_size, count)
    if mode == "group" and longest > n - 2:
        raise ConfigError(
            f"{where}: group_size={group_size} needs at least {longest + 2} poses (two runs of {longest} "
            f"consecutive poses starting at least 2 apart), {graph.source} has {n}; lower group_size"
        )

    rng = np.random.default_rng(seed)
    if mode == "random":
        ei, ej = _pairs(rng, n, count)
        draw = np.arange(count)
    elif mode == "local":
        ei, ej = _local_pairs(rng, n, count)
        draw = np.arange(count)
    else:
        ei, ej, draw = _group_pairs(rng, n, count, group_size)
    num_draws = int(draw.max()) + 1 if count else 0
    R, t = _far_transforms(rng, graph, num_draws)

    out = graph.copy()
    d, k = graph.dim, graph.information.shape[1]
    out.edge_i = np.concatenate([graph.edge_i, ei]).astype(np.int64)
    out.edge_j = np.concatenate([graph.edge_j, ej]).astype(np.int64)
    out.meas_rotations = np.concatenate([graph.meas_rotations, R[draw]]).reshape(m + count, d, d)
    out.meas_translations = np.concatenate([graph.meas_translations, t[draw]]).reshape(m + count, d)
    info = _median_information(graph, loops) if count else np.zeros((k, k))
    out.information = np.concatenate([graph.information, np.broadcast_to(info, (count, k, k))])
    out.edge_lines = None  # the copy is no longer the source file
    out.source = f"<corrupt {graph.source} outliers={outliers!r} mode={mode} seed={seed}>"
    return CorruptedPoseGraph(out, np.arange(m, m + count, dtype=np.int64))


def _pairs(rng: np.random.Generator, n: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` ordered pairs (i, j) uniform over ``0 <= i, j < n``, ``|i - j| >= 2`` (rejection; n >= 3)."""
    got_i, got_j, need = [], [], count
    while need > 0:
        size = 2 * need + 64
        a, b = rng.integers(0, n, size), rng.integers(0, n, size)
        ok = np.abs(a - b) >= 2
        got_i.append(a[ok][:need])
        got_j.append(b[ok][:need])
        need -= got_i[-1].size
    return _joined(got_i), _joined(got_j)


def _local_pairs(rng: np.random.Generator, n: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` ordered pairs uniform over those with ``LOCAL_MIN_GAP <= |i - j| <= LOCAL_MAX_GAP`` inside
    ``0..n-1`` (i and the signed gap drawn, pairs that leave the graph rejected; n >= 3)."""
    width = LOCAL_MAX_GAP - LOCAL_MIN_GAP + 1
    got_i, got_j, need = [], [], count
    while need > 0:
        size = 4 * need + 256
        a = rng.integers(0, n, size)
        gap = rng.integers(0, 2 * width, size)
        b = a + np.where(gap < width, LOCAL_MIN_GAP + gap, -(LOCAL_MIN_GAP + gap - width))
        ok = (b >= 0) & (b < n)
        got_i.append(a[ok][:need])
        got_j.append(b[ok][:need])
        need -= got_i[-1].size
    return _joined(got_i), _joined(got_j)


def _group_pairs(rng: np.random.Generator, n: int, count: int, size: int):
    """(i, j, group of each edge): groups of ``size`` edges (the last one shorter) ``(i0 + q, j0 + q)``, the
    starts uniform over the pairs ``|i0 - j0| >= 2`` that keep both runs of ``0..n-1``."""
    lengths = [size] * (count // size) + ([count % size] if count % size else [])
    full = len(lengths) - (1 if count % size else 0)
    si, sj = _pairs(rng, n - size + 1, full) if full else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if count % size:
        li, lj = _pairs(rng, n - count % size + 1, 1)
        si, sj = np.concatenate([si, li]), np.concatenate([sj, lj])
    group = np.repeat(np.arange(len(lengths)), lengths)
    q = np.arange(count) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # position inside its group
    return si[group] + q, sj[group] + q, group


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def _far_transforms(rng: np.random.Generator, graph: PoseGraph, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uniformly random rotations and translations uniform in the graph's extent box (centred on 0)."""
    d = graph.dim
    if d == 2:
        R = so2.exp(rng.uniform(-np.pi, np.pi, count))
    else:
        q = rng.normal(0.0, 1.0, (count, 4))
        R = so3.from_quaternion(q) if count else np.zeros((0, 3, 3))
    t = np.asarray(graph.translations, dtype=np.float64)
    extent = np.maximum(np.ptp(t, axis=0) if t.shape[0] else np.zeros(d), MIN_EXTENT)
    return np.asarray(R, dtype=np.float64), rng.uniform(-0.5, 0.5, (count, d)) * extent


def _median_information(graph: PoseGraph, loops: np.ndarray) -> np.ndarray:
    """The information matrix of the loop closure (or, without any, the edge) of median trace."""
    candidates = np.flatnonzero(loops) if loops.any() else np.arange(graph.num_edges)
    trace = np.trace(graph.information[candidates], axis1=1, axis2=2)
    pick = candidates[np.argsort(trace, kind="stable")[(candidates.size - 1) // 2]]
    return np.array(graph.information[pick], dtype=np.float64)
