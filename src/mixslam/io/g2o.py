"""Reading and writing pose graphs: g2o and TORO text formats.

Formats read (detected per line by the tag; one file may mix g2o and TORO tags of the same dimension):

============================  =========================================================================
tag                           fields after the tag
============================  =========================================================================
``VERTEX_SE2``                ``id x y theta``
``EDGE_SE2``                  ``i j dx dy dtheta`` + 6 upper-triangular information entries, order
                              (x, y, theta): ``I11 I12 I13 I22 I23 I33``
``VERTEX_SE3:QUAT``           ``id x y z qx qy qz qw``
``EDGE_SE3:QUAT``             ``i j dx dy dz qx qy qz qw`` + 21 upper-triangular information entries,
                              order (x, y, z, qx, qy, qz), row by row
``VERTEX2`` (TORO)            ``id x y theta``
``EDGE2`` (TORO)              ``i j dx dy dtheta I_xx I_xy I_yy I_tt I_xt I_yt``
``VERTEX3`` (TORO)            ``id x y z roll pitch yaw``
``EDGE3`` (TORO)              ``i j x y z roll pitch yaw`` + 21 upper-triangular information entries,
                              order (x, y, z, roll, pitch, yaw)
``FIX``                       ``id [id ...]``: poses held constant (the gauge)
============================  =========================================================================

Rotations given as roll/pitch/yaw use ``R = Rz(yaw) Ry(pitch) Rx(roll)``
(:func:`mixslam.lie.so3.from_euler`). Quaternions are normalized on read. Vertex ids are arbitrary
non-negative integers; :class:`~mixslam.problem.pose_graph.PoseGraph` arrays are indexed in ascending id
order and ``graph.ids`` maps indices back to ids. Edges keep the file's order; ``graph.edge_lines`` holds
their 1-based line numbers.

Decisions (and why)
-------------------
* **EDGE3 rotation information is rescaled.** TORO/GTSAM ``EDGE3`` information is information on an
  *angle-sized* rotation error (roll/pitch/yaw, ~theta), whereas mixslam's cost, like g2o's, uses the
  quaternion-vector error ``qvec(D) ~ theta / 2``. For the two costs to agree to first order,
  ``e_angle = 2 e_qvec``, so ``e_angle^T Omega e_angle = e_qvec^T (S Omega S) e_qvec`` with
  ``S = diag(1, 1, 1, 2, 2, 2)``: the rotation-rotation block is multiplied by 4 and the translation-rotation
  cross blocks by 2. (Check: GTSAM's ``sphere2500.txt`` carries rotation information (100, 100, 25); after
  the conversion it is (400, 400, 100), which is what SE-Sync's ``sphere2500.g2o`` of the same graph has.)
* **TORO EDGE2 information is only reordered**, from (xx, xy, yy, tt, xt, yt) to g2o's (x, y, theta)
  matrix; it is not rotated into another frame. (Some converted TORO files, e.g. nano-pgo's
  ``CSAIL_P_toro.graph``, hold the translation block rotated by the measured angle relative to the g2o
  original; nothing in the file says so, so no guess is made.)
* **Comments and blank lines** (first token starting with ``#``, or no token) are skipped silently.
  **Unknown tags** (``EQUIV``, ``VERTEX_XY``, ``PARAMS_*``, ...) are skipped, counted per tag in
  ``graph.warnings["unknown_tags"]`` and reported in one warning on the ``mixslam.io`` logger, since
  dropping them changes the problem.
* **Files without vertex lines** (SE-Sync's CSAIL/KITTI, GTSAM's ``*.txt``): the vertex set is the ids
  used by the edges, the initial guess is composed along a minimum spanning tree under the weight
  ``|i - j|`` (i.e. the odometry chain when there is one) from the fixed / lowest-id pose
  (:func:`mixslam.init.spanning_tree.spanning_tree_guess`), and ``graph.has_initial_guess`` is ``False``.
* **Gauge:** ``fixed=[ids]`` overrides the file's ``FIX`` lines; otherwise the ``FIX`` lines, otherwise
  the pose with the lowest id is fixed.
* **Strictness:** every field count is exact (no optional extra fields), ids must be integers (``3.0`` is
  rejected), numbers follow the one syntax of :mod:`mixslam.io.text` (ASCII decimal; no ``1_000``, no
  full-width digits), fields are separated by ASCII spaces or tabs (a non-breaking space is an error naming
  the line and the character), every number must be finite and at most ~1.3e154 in magnitude (its square
  must not overflow; refused naming the line and the vertex or edge). Quaternions whose norm is below
  ``1e-6`` (or not finite) are rejected; quaternions that are far from unit (``|norm - 1| > 1e-3``) are
  accepted after normalization, counted in ``graph.warnings["nonunit_quaternions"]`` and warned about on the
  ``mixslam.io`` logger with the file and line of the first one.
* **Errors:** the reader raises only :class:`~mixslam.errors.MixslamError` subclasses, whatever the bytes:
  :class:`~mixslam.errors.InputFormatError` (path, 1-based line, reason) for malformed text,
  :class:`~mixslam.errors.InformationMatrixError` for NaN/inf or non-positive-definite information, and
  :class:`~mixslam.errors.GaugeError` for poses not connected to a fixed pose. Should anything unexpected
  slip through, it is wrapped in an ``InputFormatError`` that asks to be reported as a bug.

Speed: lines are split once in Python and the numbers of each tag are converted in one
``np.fromiter(map(float, ...))`` pass; a per-token scan only runs to locate a bad token. A 20k-line file
reads in about 0.1-0.2 s.
"""

