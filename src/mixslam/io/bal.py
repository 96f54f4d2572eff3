"""Reading and writing BAL ("Bundle Adjustment in the Large") problem files.

Format (Agarwal, Snavely, Seitz, Szeliski, ECCV 2010; see ``shared/data/ba/SOURCES.md``)::

    <num_cameras> <num_points> <num_observations>
    <camera_index> <point_index> <x> <y>          # num_observations lines, one observation each
    ...
    <camera parameters>                            # 9 * num_cameras numbers: w(3) t(3) f k1 k2 each
    <point coordinates>                            # 3 * num_points numbers: X Y Z each

Indices start at 0. The result is a :class:`~mixslam.problem.bundle.BundleData` with ``model="bal"``.

Rules (strict, like :mod:`mixslam.io.g2o`)
-----------------------------------------
* The header is one line with exactly 3 integers; each observation is one line with exactly 4 fields
  (2 integers, 2 numbers). The camera and point numbers may be split across lines in any way (the real
  files hold one per line). Blank lines are skipped anywhere (GTSAM's copies have some).
* The number count must match the header exactly: ``3 + 4 * num_observations + 9 * num_cameras +
  3 * num_points``. Fewer is reported as a truncated file, more as extra trailing numbers.
* Counts must be positive; indices must lie in ``0 .. count - 1``; every number must be finite (``nan``,
  ``inf`` and overflowing values such as ``1e999`` are rejected). Only ASCII text is accepted, and ``_``
  digit separators (which Python's ``float`` would accept) are not: the number syntax of
  :mod:`mixslam.io.text`, the same as the g2o reader's; a non-ASCII space is named as such.
* Duplicate ``(camera, point)`` observations are kept and counted in a warning.

Errors: the reader raises only :class:`~mixslam.errors.MixslamError` subclasses, whatever the bytes:
:class:`~mixslam.errors.InputFormatError` (path, 1-based line, reason) for anything wrong with the file
(NaN/inf included, as in :mod:`mixslam.io.g2o`), :class:`~mixslam.errors.ConfigError` for a bad
``fixed_cameras`` argument, and, with ``validate=True``, :class:`~mixslam.errors.GaugeError` from
:meth:`BundleData.validate` (free cameras or points that no observation constrains).

Speed: a vectorized fast path (one ``bytes.split``, ``np.fromiter(map(float, ...))`` conversions and a
numpy pass over the bytes that gives every token its line number, used to check the line structure) reads
problem-16-22106 (4.8 MB) in about 0.2 s. Only when it finds a problem does a line-by-line scan run, to
name the first broken rule in file order with its line; the scan applies exactly the same rules.
"""

from __future__ import annotations

import operator

import numpy as np

from ..atomic import atomic_write_text
from ..errors import ConfigError, InputFormatError, MixslamError, NonFiniteError
from ..problem.bundle import BundleData
from .text import check_separators, clip_token, format_floats, parse_float, parse_int, read_text

__all__ = ["read_bal", "write_bal"]

CAMERA_FIELDS = ["w_x", "w_y", "w_z", "t_x", "t_y", "t_z", "f", "k1", "k2"]
POINT_FIELDS = ["X", "Y", "Z"]
_HEADER_FIELDS = ["num_cameras", "num_points", "num_observations"]
_OBS_FIELDS = ["camera index", "point index", "x", "y"]

#: the bytes ``bytes.split()`` treats as whitespace (and nothing else)
_WS = np.zeros(256, dtype=bool)
_WS[list(b" \t\n\r\x0b\x0c")] = True


