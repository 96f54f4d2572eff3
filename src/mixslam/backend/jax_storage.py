"""The Jacobian stored in the policy's format on a JAX device: column scaling, quantization, counts.

The same decisions as the CPU (:mod:`mixslam.storage`, :mod:`mixslam.linear.operators`):

* Column scaling: S = the power of two nearest to 1/‖J_c‖ per column (1 for a column no residual touches),
  so that S JᵀJ S has a diagonal near 1 and 16-bit storage neither overflows nor underflows
  (:func:`mixslam.linear.operators.column_scale`, reused here).
* Quantization: the scaled blocks are formed in fp64, rounded to fp32 and, for fp16 / bf16, from fp32 to the
  16-bit format (round to nearest even: the double rounding of fp32 code calling ``vcvtps2ph``); the stored
  arrays are ``float64``, ``float32``, ``float16`` or ``bfloat16`` (JAX has both 16-bit types natively).
* Counts as :func:`mixslam.storage.quantize`: non-finite inputs, the largest finite magnitude, overflows
  (finite -> ±inf), underflows (non-zero -> 0) and subnormals, with the same definition per format. One
  difference, of the hardware's making: XLA flushes fp32 subnormals to zero (FTZ/DAZ, on CPUs and GPUs), so a
  value in fp32's subnormal range (|x| < 1.2e-38) is stored as 0 and counted as an underflow, where the CPU
  keeps it and counts a subnormal (fp32 and bf16 storage; fp16's subnormals are normal fp32 values and are
  kept and counted alike). The column scaling keeps the Jacobian's entries far from that range.
* Fallback (:func:`mixslam.storage.store`): an overflowing store is redone in the next wider format and
  the arithmetic widened to contain it, when the policy allows it.

bf16 is available here though the CPU kernels refuse it (:class:`~mixslam.precision.PrecisionPolicy` still
refuses bf16 policies; the functions below take the formats as arguments).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..linear.operators import column_scale
from ..precision import Precision, QuantizationStats, is_16bit, next_wider
from .jax_device import BackendError, jax, jnp
from .jax_linearization import DeviceLinearization, gather_rows, split_stacked

__all__ = [
    "STORAGE_DTYPES",
    "storage_dtype",
    "quantize",
    "scaled_blocks",
    "scaled_damping",
    "StoredJacobian",
    "store_jacobian",
]

STORAGE_DTYPES = {
    Precision.FP64: jnp.float64,
    Precision.FP32: jnp.float32,
    Precision.FP16: jnp.float16,
    Precision.BF16: jnp.bfloat16,
}
"""The JAX dtype each format is stored in."""


def storage_dtype(precision: Precision | str):
    """The JAX dtype values of ``precision`` are stored in."""
    return STORAGE_DTYPES[Precision.parse(precision)]


@partial(jax.jit, static_argnames=("precision",))
def _quantize(x, precision: Precision):
    finite = jnp.isfinite(x)
    nonfinite = jnp.sum(~finite)
    max_abs = jnp.max(jnp.where(finite, jnp.abs(x), 0.0).astype(jnp.float64), initial=0.0)
    if precision is Precision.FP64:
        stored = x.astype(jnp.float64)
        zero = jnp.zeros((), nonfinite.dtype)
        return stored, jnp.stack([nonfinite, zero, zero, zero]), max_abs
    x32 = x.astype(jnp.float32)
    stored = x32 if precision is Precision.FP32 else x32.astype(STORAGE_DTYPES[precision])
    back = stored.astype(jnp.float32)
    # fp32 counts a value that was non-zero before rounding, the 16-bit formats one that is non-zero in IEEE
    # fp32 (|x| > 2^-150), as the CPU; decided on x because XLA flushes fp32 subnormals to zero (FTZ / DAZ)
    nz = finite & (x != 0)
    if precision is not Precision.FP32:
        nz = nz & (jnp.abs(x.astype(jnp.float64)) > 2.0**-150)
    overflows = jnp.sum(finite & ~jnp.isfinite(back))
    underflows = jnp.sum(nz & jnp.isfinite(back) & (back == 0))
    subnormals = jnp.sum(nz & (back != 0) & (jnp.abs(back) < precision.min_normal))
    return stored, jnp.stack([nonfinite, overflows, underflows, subnormals]), max_abs


def _stats(counts, max_abs) -> QuantizationStats:
    c = np.asarray(counts)
    n_in, over, under, sub = (int(v) for v in c[:4])
    return QuantizationStats(int(c[4]) if c.size > 4 else 0, over, under, sub, n_in, float(max_abs))


def quantize(x, precision: Precision | str):
    """Round ``x`` (fp64 or fp32, on the device) to ``precision``; returns (stored array, counts, max_abs):
    ``counts`` = [non-finite inputs, overflows, underflows, subnormals] (device ints), ``max_abs`` the largest
    finite |x| (fp64). Jit-compatible; :func:`quantization_stats` turns the counts into
    :class:`~mixslam.precision.QuantizationStats` (a transfer to the host)."""
    return _quantize(jnp.asarray(x), Precision.parse(precision))


def quantization_stats(x_size: int, counts, max_abs) -> QuantizationStats:
    """:class:`~mixslam.precision.QuantizationStats` of :func:`quantize`'s counts (``x_size`` values)."""
    st = _stats(counts, max_abs)
    st.count = int(x_size)
    return st