from __future__ import annotations

import logging
import operator
from collections import Counter

import numpy as np

from ..atomic import atomic_write_text
from ..errors import InformationMatrixError, InputFormatError, MixslamError, NonFiniteError
from ..init.spanning_tree import spanning_tree_guess
from ..lie import so2, so3
from ..problem.pose_graph import PoseGraph, check_information, repair_information
from .text import check_finite_rows, check_separators, format_floats, read_text, to_array, unit_quaternions

__all__ = ["read_pose_graph", "write_g2o"]

log = logging.getLogger("mixslam.io")

_INFO3 = ["I11", "I12", "I13", "I22", "I23", "I33"]
_INFO6 = [f"I{r + 1}{c + 1}" for r in range(6) for c in range(r, 6)]

#: tag -> (kind, dimension, field names after the tag, number of leading integer fields)
_SPECS: dict[str, tuple[str, int, list[str], int]] = {
    "VERTEX_SE2": ("vertex", 2, ["id", "x", "y", "theta"], 1),
    "VERTEX2": ("vertex", 2, ["id", "x", "y", "theta"], 1),
    "EDGE_SE2": ("edge", 2, ["i", "j", "dx", "dy", "dtheta", *_INFO3], 2),
    "EDGE2": ("edge", 2, ["i", "j", "dx", "dy", "dtheta", "I_xx", "I_xy", "I_yy", "I_tt", "I_xt", "I_yt"], 2),
    "VERTEX_SE3:QUAT": ("vertex", 3, ["id", "x", "y", "z", "qx", "qy", "qz", "qw"], 1),
    "VERTEX3": ("vertex", 3, ["id", "x", "y", "z", "roll", "pitch", "yaw"], 1),
    "EDGE_SE3:QUAT": ("edge", 3, ["i", "j", "dx", "dy", "dz", "qx", "qy", "qz", "qw", *_INFO6], 2),
    "EDGE3": ("edge", 3, ["i", "j", "x", "y", "z", "roll", "pitch", "yaw", *_INFO6], 2),
}
_EDGE_TAGS = {2: "EDGE_SE2/EDGE2", 3: "EDGE_SE3:QUAT/EDGE3"}