# ------------------------------------------------------------------------------------------------------
# reader
# ------------------------------------------------------------------------------------------------------
def read_bal(path, fixed_cameras=(0,), validate: bool = True) -> BundleData:
    """Read a BAL problem file into a :class:`~mixslam.problem.bundle.BundleData` (``model="bal"``).

    Parameters
    ----------
    path:
        The file (str or path-like).
    fixed_cameras:
        Camera indices (0-based) held constant: the gauge. Default: the first camera. ``()`` fixes none;
        ``None`` means the default. A single integer is accepted as one index.
    validate:
        Run :meth:`BundleData.validate`, which raises :class:`~mixslam.errors.GaugeError` for free cameras
        or points that no observation constrains and adds a warning for points seen by one camera only.

    Returns
    -------
    BundleData
        ``cameras`` (nc, 9) ``[w, t, f, k1, k2]``, ``points`` (np, 3), ``observations`` (m, 2),
        ``cam_idx`` / ``pt_idx`` (m,) in file order, ``fixed_cameras`` (nc,) bool, ``source=str(path)``.

    Raises
    ------
    InputFormatError
        Malformed file: names the path, the 1-based line and the broken rule.
    ConfigError
        ``fixed_cameras`` is not a list of camera indices in range.
    GaugeError
        Unconstrained free cameras/points (``validate=True``).

    No other exception escapes, whatever the file holds.
    """
    wanted = _fixed_indices(fixed_cameras)
    shown = str(path)
    try:
        shown, text = read_text(path)
        with np.errstate(all="ignore"):
            data = _parse(shown, text)
    except MixslamError:
        raise
    except Exception as e:  # a bug: never let it escape as a non-mixslam error
        raise InputFormatError(
            shown,
            None,
            f"unexpected error while reading ({type(e).__name__}: {e}); please report this as a mixslam bug",
        ) from e
    cameras, points, obs, cam, pt = data
    nc = cameras.shape[0]
    mask = np.zeros(nc, dtype=bool)
    for i in wanted:
        if i >= nc:
            raise ConfigError(
                f"fixed_cameras={list(wanted)!r}: camera {i} does not exist; {shown} has {nc} "
                f"camera(s) (indices 0..{nc - 1})"
            )
        mask[i] = True
    bundle = BundleData(
        model="bal",
        cameras=cameras,
        points=points,
        observations=obs,
        cam_idx=cam,
        pt_idx=pt,
        fixed_cameras=mask,
        source=shown,
    )
    npt = points.shape[0]
    dups = obs.shape[0] - np.unique(cam * npt + pt).size
    if dups:
        bundle.warnings.append(f"{dups} observation(s) repeat a (camera, point) pair observed earlier in the file")
    if validate:
        bundle.validate()
    return bundle


def _fixed_indices(fixed) -> tuple[int, ...]:
    if fixed is None:
        return (0,)
    if isinstance(fixed, (bool, np.bool_)):
        raise ConfigError(f"fixed_cameras={fixed!r}: expected camera indices, got a bool")
    try:
        items = [operator.index(fixed)]  # a single index
    except TypeError:
        try:
            items = list(fixed)
        except TypeError:
            raise ConfigError(f"fixed_cameras={fixed!r}: expected a sequence of integer camera indices") from None
    out = []
    for v in items:
        if isinstance(v, (bool, np.bool_)):
            raise ConfigError(
                f"fixed_cameras={fixed!r}: expected camera indices, got a bool; pass the indices "
                "(e.g. np.flatnonzero(mask)), not a mask"
            )
        try:
            i = operator.index(v)
        except TypeError:
            raise ConfigError(
                f"fixed_cameras={fixed!r}: expected a sequence of integer camera indices, got {type(v).__name__} {v!r}"
            ) from None
        if i < 0:
            raise ConfigError(f"fixed_cameras={fixed!r}: camera index {i} is negative; indices start at 0")
        out.append(i)
    return tuple(out)


def _parse(path: str, text: str):
    """(cameras, points, observations, cam_idx, pt_idx) from the text; raises InputFormatError."""
    fast = _fast_parse(text) if text.isascii() else None
    if fast is not None:
        return fast
    _scan(path, text)  # raises at the first problem, in file order
    # the scan found nothing the fast path objected to: a mismatch between the two (a bug)
    raise InputFormatError(
        path, None, "the file was rejected but no broken rule could be located; please report this as a mixslam bug"
    )


