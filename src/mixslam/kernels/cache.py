"""Where numba caches the compiled kernels, and the fallback when it has nowhere to write.

The kernels use ``@njit(cache=True)``. numba looks for a cache folder when a kernel is *decorated* (at import):
``$NUMBA_CACHE_DIR`` if set, else the ``__pycache__`` beside the source file, else a user-wide folder
(``~/.cache/numba``). When neither is writable (a read-only install and a read-only or missing ``HOME``: a
container, a CI runner) numba raises ``RuntimeError: cannot cache function ...: no locator available`` and
``import mixslam`` fails. :func:`ensure_numba_cache` runs before the first kernel is decorated
(``kernels/__init__.py``): when the user has not set ``NUMBA_CACHE_DIR`` and numba would find no writable
folder, it points numba at a private folder in the system's temporary directory and warns once.

Decision: a fallback rather than ``cache=False``: the kernels still compile once per machine session instead of
once per process (worker processes inherit ``NUMBA_CACHE_DIR``). The folder is per user
(``mixslam-numba-cache-<uid>``), created with mode 0700 and used only if this user owns it and nobody else
can write to it (numba loads pickled code from it); otherwise a fresh ``mkdtemp`` folder is used.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

__all__ = ["ensure_numba_cache", "numba_cache_folders"]

_NUMBA_SOURCES = ("kernels", "problem")
"""The mixslam packages whose modules hold ``cache=True`` kernels (their ``__pycache__`` is numba's in-tree
cache)."""


def _writable(folder: Path) -> bool:
    """numba's own test of a cache folder: create it, then a temporary file in it."""
    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def numba_cache_folders() -> list[tuple[Path, Path]]:
    """(in-tree ``__pycache__``, user-wide folder) numba would try for each mixslam package holding kernels."""
    from numba.misc.appdirs import AppDirs

    user = Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)
    root = Path(__file__).resolve().parent.parent
    return [(root / pkg / "__pycache__", user) for pkg in _NUMBA_SOURCES]


def _private_folder() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = Path(tempfile.gettempdir()) / f"mixslam-numba-cache-{uid}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.stat()
        if (not hasattr(os, "getuid") or st.st_uid == uid) and not st.st_mode & 0o022 and _writable(folder):
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="mixslam-numba-cache-"))


def ensure_numba_cache() -> str | None:
    """Point numba at a temporary cache folder when it has no writable one; returns that folder, or None when
    nothing was changed (``NUMBA_CACHE_DIR`` set by the user, or a writable in-tree / user-wide folder)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None  # the user's choice, even if it is not writable (numba then says so)
    if all(_writable(in_tree) or _writable(user) for in_tree, user in numba_cache_folders()):
        return None
    folder = str(_private_folder())
    os.environ["NUMBA_CACHE_DIR"] = folder  # read by numba at import, and inherited by worker processes
    from numba.core import config

    config.CACHE_DIR = folder  # type: ignore[attr-defined]  # numba may be imported already: config read then
    warnings.warn(
        f"mixslam: numba cannot write its cache next to the package or in the user cache folder; compiled "
        f"kernels are cached in {folder} (set NUMBA_CACHE_DIR to choose another folder)",
        RuntimeWarning,
        stacklevel=2,
    )
    return folder