# ------------------------------------------------------------------------------------------------------
# reader
# ------------------------------------------------------------------------------------------------------
def read_pose_graph(path, *, fixed=None, repair: str | None = None, validate: bool = True) -> PoseGraph:
    """Read a g2o or TORO pose-graph file (2D or 3D) into a :class:`PoseGraph`.

    Parameters
    ----------
    path:
        The file (str or path-like). See the module docstring for the formats.
    fixed:
        Vertex ids to hold constant (the gauge). Overrides the file's ``FIX`` lines. Default: the ``FIX``
        lines, or else the pose with the lowest id.
    repair:
        ``None`` (default): information matrices must be positive definite. ``"nearest"`` or
        ``"isotropic"``: pass them through :func:`~mixslam.problem.pose_graph.repair_information` first and
        record the number changed in ``graph.warnings["repaired_information"]``.
    validate:
        Run :meth:`PoseGraph.validate` (information matrices positive definite, every pose connected to a
        fixed pose, else :class:`~mixslam.errors.GaugeError` naming the unconstrained ids). With
        ``False``, information matrices are still checked (finite, positive definite) but connectivity is
        not.

    Raises
    ------
    InputFormatError
        Malformed file (names the path, the 1-based line and the broken rule).
    InformationMatrixError
        NaN/inf or non-positive-definite information (names the edge and its line).
    GaugeError
        Poses not tied to a fixed pose (``validate=True``).

    No other exception escapes, whatever the file holds.
    """
    if repair not in (None, "nearest", "isotropic"):
        raise InformationMatrixError(f"repair={repair!r} is not a repair method; use None, 'nearest' or 'isotropic'")
    shown = str(path)
    try:
        shown, text = read_text(path)
        with np.errstate(all="ignore"):
            return _parse(shown, text, fixed, repair, validate)
    except MixslamError:
        raise
    except np.linalg.LinAlgError as e:
        raise InformationMatrixError(
            f"{shown}: the information matrices could not be decomposed ({e}); check them for absurdly large values"
        ) from e
    except Exception as e:  # a bug: never let it escape as a non-mixslam error
        raise InputFormatError(
            shown,
            None,
            f"unexpected error while reading ({type(e).__name__}: {e}); please report this as a mixslam bug",
        ) from e


