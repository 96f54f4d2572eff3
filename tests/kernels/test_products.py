"""Two-block Jacobian products: compiled kernels against their numpy twins, in every storage format.

Formats under test (storage, vector dtype, acc16):
  fp64   float64 storage, float64 vectors        -> agrees with the float64 reference to fp64 rounding
  fp32   float32 storage, float32 vectors        -> agrees with a float64 reference on the same values to fp32
  mixed  fp16 storage,    float32 vectors        -> same, the reference fed the same quantized values
  fp16   fp16 storage,    float32 vectors, acc16 -> bit-exact against the numpy fp16 emulation (same order)
"""
from __future__ import annotations

import numpy as np
import pytest

from mixslam.kernels.fp16 import round16_ref
from mixslam.kernels.products import (
    check_two_block,
    jac_matvec,
    jac_matvec_ref,
    jac_rmatvec,
    jac_rmatvec_ref,
    normal_matvec,
    normal_matvec_ref,
)
from mixslam.precision import Precision
from mixslam.storage import quantize

U = {"fp64": Precision.FP64.unit_roundoff, "fp32": Precision.FP32.unit_roundoff,
     "mixed": Precision.FP32.unit_roundoff, "fp16": Precision.FP16.unit_roundoff}
FORMATS = {  # storage precision, vector dtype, acc16
    "fp64": (Precision.FP64, np.float64, False),
    "fp32": (Precision.FP32, np.float32, False),
    "mixed": (Precision.FP16, np.float32, False),
    "fp16": (Precision.FP16, np.float32, True),
}


def _store(M, prec):
    q, _ = quantize(M, prec)
    return q.view(np.uint16) if prec is Precision.FP16 else np.ascontiguousarray(q)


def _values(S):
    """Stored values as float64 (what a reference must be fed)."""
    return (S.view(np.float16) if S.dtype == np.uint16 else S).astype(np.float64)


def _problem(k, pa, pb, na, nb, R, seed, alias=False):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((R, k, pa))
    B = rng.standard_normal((R, k, pb))
    ia = rng.integers(0, na, R)
    ib = rng.integers(0, nb, R)
    ia[rng.random(R) < 0.15] = -1  # fixed variables
    ib[rng.random(R) < 0.15] = -1
    ia[3] = ib[3] = -1  # a row block with both blocks absent
    if alias:
        ib[5] = ia[5] = 2  # both blocks of one row on the same variable
    xa = rng.standard_normal((na, pa))
    xb = xa if alias else rng.standard_normal((nb, pb))
    y = rng.standard_normal((R, k))
    return A, ia, B, ib, xa, xb, y


@pytest.fixture(scope="module", params=[(2, 4, 3, 7, 11, 120)], ids=["k2pa4pb3"])
def ba_like(request):
    k, pa, pb, na, nb, R = request.param
    return _problem(k, pa, pb, na, nb, R, seed=1)


def _abs_rows(A, ia, B, ib, xa, xb):
    return jac_matvec_ref(np.abs(A), ia, np.abs(B), ib, np.abs(xa), np.abs(xb), np.float64)


def _bound(fmt, nterms, mag):
    """Rounding bound gamma_n * magnitude for ``nterms`` rounded operations (with a safety factor 2)."""
    u = U[fmt]
    return 2.0 * nterms * u / (1 - nterms * u) * mag + 1e-300


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_jac_matvec(ba_like, fmt):
    A, ia, B, ib, xa, xb, _ = ba_like
    prec, vd, acc16 = FORMATS[fmt]
    As, Bs = _store(A, prec), _store(B, prec)
    xa_, xb_ = xa.astype(vd), xb.astype(vd)
    y = np.full((A.shape[0], A.shape[1]), np.nan, vd)
    jac_matvec(As, ia, Bs, ib, xa_, xb_, y, acc16)
    assert np.all(y[3] == 0)
    if acc16:
        want = jac_matvec_ref(As, ia, Bs, ib, xa_, xb_, vd, acc16=True)
        assert np.array_equal(y, want)
        assert np.array_equal(round16_ref(y), y)  # every result is an fp16 value
        return
    want = jac_matvec_ref(_values(As), ia, _values(Bs), ib, xa_.astype(np.float64), xb_.astype(np.float64))
    mag = _abs_rows(_values(As), ia, _values(Bs), ib, xa_, xb_)
    n = A.shape[2] + B.shape[2] + 1
    assert np.all(np.abs(y - want) <= _bound(fmt, n, mag))
    if prec is Precision.FP16:
        # quantization error of the stored Jacobian: one fp16 rounding per entry
        exact = jac_matvec_ref(A, ia, B, ib, xa, xb)
        assert np.all(np.abs(y - exact) <= _bound("fp16", 1, _abs_rows(A, ia, B, ib, xa, xb)) * 1.01
                      + _bound(fmt, n, mag))


