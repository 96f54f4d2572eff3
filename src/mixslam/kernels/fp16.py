"""Real fp16 inside numba kernels: conversion intrinsics, a storage-generic ``load`` and emulated fp16 arithmetic.

numba refuses ``float16`` arrays in ``njit`` code, so fp16 values travel as their IEEE binary16 bit patterns in a
``uint16`` array (``a16.view(np.uint16)``). Two LLVM intrinsics convert them:

* :func:`h2f` bitcasts an ``i16`` to LLVM ``half`` and ``fpext``-s it to ``float`` (x86 F16C: ``vcvtph2ps``;
  on a host with AVX-512 FP16, LLVM emits ``vcvtsh2ss`` instead, equally exact);
  exact, bit-identical to ``numpy.float16.astype(float32)`` for all 65536 patterns (NaNs stay NaN).
* :func:`f2h` ``fptrunc``-s a ``float`` to ``half`` (round to nearest even, overflow to inf, gradual underflow;
  x86 F16C: ``vcvtps2ph``) and bitcasts to ``i16``; bit-identical to ``numpy`` ``astype(np.float16)``.

:func:`round16` = ``h2f(f2h(x))`` is one fp16 rounding of a float32.

Storage-generic kernels
    ``load(arr, i)`` returns ``h2f(arr[i])`` for a ``uint16`` array and ``arr[i]`` for float32/float64 arrays.
    numba compiles one specialization per argument type, so a single kernel source serves every storage format
    and the fp16 specialization contains the conversion instruction while the others contain plain loads.

Emulated fp16 arithmetic
    An fp16 accumulator is emulated by carrying out each operation (``+ - * /``) in float32 on operands that are
    fp16 values, then rounding the float32 result to fp16 with :func:`round16`. This is *exactly* IEEE fp16
    arithmetic: float32 has p' = 24 >= 2p + 2 = 24 significand bits for fp16's p = 11, and for such formats the
    double rounding (exact result -> float32 -> fp16) is innocuous for + - * / (and sqrt): the result equals the
    correctly rounded fp16 result (Figueroa, "When is double rounding innocuous?", 1995). Products of two fp16
    values are even exact in float32 (22 <= 24 bits). The emulation depends on each operation being rounded on
    its own: the kernels are compiled without ``fastmath``, so LLVM never contracts ``a*b + c`` into an FMA
    (an FMA would skip the rounding of the product).

    The arithmetic of a kernel is chosen by a *tag*: a zero-size array whose dtype names it (see :func:`arith_tag`).
    ``uint16`` = emulated fp16, ``float32``/``float64`` = that type. The tag is a type-level switch, so each
    arithmetic gets its own compiled specialization (no per-element branch). The helpers :func:`arith_zero`,
    :func:`arith_in` (round an operand into the arithmetic's format) and :func:`arith_rnd` (round an operation's
    result) are ``overload``-ed on the tag's dtype and usable in ``njit`` code only.

All compiled functions use ``cache=True`` and no ``fastmath``. Note that numba's cache is keyed on the source file
of the cached function only: after editing this module, clear ``__pycache__`` of the modules that use it.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = [
    "h2f",
    "f2h",
    "round16",
    "load",
    "arith_tag",
    "arith_zero",
    "arith_in",
    "arith_rnd",
    "h2f_array",
    "f2h_array",
    "round16_array",
    "h2f_ref",
    "f2h_ref",
    "round16_ref",
    "to_bits",
    "from_bits",
]

_HALF = ir.HalfType()
_FLOAT = ir.FloatType()
_I16 = ir.IntType(16)


# ---------------------------------------------------------------------------------------------------------
# Intrinsics
# ---------------------------------------------------------------------------------------------------------
@intrinsic
def h2f(typingctx, u):
    """fp16 bit pattern (uint16 / int16) -> float32, exact (``vcvtph2ps``). njit only."""
    if not (isinstance(u, types.Integer) and u.bitwidth == 16):
        return None

    def codegen(context, builder, sig, args):
        return builder.fpext(builder.bitcast(args[0], _HALF), _FLOAT)

    return types.float32(u), codegen


@intrinsic
def f2h(typingctx, x):
    """float32 -> fp16 bit pattern (uint16), round to nearest even (``vcvtps2ph``). njit only.

    A float64 argument is first rounded to float32 (like :func:`mixslam.precision.quantize`, which goes through
    fp32), then to fp16.
    """
    if x not in (types.float32, types.float64):
        return None

    def codegen(context, builder, sig, args):
        v = args[0]
        if sig.args[0] == types.float64:
            v = builder.fptrunc(v, _FLOAT)
        return builder.bitcast(builder.fptrunc(v, _HALF), _I16)

    return types.uint16(x), codegen


@intrinsic
def round16(typingctx, x):
    """float32 -> float32 rounded once to fp16 (``h2f(f2h(x))``). njit only. float64 goes via float32."""
    if x not in (types.float32, types.float64):
        return None

    def codegen(context, builder, sig, args):
        v = args[0]
        if sig.args[0] == types.float64:
            v = builder.fptrunc(v, _FLOAT)
        return builder.fpext(builder.fptrunc(v, _HALF), _FLOAT)

    return types.float32(x), codegen


FP16_TINY = 6.103515625e-05
"""fp16's smallest normal value (2^-14)."""
FP32_TINY = 1.1754943508222875e-38
"""fp32's smallest normal value (2^-126)."""


