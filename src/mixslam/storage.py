"""Rounding values to a format, and storing them for the compiled kernels: every storage decision, once.

fp16 values are stored as IEEE binary16 bit patterns (``numpy.float16``, or its ``uint16`` view inside the
compiled kernels), rounded to nearest even exactly as the x86 ``vcvtps2ph`` instruction does. bf16 values are
stored as the upper 16 bits of an fp32, rounded to nearest even.

:func:`store` is the one place an operand of the linear solvers (the Jacobian, the block-Jacobi inverses, the
incomplete-Cholesky factor) becomes what the kernels read: it quantizes, counts, falls back to the next wider
format on overflow when the policy allows it (widening the arithmetic with it, for every operand alike), and
returns the array in the layout the kernels take. :func:`kernel_types` is the same decision without the data:
the compiled specialization a (storage, arithmetic) pair selects, which the warm-up compiles ahead of a solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kernels.fp16 import quantize16_stats, quantize32_stats
from .precision import Precision, QuantizationStats, is_16bit, next_wider

__all__ = [
    "quantize",
    "quantize_with_fallback",
    "dequantize",
    "round_to",
    "Stored",
    "store",
    "store_chunked",
    "kernel_types",
    "kernel_array",
]


def _bf16_bits(x32: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 bit patterns, rounded to nearest even (NaN stays NaN)."""
    u = np.ascontiguousarray(x32, dtype=np.float32).view(np.uint32)
    rounding = np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    out = ((u + rounding) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(x32)
    if nan.any():
        out[nan] = np.uint16(0x7FC0)
    return out


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def quantize(x: np.ndarray, precision: Precision) -> tuple[np.ndarray, QuantizationStats]:
    """Round ``x`` to ``precision`` and return (stored values, stats).

    fp16 goes through fp32 first (the values the kernels quantize are fp32), then to binary16 with
    round-to-nearest-even, the same double rounding as fp32 code calling ``vcvtps2ph``. The result is a
    ``float16`` array for fp16, a ``uint16`` array of bf16 bits for bf16, and a native array otherwise.
    """
    precision = Precision.parse(precision)
    x = np.asarray(x)
    stats = QuantizationStats(count=int(x.size))
    if precision is Precision.FP16 and x.dtype in (np.float32, np.float64) and x.size:
        # Compiled single pass (same rounding and counts as the numpy path below; tested against it).
        bits = np.empty(x.size, np.uint16)
        (stats.nonfinite_inputs, stats.max_abs, stats.overflows, stats.underflows, stats.subnormals) = quantize16_stats(
            np.ascontiguousarray(x).reshape(-1), bits
        )
        stats.max_abs = float(stats.max_abs)
        return bits.view(np.float16).reshape(x.shape), stats
    if precision is Precision.FP32 and x.dtype == np.float64 and x.size:
        out32 = np.empty(x.size, np.float32)
        (stats.nonfinite_inputs, stats.max_abs, stats.overflows, stats.underflows, stats.subnormals) = quantize32_stats(
            np.ascontiguousarray(x).reshape(-1), out32
        )
        stats.max_abs = float(stats.max_abs)
        return out32.reshape(x.shape), stats
    finite_in = np.isfinite(x)
    stats.nonfinite_inputs = int(x.size - np.count_nonzero(finite_in))
    if x.size:
        stats.max_abs = float(np.max(np.abs(np.where(finite_in, x, 0.0))))
    if precision is Precision.FP64:
        return np.asarray(x, dtype=np.float64), stats
    x32 = np.asarray(x, dtype=np.float32)
    if precision is Precision.FP32:
        out = x32
        back = out
    elif precision is Precision.FP16:
        with np.errstate(over="ignore"):
            out = x32.astype(np.float16)
        back = out.astype(np.float32)
    else:
        out = _bf16_bits(x32)
        back = _bf16_to_f32(out)
    nz = (x32 != 0) & finite_in
    stats.overflows = int(np.count_nonzero(finite_in & ~np.isfinite(back)))
    stats.underflows = int(np.count_nonzero(nz & (back == 0)))
    tiny = precision.min_normal
    stats.subnormals = int(np.count_nonzero(nz & (back != 0) & (np.abs(back) < tiny)))
    return out, stats


def quantize_with_fallback(x: np.ndarray, precision: Precision, fallback: bool = True):
    """Quantize; if that overflows and ``fallback`` is set, quantize in the next wider format instead.

    Returns (stored, stats of the requested format, format used, True if it fell back).
    """
    stored, stats = quantize(x, precision)
    if stats.overflows and fallback and precision is not Precision.FP64:
        used = next_wider(precision)
        return quantize(x, used)[0], stats, used, True
    return stored, stats, precision, False


def dequantize(stored: np.ndarray, precision: Precision, dtype=np.float32) -> np.ndarray:
    """Stored values back to ``dtype`` (exact: every narrow value is representable in fp32)."""
    precision = Precision.parse(precision)
    if precision is Precision.BF16:
        return _bf16_to_f32(stored).astype(dtype, copy=False)
    return np.asarray(stored).astype(dtype, copy=False)


def round_to(x: np.ndarray, precision: Precision) -> np.ndarray:
    """Round to ``precision`` and return in its compute dtype (emulates one rounding of that format)."""
    precision = Precision.parse(precision)
    stored, _ = quantize(x, precision)
    return dequantize(stored, precision, precision.compute_dtype)


def kernel_types(storage: Precision, accumulate: Precision) -> tuple[np.dtype, np.dtype, bool]:
    """The compiled specialization a stored operand selects: (storage dtype as :func:`store` leaves it for the
    kernels' type dispatch, the dtype its arithmetic runs on, True for emulated 16-bit arithmetic).

    The storage dtype is numpy's (float64, float32, float16); :func:`kernel_array` passes fp16 as its uint16
    bits, which the kernels decode with the hardware conversion.
    """
    if storage is Precision.BF16:
        raise NotImplementedError("bf16 kernels are not implemented; use fp16 storage")
    return np.dtype(storage.storage_dtype), np.dtype(accumulate.compute_dtype), is_16bit(accumulate)


def kernel_array(stored: np.ndarray, precision: Precision) -> np.ndarray:
    """The array the kernels read: fp16 as its uint16 bit view, others native and contiguous."""
    if precision is Precision.FP16:
        return stored.view(np.uint16)
    if precision is Precision.BF16:
        raise NotImplementedError("bf16 kernels are not implemented; use fp16 storage")
    return np.ascontiguousarray(stored)


@dataclass
class Stored:
    """An operand as the kernels read it, and what storing it did."""

    values: np.ndarray
    """The stored array in the kernels' layout (fp16 as uint16 bits), shaped as the input."""
    storage: Precision
    """The format actually used (the requested one, or the next wider after an overflow fallback)."""
    accumulate: Precision
    """The arithmetic to use on it: the requested one, widened to contain ``storage`` after a fallback."""
    stats: QuantizationStats
    """Counts of the requested format's rounding (``fallbacks`` is 1 when it fell back)."""

    @property
    def acc16(self) -> bool:
        """Emulated 16-bit arithmetic (the kernels' ``acc16`` flag)."""
        return is_16bit(self.accumulate)

    @property
    def compute_dtype(self) -> np.dtype:
        return np.dtype(self.accumulate.compute_dtype)

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    def dequantized(self, dtype=None) -> np.ndarray:
        """The stored values widened (exactly) to ``dtype`` (default: the arithmetic's dtype)."""
        v = self.values.view(np.float16) if self.storage is Precision.FP16 else self.values
        return v.astype(dtype or self.compute_dtype)


def store_filled(fill, storage: Precision, accumulate: Precision, fallback: bool = True):
    """:func:`store` for an operand that ``fill(precision)`` writes itself, already rounded, in the kernels'
    format of ``precision`` (fp16 as uint16 bits), returning (values, :class:`QuantizationStats` of that
    rounding). Same fallback rule as :func:`store`: on overflow (with ``fallback``), ``fill`` runs again in the
    next wider format. Returns (values, format used, arithmetic, stats of the requested format)."""
    storage, accumulate = Precision.parse(storage), Precision.parse(accumulate)
    values, stats = fill(storage)
    used, fell = storage, False
    if stats.overflows and fallback and storage is not Precision.FP64:
        used, fell = next_wider(storage), True
        values = fill(used)[0]
    stats.fallbacks = int(fell)
    acc = accumulate if accumulate.contains(used) else used
    return values, used, acc, stats


def kernel_dtype(precision: Precision) -> np.dtype:
    """The dtype the kernels read ``precision``'s stored values as (fp16 as uint16 bits)."""
    precision = Precision.parse(precision)
    if precision is Precision.BF16:
        raise NotImplementedError("bf16 kernels are not implemented; use fp16 storage")
    return np.dtype(np.uint16) if precision is Precision.FP16 else np.dtype(precision.storage_dtype)


def store_chunked(total: int, parts, storage: Precision, accumulate: Precision, fallback: bool = True) -> Stored:
    """:func:`store` of a flat array of ``total`` values produced in pieces: ``parts()`` yields (offset, fp64
    chunk) pairs covering [0, total). Each chunk is quantized as it comes, so no full-size fp64 array exists
    (the Jacobian's column scaling made one of 8 bytes per entry). Same rounding, statistics and fallback as
    :func:`store` on the whole array (tested); a fallback re-runs ``parts()`` in the wider format."""

    def fill(prec: Precision):
        out = np.empty(total, np.uint16 if prec is Precision.FP16 else prec.storage_dtype)
        stats = QuantizationStats()
        for off, x in parts():
            q, st = quantize(x, prec)
            out[off : off + x.size] = q.view(np.uint16) if prec is Precision.FP16 else q
            stats = stats.merge(st)
        return out, stats

    values, used, acc, stats = store_filled(fill, storage, accumulate, fallback)
    return Stored(values, used, acc, stats)


def store(x: np.ndarray, storage: Precision, accumulate: Precision, fallback: bool = True) -> Stored:
    """Quantize ``x`` to ``storage`` for kernels computing in ``accumulate``; the one storage decision.

    On overflow with ``fallback`` (the policy's field), the operand is stored in the next wider format and
    its arithmetic widened to contain it (fp16 storage with fp16 arithmetic falls back to fp32 and fp32).
    """
    storage, accumulate = Precision.parse(storage), Precision.parse(accumulate)
    stored, stats, used, fell = quantize_with_fallback(x, storage, fallback)
    stats.fallbacks = int(fell)
    acc = accumulate if accumulate.contains(used) else used
    return Stored(kernel_array(stored, used), used, acc, stats)