def _maxdeg(idx, n):
    return int(np.bincount(idx[idx >= 0], minlength=n).max())


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_jac_rmatvec(ba_like, fmt):
    A, ia, B, ib, xa, xb, y = ba_like
    prec, vd, acc16 = FORMATS[fmt]
    As, Bs = _store(A, prec), _store(B, prec)
    y_ = y.astype(vd)
    na, nb = xa.shape[0], xb.shape[0]
    ga = np.full((na, A.shape[2]), np.nan, vd)
    gb = np.full((nb, B.shape[2]), np.nan, vd)
    jac_rmatvec(As, ia, Bs, ib, y_, ga, gb, acc16)
    if acc16:
        wa, wb = jac_rmatvec_ref(As, ia, Bs, ib, y_, na, nb, vd, acc16=True)
        assert np.array_equal(ga, wa) and np.array_equal(gb, wb)
        return
    wa, wb = jac_rmatvec_ref(_values(As), ia, _values(Bs), ib, y_.astype(np.float64), na, nb)
    ma, mb = jac_rmatvec_ref(np.abs(_values(As)), ia, np.abs(_values(Bs)), ib, np.abs(y_), na, nb)
    k = A.shape[1]
    assert np.all(np.abs(ga - wa) <= _bound(fmt, k * _maxdeg(ia, na) + 1, ma))
    assert np.all(np.abs(gb - wb) <= _bound(fmt, k * _maxdeg(ib, nb) + 1, mb))
    untouched = np.setdiff1d(np.arange(na), ia)
    assert np.all(ga[untouched] == 0)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_normal_matvec(ba_like, fmt):
    A, ia, B, ib, xa, xb, _ = ba_like
    prec, vd, acc16 = FORMATS[fmt]
    As, Bs = _store(A, prec), _store(B, prec)
    pa, pb = xa.astype(vd), xb.astype(vd)
    na, nb = pa.shape[0], pb.shape[0]
    ga = np.full((na, A.shape[2]), np.nan, vd)
    gb = np.full((nb, B.shape[2]), np.nan, vd)
    nrm = normal_matvec(As, ia, Bs, ib, pa, pb, ga, gb, acc16)
    assert isinstance(nrm, float)
    if acc16:
        wa, wb, wn = normal_matvec_ref(As, ia, Bs, ib, pa, pb, vd, acc16=True)
        assert np.array_equal(ga, wa) and np.array_equal(gb, wb)
        assert nrm == wn
        return
    wa, wb, wn = normal_matvec_ref(_values(As), ia, _values(Bs), ib, pa.astype(np.float64), pb.astype(np.float64))
    Aa, Ba = np.abs(_values(As)), np.abs(_values(Bs))
    t_abs = _abs_rows(Aa, ia, Ba, ib, pa, pb)
    ma, mb = jac_rmatvec_ref(Aa, ia, Ba, ib, t_abs, na, nb)
    k, n = A.shape[1], A.shape[2] + B.shape[2] + 1
    assert np.all(np.abs(ga - wa) <= _bound(fmt, n + k * _maxdeg(ia, na) + 1, ma))
    assert np.all(np.abs(gb - wb) <= _bound(fmt, n + k * _maxdeg(ib, nb) + 1, mb))
    assert abs(nrm - wn) <= _bound(fmt, 2 * n + t_abs.size, float(np.sum(t_abs**2)))
    # the fused product equals the two separate products
    t = np.empty((A.shape[0], k), vd)
    jac_matvec(As, ia, Bs, ib, pa, pb, t, acc16)
    sa, sb = np.empty_like(ga), np.empty_like(gb)
    jac_rmatvec(As, ia, Bs, ib, t, sa, sb, acc16)
    assert np.array_equal(sa, ga) and np.array_equal(sb, gb)


# ---------------------------------------------------------------------------------------------------------
# Pose-graph layout: both blocks act on the same variables, ga IS gb
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pgo_like():
    return _problem(3, 3, 3, 9, 9, 80, seed=2, alias=True)


