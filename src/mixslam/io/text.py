"""Text parsing shared by the readers and writers of :mod:`mixslam.io` (g2o / TORO, TUM, BAL).

Reading: :func:`read_text` (decoded text or an :class:`~mixslam.errors.InputFormatError` naming the path),
:func:`check_separators` (fields are separated by ASCII whitespace only), :func:`parse_int` /
:func:`parse_float` (the one number syntax), :func:`to_array` (number tokens to an array in one pass, or an
error naming the first bad token and its line), :func:`check_finite_rows` (finite, and small enough to be
squared), :func:`unit_quaternions` (normalized; a warning with file:line when far from unit),
:func:`clip_token` (a token shown in a message).
Writing: :func:`format_floats` (shortest round-trip text, so reading back is exact).

The number syntax of every reader (g2o / TORO, BAL, TUM): ASCII only, an optional sign, digits with an
optional fraction, an optional exponent (``-1.5e-3``, ``.5``, ``7.``), or ``nan`` / ``inf`` / ``infinity``
in any case, which are then refused by the finiteness check with file:line. What Python's ``float`` /
``int`` accept beyond that is refused: ``_`` digit separators (``1_000``), non-ASCII digits (full-width
``１``, Arabic-Indic ``٣``), and surrounding Unicode spaces. Integers (ids, counts) are ASCII digits with
an optional sign.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from itertools import chain

import numpy as np

from ..errors import InputFormatError

__all__ = [
    "QUAT_MIN_NORM",
    "QUAT_UNIT_TOL",
    "read_text",
    "MAX_MAGNITUDE",
    "clip_token",
    "check_separators",
    "parse_int",
    "parse_float",
    "number_syntax_problem",
    "to_array",
    "check_finite_rows",
    "unit_quaternions",
    "format_floats",
]

QUAT_MIN_NORM = 1e-6
"""Quaternions with a smaller norm (or not finite) are rejected."""
QUAT_UNIT_TOL = 1e-3
"""Quaternions with ``|norm - 1|`` above this are accepted after normalization, counted as non-unit and warned
about (the ``mixslam.io`` logger, file:line of the first one)."""
MAX_MAGNITUDE = float(np.sqrt(np.finfo(np.float64).max))
"""Largest accepted ``|value|`` (about 1.34e154): the square of anything larger overflows float64, and every
cost squares the poses' differences and multiplies by the information."""

log = logging.getLogger("mixslam.io")

#: whitespace other than ASCII's space, tab, CR, LF, VT, FF (str.split() would split on it silently)
_ODD_SPACE = re.compile(r"[^\S \t\r\n\x0b\x0c]")


