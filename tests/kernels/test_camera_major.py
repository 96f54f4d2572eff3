"""Camera-major products against the numpy references in every format, with fixed cameras and points, in any
observation order, identical on any number of threads; the layout refuses what it cannot serve."""
from __future__ import annotations

import numpy as np
import pytest

from mixslam.kernels.camera_major import LANES, build, cm_matvec, cm_normal, cm_rmatvec
from mixslam.kernels.products import jac_matvec_ref, jac_rmatvec_ref, normal_matvec_ref
from mixslam.linear.operators import JacobianOperator
from mixslam.precision import Precision
from mixslam.storage import quantize

FORMATS = {"fp64": (Precision.FP64, np.float64), "fp32": (Precision.FP32, np.float32),
           "mixed": (Precision.FP16, np.float32)}


def _store(M, prec):
    q, _ = quantize(M, prec)
    return q.view(np.uint16) if prec is Precision.FP16 else np.ascontiguousarray(q)


def _values(S):
    return (S.view(np.float16) if S.dtype == np.uint16 else S).astype(np.float64)


def _ba(R=2500, nc=24, npts=600, pc=9, seed=0, shuffle=True):
    """Each point seen by distinct cameras (as in real bundle adjustment); some cameras and points fixed."""
    rng = np.random.default_rng(seed)
    ib = np.sort(rng.integers(0, npts, R))
    ia = np.empty(R, np.int64)
    starts = np.flatnonzero(np.r_[True, ib[1:] != ib[:-1]])
    for s0, s1 in zip(starts, np.r_[starts[1:], R]):
        ia[s0:s1] = rng.permutation(nc)[: s1 - s0]
    if shuffle:
        p = rng.permutation(R)
        ia, ib = ia[p], ib[p]
    ia[np.isin(ia, [0, 1])] = -1  # two fixed cameras: their observations share "camera -1"
    ib[rng.random(R) < 0.03] = -1
    A = rng.standard_normal((R, 2, pc))
    B = rng.standard_normal((R, 2, 3))
    return A, ia, B, ib, nc, npts, rng


def _bound(dt, terms, mag):
    return 2.0 * terms * np.finfo(dt).eps / 2 * mag + 1e-300


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("pc", [9, 6])
def test_products_against_reference(fmt, pc):
    A, ia, B, ib, nc, npts, rng = _ba(pc=pc)
    prec, dt = FORMATS[fmt]
    As, Bs = _store(A, prec), _store(B, prec)
    Av, Bv = _values(As), _values(Bs)
    L = build(As, ia, Bs, ib, nc, npts, chunks=3)
    assert L is not None and L.JA.dtype == As.dtype
    assert L.IB.shape[1] == LANES and (L.ROW >= 0).sum() == A.shape[0]
    xa, xb = rng.standard_normal((nc, pc)).astype(dt), rng.standard_normal((npts, 3)).astype(dt)
    deg = max(np.bincount(ia[ia >= 0]).max(), np.bincount(ib[ib >= 0]).max())
    # J x
    y = np.full((A.shape[0], 2), np.nan, dt)
    cm_matvec(L, xa, xb, y)
    mag = jac_matvec_ref(np.abs(Av), ia, np.abs(Bv), ib, np.abs(xa), np.abs(xb))
    assert np.all(np.abs(y - jac_matvec_ref(Av, ia, Bv, ib, xa.astype(float), xb.astype(float)))
                  <= _bound(dt, pc + 4, mag))
    # Jᵀ y
    yy = rng.standard_normal(y.shape).astype(dt)
    ga, gb = np.full((nc, pc), np.nan, dt), np.full((npts, 3), np.nan, dt)
    cm_rmatvec(L, yy, ga, gb)
    wa, wb = jac_rmatvec_ref(Av, ia, Bv, ib, yy.astype(float), nc, npts)
    ma, mb = jac_rmatvec_ref(np.abs(Av), ia, np.abs(Bv), ib, np.abs(yy), nc, npts)
    assert np.all(np.abs(ga - wa) <= _bound(dt, 2 * deg + 20, ma))
    assert np.all(np.abs(gb - wb) <= _bound(dt, 2 * deg + 20, mb))
    # fixed cameras' rows stay out of every camera's sum, fixed points are never written
    # JᵀJ p
    ga2, gb2 = np.full_like(ga, np.nan), np.full_like(gb, np.nan)
    nrm = cm_normal(L, xa, xb, ga2, gb2)
    wa, wb, wn = normal_matvec_ref(Av, ia, Bv, ib, xa.astype(float), xb.astype(float))
    ta = jac_matvec_ref(np.abs(Av), ia, np.abs(Bv), ib, np.abs(xa), np.abs(xb))
    ma, mb = jac_rmatvec_ref(np.abs(Av), ia, np.abs(Bv), ib, ta, nc, npts)
    assert np.all(np.abs(ga2 - wa) <= _bound(dt, 2 * deg + pc + 30, ma))
    assert np.all(np.abs(gb2 - wb) <= _bound(dt, 2 * deg + pc + 30, mb))
    assert abs(nrm - wn) <= _bound(dt, 2 * (pc + 3) + ta.size, float(np.sum(ta**2)))