def _parse(path: str, text: str, fixed, repair, validate) -> PoseGraph:
    check_separators(path, text)
    # ---- pass 1: split lines, group by tag, check field counts and dimensions ------------------------
    groups: dict[str, tuple[list[int], list[list[str]]]] = {t: ([], []) for t in _SPECS}
    fix_lines: list[tuple[int, list[str]]] = []
    unknown: Counter = Counter()
    dim = None
    dim_line = dim_tag = None
    any_content = False
    for ln, raw in enumerate(text.split("\n"), 1):
        toks = raw.split()
        if not toks:
            continue
        tag = toks[0]
        if tag[0] == "#":
            continue
        any_content = True
        if tag == "FIX":
            if len(toks) < 2:
                raise InputFormatError(path, ln, "FIX needs at least one vertex id after the tag, got none")
            fix_lines.append((ln, toks[1:]))
            continue
        spec = _SPECS.get(tag)
        if spec is None:
            unknown[tag if len(tag) <= 40 else tag[:40] + "..."] += 1
            continue
        _, d, names, _ = spec
        if len(toks) - 1 != len(names):
            raise InputFormatError(
                path,
                ln,
                f"{tag} needs {len(names)} fields after the tag "
                f"({' '.join(names[:9])}{' + information' if len(names) > 9 else ''}), "
                f"got {len(toks) - 1}",
            )
        if dim is None:
            dim, dim_line, dim_tag = d, ln, tag
        elif d != dim:
            raise InputFormatError(
                path,
                ln,
                f"{d}D tag {tag} in a {dim}D file (line {dim_line} has {dim_tag}); "
                "a file must hold only 2D or only 3D poses and edges",
            )
        lines, rows = groups[tag]
        lines.append(ln)
        rows.append(toks[1:])

    if unknown:
        shown = ", ".join(f"{t} x{c}" for t, c in unknown.most_common(10))
        log.warning("%s: skipped %d line(s) with unknown tags: %s", path, sum(unknown.values()), shown)
    if not any_content:
        raise InputFormatError(path, None, "file is empty: no vertex or edge lines")
    if dim is None:
        extra = f" (only unknown tags: {', '.join(unknown)})" if unknown else ""
        raise InputFormatError(
            path,
            None,
            f"no edges: found no EDGE_SE2, EDGE2, EDGE_SE3:QUAT or EDGE3 "
            f"lines{extra}; a pose graph needs at least one edge",
        )

    # ---- pass 2: numbers, per tag, in one numpy call each --------------------------------------------
    v_ids, v_lines, v_R, v_t = [], [], [], []
    e_i, e_j, e_lines, e_R, e_t, e_info = [], [], [], [], [], []
    nonunit = 0
    errors: list[InputFormatError] = []  # one per tag group; the earliest line is reported
    for tag, (lines, rows) in groups.items():
        if not rows:
            continue
        try:
            kind, d, names, n_int = _SPECS[tag]
            I = to_array(path, tag, lines, [r[:n_int] for r in rows], names[:n_int], np.int64, "int")
            F = to_array(path, tag, lines, [r[n_int:] for r in rows], names[n_int:], np.float64, "float")
            neg = I < 0
            if neg.any():
                r = int(np.flatnonzero(neg.any(axis=1))[0])
                c = int(np.flatnonzero(neg[r])[0])
                raise InputFormatError(
                    path,
                    lines[r],
                    f"{tag}: {names[c]} = {int(I[r, c])} is not a non-negative integer (vertex ids must be >= 0)",
                )
            larr = np.asarray(lines, dtype=np.int64)
            if kind == "vertex":
                pose_names = names[1:]
                check_finite_rows(path, tag, larr, F, pose_names, lambda r, I=I: f"vertex {int(I[r, 0])}")
                if tag == "VERTEX_SE2" or tag == "VERTEX2":
                    R, t = so2.exp(F[:, 2]), F[:, :2]
                elif tag == "VERTEX_SE3:QUAT":
                    q, nu = unit_quaternions(path, tag, larr, F[:, 3:7])
                    nonunit += nu
                    R, t = so3.from_quaternion(q), F[:, :3]
                else:  # VERTEX3
                    R, t = so3.from_euler(F[:, 3], F[:, 4], F[:, 5]), F[:, :3]
                v_ids.append(I[:, 0])
                v_lines.append(larr)
                v_R.append(R)
                v_t.append(np.array(t))
                continue
            # edges
            nmeas = 3 if d == 2 else (7 if tag == "EDGE_SE3:QUAT" else 6)
            meas, raw_info = F[:, :nmeas], F[:, nmeas:]

            def edge(r: int, I=I) -> str:
                return f"edge {int(I[r, 0])}->{int(I[r, 1])}"

            check_finite_rows(path, tag, larr, meas, names[2 : 2 + nmeas], edge)
            # NaN/inf information is InformationMatrixError (below, naming the edge); too large is refused here
            check_finite_rows(path, tag, larr, raw_info, names[2 + nmeas :], edge, finite=False)
            loops = I[:, 0] == I[:, 1]
            if loops.any():
                r = int(np.flatnonzero(loops)[0])
                raise InputFormatError(
                    path,
                    lines[r],
                    f"{tag}: self-loop edge {int(I[r, 0])}->{int(I[r, 1])}; an edge must join two different vertices",
                )
            k = 3 if d == 2 else 6
            info = np.zeros((len(rows), k, k))
            if tag == "EDGE2":
                # TORO order: I_xx I_xy I_yy I_tt I_xt I_yt -> g2o (x, y, theta)
                xx, xy, yy, tt, xt, yt = raw_info.T
                info[:, 0, 0], info[:, 0, 1], info[:, 1, 1] = xx, xy, yy
                info[:, 2, 2], info[:, 0, 2], info[:, 1, 2] = tt, xt, yt
            else:
                iu = np.triu_indices(k)
                info[:, iu[0], iu[1]] = raw_info
            info = np.triu(info) + np.swapaxes(np.triu(info, 1), 1, 2)
            if d == 2:
                R, t = so2.exp(meas[:, 2]), meas[:, :2]
            elif tag == "EDGE_SE3:QUAT":
                q, nu = unit_quaternions(path, tag, larr, meas[:, 3:7])
                nonunit += nu
                R, t = so3.from_quaternion(q), meas[:, :3]
            else:  # EDGE3: angle-sized rotation information -> quaternion-vector sized (see module docstring)
                R, t = so3.from_euler(meas[:, 3], meas[:, 4], meas[:, 5]), meas[:, :3]
                s = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
                info = info * s[None, :, None] * s[None, None, :]
            e_i.append(I[:, 0])
            e_j.append(I[:, 1])
            e_lines.append(larr)
            e_R.append(R)
            e_t.append(np.array(t))
            e_info.append(info)
        except InputFormatError as e:
            errors.append(e)
    if errors:
        raise min(errors, key=lambda e: e.line if e.line is not None else 1 << 62)

    # ---- vertices: duplicates first (a line-level error), then the edges' end points ------------------
    has_vertices = bool(v_ids)
    if has_vertices:
        vid = np.concatenate(v_ids)
        vl = np.concatenate(v_lines)
        vo = np.lexsort((vl, vid))
        vid, vl = vid[vo], vl[vo]
        vR, vt = np.concatenate(v_R)[vo], np.concatenate(v_t)[vo]
        dup = np.flatnonzero(vid[1:] == vid[:-1]) + 1
        if dup.size:
            kk = int(dup[np.argmin(vl[dup])])
            raise InputFormatError(
                path,
                int(vl[kk]),
                f"duplicate vertex id {int(vid[kk])}: already defined on "
                f"line {int(vl[kk - 1])}; vertex ids must be unique",
            )
    if not e_i:
        nv = sum(len(x) for x in v_ids)
        raise InputFormatError(
            path,
            None,
            f"no edges: the file has {nv} vertex line(s) but no "
            f"{_EDGE_TAGS[dim]} lines; a pose graph needs at least one edge",
        )

    # edges in file order (several edge tags may be interleaved)
    el = np.concatenate(e_lines)
    order = np.argsort(el, kind="stable")
    el = el[order]
    ei_id = np.concatenate(e_i)[order]
    ej_id = np.concatenate(e_j)[order]
    eR = np.concatenate(e_R)[order]
    et = np.concatenate(e_t)[order]
    einfo = np.concatenate(e_info)[order]

    if has_vertices:
        ids = vid
        pos_i = np.minimum(np.searchsorted(ids, ei_id), ids.size - 1)
        pos_j = np.minimum(np.searchsorted(ids, ej_id), ids.size - 1)
        miss_i, miss_j = ids[pos_i] != ei_id, ids[pos_j] != ej_id
        if (miss_i | miss_j).any():
            r = int(np.flatnonzero(miss_i | miss_j)[0])
            v = int(ei_id[r]) if miss_i[r] else int(ej_id[r])
            raise InputFormatError(
                path,
                int(el[r]),
                f"edge {int(ei_id[r])}->{int(ej_id[r])} refers to vertex "
                f"{v}, which no vertex line defines (the file defines {ids.size} vertices)",
            )
        rotations, translations = vR, vt
    else:
        ids = np.unique(np.concatenate([ei_id, ej_id]))
        rotations = np.broadcast_to(np.eye(dim), (ids.size, dim, dim)).copy()
        translations = np.zeros((ids.size, dim))
    n = ids.size
    edge_i = np.searchsorted(ids, ei_id).astype(np.int64)
    edge_j = np.searchsorted(ids, ej_id).astype(np.int64)

    # ---- gauge ---------------------------------------------------------------------------------------
    fix_mask = np.zeros(n, dtype=bool)  # from the FIX lines (always checked, even when overridden)
    for ln, toks in fix_lines:
        F = to_array(path, "FIX", [ln], [toks], [f"id #{c + 1}" for c in range(len(toks))], np.int64, "int")
        for v in F[0].tolist():
            pos = int(np.searchsorted(ids, v)) if v >= 0 else n
            if pos >= n or int(ids[pos]) != v:
                where = "vertex line" if has_vertices else "edge"
                raise InputFormatError(path, ln, f"FIX names vertex {v}, which no {where} defines")
            fix_mask[pos] = True
    if fixed is not None:
        fixed_mask = np.zeros(n, dtype=bool)
        try:
            wanted = [operator.index(v) for v in (fixed if np.ndim(fixed) else [fixed])]
        except TypeError:
            raise InputFormatError(path, None, f"fixed={fixed!r}: expected a list of integer vertex ids") from None
        for v in wanted:
            pos = int(np.searchsorted(ids, v)) if 0 <= v < 2**63 else n
            if pos >= n or int(ids[pos]) != v:
                raise InputFormatError(path, None, f"fixed={wanted!r}: vertex id {v} is not in the file")
            fixed_mask[pos] = True
    elif fix_mask.any():
        fixed_mask = fix_mask
    else:
        fixed_mask = np.zeros(n, dtype=bool)
        fixed_mask[0] = True

    graph = PoseGraph(
        dim=dim,
        ids=ids.astype(np.int64),
        rotations=rotations,
        translations=translations,
        edge_i=edge_i,
        edge_j=edge_j,
        meas_rotations=eR,
        meas_translations=et,
        information=einfo,
        fixed=fixed_mask,
        has_initial_guess=has_vertices,
        source=path,
        edge_lines=el.astype(np.int64),
    )
    if unknown:
        graph.warnings["unknown_tags"] = dict(unknown)
    if nonunit:
        graph.warnings["nonunit_quaternions"] = nonunit

    # ---- information matrices ------------------------------------------------------------------------
    if not np.isfinite(graph.information).all():
        check_information(graph.information, graph)  # raises, naming the edge and its line
    if repair is not None:
        graph.information, changed = repair_information(graph.information, repair)
        graph.warnings["repaired_information"] = changed
        bad = ~np.isfinite(graph.information).all(axis=(1, 2))
        if bad.any():
            raise InformationMatrixError(
                f"{path}: repair={repair!r} overflowed to inf/NaN on "
                f"{graph.edge_label(int(np.flatnonzero(bad)[0]))}: its information "
                "entries are too large (near the float64 limit)"
            )

    # ---- initial guess for edge-only files -----------------------------------------------------------
    if not has_vertices:
        guess = spanning_tree_guess(graph)
        if not (np.isfinite(guess.rotations).all() and np.isfinite(guess.translations).all()):
            raise InputFormatError(
                path,
                None,
                "composing the edge measurements into an initial guess "
                "overflowed to inf/NaN: the measured translations are too large",
            )
        graph.rotations, graph.translations = guess.rotations, guess.translations
        if "spanning_tree_components" in guess.warnings:
            graph.warnings["spanning_tree_components"] = guess.warnings["spanning_tree_components"]

    if validate:
        graph.validate()
    else:
        check_information(graph.information, graph)
    return graph