@pytest.mark.parametrize("fmt", ["fp32", "fp16"])
def test_rmatvec_aliased_outputs(pgo_like, fmt):
    A, ia, B, ib, x, _, y = pgo_like
    prec, vd, acc16 = FORMATS[fmt]
    As, Bs = _store(A, prec), _store(B, prec)
    y_ = y.astype(vd)
    n = x.shape[0]
    g = np.full((n, 3), np.nan, vd)
    jac_rmatvec(As, ia, Bs, ib, y_, g, g, acc16)
    if acc16:
        want, want2 = jac_rmatvec_ref(As, ia, Bs, ib, y_, n, n, vd, acc16=True, alias=True)
        assert want is want2 or np.array_equal(want, want2)
        assert np.array_equal(g, want)
    else:
        ga, gb = jac_rmatvec_ref(_values(As), ia, _values(Bs), ib, y_.astype(np.float64), n, n)
        mag = sum(jac_rmatvec_ref(np.abs(_values(As)), ia, np.abs(_values(Bs)), ib, np.abs(y_), n, n))
        deg = _maxdeg(np.concatenate([ia, ib]), n)
        assert np.all(np.abs(g - (ga + gb)) <= _bound(fmt, 3 * deg + 2, mag))


@pytest.mark.parametrize("fmt", ["fp32", "fp16"])
def test_normal_matvec_aliased_outputs(pgo_like, fmt):
    A, ia, B, ib, x, _, _ = pgo_like
    prec, vd, acc16 = FORMATS[fmt]
    As, Bs = _store(A, prec), _store(B, prec)
    p = x.astype(vd)
    n = x.shape[0]
    g = np.full((n, 3), np.nan, vd)
    nrm = normal_matvec(As, ia, Bs, ib, p, p, g, g, acc16)
    if acc16:
        want, _, wn = normal_matvec_ref(As, ia, Bs, ib, p, p, vd, acc16=True, alias=True)
        assert np.array_equal(g, want) and nrm == wn
    else:
        # dense check: g = JᵀJ p with J assembled from the stored values
        Av, Bv = _values(As), _values(Bs)
        R = A.shape[0]
        J = np.zeros((3 * R, 3 * n))
        for e in range(R):
            if ia[e] >= 0:
                J[3 * e:3 * e + 3, 3 * ia[e]:3 * ia[e] + 3] += Av[e]
            if ib[e] >= 0:
                J[3 * e:3 * e + 3, 3 * ib[e]:3 * ib[e] + 3] += Bv[e]
        pv = p.astype(np.float64).reshape(-1)
        Jp = J @ pv
        mag = np.abs(J).T @ (np.abs(J) @ np.abs(pv))
        deg = _maxdeg(np.concatenate([ia, ib]), n)
        assert np.all(np.abs(g.reshape(-1) - J.T @ Jp) <= _bound(fmt, 6 + 3 * deg + 2, mag))
        assert abs(nrm - Jp @ Jp) <= _bound(fmt, 7 + Jp.size, float(np.sum((np.abs(J) @ np.abs(pv)) ** 2)))


def test_float64_outputs_with_fp16_storage_and_acc16():
    """acc16 with float64 vectors: the same fp16 values as with float32 vectors."""
    A, ia, B, ib, xa, xb, _ = _problem(2, 4, 3, 7, 11, 120, seed=1)
    As, Bs = _store(A, Precision.FP16), _store(B, Precision.FP16)
    y64 = np.empty((120, 2))
    y32 = np.empty((120, 2), np.float32)
    jac_matvec(As, ia, Bs, ib, xa, xb, y64, True)
    jac_matvec(As, ia, Bs, ib, xa.astype(np.float32), xb.astype(np.float32), y32, True)
    assert np.array_equal(y64, y32.astype(np.float64))


def test_input_validation():
    A, ia, B, ib, xa, xb, y = _problem(2, 4, 3, 7, 11, 20, seed=3)
    out = np.empty((20, 2))
    with pytest.raises(TypeError, match="uint16"):
        jac_matvec(A.astype(np.float16), ia, B, ib, xa, xb, out)
    with pytest.raises(ValueError, match="same"):
        jac_matvec(A, ia, B[:10], ib, xa, xb, out)
    with pytest.raises(ValueError, match="xb"):
        jac_matvec(A, ia, B, ib, xa, xa, out)
    with pytest.raises(ValueError, match="ia"):
        jac_matvec(A, ia[:5], B, ib, xa, xb, out)
    with pytest.raises(TypeError, match="same dtype"):
        jac_rmatvec(A, ia, B, ib, y, np.empty((7, 4)), np.empty((11, 3), np.float32))
    with pytest.raises(ValueError, match="outside"):
        check_two_block(A, ia, B, ib, 7, 5)
    check_two_block(A, ia, B, ib, 7, 11)
