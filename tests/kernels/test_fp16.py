"""fp16 intrinsics: bit-exact against numpy, storage-generic load, exact emulated fp16 arithmetic."""
from __future__ import annotations

import re

import numpy as np
import pytest
from numba import njit

from mixslam.kernels.fp16 import (
    f2h,
    f2h_array,
    f2h_ref,
    h2f,
    h2f_array,
    h2f_ref,
    load,
    round16,
    round16_array,
    round16_ref,
    to_bits,
)
from mixslam.precision import Precision
from mixslam.storage import quantize


def _same_bits_or_nan(a32, b32):
    """Equal bit patterns, or both NaN (payloads may legitimately differ)."""
    na, nb = np.isnan(a32), np.isnan(b32)
    assert np.array_equal(na, nb)
    assert np.array_equal(a32[~na].view(np.uint32), b32[~nb].view(np.uint32))


def test_h2f_all_65536_patterns():
    u = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    got = h2f_array(u)
    _same_bits_or_nan(got, u.view(np.float16).astype(np.float32))
    _same_bits_or_nan(got, h2f_ref(u))


def _f2h_cases() -> np.ndarray:
    rng = np.random.default_rng(123)
    rnd_bits = rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    fin = np.sort(np.unique(h[np.isfinite(h)].astype(np.float64)))
    mids = (fin[:-1] + fin[1:]) / 2  # exact ties between neighbouring fp16 values (representable in fp32)
    assert np.array_equal(mids.astype(np.float32).astype(np.float64), mids)
    mids32 = mids.astype(np.float32)
    near = np.concatenate([np.nextafter(mids32, np.float32(np.inf)), np.nextafter(mids32, np.float32(-np.inf))])
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65519.996, 65520.0, 65536.0, 1e30,
                        2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001, 2.0**-26, 2.0**-14, 2.0**-14 * (1 - 2.0**-12),
                        1e-45, 3.4e38, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11], np.float32)
    subn = rng.uniform(-2.0**-13, 2.0**-13, 50_000).astype(np.float32)
    big = rng.uniform(-7e4, 7e4, 50_000).astype(np.float32)
    return np.concatenate([rnd_bits, mids32, -mids32, near, special, -special, subn, big])


def test_f2h_matches_numpy_including_ties_subnormals_overflow():
    x = _f2h_cases()
    got = f2h_array(x)
    want = f2h_ref(x)
    _same_bits_or_nan(h2f_ref(got), h2f_ref(want))
    nan = np.isnan(x)
    assert np.array_equal(got[~nan], want[~nan])  # exact bits, signed zeros and infinities included
    # spot checks of the rounding rule
    assert h2f_ref(f2h_array(np.float32([65519.996])))[0] == 65504.0
    assert np.isinf(h2f_ref(f2h_array(np.float32([65520.0])))[0])
    assert h2f_ref(f2h_array(np.float32([2.0**-25])))[0] == 0.0  # tie to even (zero)
    assert h2f_ref(f2h_array(np.float32([1.0 + 2.0**-11])))[0] == 1.0  # tie to even
    assert h2f_ref(f2h_array(np.float32([1.0 + 3 * 2.0**-11])))[0] == 1.0 + 2.0**-9


def test_round16_and_quantize_agree():
    x = _f2h_cases()
    _same_bits_or_nan(round16_array(x), round16_ref(x))
    q, _ = quantize(x[np.isfinite(x)], Precision.FP16)
    assert np.array_equal(to_bits(q), f2h_array(x[np.isfinite(x)]))


@njit(cache=True)
def _f64_path(x):
    out = np.empty(x.size, np.uint16)
    r = np.empty(x.size, np.float32)
    for i in range(x.size):
        out[i] = f2h(x[i])
        r[i] = round16(x[i])
    return out, r


def test_float64_argument_goes_through_float32_like_quantize():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(20000) * 10.0 ** rng.integers(-8, 5, 20000),
                        # a float64 just above an fp16 tie that rounds down to the tie in fp32
                        np.array([1.0 + 2.0**-11 + 2.0**-40])])
    bits, r = _f64_path(x)
    q, _ = quantize(x, Precision.FP16)
    assert np.array_equal(bits, to_bits(q))
    assert np.array_equal(r, q.astype(np.float32))


def _load_sum(a):
    s = 0.0
    for i in range(a.shape[0]):
        s += load(a, i)
    return s


def test_load_specializes_per_storage():
    f = njit(_load_sum)  # not cached: asm inspection is disabled for cached code
    x = np.linspace(-3, 3, 37).astype(np.float16)
    assert f(x.view(np.uint16)) == pytest.approx(float(x.astype(np.float64).sum()), abs=0)
    assert f(x.astype(np.float32)) == f(x.view(np.uint16))
    assert f(x.astype(np.float64)) == f(x.view(np.uint16))
    assert len(f.signatures) == 3
    asm = {str(sig[0].dtype): f.inspect_asm(sig) for sig in f.signatures}
    # F16C's vcvtph2ps, AVX-512 FP16's scalar vcvtsh2ss/vcvtsh2sd (LLVM picks by host CPU), or the libcalls.
    conv16 = re.compile(r"vcvtph2p[sd]|vcvtsh2s[sd]|extendhf[sd]f2|gnu_h2f_ieee")
    assert conv16.search(asm["uint16"])
    assert not conv16.search(asm["float32"]) and not conv16.search(asm["float64"])
    # python fallback of load behaves the same
    assert load(x.view(np.uint16), 3) == np.float32(x[3])
    assert load(x.astype(np.float32), 3) == np.float32(x[3])


@njit(cache=True)
def _emulated_ops(a, b, out):
    for i in range(a.size):
        x = h2f(a[i])
        y = h2f(b[i])
        out[0, i] = f2h(x + y)
        out[1, i] = f2h(x - y)
        out[2, i] = f2h(x * y)
        out[3, i] = f2h(x / y)
        out[4, i] = f2h(round16(round16(x * y) + x))  # a two-op chain


def test_emulated_fp16_arithmetic_is_correctly_rounded():
    """fp32 op + one rounding to fp16 == the correctly rounded fp16 result (p'=24 >= 2p+2)."""
    rng = np.random.default_rng(7)
    n = 200_000
    bits = rng.integers(0, 65536, (2, n)).astype(np.uint16)
    h = bits.view(np.float16)
    keep = np.isfinite(h).all(axis=0) & (h[1] != 0)
    a, b = bits[0, keep], bits[1, keep]
    out = np.empty((5, a.size), np.uint16)
    _emulated_ops(a, b, out)
    x, y = a.view(np.float16).astype(np.float64), b.view(np.float16).astype(np.float64)
    with np.errstate(over="ignore"):
        # + - * of two fp16 values are exact in float64; / is rounded once to 53 bits (innocuous for 11)
        want = [(x + y), (x - y), (x * y), (x / y)]
        want = [w.astype(np.float16).view(np.uint16) for w in want]
        p16 = (x * y).astype(np.float16).astype(np.float64)
        want.append((p16 + x).astype(np.float16).view(np.uint16))
    for k in range(5):
        got16, want16 = out[k].view(np.float16), want[k].view(np.float16)
        nan = np.isnan(want16)
        assert np.array_equal(np.isnan(got16), nan)
        assert np.array_equal(out[k][~nan], want[k][~nan]), f"op {k}"
