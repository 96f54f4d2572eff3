"""Shared fixtures: the data folder (tests that need it skip when it is absent)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def data_dir():
    from mixslam.data import data_dir as find
    d = find()
    if d is None:
        pytest.skip("shared data folder not found (set MIXSLAM_DATA)")
    return d


@pytest.fixture(autouse=True)
def _pristine_mixslam_logger():
    """The CLI, run in-process by some tests (and module-scoped fixtures), points the ``mixslam`` logger at
    the captured (later closed) stderr and stops propagation; every test starts from the library's own
    state instead (a NullHandler, propagating), so ``caplog`` sees the library's records."""
    import logging
    log = logging.getLogger("mixslam")
    log.handlers[:] = [logging.NullHandler()]
    log.setLevel(logging.NOTSET)
    log.propagate = True
    yield
