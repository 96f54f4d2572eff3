"""Text parsing shared by the readers and writers of :mod:`mixslam.io` (g2o / TORO, TUM, BAL).

Reading: :func:`read_text` (decoded text or an :class:`~mixslam.errors.InputFormatError` naming the path),
:func:`to_array` (number tokens to an array in one pass, or an error naming the first bad token and its
line), :func:`check_finite_rows`, :func:`unit_quaternions`, :func:`clip_token` (a token shown in a message).
Writing: :func:`format_floats` (shortest round-trip text, so reading back is exact).
"""

from __future__ import annotations

import os
from itertools import chain

import numpy as np

from ..errors import InputFormatError

__all__ = [
    "QUAT_MIN_NORM",
    "QUAT_UNIT_TOL",
    "read_text",
    "clip_token",
    "to_array",
    "check_finite_rows",
    "unit_quaternions",
    "format_floats",
]

QUAT_MIN_NORM = 1e-6
"""Quaternions with a smaller norm (or not finite) are rejected."""
QUAT_UNIT_TOL = 1e-3
"""Quaternions with ``|norm - 1|`` above this are accepted after normalization and counted as non-unit."""


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
    try:
        return np.fromiter(map(conv, chain.from_iterable(rows)), dtype=dtype, count=len(rows) * ncol).reshape(
            len(rows), ncol
        )
    except (ValueError, OverflowError, TypeError):
        pass
    for line, row in zip(lines, rows):
        for name, tok in zip(names, row):
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


def check_finite_rows(path: str, what: str, lines, values: np.ndarray, names: list[str]) -> None:
    """Raise at the first row holding a NaN/inf value."""
    if values.size == 0:
        return
    ok = np.isfinite(values)
    if ok.all():
        return
    r = int(np.flatnonzero(~ok.all(axis=1))[0])
    c = int(np.flatnonzero(~ok[r])[0])
    raise InputFormatError(
        path,
        int(lines[r]),
        f"{what}: {names[c]} = {float(values[r, c])!r}; every value must be a finite number (no NaN/inf)",
    )


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
    nonunit = int(np.count_nonzero(np.abs(norm - 1.0) > QUAT_UNIT_TOL))
    return q / norm[:, None], nonunit


def format_floats(values) -> str:
    """Shortest round-trip text of each float (``repr``), space separated: reading it back is exact."""
    return " ".join(map(repr, values))
