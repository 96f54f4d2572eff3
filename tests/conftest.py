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
