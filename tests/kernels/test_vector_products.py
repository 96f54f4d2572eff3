"""The vectorized products (fp32 / fp64 arithmetic): against the numpy references in every storage format, on
every block shape the solvers use, and identical on any number of threads and chunks.

The scalar kernels (``*_nb`` in :mod:`mixslam.kernels.products`) stay the reference order for emulated fp16
arithmetic; here the vector kernels must agree with an fp64 reference on the same stored values within the
rounding bound of their arithmetic, and with themselves bit for bit however the work is split.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mixslam.kernels import products
from mixslam.kernels.products import (
    jac_matvec,
    jac_matvec_ref,
    jac_rmatvec,
    jac_rmatvec_ref,
    normal_matvec,
    normal_matvec_ref,
)
from mixslam.kernels.threads import bounds, chunk_count, default_threads, run_chunks
from mixslam.kernels.vector_products import ProductPlan, supported
from mixslam.precision import Precision
from mixslam.storage import quantize

FORMATS = {  # storage, arithmetic dtype
    "fp64": (Precision.FP64, np.float64),
    "fp32": (Precision.FP32, np.float32),
    "mixed": (Precision.FP16, np.float32),
}
SHAPES = {  # k, pa, pb, aliased (one variable set: pose graphs)
    "ba": (2, 9, 3, False),
    "vo": (2, 6, 3, False),
    "se2": (3, 3, 3, True),
    "se3": (6, 6, 6, True),
}


def _store(M, prec):
    q, _ = quantize(M, prec)
    return q.view(np.uint16) if prec is Precision.FP16 else np.ascontiguousarray(q)


def _values(S):
    return (S.view(np.float16) if S.dtype == np.uint16 else S).astype(np.float64)


def _problem(shape, R=3000, seed=0, sort_b=True):
    k, pa, pb, aliased = SHAPES[shape]
    rng = np.random.default_rng(seed)
    na = 40
    nb = na if aliased else 700
    ia = rng.integers(0, na, R)
    ib = rng.integers(0, nb, R)
    if sort_b and not aliased:
        ib = np.sort(ib)
    ia[rng.random(R) < 0.1] = -1  # fixed variables
    ib[rng.random(R) < 0.05] = -1
    A = rng.standard_normal((R, k, pa))
    B = rng.standard_normal((R, k, pb))
    xa = rng.standard_normal((na, pa))
    xb = xa if aliased else rng.standard_normal((nb, pb))
    y = rng.standard_normal((R, k))
    return A, ia, B, ib, xa, xb, y, aliased


def _bound(dt, terms, mag):
    u = np.finfo(dt).eps / 2
    return 2.0 * terms * u * mag + 1e-300


def _maxdeg(idx, n):
    return int(np.bincount(idx[idx >= 0], minlength=n).max()) + 1


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_products_against_reference(shape, fmt):
    A, ia, B, ib, xa, xb, y, aliased = _problem(shape)
    prec, dt = FORMATS[fmt]
    As, Bs = _store(A, prec), _store(B, prec)
    Av, Bv = _values(As), _values(Bs)
    k, pa, pb = A.shape[1], A.shape[2], B.shape[2]
    assert supported(pa, pb)
    xa_, xb_ = xa.astype(dt), (xa.astype(dt) if aliased else xb.astype(dt))
    if aliased:
        xb_ = xa_
    # y = J x
    out = np.empty((A.shape[0], k), dt)
    jac_matvec(As, ia, Bs, ib, xa_, xb_, out)
    want = jac_matvec_ref(Av, ia, Bv, ib, xa_.astype(float), xb_.astype(float))
    mag = jac_matvec_ref(np.abs(Av), ia, np.abs(Bv), ib, np.abs(xa_), np.abs(xb_))
    assert np.all(np.abs(out - want) <= _bound(dt, pa + pb + 1, mag))
    # g = Jᵀ y
    na, nb = xa.shape[0], xb.shape[0]
    ga = np.full((na, pa), np.nan, dt)
    gb = ga if aliased else np.full((nb, pb), np.nan, dt)
    y_ = y.astype(dt)
    jac_rmatvec(As, ia, Bs, ib, y_, ga, gb)
    wa, wb = jac_rmatvec_ref(Av, ia, Bv, ib, y_.astype(float), na, nb)
    ma, mb = jac_rmatvec_ref(np.abs(Av), ia, np.abs(Bv), ib, np.abs(y_), na, nb)
    deg = _maxdeg(np.concatenate([ia, ib]), na) if aliased else max(_maxdeg(ia, na), _maxdeg(ib, nb))
    if aliased:
        assert np.all(np.abs(ga - (wa + wb)) <= _bound(dt, 2 * k * deg + 4, ma + mb))
    else:
        assert np.all(np.abs(ga - wa) <= _bound(dt, k * deg + 4, ma))
        assert np.all(np.abs(gb - wb) <= _bound(dt, k * deg + 4, mb))
    # fused JᵀJ p equals the two products in sequence, bit for bit (same operations, same order)
    na_g = np.full_like(ga, np.nan)
    nb_g = na_g if aliased else np.full_like(gb, np.nan)
    nrm = normal_matvec(As, ia, Bs, ib, xa_, xb_, na_g, nb_g)
    sa = np.empty_like(na_g)
    sb = sa if aliased else np.empty_like(nb_g)
    jac_rmatvec(As, ia, Bs, ib, out, sa, sb)
    assert np.array_equal(sa, na_g) and np.array_equal(sb, nb_g)
    _, _, wn = normal_matvec_ref(Av, ia, Bv, ib, xa_.astype(float), xb_.astype(float))
    assert abs(nrm - wn) <= _bound(dt, 2 * (pa + pb) + out.size, float(np.sum(mag**2)))


@pytest.mark.parametrize("sort_b", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("shape", ["ba", "se3"])
def test_results_do_not_depend_on_threads(shape, sort_b):
    """Same chunks on 1, 2 and 3 threads: identical bits; the chunk count follows the size alone."""
    A, ia, B, ib, xa, xb, y, aliased = _problem(shape, R=5000, seed=3, sort_b=sort_b)
    dt = np.float32
    As, Bs = _store(A, Precision.FP16), _store(B, Precision.FP16)
    xa_ = xa.astype(dt)
    xb_ = xa_ if aliased else xb.astype(dt)
    plan = ProductPlan(ia, ib, aliased, chunks=7)
    assert plan.shared_b == (sort_b and not aliased)
    results = []
    for threads in (1, 2, 3):
        ga = np.empty_like(xa_)
        gb = ga if aliased else np.empty_like(xb_)
        nrm = normal_matvec(As, ia, Bs, ib, xa_, xb_, ga, gb, plan=plan, threads=threads)
        t = np.empty((A.shape[0], A.shape[1]), dt)
        jac_matvec(As, ia, Bs, ib, xa_, xb_, t, plan=plan, threads=threads)
        results.append((ga.copy(), gb.copy(), nrm, t))
    for r in results[1:]:
        assert np.array_equal(r[0], results[0][0]) and np.array_equal(r[1], results[0][1])
        assert r[2] == results[0][2] and np.array_equal(r[3], results[0][3])
    # a different chunking sums in a different order: equal to rounding, not necessarily bit for bit
    ga1 = np.empty_like(xa_)
    gb1 = ga1 if aliased else np.empty_like(xb_)
    normal_matvec(As, ia, Bs, ib, xa_, xb_, ga1, gb1, plan=ProductPlan(ia, ib, aliased, chunks=1))
    assert np.allclose(ga1, results[0][0], rtol=1e-4, atol=1e-3)


def test_chunking_is_a_function_of_size_only():
    assert chunk_count(10) == 1
    assert chunk_count(10**9) == chunk_count(10**8)
    assert bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert run_chunks(lambda c: c * c, 5, threads=2) == [0, 1, 4, 9, 16]


def test_thread_count_from_environment(monkeypatch):
    monkeypatch.setenv("MIXSLAM_THREADS", "3")
    assert default_threads() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("MIXSLAM_THREADS", bad)
        with pytest.raises(ValueError, match="MIXSLAM_THREADS"):
            default_threads()


def test_wide_blocks_and_fp16_arithmetic_use_the_scalar_kernels(monkeypatch):
    """Blocks wider than 16 and emulated fp16 arithmetic keep the scalar cores."""
    used = []
    real = products.normal_matvec_nb
    monkeypatch.setattr(products, "normal_matvec_nb", lambda *a: used.append(1) or real(*a))
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((5, 2, 17)), rng.standard_normal((5, 2, 3))
    ia, ib = np.arange(5), np.arange(5)
    xa, xb = rng.standard_normal((5, 17)), rng.standard_normal((5, 3))
    normal_matvec(A, ia, B, ib, xa, xb, np.empty_like(xa), np.empty_like(xb))
    assert used == [1]
    A16 = A[:, :, :9].astype(np.float16).view(np.uint16).copy()
    B16 = B.astype(np.float16).view(np.uint16)
    x32 = xa[:, :9].astype(np.float32)
    normal_matvec(A16, ia, B16, ib, x32, xb.astype(np.float32), np.empty_like(x32),
                  np.empty((5, 3), np.float32), acc16=True)
    assert used == [1, 1]


_GENERIC_CPU_SCRIPT = r"""
import numpy as np
from mixslam.kernels.products import normal_matvec
rng = np.random.default_rng(5)
R = 400
A = rng.standard_normal((R, 2, 9)).astype(np.float16).view(np.uint16)
B = rng.standard_normal((R, 2, 3)).astype(np.float16).view(np.uint16)
ia = rng.integers(-1, 12, R); ib = np.sort(rng.integers(0, 90, R))
xa = rng.standard_normal((12, 9)).astype(np.float32); xb = rng.standard_normal((90, 3)).astype(np.float32)
ga = np.empty_like(xa); gb = np.empty_like(xb)
n = normal_matvec(A, ia, B, ib, xa, xb, ga, gb, threads=1)
np.save(OUT, np.concatenate([ga.ravel(), gb.ravel(), [n]]).astype(np.float64))
"""


def test_kernels_compiled_for_a_cpu_without_avx512(tmp_path):
    """The same kernels compiled for Haswell (AVX2 + F16C: no masked AVX-512 loads, no AVX-512 FP16): LLVM
    lowers the vector code to that instruction set; the results match this host's build to rounding."""
    res = {}
    for name, cpu in (("host", None), ("haswell", "haswell")):
        out = tmp_path / f"{name}.npy"
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / f"cache-{name}"))
        if cpu:
            env["NUMBA_CPU_NAME"] = cpu
            env["NUMBA_CPU_FEATURES"] = "+avx,+avx2,+fma,+f16c,+sse4.2,+popcnt"
        code = _GENERIC_CPU_SCRIPT.replace("OUT", repr(str(out)))
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
        res[name] = np.load(out)
    assert np.allclose(res["host"], res["haswell"], rtol=2e-6, atol=2e-5)
