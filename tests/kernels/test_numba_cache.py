"""numba with nowhere to write its cache: a temporary folder and one warning, never a crash on import.

Root writes anywhere, so the read-only install and HOME are simulated by making numba's own folder probe
(``tempfile.TemporaryFile(dir=...)``) and ours fail for those folders."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from numba.core import config as numba_config

import mixslam.kernels.cache as cache


def test_fallback_when_no_folder_is_writable(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(numba_config, "CACHE_DIR", numba_config.CACHE_DIR)
    monkeypatch.setattr(cache, "_writable", lambda folder: str(folder).startswith(str(tmp_path)))
    monkeypatch.setattr(cache.tempfile, "gettempdir", lambda: str(tmp_path))
    with pytest.warns(RuntimeWarning, match="numba cannot write its cache") as rec:
        folder = cache.ensure_numba_cache()
    assert len(rec) == 1
    assert folder is not None and Path(folder).parent == tmp_path and Path(folder).is_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == folder and numba_config.CACHE_DIR == folder
    assert (Path(folder).stat().st_mode & 0o777) == 0o700


def test_no_change_when_writable_or_chosen_by_the_user(monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(cache, "_writable", lambda folder: True)
    assert cache.ensure_numba_cache() is None and "NUMBA_CACHE_DIR" not in os.environ
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/the/user/chose")
    monkeypatch.setattr(cache, "_writable", lambda folder: False)
    assert cache.ensure_numba_cache() is None
    assert os.environ["NUMBA_CACHE_DIR"] == "/somewhere/the/user/chose"


def test_import_with_read_only_package_and_home(tmp_path):
    """End to end in a fresh interpreter: numba's in-tree and user-wide folders refuse writes (as for a user
    with a read-only install and HOME); ``import mixslam`` warns once and works, a kernel compiles."""
    pkg = Path(cache.__file__).resolve().parent.parent
    home = tmp_path / "home"
    home.mkdir()
    script = textwrap.dedent(f"""
        import os, tempfile
        refused = ({str(pkg)!r}, {str(home)!r})
        real_tf, real_mk = tempfile.TemporaryFile, tempfile.mkstemp
        def deny(dir):
            if dir is not None and os.path.abspath(dir).startswith(refused):
                raise PermissionError(13, "Permission denied", dir)
        def TemporaryFile(*a, dir=None, **k):
            deny(dir); return real_tf(*a, dir=dir, **k)
        def mkstemp(*a, dir=None, **k):
            deny(dir); return real_mk(*a, dir=dir, **k)
        tempfile.TemporaryFile, tempfile.mkstemp = TemporaryFile, mkstemp
        import numpy as np
        import mixslam
        from mixslam.kernels import round16_array
        print(round16_array(np.array([1.0, 2.0]))[1], os.environ["NUMBA_CACHE_DIR"])
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE_DIR", "XDG_CACHE_HOME"))}
    env.update(HOME=str(home), TMPDIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    value, folder = r.stdout.split()
    assert float(value) == 2.0 and folder.startswith(str(tmp_path))
    assert r.stderr.count("numba cannot write its cache") == 1
    assert "no locator available" not in r.stderr
