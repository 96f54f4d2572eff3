"""Device quantization, column scaling and the stored Jacobian against :mod:`mixslam.storage` and
:class:`~mixslam.linear.operators.JacobianOperator`: the same stored values bit for bit, the same counts."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")

from mixslam.backend import jax_storage as js  # noqa: E402
from mixslam.backend.jax_device import BackendError  # noqa: E402
from mixslam.backend.jax_linearization import DeviceLinearization  # noqa: E402
from mixslam.linear.operators import JacobianOperator, column_scale  # noqa: E402
from mixslam.pgo import PoseGraphProblem  # noqa: E402
from mixslam.precision import Precision, PrecisionPolicy  # noqa: E402
from mixslam.storage import quantize as cpu_quantize  # noqa: E402


def _bits(stored, precision):
    a = np.asarray(stored)
    return a.view(np.uint16) if precision in (Precision.FP16, Precision.BF16) else a


def _values(seed=0):
    """Wide-ranging magnitudes and the edge cases of every format (outside fp32's subnormal range)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=2000) * np.exp(rng.normal(size=2000) * 8)
    edge = [
        1e6,
        -7e4,
        65519.9,
        65520.0,
        1e-9,
        3e-6,
        -6e-8,
        2.0**-24,
        2.0**-25,
        0.0,
        -0.0,
        5e38,
        np.inf,
        -np.inf,
        np.nan,
        1e-30,
    ]
    return np.concatenate([x, edge])


@pytest.mark.parametrize("precision", list(Precision))
def test_quantize_matches_cpu_bits_and_counts(precision):
    x = _values()
    with np.errstate(over="ignore"):
        ref, st = cpu_quantize(x, precision)
    stored, counts, max_abs = js.quantize(x, precision)
    assert stored.dtype == js.storage_dtype(precision)
    np.testing.assert_array_equal(_bits(stored, precision), _bits(ref, precision))
    assert js.quantization_stats(x.size, counts, max_abs) == st


def test_fp32_subnormals_are_flushed_and_counted_as_underflows():
    """XLA flushes fp32 subnormals (FTZ): stored as 0, an underflow where the CPU counts a subnormal."""
    x = np.array([1e-40, -3e-39, 1.0])
    stored, counts, _ = js.quantize(x, Precision.FP32)
    np.testing.assert_array_equal(np.asarray(stored), [0.0, 0.0, 1.0])
    st = js.quantization_stats(3, counts, 1.0)
    assert (st.underflows, st.subnormals) == (2, 0)
    assert cpu_quantize(x, Precision.FP32)[1].subnormals == 2


def test_column_scale_is_the_cpus():
    rng = np.random.default_rng(1)
    colsq = np.concatenate([np.exp(rng.normal(size=500) * 20), [0.0, 1e-300, 1.0, 4.0, 2.0]])
    np.testing.assert_array_equal(np.asarray(js.device_column_scale(colsq)), column_scale(colsq))


@pytest.fixture(scope="module")
def pgo_lin(graphs):
    g = graphs["se3"]
    return PoseGraphProblem(g, PrecisionPolicy.preset("fp64")).linearize((g.rotations, g.translations))


@pytest.mark.parametrize("storage", ["fp64", "fp32", "fp16"])
def test_stored_jacobian_is_the_cpus(pgo_lin, storage):
    s = column_scale(pgo_lin.column_sq_norms())
    acc = Precision.FP64 if storage == "fp64" else Precision.FP32
    op = JacobianOperator.from_linearization(pgo_lin, s, Precision(storage), acc)
    J, st = js.store_jacobian(DeviceLinearization.from_host(pgo_lin), s, storage, acc)
    assert (J.storage, J.accumulate) == (op.storage, op.accumulate)
    for dev, ref in ((J.A, op.A), (J.B, op.B)):
        ref = ref.view(np.float16) if storage == "fp16" else ref
        np.testing.assert_array_equal(np.asarray(dev), ref)
    assert st == op.stats


def test_overflow_falls_back_to_fp32_and_widens_nothing_else(pgo_lin):
    """Unscaled blocks times 1e5 overflow fp16: stored in fp32, accumulation fp32, the fp16 counts kept."""
    lin = DeviceLinearization.from_host(pgo_lin)
    ones = np.full(lin.size, 1e5)
    J, st = js.store_jacobian(lin, ones, "fp16", "fp32")
    assert J.storage is Precision.FP32 and J.accumulate is Precision.FP32 and J.A.dtype == np.float32
    assert st.fallbacks == 1 and st.overflows > 0
    J2, st2 = js.store_jacobian(lin, ones, "fp16", "fp32", fallback=False)
    assert J2.storage is Precision.FP16 and st2.fallbacks == 0 and st2.overflows == st.overflows


def test_16bit_arithmetic_is_refused(pgo_lin):
    with pytest.raises(BackendError, match="16-bit arithmetic"):
        js.store_jacobian(DeviceLinearization.from_host(pgo_lin), np.ones(pgo_lin.size), "fp16", "fp16")