def widen(v):
    """A stored scalar as a float: fp16 bits (uint16) widened to float32 (``h2f``), floats as they are. njit
    only, inlined (loops over it vectorize)."""
    raise NotImplementedError("widen is for njit code")


@overload(widen, inline="always")
def _ov_widen(v):
    if isinstance(v, types.Integer) and v.bitwidth == 16:
        return lambda v: h2f(v)
    if v in (types.float32, types.float64):
        return lambda v: v
    return None


# ---------------------------------------------------------------------------------------------------------
# Storage-generic load
# ---------------------------------------------------------------------------------------------------------
def load(arr, i):
    """``arr[i]`` as a float: fp16 bits (uint16 array) are widened to float32; float32/float64 read as is.

    ``i`` is an integer or a tuple of integers. Usable in njit code (specialized per array type) and, for tests,
    from Python.
    """
    arr = np.asarray(arr)
    if arr.dtype == np.uint16:
        return np.uint16(arr[i]).view(np.float16).astype(np.float32)
    return arr[i]


@overload(load, inline="never")
def _ov_load(arr, i):
    if not isinstance(arr, types.Array):
        return None
    if isinstance(arr.dtype, types.Integer) and arr.dtype.bitwidth == 16:

        def impl(arr, i):
            return h2f(arr[i])

        return impl
    if arr.dtype in (types.float32, types.float64):

        def impl(arr, i):
            return arr[i]

        return impl
    return None


# ---------------------------------------------------------------------------------------------------------
# Arithmetic selected by a tag (a zero-size array whose dtype names the arithmetic)
# ---------------------------------------------------------------------------------------------------------
_TAGS: dict[str, np.ndarray] = {
    "fp16": np.empty(0, np.uint16),
    "fp32": np.empty(0, np.float32),
    "fp64": np.empty(0, np.float64),
}


def arith_tag(dtype, acc16: bool = False) -> np.ndarray:
    """The tag array for the arithmetic: emulated fp16 if ``acc16``, else ``dtype`` (float32 or float64)."""
    if acc16:
        return _TAGS["fp16"]
    dt = np.dtype(dtype)
    if dt == np.float64:
        return _TAGS["fp64"]
    if dt == np.float32:
        return _TAGS["fp32"]
    raise TypeError(f"accumulation dtype must be float32 or float64, got {dt}")


def _is16(tag) -> bool:
    if not (isinstance(tag, types.Array) and isinstance(tag.dtype, types.Integer)):
        return False
    # numba's stubs (scalars.pyi) leave out Integer.bitwidth, which every Integer has (set in __init__)
    return tag.dtype.bitwidth == 16  # type: ignore[attr-defined]


