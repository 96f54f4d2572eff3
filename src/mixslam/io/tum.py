"""TUM trajectory files: ``timestamp tx ty tz qx qy qz qw`` per line.

The writer produces what the ``evo`` tool reads (``evo_ape tum ...``): one header comment line starting with
``#``, then exactly 8 fields per line separated by single spaces, no trailing space, no blank lines, floats
at full precision (``repr``). 2D poses are lifted to 3D with ``z = 0`` and a rotation about z (yaw).

The reader is more lenient about spacing (any whitespace) but strict about content, with the same error
rules as :func:`mixslam.io.read_pose_graph`: any problem raises :class:`~mixslam.errors.InputFormatError`
(path, 1-based line, reason), and nothing but :class:`~mixslam.errors.MixslamError` subclasses escapes.
"""

from __future__ import annotations

import numpy as np

from ..atomic import atomic_write_text
from ..errors import ConfigError, InputFormatError, MixslamError, NonFiniteError
from ..lie import so3
from .text import check_finite_rows, check_separators, format_floats, read_text, to_array, unit_quaternions

__all__ = ["read_tum", "write_tum"]

_NAMES = ["timestamp", "tx", "ty", "tz", "qx", "qy", "qz", "qw"]
HEADER = "# timestamp tx ty tz qx qy qz qw"


def check_distinct_timestamps(stamps: np.ndarray, where: str) -> None:
    """Refuse timestamps that coincide (e.g. vertex ids above 2**53, which fp64 cannot tell apart): a TUM reader
    would merge those poses. Raises :class:`ConfigError` naming the first pair."""
    stamps = np.asarray(stamps, dtype=np.float64)
    order = np.argsort(stamps, kind="stable")
    same = np.flatnonzero(np.diff(stamps[order]) == 0)
    if same.size:
        i, j = int(order[same[0]]), int(order[same[0] + 1])
        raise ConfigError(
            f"{where}: poses {i} and {j} get the same timestamp {stamps[i]!r} (fp64 cannot tell their "
            f"ids apart above 2**53); a TUM file needs distinct timestamps"
        )


def write_tum(path, rotations, translations, timestamps=None) -> None:
    """Write poses as a TUM trajectory file.

    Parameters
    ----------
    rotations, translations:
        ``(n, 3, 3)`` and ``(n, 3)``, or 2D poses ``(n, 2, 2)`` and ``(n, 2)`` (lifted to z = 0, yaw only).
    timestamps:
        ``(n,)`` times; default ``0.0, 1.0, ..., n-1`` (pass ``graph.ids.astype(float)`` to label poses by
        their vertex ids).

    Raises ``ValueError`` on shape mismatches, :class:`~mixslam.errors.NonFiniteError` on NaN/inf values and
    :class:`~mixslam.errors.OutputError` (an ``OSError``) if the file cannot be written; the file is written
    atomically (:mod:`mixslam.atomic`): a failure leaves the previous file at ``path`` untouched.
    """
    R = np.asarray(rotations, dtype=np.float64)
    t = np.asarray(translations, dtype=np.float64)
    if R.ndim != 3 or R.shape[1:] not in ((2, 2), (3, 3)) or t.shape != (R.shape[0], R.shape[1]):
        raise ValueError(
            f"rotations must be (n, 3, 3) or (n, 2, 2) and translations (n, 3) or (n, 2) to "
            f"match; got {R.shape} and {t.shape}"
        )
    n = R.shape[0]
    if R.shape[1] == 2:
        R3 = np.zeros((n, 3, 3))
        R3[:, :2, :2] = R
        R3[:, 2, 2] = 1.0
        t3 = np.zeros((n, 3))
        t3[:, :2] = t
        R, t = R3, t3
    stamps = np.arange(n, dtype=np.float64) if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    if stamps.shape != (n,):
        raise ValueError(f"timestamps must have shape ({n},), got {stamps.shape}")
    if not (np.isfinite(R).all() and np.isfinite(t).all() and np.isfinite(stamps).all()):
        raise NonFiniteError(f"write_tum({path}): poses or timestamps hold NaN/inf values")
    check_distinct_timestamps(stamps, f"write_tum({path})")
    rows = np.column_stack([stamps, t, so3.to_quaternion(R)]).tolist()
    lines = [HEADER, *(format_floats(r) for r in rows)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_tum(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a TUM trajectory file.

    Returns ``(timestamps (n,), rotations (n, 3, 3), translations (n, 3))``. Blank lines and lines whose
    first token starts with ``#`` are skipped; every other line must hold exactly 8 finite numbers, and the
    quaternion ``(qx, qy, qz, qw)`` must have a norm of at least 1e-6 (it is normalized).

    Raises :class:`~mixslam.errors.InputFormatError` (path, line, reason) for any problem, including a file
    that is missing, unreadable, not UTF-8 text, or holds no poses.
    """
    shown = str(path)
    try:
        shown, text = read_text(path)
        with np.errstate(all="ignore"):
            return _parse(shown, text)
    except MixslamError:
        raise
    except Exception as e:  # a bug: never let it escape as a non-mixslam error
        raise InputFormatError(
            shown,
            None,
            f"unexpected error while reading ({type(e).__name__}: {e}); please report this as a mixslam bug",
        ) from e


def _parse(path: str, text: str):
    check_separators(path, text)
    lines: list[int] = []
    rows: list[list[str]] = []
    for ln, raw in enumerate(text.split("\n"), 1):
        toks = raw.split()
        if not toks or toks[0][0] == "#":
            continue
        if len(toks) != 8:
            raise InputFormatError(
                path, ln, f"a TUM line needs 8 fields (timestamp tx ty tz qx qy qz qw), got {len(toks)}"
            )
        lines.append(ln)
        rows.append(toks)
    if not rows:
        raise InputFormatError(
            path, None, "no poses: the file holds no data lines (expected 'timestamp tx ty tz qx qy qz qw' per line)"
        )
    F = to_array(path, "TUM pose", lines, rows, _NAMES, np.float64, "float")
    larr = np.asarray(lines, dtype=np.int64)
    check_finite_rows(path, "TUM pose", larr, F, _NAMES)
    q, _ = unit_quaternions(path, "TUM pose", larr, F[:, 4:8])
    return F[:, 0].copy(), so3.from_quaternion(q), F[:, 1:4].copy()
