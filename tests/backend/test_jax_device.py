"""The device choice, fp64, and the optional import (``import mixslam`` never imports JAX)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax")

from mixslam.backend.jax_device import BackendError, device, gpu_visible, jax, jnp  # noqa: E402
from mixslam.errors import MixslamError  # noqa: E402


def test_fp64_is_enabled():
    assert jnp.zeros(2, jnp.float64).dtype == np.float64
    assert jax.config.jax_enable_x64


def test_cpu_device_and_bad_names():
    assert device("cpu").platform == "cpu"
    with pytest.raises(BackendError, match="one of"):
        device("tpu")
    assert issubclass(BackendError, MixslamError)


def test_default_device_is_the_gpu_when_visible():
    assert device(None).platform == ("gpu" if gpu_visible() else "cpu")
    if not gpu_visible():
        with pytest.raises(BackendError, match="sees no GPU"):
            device("gpu")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_mixslam_does_not_import_jax():
    out = _run("import sys, mixslam, mixslam.backend; print('jax' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_missing_jax_is_a_backend_error_with_the_install_line():
    code = (
        "import sys; sys.modules['jax'] = None\n"
        "from mixslam.errors import MixslamError\n"
        "try:\n    import mixslam.backend.jax_residuals\nexcept MixslamError as e:\n    print(type(e).__name__, e)\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("BackendError") and 'pip install "mixslam[jax]"' in out.stdout
