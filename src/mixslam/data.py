"""Where the benchmark data lives.

The data (pose graphs in ``pgo/``, bundle-adjustment problems in ``ba/``) is never copied into the
repository; it sits in a shared folder next to it (``<repo>/../shared/data``). :func:`data_dir` finds it so
that tests, benchmarks and examples can skip cleanly when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir"]

#: Environment variable that overrides the search.
ENV_VAR = "MIXSLAM_DATA"


def _repo_root() -> Path:
    """The source checkout that holds this file (``<repo>/src/mixslam/data.py`` -> ``<repo>``)."""
    return Path(__file__).resolve().parents[2]


def data_dir() -> Path | None:
    """The benchmark data folder (the one holding ``pgo/`` and ``ba/``), or ``None`` when there is none.

    Search order:

    1. ``$MIXSLAM_DATA`` if set and non-empty. It is authoritative: when it names a folder that does not
       exist, the answer is ``None`` rather than a silent fall-back to another copy.
    2. ``shared/data`` in the repository root or any of its parents (the repository is found from this
       file's location in the source tree, so ``<repo>/../shared/data`` is found).
    3. The same search starting from the current directory (useful for an installed, non-editable copy).
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        p = Path(env).expanduser()
        return p.resolve() if p.is_dir() else None
    starts = [_repo_root()]
    try:
        starts.append(Path.cwd().resolve())
    except OSError:  # the current directory was deleted
        pass
    for start in starts:
        for d in (start, *start.parents):
            cand = d / "shared" / "data"
            if cand.is_dir():
                return cand.resolve()
    return None