def arith_zero(tag):
    """0 in the arithmetic of ``tag`` (float32 for emulated fp16)."""
    raise NotImplementedError("njit only")


def arith_in(x, tag):
    """Bring an operand into the arithmetic of ``tag`` (fp16: round it to fp16, carried in float32)."""
    raise NotImplementedError("njit only")


def arith_rnd(x, tag):
    """Round the result of one operation to the arithmetic of ``tag`` (fp16: round16; otherwise a no-op)."""
    raise NotImplementedError("njit only")


@overload(arith_zero, inline="always")
def _ov_arith_zero(tag):
    if _is16(tag) or (isinstance(tag, types.Array) and tag.dtype == types.float32):
        return lambda tag: np.float32(0.0)
    if isinstance(tag, types.Array) and tag.dtype == types.float64:
        return lambda tag: np.float64(0.0)
    return None


@overload(arith_in, inline="always")
def _ov_arith_in(x, tag):
    if _is16(tag):
        return lambda x, tag: round16(np.float32(x))
    if isinstance(tag, types.Array) and tag.dtype == types.float32:
        return lambda x, tag: np.float32(x)
    if isinstance(tag, types.Array) and tag.dtype == types.float64:
        return lambda x, tag: np.float64(x)
    return None


@overload(arith_rnd, inline="always")
def _ov_arith_rnd(x, tag):
    if _is16(tag):
        return lambda x, tag: round16(x)
    if isinstance(tag, types.Array) and tag.dtype in (types.float32, types.float64):
        return lambda x, tag: x
    return None


# ---------------------------------------------------------------------------------------------------------
# Array wrappers (compiled) and numpy references
# ---------------------------------------------------------------------------------------------------------
@njit(cache=True)
def _h2f_array(u, out):
    for i in range(u.size):
        out[i] = h2f(u[i])


@njit(cache=True)
def _f2h_array(x, out):
    for i in range(x.size):
        out[i] = f2h(x[i])


@njit(cache=True)
def _round16_array(x, out):
    for i in range(x.size):
        out[i] = round16(x[i])


def h2f_array(u: np.ndarray) -> np.ndarray:
    """Compiled :func:`h2f` over an array of fp16 bit patterns -> float32 array of the same shape."""
    u = np.ascontiguousarray(u, dtype=np.uint16)
    out = np.empty(u.shape, np.float32)
    _h2f_array(u.reshape(-1), out.reshape(-1))
    return out


def f2h_array(x: np.ndarray) -> np.ndarray:
    """Compiled :func:`f2h` over a float32 array -> uint16 bit patterns of the same shape."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, np.uint16)
    _f2h_array(x.reshape(-1), out.reshape(-1))
    return out


def round16_array(x: np.ndarray) -> np.ndarray:
    """Compiled :func:`round16` over a float32 array."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, np.float32)
    _round16_array(x.reshape(-1), out.reshape(-1))
    return out


def h2f_ref(u: np.ndarray) -> np.ndarray:
    """numpy twin of :func:`h2f`: fp16 bits -> float32."""
    return np.asarray(u, dtype=np.uint16).view(np.float16).astype(np.float32)


def f2h_ref(x: np.ndarray) -> np.ndarray:
    """numpy twin of :func:`f2h`: float32 -> fp16 bits (round to nearest even)."""
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float32).astype(np.float16).view(np.uint16)


def round16_ref(x: np.ndarray) -> np.ndarray:
    """numpy twin of :func:`round16`: one fp16 rounding of float32 values, returned as float32."""
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def to_bits(a16: np.ndarray) -> np.ndarray:
    """A float16 array (e.g. from :func:`mixslam.precision.quantize`) as the uint16 bits the kernels read."""
    a16 = np.ascontiguousarray(a16)
    if a16.dtype != np.float16:
        raise TypeError(f"expected a float16 array, got {a16.dtype}")
    return a16.view(np.uint16)


def from_bits(u: np.ndarray) -> np.ndarray:
    """uint16 fp16 bits back to a float16 array (a view)."""
    return np.asarray(u, dtype=np.uint16).view(np.float16)


