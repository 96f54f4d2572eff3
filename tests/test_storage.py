"""mixslam.storage: store() quantizes, counts and falls back; kernel_types() is the same decision without data;
and the per-precision thresholds table."""
import itertools

import numpy as np
import pytest

from helpers import tol_for
from mixslam.errors import PrecisionPolicyError
from mixslam.precision import THRESHOLDS, Precision, QuantizationStats, is_16bit, next_wider, thresholds
from mixslam.storage import Stored, dequantize, kernel_array, kernel_types, quantize, quantize_with_fallback, store

F64, F32, F16, BF16 = Precision.FP64, Precision.FP32, Precision.FP16, Precision.BF16
#: (storage, arithmetic) pairs a policy may name (the arithmetic contains the storage); bf16 has no kernels.
PAIRS = [(s, a) for s, a in itertools.product((F64, F32, F16), repeat=2) if a.contains(s)]


def _values(seed=0, n=200):
    return np.random.default_rng(seed).normal(size=(n // 4, 4))


@pytest.mark.parametrize("storage,accumulate", PAIRS)
def test_store_quantizes_and_counts(storage, accumulate):
    x = _values()
    st = store(x, storage, accumulate)
    assert isinstance(st, Stored)
    assert st.storage is storage and st.accumulate is accumulate
    assert st.values.shape == x.shape
    assert st.stats.count == x.size and st.stats.fallbacks == 0 and st.stats.overflows == 0
    assert st.stats.max_abs == pytest.approx(np.abs(x).max(), rel=tol_for(F32, c=1))
    assert st.acc16 == is_16bit(accumulate)
    assert st.compute_dtype == accumulate.compute_dtype
    back = st.dequantized(np.float64)
    # One rounding to the storage format: relative error at most u (fp16 goes through fp32 first: 2 roundings).
    n_roundings = 2 if storage is F16 else 1
    np.testing.assert_allclose(back, x, rtol=tol_for(storage, n=n_roundings, c=1), atol=0)
    assert st.dequantized().dtype == accumulate.compute_dtype
    assert st.nbytes == x.size * (storage.bits // 8)


def test_fp16_is_stored_as_its_bits():
    x = _values()
    st = store(x, F16, F32)
    assert st.values.dtype == np.uint16
    np.testing.assert_array_equal(st.values.view(np.float16), x.astype(np.float32).astype(np.float16))
    q, _ = quantize(x, F16)
    np.testing.assert_array_equal(kernel_array(q, F16), q.view(np.uint16))
    assert kernel_array(q, F16).dtype == np.uint16
    y = np.asfortranarray(x.astype(np.float32))
    assert kernel_array(y, F32).flags["C_CONTIGUOUS"] and kernel_array(y, F32).dtype == np.float32
    with pytest.raises(NotImplementedError, match="bf16"):
        kernel_array(quantize(x, BF16)[0], BF16)


def test_store_counts_underflows_and_subnormals():
    x = np.array([1.0, 1e-9, 2.0 ** -20, -3e-6, 0.0])
    st = store(x, F16, F32)
    assert st.stats.underflows == 1 and st.stats.subnormals == 2 and st.stats.overflows == 0
    assert st.stats.count == 5 and st.storage is F16


@pytest.mark.parametrize("accumulate", [F32, F16])
def test_fp16_overflow_falls_back_to_fp32_and_widens_the_arithmetic(accumulate):
    x = np.array([1.0, 7e4, -1e6, 0.5])
    st = store(x, F16, accumulate, fallback=True)
    assert st.storage is F32 and st.accumulate is F32 and not st.acc16
    assert st.stats.fallbacks == 1 and st.stats.overflows == 2  # the counts are those of the fp16 attempt
    assert st.values.dtype == np.float32
    np.testing.assert_array_equal(st.values, x.astype(np.float32))
    assert kernel_types(st.storage, st.accumulate) == (np.dtype(np.float32), np.dtype(np.float32), False)


def test_fp16_overflow_without_fallback_keeps_fp16_and_counts():
    x = np.array([1.0, 7e4, -1e6, 0.5])
    st = store(x, F16, F16, fallback=False)
    assert st.storage is F16 and st.accumulate is F16 and st.acc16
    assert st.stats.fallbacks == 0 and st.stats.overflows == 2
    back = st.dequantized()
    assert np.isposinf(back[1]) and np.isneginf(back[2]) and back[0] == 1.0


def test_fp32_overflow_falls_back_to_fp64():
    x = np.array([1.0, 1e39])
    st = store(x, F32, F32)
    assert st.storage is F64 and st.accumulate is F64 and st.stats.fallbacks == 1 and st.stats.overflows == 1
    np.testing.assert_array_equal(st.values, x)
    assert store(x, F64, F64).stats.fallbacks == 0  # nothing wider: fp64 never falls back


def test_quantize_with_fallback():
    x = np.array([1.0, 1e5])
    stored, stats, used, fell = quantize_with_fallback(x, F16)
    assert used is F32 and fell and stats.overflows == 1 and stored.dtype == np.float32
    stored, stats, used, fell = quantize_with_fallback(x, F16, fallback=False)
    assert used is F16 and not fell and np.isinf(dequantize(stored, F16)[1])


@pytest.mark.parametrize("storage,accumulate", PAIRS)
def test_kernel_types_match_what_store_returns(storage, accumulate):
    st = store(_values(), storage, accumulate)
    store_dt, compute_dt, acc16 = kernel_types(storage, accumulate)
    # the kernels' type dispatch sees fp16 as its uint16 bits
    assert store_dt == (np.dtype(np.float16) if st.values.dtype == np.uint16 else st.values.dtype)
    assert compute_dt == st.compute_dtype and acc16 == st.acc16


def test_kernel_types_refuse_bf16():
    with pytest.raises(NotImplementedError, match="bf16"):
        kernel_types(BF16, F32)


def test_next_wider_and_is_16bit():
    assert [next_wider(p) for p in (F16, BF16, F32, F64)] == [F32, F32, F64, F64]
    assert [is_16bit(p) for p in (F16, BF16, F32, F64)] == [True, True, False, False]


def test_quantization_stats_merge():
    a = QuantizationStats(2, 1, 0, 1, 0, 3.0, 1)
    b = QuantizationStats(5, 0, 2, 0, 1, 7.0, 0)
    assert a.merge(b) == QuantizationStats(7, 1, 2, 1, 1, 7.0, 1)
    assert a.merge(QuantizationStats()) == a


# ---- thresholds ------------------------------------------------------------------------------------------------

def test_thresholds_per_dtype():
    assert thresholds(np.float64) is THRESHOLDS[F64] and thresholds(np.dtype(np.float32)) is THRESHOLDS[F32]
    for p in Precision:
        assert thresholds(p) is THRESHOLDS[p]
    for p in (F64, F32, F16):
        # Rodrigues' small-angle switch is the machine epsilon (2u) of the format.
        assert THRESHOLDS[p].rodrigues_small_angle2 == 2 * p.unit_roundoff
    # Narrower formats switch to the series forms and clamp depths earlier.
    assert THRESHOLDS[F64].small_angle < THRESHOLDS[F32].small_angle < THRESHOLDS[F16].small_angle
    assert THRESHOLDS[F64].min_depth < THRESHOLDS[F32].min_depth


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.complex128])
def test_thresholds_refuse_other_dtypes(dtype):
    with pytest.raises(PrecisionPolicyError, match="float64 or float32"):
        thresholds(dtype)


@pytest.mark.parametrize("big", [False, True], ids=["fits", "overflows"])
@pytest.mark.parametrize("prec", ["fp16", "fp32", "fp64"])
def test_store_chunked_equals_store(prec, big):
    from mixslam.storage import store, store_chunked

    rng = np.random.default_rng(3)
    x = rng.standard_normal(10_007) * np.exp2(rng.integers(-30, 8, 10_007))
    x[5] = 0.0
    if big:
        x[7000] = 1e6  # beyond fp16: the whole array falls back to fp32
    whole = store(x, Precision.parse(prec), Precision.FP32)

    def parts():
        for off in range(0, x.size, 999):
            yield off, x[off : off + 999]

    chunked = store_chunked(x.size, parts, Precision.parse(prec), Precision.FP32)
    assert chunked.storage == whole.storage and chunked.accumulate == whole.accumulate
    assert np.array_equal(chunked.values, whole.values.reshape(-1))
    assert chunked.stats == whole.stats
