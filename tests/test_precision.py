"""The precision policy: presets, refusals, and real 16-bit quantization with counts."""
import numpy as np
import pytest

from mixslam.errors import PrecisionPolicyError
from mixslam.precision import Precision, PrecisionPolicy
from mixslam.storage import dequantize, quantize, round_to


def test_presets_follow_the_design():
    mixed = PrecisionPolicy.preset("mixed", problem="pgo")
    assert mixed.preconditioner_storage is Precision.FP16
    assert mixed.preconditioner_accumulate is Precision.FP32
    assert mixed.jacobian_storage is Precision.FP32 and mixed.krylov is Precision.FP32
    # the pose-graph mixed preset's direct solve: fp32 factor, fp64 residuals / gradient / cost
    assert mixed.factor is Precision.FP32 and mixed.residual is Precision.FP64 and mixed.rhs is Precision.FP64
    assert mixed.cost is Precision.FP64
    ba = PrecisionPolicy.preset("mixed", problem="ba")
    assert ba.jacobian_storage is Precision.FP16 and ba.jacobian_accumulate is Precision.FP32
    assert ba.residual is Precision.FP32
    naive = PrecisionPolicy.preset("fp16")
    assert naive.jacobian_accumulate is Precision.FP16 and naive.krylov is Precision.FP16
    assert naive.factor is Precision.FP16 and PrecisionPolicy.preset("fp64").factor is Precision.FP64


@pytest.mark.parametrize("changes, phrase", [
    ({"jacobian_storage": "fp32", "jacobian_accumulate": "fp16"}, "narrower than jacobian_storage"),
    ({"preconditioner_storage": "fp64", "preconditioner_accumulate": "fp32"}, "narrower"),
    ({"cost": "fp16"}, "below fp32"),
    ({"residual": "fp16"}, "below fp32"),
    ({"rhs": "fp16"}, "fp32 or wider"),
    ({"krylov": "fp8"}, "unknown precision"),
])
def test_nonsense_policies_are_refused(changes, phrase):
    with pytest.raises(PrecisionPolicyError, match=phrase):
        PrecisionPolicy("bad", **changes)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(PrecisionPolicyError, match="mixed"):
        PrecisionPolicy.preset("fp12")


def test_fp16_quantization_is_round_to_nearest_even_with_counts():
    x = np.array([1.0, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 70000.0, 1e-9, 2 ** -20, np.nan, 0.0], np.float32)
    q, st = quantize(x, Precision.FP16)
    assert q.dtype == np.float16
    back = dequantize(q, Precision.FP16)
    assert back[1] == 1.0                      # tie rounds to even
    assert back[2] == np.float32(1.0 + 4 * 2 ** -11)
    assert st.overflows == 1 and np.isinf(back[3])
    assert st.underflows == 1 and back[4] == 0.0
    assert st.subnormals == 1 and back[5] == np.float32(2 ** -20)
    assert st.nonfinite_inputs == 1


def test_bf16_round_trip_and_rounding():
    x = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 3e38], np.float32)
    q, st = quantize(x, Precision.BF16)
    back = dequantize(q, Precision.BF16)
    assert q.dtype == np.uint16
    assert back[1] == 1.0 and back[2] == np.float32(1.0 + 4 * 2 ** -8)
    assert st.overflows == 0


@pytest.mark.parametrize("precision", list(Precision))
def test_round_to_is_idempotent(precision):
    x = np.random.default_rng(0).normal(size=1000)
    once = round_to(x, precision)
    np.testing.assert_array_equal(round_to(once, precision), once)
    u = Precision.parse(precision).unit_roundoff
    np.testing.assert_allclose(once, x, rtol=u * 1.0001)


def test_compiled_fp16_quantization_matches_numpy():
    """The compiled fp16 path of quantize() gives numpy's bits (fp64 -> fp32 -> fp16) and the same counts."""
    import numpy as np

    from mixslam.precision import Precision
    from mixslam.storage import quantize
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=20000) * np.exp(rng.uniform(-25, 15, 20000)),
                        [np.nan, np.inf, -np.inf, 0.0, -0.0, 65520.0, 65519.0, 1e-8, -1e-8, 3e-5]])
    for arr in (x, x.astype(np.float32)):
        got, st = quantize(arr, Precision.FP16)
        x32 = arr.astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            ref = x32.astype(np.float16)
        assert np.array_equal(got.view(np.uint16), ref.view(np.uint16))
        back = ref.astype(np.float32)
        fin = np.isfinite(arr)
        nz = (x32 != 0) & fin
        assert st.overflows == np.count_nonzero(fin & ~np.isfinite(back)) > 0
        assert st.underflows == np.count_nonzero(nz & (back == 0)) > 0
        assert st.subnormals == np.count_nonzero(nz & (back != 0) & (np.abs(back) < 2.0 ** -14)) > 0
        assert st.nonfinite_inputs == 3 and st.count == arr.size
        assert st.max_abs == float(np.max(np.abs(arr[fin])))


def test_compiled_fp32_quantization_matches_numpy():
    import numpy as np

    from mixslam.precision import Precision
    from mixslam.storage import quantize
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=20000) * np.exp(rng.uniform(-95, 95, 20000)), [np.nan, np.inf, 0.0,
                                                                                         1e-46, 3e-39, 1e39]])
    got, st = quantize(x, Precision.FP32)
    with np.errstate(over="ignore"):
        ref = x.astype(np.float32)
    assert np.array_equal(got, ref, equal_nan=True)
    fin = np.isfinite(x)
    nz = (x != 0) & fin
    assert st.overflows == np.count_nonzero(fin & ~np.isfinite(ref)) > 0
    assert st.underflows == np.count_nonzero(nz & (ref == 0)) > 0
    assert st.subnormals == np.count_nonzero(nz & (ref != 0) & (np.abs(ref) < np.finfo(np.float32).tiny)) > 0
    assert st.nonfinite_inputs == 2
