"""Atomic, checked file output: the one way the library and the command line write files.

:func:`atomic_write` writes to a temporary file in the target's folder, flushes and fsyncs it, then
``os.replace``-s it over the target, so the target is either the previous file (untouched, even when it is the
input being overwritten: ``mixslam pgo X -o X``) or the complete new one, never half of it. On any failure the
temporary file is removed and the error is an :class:`~mixslam.errors.OutputError` (an ``OSError``) naming the
path and the reason; an error raised by the code writing through the file object (not an ``OSError``) passes
through unchanged, after the same clean-up. A path naming a device or FIFO (``/dev/stdout``, ``/dev/null``) is
written in place: there is no file to replace (and replacing a device node would be wrong).

:func:`check_writable` (a file) and :func:`check_folder` (an output folder) verify a path *before* any work, so
a bad ``-o`` is refused at once instead of after the solve.
"""

from __future__ import annotations

import errno as errno_codes
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import OutputError

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_bytes", "check_writable", "check_folder"]

_TMP_SUFFIX = ".tmp"


def _target(path) -> Path:
    p = Path(os.fspath(path))
    if p.is_symlink():  # write through the link (replacing the link itself would surprise)
        p = Path(os.path.realpath(p))
    return p


def _new_file_mode(target: Path) -> int:
    """The permission bits the file would get from a plain ``open(target, "w")``: the existing file's, or
    0o666 less the umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


@contextmanager
def atomic_write(
    path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (``mode`` ``"w"`` text or ``"wb"`` bytes); on a clean exit of the
    ``with`` block flush, fsync and move it over ``path``. On any exception the temporary file is removed and
    ``path`` is unchanged; an ``OSError`` becomes an :class:`~mixslam.errors.OutputError` naming ``path``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    special = special_file(path)
    if special is not None:  # /dev/stdout, /dev/null, a FIFO: nothing to replace, written in place
        yield from _write_in_place(special, mode, encoding, newline)
        return
    target = _target(path)
    folder = target.parent
    if target.is_dir():
        raise OutputError(str(path), "is a folder, not a file; give a file name", errno_codes.EISDIR)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=_TMP_SUFFIX)
    except OSError as e:
        raise OutputError(str(path), f"cannot be written: {_folder_problem(folder, e)}", e.errno) from e
    try:
        f: IO[Any] = os.fdopen(fd, "wb") if mode == "wb" else os.fdopen(fd, "w", encoding=encoding, newline=newline)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(target))
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(
                str(path), f"could not be written ({_reason(e)}); the previous file, if any, is unchanged", e.errno
            ) from e
        raise
    _sync_folder(folder)


def special_file(path) -> Path | None:
    """``path`` when it names an existing file that is neither a regular file nor a folder (a device, a FIFO),
    or any file under ``/dev`` or ``/proc``: replacing it would replace the device node, or unlink the file
    behind ``/dev/stdout``, so it is written in place."""
    p = Path(os.fspath(path))
    try:
        st = os.stat(p)  # follows links: /dev/stdout -> the terminal, a pipe or a file
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return None
    if not stat.S_ISREG(st.st_mode) or os.path.abspath(p).startswith(("/dev/", "/proc/")):
        return p  # /dev/stdout redirected to a file is still the shell's open file: never replaced
    return None


def _write_in_place(p: Path, mode: str, encoding: str | None, newline: str | None) -> Iterator[IO[Any]]:
    try:
        f: IO[Any] = open(p, "wb") if mode == "wb" else open(p, "w", encoding=encoding, newline=newline)
    except OSError as e:
        raise OutputError(str(p), f"cannot be written ({_reason(e)})", e.errno) from e
    try:
        with f:
            yield f
            f.flush()
    except OSError as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(str(p), f"could not be written ({_reason(e)})", e.errno) from e


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (best effort: not every platform or file system can fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text: str, *, encoding: str = "utf-8", newline: str | None = "\n") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); ``newline="\\n"`` keeps ``\\n`` as is."""
    with atomic_write(path, "w", encoding=encoding, newline=newline) as f:
        f.write(text)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def _folder_problem(folder: Path, exc: OSError | None = None) -> str:
    shown = str(folder) or "."
    if not folder.exists():
        return f"folder {shown} does not exist"
    if not folder.is_dir():
        return f"{shown} is not a folder"
    if exc is not None:
        return f"folder {shown} is not writable ({_reason(exc)})"
    return f"folder {shown} is not writable"


def _probe(folder: Path) -> OSError | None:
    """Create and remove a temporary file in ``folder``: the real test (``os.access`` says yes to root on a
    read-only file system). Returns the error, or None when the folder is writable."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".mixslam-probe-", suffix=_TMP_SUFFIX)
    except OSError as e:
        return e
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass
    return None


def check_writable(path, what: str = "output") -> None:
    """Raise :class:`~mixslam.errors.OutputError` (``what``, the path and the reason) unless a file can be
    written at ``path``: its folder exists and is writable, and ``path`` is not a folder. Writes nothing."""
    shown = f"{what} {path}" if what else str(path)
    try:
        target = _target(path)
    except (TypeError, ValueError) as e:
        raise OutputError(shown, f"not a usable file path ({e})") from None
    if target.is_dir():
        raise OutputError(shown, "is a folder, not a file; give a file name", errno_codes.EISDIR)
    if special_file(path) is not None:
        return  # a device or FIFO (/dev/stdout): written in place, its own errors are reported then
    folder = target.parent
    if not folder.is_dir():
        raise OutputError(shown, f"cannot be written: {_folder_problem(folder)}", errno_codes.ENOENT)
    err = _probe(folder)
    if err is not None:
        raise OutputError(shown, f"cannot be written: {_folder_problem(folder, err)}", err.errno)


def check_folder(path, what: str = "output folder") -> None:
    """Raise :class:`~mixslam.errors.OutputError` unless ``path`` is a writable folder or can be created (its
    nearest existing ancestor is a writable folder). Creates nothing."""
    shown = f"{what} {path}" if what else str(path)
    p = Path(os.fspath(path))
    if p.exists() and not p.is_dir():
        raise OutputError(shown, "exists and is not a folder", errno_codes.ENOTDIR)
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(shown, f"cannot be created: {probe} is not a folder", errno_codes.ENOTDIR)
    err = _probe(probe)
    if err is not None:
        raise OutputError(shown, f"cannot be written: {_folder_problem(probe, err)}", err.errno)