def _fast_parse(text: str):
    """The vectorized reader: the arrays, or ``None`` when anything is wrong (the scan then says what)."""
    data = text.encode("ascii")
    if b"_" in data:
        return None
    toks = data.split()
    n = len(toks)
    if n < 3:
        return None
    try:
        nc, npt, nobs = int(toks[0]), int(toks[1]), int(toks[2])
    except ValueError:
        return None
    if nc <= 0 or npt <= 0 or nobs <= 0:
        return None
    p0 = 3 + 4 * nobs
    npar = 9 * nc + 3 * npt
    if n != p0 + npar:
        return None
    # line number (0-based) of every token: tokens start at a non-space byte after a space (or at 0)
    buf = np.frombuffer(data, dtype=np.uint8)
    ws = _WS[buf]
    start = ~ws
    start[1:] &= ws[:-1]
    starts = np.flatnonzero(start)
    if starts.size != n:  # cannot happen: same whitespace set as bytes.split
        return None
    tline = np.searchsorted(np.flatnonzero(buf == 10), starts)
    # header alone on its line; each observation alone on its own line; parameters on later lines
    ob = tline[3:p0].reshape(nobs, 4)
    if not (
        tline[0] == tline[2]
        and tline[2] < ob[0, 0]
        and (ob[:, 0] == ob[:, 3]).all()
        and (ob[1:, 0] > ob[:-1, 3]).all()
        and ob[-1, 3] < tline[p0]
    ):
        return None
    try:
        otok = toks[3:p0]
        cam = np.fromiter(map(int, otok[0::4]), dtype=np.int64, count=nobs)
        pt = np.fromiter(map(int, otok[1::4]), dtype=np.int64, count=nobs)
        obs = np.empty((nobs, 2))
        obs[:, 0] = np.fromiter(map(float, otok[2::4]), dtype=np.float64, count=nobs)
        obs[:, 1] = np.fromiter(map(float, otok[3::4]), dtype=np.float64, count=nobs)
        par = np.fromiter(map(float, toks[p0:]), dtype=np.float64, count=npar)
    except (ValueError, OverflowError):
        return None
    if not (np.isfinite(obs).all() and np.isfinite(par).all()):
        return None
    if cam.min() < 0 or cam.max() >= nc or pt.min() < 0 or pt.max() >= npt:
        return None
    return par[: 9 * nc].reshape(nc, 9), par[9 * nc :].reshape(npt, 3), obs, cam, pt


# ------------------------------------------------------------------------------------------------------
# the line-by-line scan: locates the first problem (only runs when the fast path refused the file)
# ------------------------------------------------------------------------------------------------------
def _as_int(tok: bytes):
    return parse_int(tok.decode("ascii"))  # the readers' one number syntax (mixslam.io.text)


def _as_float(tok: bytes):
    return parse_float(tok.decode("ascii"))


def _bad_value(v: float) -> str | None:
    """Why a parsed value is refused (not finite), or None. Any finite double is kept: the writer and reader
    round-trip every value bit-exactly, extremes included."""
    if not np.isfinite(v):
        return "every value must be a finite number (no NaN/inf)"
    return None


def _show(tok: bytes) -> str:
    return clip_token(tok.decode("ascii"))