# ---------------------------------------------------------------------------------------------------------
# Emulated fp16 vector arithmetic of the Krylov solver (compiled; numpy twins in linear/operators.py tests)
# ---------------------------------------------------------------------------------------------------------
@njit(cache=True)
def round16_count(x, out):
    """out = round16(x) (float32 arrays); returns how many finite values became infinite (overflows)."""
    n = 0
    for i in range(x.shape[0]):
        v = x[i]
        r = round16(v)
        if np.isinf(r) and np.isfinite(v):
            n += 1
        out[i] = r
    return n


@njit(cache=True)
def axpy16(a, x, y, out):
    """out = round16(y + round16(a * x)) with a, x, y already fp16 values in float32; returns overflows."""
    n = 0
    a16 = round16(np.float32(a))
    for i in range(x.shape[0]):
        p = round16(a16 * x[i])
        r = round16(y[i] + p)
        if np.isinf(r) and np.isfinite(y[i]) and np.isfinite(x[i]):
            n += 1
        out[i] = r
    return n


@njit(cache=True)
def dot16(x, y):
    """Sequential fp16 dot product: s = round16(s + round16(x[i] * y[i])), i ascending (float32 carrier)."""
    s = np.float32(0.0)
    for i in range(x.shape[0]):
        s = round16(s + round16(x[i] * y[i]))
    return s


@njit(cache=True)
def block_diag_apply16(M, r, out):
    """out[n, i] = Σ_j M[n, i, j] r[n, j] in emulated fp16: operands rounded to fp16, then every product
    and every partial sum rounded to fp16, j ascending (float32 carriers)."""
    nv, p, _ = M.shape
    for n in range(nv):
        for i in range(p):
            s = np.float32(0.0)
            for j in range(p):
                s = round16(s + round16(round16(M[n, i, j]) * round16(r[n, j])))
            out[n, i] = s


@njit(inline="always")
def rounding_outcome(x, back, tiny):
    """How rounding the finite value ``x`` gave ``back`` (the stored value, widened): (overflow, underflow,
    subnormal), each 0 or 1. ``tiny``: the format's smallest normal. The one definition of these counts for
    every quantizing kernel."""
    if not np.isfinite(back):
        return 1, 0, 0
    if x != 0:
        if back == 0:
            return 0, 1, 0
        if abs(back) < tiny:
            return 0, 0, 1
    return 0, 0, 0


@njit(cache=True)
def quantize16_stats(x, out):
    """out = fp16 bits of x (via fp32, round to nearest even) and the statistics of that quantization in one
    pass: (non-finite inputs, max |finite x|, overflows, underflows, subnormals). ``x`` float32/float64."""
    nonfinite = 0
    overflows = 0
    underflows = 0
    subnormals = 0
    max_abs = 0.0
    for i in range(x.shape[0]):
        v = np.float32(x[i])
        fin = np.isfinite(x[i])
        b = f2h(v)
        out[i] = b
        if not fin:
            nonfinite += 1
            continue
        a = abs(np.float64(x[i]))
        if a > max_abs:
            max_abs = a
        o, u, sub = rounding_outcome(v, h2f(b), FP16_TINY)
        overflows += o
        underflows += u
        subnormals += sub
    return nonfinite, max_abs, overflows, underflows, subnormals


@njit(cache=True)
def quantize32_stats(x, out):
    """out = float32(x) and the statistics of that rounding in one pass (as :func:`quantize16_stats`)."""
    nonfinite = 0
    overflows = 0
    underflows = 0
    subnormals = 0
    max_abs = 0.0
    for i in range(x.shape[0]):
        v = np.float32(x[i])
        out[i] = v
        if not np.isfinite(x[i]):
            nonfinite += 1
            continue
        a = abs(x[i])
        if a > max_abs:
            max_abs = a
        o, u, sub = rounding_outcome(x[i], v, FP32_TINY)
        overflows += o
        underflows += u
        subnormals += sub
    return nonfinite, max_abs, overflows, underflows, subnormals