@jax.jit
def scaled_blocks(lin: DeviceLinearization, scale):
    """(A S, B S) in fp64: each block's columns times its variable's scales, zero blocks for fixed variables
    (the CPU's ``scaled_rows_nb``)."""
    sa, sb = split_stacked(scale, lin.nv, lin.p, lin.nb, lin.pb)
    na, nb = lin.nv, lin.b_set[0]
    As = lin.A.astype(jnp.float64) * gather_rows(sa, lin.ia, na)[:, None, :]
    Bs = lin.B.astype(jnp.float64) * gather_rows(sb, lin.ib, nb)[:, None, :]
    return As, Bs


@dataclass(frozen=True)
class StoredJacobian:
    """The column-scaled Jacobian in its storage format, with the arithmetic its products use. A JAX pytree
    (the formats and sizes are static)."""

    A: Any
    """(m, k, p) stored first-set blocks (A S)."""
    B: Any
    """(m, k, pb or p) stored second-set blocks (B S)."""
    ia: Any
    ib: Any
    nv: int
    p: int
    nb: int
    pb: int
    storage: Precision
    """The format used (the requested one, or the next wider after a fallback)."""
    accumulate: Precision
    """The arithmetic of the products (widened to contain ``storage`` after a fallback)."""

    @property
    def size(self) -> int:
        return self.nv * self.p + self.nb * self.pb

    @property
    def b_set(self) -> tuple[int, int]:
        return (self.nb, self.pb) if self.pb else (self.nv, self.p)

    @property
    def acc_dtype(self):
        """The JAX dtype the products accumulate in."""
        return jnp.float64 if self.accumulate is Precision.FP64 else jnp.float32

    @property
    def nbytes(self) -> int:
        return int(self.A.nbytes + self.B.nbytes)


jax.tree_util.register_dataclass(
    StoredJacobian,
    data_fields=["A", "B", "ia", "ib"],
    meta_fields=["nv", "p", "nb", "pb", "storage", "accumulate"],
)


def check_arithmetic(accumulate: Precision, what: str) -> None:
    """The device backend accumulates in fp32 or fp64 only: emulated 16-bit arithmetic (the naive ``fp16``
    policy) stays on the CPU."""
    if is_16bit(accumulate):
        raise BackendError(
            f"{what}={accumulate.value}: the device backend accumulates in fp32 or fp64 (16-bit storage with "
            "fp32 accumulation is supported); 16-bit arithmetic is emulated by the CPU kernels only"
        )


def store_jacobian(
    lin: DeviceLinearization,
    scale,
    storage: Precision | str,
    accumulate: Precision | str,
    fallback: bool = True,
) -> tuple[StoredJacobian, QuantizationStats]:
    """The Jacobian of ``lin`` with columns scaled by ``scale`` (size,), stored in ``storage`` for products in
    ``accumulate``; returns it and the statistics of the requested format (``fallbacks`` 1 when an overflow
    made it store in the next wider one): :func:`mixslam.storage.store_chunked` on the device. Both blocks are
    quantized as one operand, so a fallback applies to the whole Jacobian, as on the CPU."""
    storage, accumulate = Precision.parse(storage), Precision.parse(accumulate)
    check_arithmetic(accumulate, "jacobian_accumulate")
    As, Bs = scaled_blocks(lin, jnp.asarray(scale, jnp.float64))
    qa, ca, ma = quantize(As, storage)
    qb, cb, mb = quantize(Bs, storage)
    stats = quantization_stats(As.size + Bs.size, ca + cb, jnp.maximum(ma, mb))
    used = storage
    if stats.overflows and fallback and storage is not Precision.FP64:
        used = next_wider(storage)
        qa, qb = quantize(As, used)[0], quantize(Bs, used)[0]
        stats.fallbacks = 1
    acc = accumulate if accumulate.contains(used) else used
    stored = StoredJacobian(qa, qb, lin.ia, lin.ib, lin.nv, lin.p, lin.nb, lin.pb, used, acc)
    return stored, stats


def device_column_scale(colsq) -> Any:
    """:func:`mixslam.linear.operators.column_scale` of a device vector: power-of-two Jacobi scales (1 for an
    untouched column), fp64. Computed on the device: the rounded log2 of the CPU, made a power of two by
    ``ldexp`` (XLA's ``exp2`` of an integer is not always exact)."""
    colsq = jnp.asarray(colsq, jnp.float64)
    e = jnp.round(jnp.log2(1.0 / jnp.sqrt(jnp.maximum(colsq, 1e-300)))).astype(jnp.int32)
    scale = jnp.ldexp(jnp.ones_like(colsq), e)
    return jnp.where(colsq > 0, scale, 1.0)


def scaled_damping(colsq, scale, lam, min_diagonal: float, max_diagonal: float) -> Any:
    """The damping of the column-scaled normal matrix S (JᵀJ) S: ``lam`` times the clipped diagonal of JᵀJ,
    scaled like it (1 for an untouched column); what the device step adds and its Cholesky preconditioner
    factors."""
    return jnp.where(colsq > 0, lam * jnp.clip(colsq, min_diagonal, max_diagonal) * scale * scale, 1.0)


def host_column_scale(colsq) -> np.ndarray:
    """The CPU's own :func:`~mixslam.linear.operators.column_scale` (the reference the device version equals)."""
    return column_scale(np.asarray(colsq, np.float64))