# ------------------------------------------------------------------------------------------------------
# writer
# ------------------------------------------------------------------------------------------------------
def write_g2o(graph: PoseGraph, path, *, rotations=None, translations=None) -> None:
    """Write ``graph`` as a g2o file (full float precision, so that reading it back is exact to ~1e-15).

    2D graphs use ``VERTEX_SE2`` / ``EDGE_SE2``, 3D graphs ``VERTEX_SE3:QUAT`` / ``EDGE_SE3:QUAT`` (quaternions
    written with ``qw >= 0``); information matrices are written as their upper triangles in g2o order, and
    each fixed pose gets a ``FIX id`` line. Vertex lines are always written (for a graph read from an
    edge-only file: its spanning-tree guess), so the file reads back with ``has_initial_guess=True``.
    ``rotations`` / ``translations`` replace the graph's poses (for example an optimized solution) without
    copying the graph.

    Raises :class:`~mixslam.errors.NonFiniteError` if a pose, measurement or information entry is NaN/inf
    (the file would not be readable), ``ValueError`` on shape mismatches, and :class:`~mixslam.errors.OutputError` (an
    ``OSError``) if the file cannot be written; the file is written atomically (:mod:`mixslam.atomic`): a
    failure leaves the previous file at ``path`` untouched.
    """
    d = graph.dim
    R = np.asarray(graph.rotations if rotations is None else rotations, dtype=np.float64)
    t = np.asarray(graph.translations if translations is None else translations, dtype=np.float64)
    n = graph.num_poses
    if R.shape != (n, d, d) or t.shape != (n, d):
        raise ValueError(f"poses must have shapes ({n}, {d}, {d}) and ({n}, {d}), got {R.shape} and {t.shape}")
    for name, arr in (
        ("rotations", R),
        ("translations", t),
        ("measured rotations", graph.meas_rotations),
        ("measured translations", graph.meas_translations),
        ("information", graph.information),
    ):
        if not np.isfinite(arr).all():
            raise NonFiniteError(f"write_g2o: the {name} of {graph.source} hold NaN/inf values")
    ids = graph.ids.tolist()
    ii = graph.ids[graph.edge_i].tolist()
    jj = graph.ids[graph.edge_j].tolist()
    k = graph.information.shape[1]
    iu = np.triu_indices(k)
    info = graph.information[:, iu[0], iu[1]].tolist()
    out: list[str] = []
    if d == 2:
        vpose = np.column_stack([t, so2.log(R)]).tolist()
        meas = np.column_stack([graph.meas_translations, so2.log(graph.meas_rotations)]).tolist()
        vtag, etag = "VERTEX_SE2", "EDGE_SE2"
    else:
        vpose = np.column_stack([t, so3.to_quaternion(R)]).tolist()
        meas = np.column_stack([graph.meas_translations, so3.to_quaternion(graph.meas_rotations)]).tolist()
        vtag, etag = "VERTEX_SE3:QUAT", "EDGE_SE3:QUAT"
    for v, p in zip(ids, vpose):
        out.append(f"{vtag} {v} {format_floats(p)}")
    for a, b, m, inf in zip(ii, jj, meas, info):
        out.append(f"{etag} {a} {b} {format_floats(m)} {format_floats(inf)}")
    for v in graph.ids[np.asarray(graph.fixed, dtype=bool)].tolist():
        out.append(f"FIX {v}")
    atomic_write_text(path, "\n".join(out) + "\n")
