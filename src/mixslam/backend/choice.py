"""The backend choice of a solve configuration, checked without importing JAX.

``PGOConfig`` and ``BAConfig`` carry ``backend`` (``"numba"``: the CPU kernels, the default; ``"jax"``: the
device backend of this package) and ``device`` (``"cpu"``, ``"gpu"``, None = the GPU when JAX sees one).
:func:`check_backend` validates both when the configuration is built, as a
:class:`~mixslam.errors.ConfigError` naming the field; :func:`jax_preconditioner` resolves the linear solver
the device backend runs (CG with block-Jacobi or none, or for pose graphs with the complete Cholesky factor
as its preconditioner; no incomplete Cholesky).
"""

from __future__ import annotations

import importlib.util

from ..errors import ConfigError
from ..precision import PrecisionPolicy, is_16bit

__all__ = ["BACKENDS", "DEVICE_KINDS", "jax_installed", "check_backend", "jax_preconditioner"]

BACKENDS = ("numba", "jax")
"""The values of ``PGOConfig.backend`` / ``BAConfig.backend``."""
DEVICE_KINDS = ("cpu", "gpu")
"""The values of ``device`` besides None (the GPU when JAX sees one, else the CPU)."""

_JAX_SOLVERS = (None, "cg", "cgnr")
_JAX_PRECONDITIONERS = (None, "jacobi", "none")


def jax_installed() -> bool:
    """True when ``import jax`` can succeed (checked without importing it)."""
    return importlib.util.find_spec("jax") is not None


def check_backend(settings) -> None:
    """Refuse a bad ``backend`` / ``device`` and what the device backend cannot run (called from the
    configurations' ``__post_init__``): another solver than CG, the IC preconditioner, robust losses, a
    preset with 16-bit arithmetic, and ``backend="jax"`` without JAX installed."""
    cls = type(settings).__name__
    backend, device = settings.backend, settings.device
    if backend not in BACKENDS:
        raise ConfigError(f"{cls}.backend must be one of {list(BACKENDS)}, got {backend!r}")
    if device is not None and device not in DEVICE_KINDS:
        raise ConfigError(f"{cls}.device must be one of {list(DEVICE_KINDS)} or None, got {device!r}")
    if backend == "numba":
        if device is not None:
            raise ConfigError(
                f"{cls}.device={device!r} chooses the device of backend 'jax'; the numba backend runs on the CPU "
                "(set backend='jax', or leave device None)"
            )
        return
    if not jax_installed():
        raise ConfigError(
            f"{cls}.backend='jax' needs jax, which is not installed: pip install \"mixslam[jax]\" (CPU), or jax's "
            "CUDA wheel for a GPU"
        )
    if settings.solver == "cholesky" and cls == "PGOConfig":
        pass  # CG preconditioned by the complete factor, its triangular solves on the device (jax_factor)
    elif settings.solver not in _JAX_SOLVERS:
        raise ConfigError(
            f"{cls}.solver={settings.solver!r}: backend 'jax' runs the CG solver (solver 'cg' or None, with "
            "preconditioner 'jacobi' or 'none'; pose graphs also 'cholesky': CG preconditioned by the complete "
            "factor); use backend 'numba' for the other direct solvers"
        )
    if settings.preconditioner not in _JAX_PRECONDITIONERS:
        raise ConfigError(
            f"{cls}.preconditioner={settings.preconditioner!r}: backend 'jax' has the 'jacobi' and 'none' "
            "preconditioners (the incomplete Cholesky runs on backend 'numba')"
        )
    if settings.robust.loss is not None:
        raise ConfigError(f"{cls}.robust: backend 'jax' has no robust losses yet; use backend 'numba'")
    policy = settings.precision
    if isinstance(policy, str):
        from ..precision import PRESETS

        table = PRESETS["pgo"]
        policy = table.get(policy)
    if isinstance(policy, PrecisionPolicy):
        bad = [
            n for n in ("jacobian_accumulate", "preconditioner_accumulate", "krylov") if is_16bit(getattr(policy, n))
        ]
        if bad:
            raise ConfigError(
                f"{cls}.precision={policy.name!r}: backend 'jax' accumulates in fp32 or fp64 ({', '.join(bad)} "
                "are 16-bit here); 16-bit storage with fp32 accumulation ('mixed', 'mixed16') runs, 16-bit "
                "arithmetic ('fp16') is emulated by the numba kernels only"
            )


def jax_preconditioner(settings) -> str:
    """The device CG's preconditioner for ``settings``: ``cholesky`` for solver ``cholesky`` (pose graphs: the
    complete supernodal factor in the policy's ``factor`` format, built on the host, applied on the device by
    level-scheduled triangular solves, :mod:`.jax_factor`), else ``jacobi`` unless ``none`` is asked for
    (solver alias ``cgnr`` = ``cg`` + ``jacobi``)."""
    if settings.solver == "cholesky":
        return "cholesky"
    return "none" if settings.preconditioner == "none" else "jacobi"