def _scan(path: str, text: str) -> None:
    """Apply every rule in file order and raise :class:`InputFormatError` at the first broken one."""
    check_separators(path, text)  # a non-breaking space is named as such, before the non-ASCII rule
    lines = text.split("\n")
    # non-ASCII characters: refuse them where they are (the fast path only reads ASCII text)
    for ln, raw in enumerate(lines, 1):
        if not raw.isascii():
            col = next(c for c, ch in enumerate(raw) if ord(ch) > 127)
            raise InputFormatError(
                path,
                ln,
                f"non-ASCII character U+{ord(raw[col]):04X} at column {col + 1}; a "
                "BAL file holds only ASCII numbers separated by spaces and newlines",
            )
    rows = [(ln, toks) for ln, toks in enumerate((r.encode("ascii").split() for r in lines), 1) if toks]
    total = sum(len(t) for _, t in rows)
    if not rows:
        raise InputFormatError(
            path, None, "file is empty: expected a header line '<num_cameras> <num_points> <num_observations>'"
        )
    last_line = rows[-1][0]

    # ---- header --------------------------------------------------------------------------------------
    ln, toks = rows[0]
    if len(toks) != 3:
        raise InputFormatError(
            path,
            ln,
            f"the header needs 3 integers (num_cameras num_points "
            f"num_observations) alone on the first line, got {len(toks)} field(s)",
        )
    counts = []
    for name, tok in zip(_HEADER_FIELDS, toks):
        v = _as_int(tok)
        if v is None:
            raise InputFormatError(path, ln, f"header: {name} = {_show(tok)} is not an integer")
        if v < 0:
            raise InputFormatError(path, ln, f"header: {name} = {v} is negative; counts must be positive")
        if v == 0:
            raise InputFormatError(
                path, ln, f"header: {name} = 0; a BAL problem needs at least one camera, one point and one observation"
            )
        counts.append(v)
    nc, npt, nobs = counts
    need = 3 + 4 * nobs + 9 * nc + 3 * npt

    def truncated(where: str) -> InputFormatError:
        return InputFormatError(
            path,
            last_line,
            f"file is truncated: it ends {where}; the header "
            f"({nc} cameras, {npt} points, {nobs} observations) calls for {need} numbers "
            f"(3 + 4*{nobs} + 9*{nc} + 3*{npt}), the file holds {total}",
        )

    # ---- observations: one line of 4 fields each -----------------------------------------------------
    for k in range(nobs):
        if k + 1 >= len(rows):
            raise truncated(
                f"after {k} of the {nobs} observation lines"
                if k
                else "after the header, before the first observation line"
            )
        ln, toks = rows[k + 1]
        if len(toks) != 4:
            msg = f"observation {k}: an observation line needs 4 fields (camera_index point_index x y), got {len(toks)}"
            if k + 2 == len(rows) and len(toks) < 4:
                msg += (
                    f"; this is the file's last line, so it looks truncated: the header calls for {need} "
                    f"numbers, the file holds {total}"
                )
            elif len(toks) < 4 and k > 0:
                msg += (
                    f"; the header says num_observations = {nobs} but only {k} observation line(s) come "
                    "before this one: do the header's counts match the body?"
                )
            raise InputFormatError(path, ln, msg)
        ci, pj = _as_int(toks[0]), _as_int(toks[1])
        for name, tok, v in (("camera index", toks[0], ci), ("point index", toks[1], pj)):
            if v is None:
                raise InputFormatError(path, ln, f"observation {k}: {name} = {_show(tok)} is not an integer")
        for name, v, cnt, what in (("camera index", ci, nc, "camera"), ("point index", pj, npt, "point")):
            if not 0 <= v < cnt:
                shown_v = str(v) if len(str(v)) <= 40 else str(v)[:40] + "..."
                raise InputFormatError(
                    path,
                    ln,
                    f"observation {k}: {name} {shown_v} is out of range: the "
                    f"header declares {cnt} {what}(s), so valid indices are 0..{cnt - 1}",
                )
        for name, tok in (("x", toks[2]), ("y", toks[3])):
            v = _as_float(tok)
            if v is None:
                raise InputFormatError(path, ln, f"observation {k}: {name} = {_show(tok)} is not a number")
            bad = _bad_value(v)
            if bad is not None:
                raise InputFormatError(path, ln, f"observation {k}: {name} = {_show(tok)} ({v!r}); {bad}")

    # ---- camera parameters then points: a stream of numbers --------------------------------------------
    npar = 9 * nc + 3 * npt
    q = 0
    for ln, toks in rows[nobs + 1 :]:
        for tok in toks:
            if q >= npar:
                raise InputFormatError(
                    path,
                    ln,
                    f"extra numbers after the last point: the header ({nc} "
                    f"cameras, {npt} points, {nobs} observations) calls for {need} numbers "
                    f"(3 + 4*{nobs} + 9*{nc} + 3*{npt}), the file holds {total}; the first "
                    f"extra one is {_show(tok)} (do the header's counts match the body?)",
                )
            name = (
                f"camera {q // 9} {CAMERA_FIELDS[q % 9]}"
                if q < 9 * nc
                else f"point {(q - 9 * nc) // 3} {POINT_FIELDS[(q - 9 * nc) % 3]}"
            )
            v = _as_float(tok)
            if v is None:
                raise InputFormatError(path, ln, f"{name} = {_show(tok)} is not a number")
            bad = _bad_value(v)
            if bad is not None:
                raise InputFormatError(path, ln, f"{name} = {_show(tok)} ({v!r}); {bad}")
            q += 1
    if q < npar:
        where = (
            f"in the camera parameters (camera {q // 9} {CAMERA_FIELDS[q % 9]} is missing)"
            if q < 9 * nc
            else f"in the points (point {(q - 9 * nc) // 3} {POINT_FIELDS[(q - 9 * nc) % 3]} is missing)"
        )
        raise truncated(where)


