"""JAX for the device backend: imported here once, with fp64 enabled, and the device choice.

Every module of :mod:`mixslam.backend` takes ``jax`` and ``jnp`` from here, so that a missing JAX is one
:class:`BackendError` with the install line (not a ``ModuleNotFoundError`` from deep inside), and fp64 is
on before any array exists: JAX computes in fp32 unless ``jax_enable_x64`` is set, and the state, the cost
and the fp64 policy need fp64. The switch is JAX's process-wide configuration (JAX offers no other); with
it set, mixslam's backend never relies on default dtypes: every array it creates names its dtype.
"""

from __future__ import annotations

from typing import Any

from ..errors import MixslamError

__all__ = ["BackendError", "jax", "jnp", "lax", "device", "gpu_visible", "DEVICES"]

DEVICES = ("cpu", "gpu")
"""The values of the ``device`` argument (None: the GPU when one is visible, else the CPU)."""


class BackendError(MixslamError, RuntimeError):
    """The device backend cannot run: JAX is not installed, or the device asked for is not visible."""


try:
    import jax
    import jax.numpy as jnp
    from jax import lax
except ImportError as exc:  # pragma: no cover - exercised by the missing-jax test through sys.modules
    raise BackendError(
        f'the JAX backend needs jax ({exc}); install it with `pip install "mixslam[jax]"` (CPU), or jax\'s '
        'CUDA wheel for a GPU (`pip install "jax[cuda13]"`)'
    ) from None

jax.config.update("jax_enable_x64", True)


def gpu_visible() -> bool:
    """True when JAX sees a GPU (a CUDA or ROCm backend with at least one device)."""
    try:
        return len(jax.devices("gpu")) > 0
    except RuntimeError:  # JAX raises RuntimeError for a platform it has no backend for
        return False


def device(kind: str | None = None) -> Any:
    """The JAX device to run on: ``"cpu"``, ``"gpu"`` (the first GPU; :class:`BackendError` when none is
    visible) or None (the first GPU when visible, else the CPU); a JAX device is returned as it is."""
    if isinstance(kind, jax.Device):
        return kind
    if kind is not None and kind not in DEVICES:
        raise BackendError(f"device must be one of {list(DEVICES)} or None, got {kind!r}")
    if kind == "gpu" or (kind is None and gpu_visible()):
        if not gpu_visible():
            raise BackendError(
                f"device='gpu' asked for, but JAX sees no GPU (devices: {jax.devices()}); install jax's CUDA "
                "wheel on a machine with a GPU, or use device='cpu'"
            )
        return jax.devices("gpu")[0]
    return jax.devices("cpu")[0]