def read_text(path) -> tuple[str, str]:
    """Return (display path, decoded text); raise :class:`InputFormatError` when the file cannot be read."""
    try:
        p = os.fspath(path)
    except TypeError:
        raise InputFormatError(
            repr(path), None, f"not a file path: expected str or os.PathLike, got {type(path).__name__}"
        ) from None
    shown = p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p)
    try:
        with open(p, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputFormatError(shown, None, "file not found") from None
    except IsADirectoryError:
        raise InputFormatError(shown, None, "is a directory, not a file") from None
    except PermissionError:
        raise InputFormatError(shown, None, "file is not readable (permission denied)") from None
    except (OSError, ValueError) as e:  # ValueError: embedded NUL in the path
        raise InputFormatError(shown, None, f"file could not be read: {e}") from None
    if data.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise InputFormatError(
            shown,
            line,
            f"not UTF-8 text: byte 0x{data[e.start]:02x} at column {col} cannot be decoded (is this a binary file?)",
        ) from None
    return shown, text


def clip_token(tok: str, n: int = 40) -> str:
    """``repr`` of a token for an error message, cut to ``n`` characters."""
    return repr(tok if len(tok) <= n else tok[:n] + "...")


def _char_name(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return ("non-ASCII " if ord(ch) > 127 else "") + f"character U+{ord(ch):04X}" + (f" ({name})" if name else "")


def check_separators(path: str, text: str) -> None:
    """Raise :class:`InputFormatError` (line, column and the character) at the first whitespace character that
    is not ASCII's (space, tab, CR, LF, VT, FF): a non-breaking space, an ideographic space, U+2028, ...
    Python's ``str.split`` would treat them as separators without a word."""
    m = _ODD_SPACE.search(text)
    if m is None:
        return
    line = text.count("\n", 0, m.start()) + 1
    col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    raise InputFormatError(
        path,
        line,
        f"{_char_name(m.group())} at column {col}; fields must be separated by ASCII spaces or tabs",
    )


def number_syntax_problem(tok: str) -> str | None:
    """Why ``tok`` breaks the number syntax before Python's parser sees it (``_`` separators, a non-ASCII
    character), or None."""
    if not tok.isascii():
        ch = next(c for c in tok if ord(c) > 127)
        return f"{_char_name(ch)}; numbers are written in ASCII digits"
    if "_" in tok:
        return "'_' digit separators are not accepted"
    return None


def parse_int(tok: str) -> int | None:
    """``tok`` as an int under the readers' syntax (ASCII digits, optional sign), or None."""
    if number_syntax_problem(tok) is not None:
        return None
    try:
        return int(tok)
    except ValueError:
        return None


def parse_float(tok: str) -> float | None:
    """``tok`` as a float under the readers' syntax (see the module docstring), or None. ``nan`` / ``inf`` and
    overflowing values (``1e999`` -> inf) parse: the finiteness checks refuse them, naming the line."""
    if number_syntax_problem(tok) is not None:
        return None
    try:
        return float(tok)
    except ValueError:
        return None


def to_array(
    path: str, what: str, lines: list[int], rows: list[list[str]], names: list[str], dtype, kind: str
) -> np.ndarray:
    """Convert ``rows`` (lists of number tokens) to a 2-D array, or raise naming the first bad token.

    ``kind`` is the rule stated in the message: ``"int"`` (non-negative integer id) or ``"float"``.
    """
    ncol = len(names)
    if not rows:
        return np.zeros((0, ncol), dtype=dtype)
    conv = int if kind == "int" else float  # Python's parsers: the fast path and the scan agree exactly
    # Python's parsers accept more than the readers' syntax ('_' separators, non-ASCII digits): one C-speed
    # test of all the tokens keeps the fast path for the usual file
    joined = " ".join(chain.from_iterable(rows))
    if joined.isascii() and "_" not in joined:
        try:
            return np.fromiter(map(conv, chain.from_iterable(rows)), dtype=dtype, count=len(rows) * ncol).reshape(
                len(rows), ncol
            )
        except (ValueError, OverflowError, TypeError):
            pass
    for line, row in zip(lines, rows):
        for name, tok in zip(names, row):
            problem = number_syntax_problem(tok)
            if problem is not None:
                rule = "a non-negative integer" if kind == "int" else "a number"
                raise InputFormatError(path, line, f"{what}: {name} = {clip_token(tok)} is not {rule}: {problem}")
            try:
                np.array([conv(tok)], dtype=dtype)
            except OverflowError:
                raise InputFormatError(
                    path, line, f"{what}: {name} = {clip_token(tok)} is out of range (ids must be integers below 2**63)"
                ) from None
            except (ValueError, TypeError):
                rule = "a non-negative integer" if kind == "int" else "a number"
                raise InputFormatError(path, line, f"{what}: {name} = {clip_token(tok)} is not {rule}") from None
    raise InputFormatError(path, lines[0], f"{what}: could not convert the numbers")  # pragma: no cover


def check_finite_rows(
    path: str, what: str, lines, values: np.ndarray, names: list[str], label=None, finite: bool = True
) -> None:
    """Raise at the first row holding a NaN/inf value (unless ``finite=False``) or a value whose square
    overflows float64 (``|v| > MAX_MAGNITUDE``). ``label(r)`` (for example ``"vertex 7"``, ``"edge 3->4"``)
    names row ``r``'s object in the message."""
    if values.size == 0:
        return
    with np.errstate(invalid="ignore"):
        ok = np.abs(values) <= MAX_MAGNITUDE  # False for NaN/inf too
    if not finite:
        ok |= ~np.isfinite(values)
    if ok.all():
        return
    r = int(np.flatnonzero(~ok.all(axis=1))[0])
    c = int(np.flatnonzero(~ok[r])[0])
    v = float(values[r, c])
    where = f"{what} {label(r)}" if label is not None else what
    if not np.isfinite(v):
        reason = "every value must be a finite number (no NaN/inf)"
    else:
        reason = f"too large: its square overflows float64 (|value| must be <= {MAX_MAGNITUDE:.3g})"
    raise InputFormatError(path, int(lines[r]), f"{where}: {names[c]} = {v!r}; {reason}")


def unit_quaternions(path: str, what: str, lines, q: np.ndarray) -> tuple[np.ndarray, int]:
    """Normalize (n, 4) quaternions; raise for norm ~0 / not finite. Returns (unit q, number non-unit)."""
    norm = np.sqrt(np.einsum("ij,ij->i", q, q))
    bad = ~(np.isfinite(norm) & (norm >= QUAT_MIN_NORM))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        vals = ", ".join(repr(float(v)) for v in q[r])
        raise InputFormatError(
            path,
            int(lines[r]),
            f"{what}: quaternion (qx, qy, qz, qw) = ({vals}) has "
            f"norm {float(norm[r])!r}; a rotation needs a finite quaternion with norm "
            f">= {QUAT_MIN_NORM:g} (unit norm expected)",
        )
    far = np.abs(norm - 1.0) > QUAT_UNIT_TOL
    nonunit = int(np.count_nonzero(far))
    if nonunit:
        r = int(np.flatnonzero(far)[0])
        more = f" ({nonunit - 1} more {what} line(s) like it)" if nonunit > 1 else ""
        log.warning(
            "%s:%d: %s: quaternion norm %.6g is not 1 (tolerance %g); normalized%s",
            path,
            int(lines[r]),
            what,
            float(norm[r]),
            QUAT_UNIT_TOL,
            more,
        )
    return q / norm[:, None], nonunit


def format_floats(values) -> str:
    """Shortest round-trip text of each float (``repr``), space separated: reading it back is exact."""
    return " ".join(map(repr, values))