# ------------------------------------------------------------------------------------------------------
# writer
# ------------------------------------------------------------------------------------------------------
def write_bal(path, data: BundleData) -> None:
    """Write ``data`` (``model="bal"``) as a BAL file that :func:`read_bal` reads back bit-exactly.

    Layout as in the original files: the header line, one ``cam pt x y`` line per observation, then one
    number per line (9 per camera, then 3 per point). Floats are written with ``repr`` (the shortest text
    that reads back to the same double). ``fixed_cameras``, ``sigma`` and ``fixed_points`` are not part of
    the format and are not written.

    Raises ``ValueError`` for a model other than ``"bal"``, on shape mismatches or indices out of range,
    :class:`~mixslam.errors.NonFiniteError` on NaN/inf values, and :class:`~mixslam.errors.OutputError` (an
    ``OSError``) if the file cannot be written; the file is written atomically
    (:mod:`mixslam.atomic`): a failure leaves the previous file at ``path`` untouched.
    """
    if data.model != "bal":
        raise ValueError(f"write_bal writes BAL camera models only (model 'bal'), got model {data.model!r}")
    cams = np.asarray(data.cameras, dtype=np.float64)
    pts = np.asarray(data.points, dtype=np.float64)
    obs = np.asarray(data.observations, dtype=np.float64)
    ci = np.asarray(data.cam_idx)
    pj = np.asarray(data.pt_idx)
    nc, npt, m = cams.shape[0], pts.shape[0], obs.shape[0]
    if (
        cams.ndim != 2
        or cams.shape[1] != 9
        or pts.ndim != 2
        or pts.shape[1] != 3
        or obs.shape != (m, 2)
        or ci.shape != (m,)
        or pj.shape != (m,)
    ):
        raise ValueError(
            f"write_bal: expected cameras (nc, 9), points (np, 3), observations (m, 2), cam_idx and "
            f"pt_idx (m,); got {cams.shape}, {pts.shape}, {obs.shape}, {ci.shape}, {pj.shape}"
        )
    if nc == 0 or npt == 0 or m == 0:
        raise ValueError(
            f"write_bal: a BAL file needs at least one camera, point and observation; got {nc}, {npt}, {m}"
        )
    if not (np.issubdtype(ci.dtype, np.integer) and np.issubdtype(pj.dtype, np.integer)):
        raise ValueError("write_bal: cam_idx and pt_idx must be integer arrays")
    if ci.min() < 0 or ci.max() >= nc or pj.min() < 0 or pj.max() >= npt:
        raise ValueError(
            f"write_bal: observation indices out of range (cameras 0..{nc - 1}, points "
            f"0..{npt - 1}); the file would not be readable"
        )
    for name, arr in (("cameras", cams), ("points", pts), ("observations", obs)):
        if not np.isfinite(arr).all():
            raise NonFiniteError(f"write_bal: the {name} of {data.source} hold NaN/inf values")
    out = [f"{nc} {npt} {m}"]
    out.extend(f"{a} {b} {format_floats(xy)}" for a, b, xy in zip(ci.tolist(), pj.tolist(), obs.tolist()))
    out.extend(map(repr, cams.ravel().tolist()))
    out.extend(map(repr, pts.ravel().tolist()))
    atomic_write_text(path, "\n".join(out) + "\n")