def test_identical_on_any_number_of_threads():
    A, ia, B, ib, nc, npts, rng = _ba(R=6000, seed=4)
    As, Bs = _store(A, Precision.FP16), _store(B, Precision.FP16)
    L = build(As, ia, Bs, ib, nc, npts, chunks=5)
    xa, xb = rng.standard_normal((nc, 9)).astype(np.float32), rng.standard_normal((npts, 3)).astype(np.float32)
    out = []
    for threads in (1, 2, 4):
        ga, gb = np.empty_like(xa), np.empty_like(xb)
        n = cm_normal(L, xa, xb, ga, gb, threads=threads)
        out.append((ga, gb, n))
    for ga, gb, n in out[1:]:
        assert np.array_equal(ga, out[0][0]) and np.array_equal(gb, out[0][1]) and n == out[0][2]


def test_refuses_a_camera_that_sees_a_point_twice_and_wide_blocks():
    A, ia, B, ib, nc, npts, _ = _ba(R=200)
    ok = np.flatnonzero((ia >= 0) & (ib >= 0))[:2]
    ia2, ib2 = ia.copy(), ib.copy()
    ia2[ok[1]], ib2[ok[1]] = ia2[ok[0]], ib2[ok[0]]
    assert build(A, ia2, B, ib2, nc, npts) is None
    assert build(np.zeros((4, 2, 17)), ia[:4], B[:4], ib[:4], nc, npts) is None
    # fixed cameras seeing the same point are fine (they go to different groups)
    ia3 = ia.copy()
    ia3[ok] = -1
    ib3 = ib.copy()
    ib3[ok[1]] = ib3[ok[0]]
    assert build(A, ia3, B, ib3, nc, npts) is not None


def test_operator_auto_layout_matches_row_layout():
    A, ia, B, ib, nc, npts, rng = _ba(R=1500, seed=7)
    scale = np.exp2(rng.integers(-3, 3, nc * 9 + npts * 3)).astype(float)
    ops = {lay: JacobianOperator(A, ia, B, ib, nc, 9, scale, Precision.FP16, Precision.FP32, nb=npts, pb=3,
                                 layout=lay) for lay in ("rows", "auto")}
    assert ops["auto"].camera_major is not None and ops["auto"].A is None
    assert ops["rows"].camera_major is None
    assert ops["auto"].nbytes == ops["auto"].camera_major.nbytes
    p = rng.standard_normal(nc * 9 + npts * 3).astype(np.float32)
    outs = {}
    for lay, op in ops.items():
        g = np.empty_like(p)
        n = op.normal_matvec(p, g)
        outs[lay] = (g, n, op.matvec(p), op.rmatvec(np.ones((A.shape[0], 2), np.float32)))
    for a, b in zip(outs["rows"], outs["auto"]):
        assert np.allclose(a, b, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="layout"):
        JacobianOperator(A, ia, B, ib, nc, 9, scale, Precision.FP16, Precision.FP32, nb=npts, pb=3, layout="x")


def test_layout_structure_reused_for_the_same_indices():
    A, ia, B, ib, nc, npts, rng = _ba(R=900, seed=8)
    L1 = build(A, ia, B, ib, nc, npts, chunks=2)
    A2, B2 = rng.standard_normal(A.shape), rng.standard_normal(B.shape)
    fresh = build(A2, ia, B2, ib, nc, npts, chunks=2)
    reused = build(A2, ia, B2, ib, nc, npts, like=L1)
    assert reused.IB is L1.IB and reused.ROW is L1.ROW  # the structure is shared, not rebuilt
    assert np.array_equal(reused.JA, fresh.JA) and np.array_equal(reused.JB, fresh.JB)
    other = build(A2, ia.copy(), B2, ib, nc, npts, chunks=2, like=L1)  # other index arrays: fresh analysis
    assert other.IB is not L1.IB and np.array_equal(other.JA, fresh.JA)


@pytest.mark.parametrize("fmt", [Precision.FP64, Precision.FP32, Precision.FP16])
@pytest.mark.parametrize("overflow", [False, True])
def test_operator_fills_the_batches_as_the_row_store_then_build(fmt, overflow):
    """The auto layout scales, rounds and places the values in one pass: bit for bit the batches that storing
    the row blocks and building the layout from them gives, with the same statistics and fallback."""
    A, ia, B, ib, nc, npts, rng = _ba(R=1200, seed=9)
    A = A.astype(np.float32)  # the residual precision of mixed/fp32 (fp64 blocks in the fp64 case below)
    if fmt is Precision.FP64:
        A = A.astype(np.float64)
    scale = np.exp2(rng.integers(-3, 3, nc * 9 + npts * 3)).astype(float)
    if overflow:
        scale[5] = 2.0**20  # column 5 of camera 0 (fixed: its rows are zero) ...
        scale[9 * 5 + 2] = 2.0**20  # ... and of camera 5: beyond fp16's range
    acc = Precision.FP64 if fmt is Precision.FP64 else Precision.FP32
    rows = JacobianOperator(A, ia, B, ib, nc, 9, scale, fmt, acc, nb=npts, pb=3, layout="rows")
    auto = JacobianOperator(A, ia, B, ib, nc, 9, scale, fmt, acc, nb=npts, pb=3, layout="auto")
    ref = build(rows.A, ia, B=rows.B, ib=ib, na=nc, nb=npts, chunks=auto.camera_major.chunks)
    assert auto.camera_major.JA.dtype == ref.JA.dtype
    assert np.array_equal(auto.camera_major.JA, ref.JA) and np.array_equal(auto.camera_major.JB, ref.JB)
    assert auto.stats.as_dict() == rows.stats.as_dict()
    assert (auto.storage, auto.accumulate) == (rows.storage, rows.accumulate)
    if overflow and fmt is Precision.FP16:
        assert auto.stats.overflows > 0 and auto.fallbacks == 1 and auto.storage is Precision.FP32
