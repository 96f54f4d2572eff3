"""Device J·x, Jᵀ·y, JᵀJ·p and block-Jacobi against the numpy references of the CPU kernels, for fp64, fp32,
fp16 and bf16 storage (fp32 accumulation; fp64 for fp64 storage), on a pose graph (one variable set) and a
BAL problem (two sets, a fixed camera's frozen columns).

Both sides read the same stored values (the reference gets them widened exactly), so the difference is the
order of the sums only: tolerance ``tol_for(accumulation, n)`` with n the terms of the longest sum (k + p per
row of J x; the variable's rows times k for a scatter) relative to the result's largest entry.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")

from helpers import tol_for  # noqa: E402
from mixslam.ba import BundleProblem  # noqa: E402
from mixslam.backend import jax_products as jp  # noqa: E402
from mixslam.backend import jax_storage as js  # noqa: E402
from mixslam.backend.jax_linearization import DeviceLinearization, column_sq_norms, gradient  # noqa: E402
from mixslam.kernels import jac_matvec_ref, jac_rmatvec_ref, normal_matvec_ref  # noqa: E402
from mixslam.linear.operators import column_scale  # noqa: E402
from mixslam.linear.preconditioners import BlockJacobiInverse, scaled_diag_blocks  # noqa: E402
from mixslam.pgo import PoseGraphProblem  # noqa: E402
from mixslam.precision import Precision, PrecisionPolicy  # noqa: E402

STORAGES = ["fp64", "fp32", "fp16", "bf16"]


@pytest.fixture(scope="module")
def lins(graphs, bundles):
    g, b = graphs["se3"], bundles["bal"]
    pgo = PoseGraphProblem(g, PrecisionPolicy.preset("fp64")).linearize((g.rotations, g.translations))
    ba = BundleProblem(b, PrecisionPolicy.preset("fp64", "ba")).linearize((b.cameras, b.points))
    return {"pgo": pgo, "ba": ba}


def _max_terms(lin) -> int:
    """The longest sum of a product: the most rows scattered into one variable times k (+ the row's k + p)."""
    idx = np.concatenate([lin.ia, lin.ib]) if not lin.pb else lin.ia
    return int(np.bincount(idx[idx >= 0]).max()) * lin.r.shape[1] + lin.p + (lin.pb or lin.p)


# every format on the pose graph; BA (two sets) in fp64 and in its mixed format, fp16 (compile time)
CASES = [("pgo", s) for s in STORAGES] + [("ba", "fp64"), ("ba", "fp16")]


@pytest.mark.parametrize("kind,storage", CASES)
def test_products_match_references(lins, close, kind, storage):
    lin = lins[kind]
    s = column_scale(lin.column_sq_norms())
    acc = "fp64" if storage == "fp64" else "fp32"
    dt = np.dtype(np.float64 if acc == "fp64" else np.float32)
    J, _ = js.store_jacobian(DeviceLinearization.from_host(lin), s, storage, acc)
    A, B = jp.host(J.A).astype(dt), jp.host(J.B).astype(dt)  # the stored values, widened exactly
    na, nb = lin.nv, (lin.nb if lin.pb else lin.nv)
    rng = np.random.default_rng(5)
    x = rng.normal(size=lin.size).astype(dt)
    y = rng.normal(size=lin.r.shape).astype(dt)
    xa, xb = lin.split(x)
    tol = tol_for(acc, _max_terms(lin))

    yd = jp.jac_matvec(J, x)
    assert yd.dtype == dt
    close(yd, jac_matvec_ref(A, lin.ia, B, lin.ib, xa, xb, dt), tol, what="J x")

    ga, gb = jac_rmatvec_ref(A, lin.ia, B, lin.ib, y, na, nb, dt, alias=not lin.pb)
    ref = ga.reshape(-1) if not lin.pb else np.concatenate([ga.reshape(-1), gb.reshape(-1)])
    close(jp.jac_rmatvec(J, y), ref, tol, what="J^T y")

    ga, gb, sq = normal_matvec_ref(A, lin.ia, B, lin.ib, xa, xb, dt, alias=not lin.pb)
    ref = ga.reshape(-1) if not lin.pb else np.concatenate([ga.reshape(-1), gb.reshape(-1)])
    out, sqd = jp.normal_matvec(J, x)
    close(out, ref, tol, what="J^T J p")
    assert float(sqd) == pytest.approx(sq, rel=tol)


def test_fp16_storage_keeps_fp32_accumulation(lins):
    """16-bit operands are widened, not the vector narrowed: J x with an x no fp16 can hold stays finite."""
    lin = lins["pgo"]
    s = column_scale(lin.column_sq_norms())
    J, _ = js.store_jacobian(DeviceLinearization.from_host(lin), s, "fp16", "fp32")
    x = np.full(lin.size, 1e6, np.float32)
    y = jp.jac_matvec(J, x)
    assert y.dtype == np.float32 and np.isfinite(np.asarray(y)).all() and float(np.abs(y).max()) > 65504


@pytest.mark.parametrize("kind", ["pgo", "ba"])
def test_gradient_and_column_norms_match(lins, close, kind):
    lin = lins[kind]
    dev = DeviceLinearization.from_host(lin)
    close(column_sq_norms(dev), lin.column_sq_norms(), tol_for("fp64", _max_terms(lin)))
    for prec in ("fp64", "fp32"):
        dt = Precision(prec).compute_dtype
        close(gradient(dev, dt), lin.gradient(dt), tol_for(prec, _max_terms(lin)), what=f"gradient {prec}")


@pytest.mark.parametrize("kind,storage", CASES)
def test_block_jacobi_matches_cpu(lins, close, kind, storage):
    lin = lins[kind]
    colsq = lin.column_sq_norms()
    s = column_scale(colsq)
    d = np.where(colsq > 0, 1e-3 * np.clip(colsq, 1e-6, 1e32) * s * s, 1.0)
    acc = "fp64" if storage == "fp64" else "fp32"
    M, st, shifted = jp.block_jacobi(DeviceLinearization.from_host(lin), s, d, storage, acc)
    r = np.random.default_rng(6).normal(size=lin.size).astype(Precision(acc).compute_dtype)
    z = np.asarray(jp.apply_block_jacobi(M, r))
    # reference: the CPU's fp64 inverses, stored in the same format (bf16: rounded like the device's)
    parts = []
    for D, sl in scaled_diag_blocks(lin, s):
        cpu_storage = Precision.FP32 if storage == "bf16" else Precision(storage)
        inv = BlockJacobiInverse(D, d[sl], cpu_storage, Precision(acc))
        if storage == "bf16":
            inv.inv = jp.host(js.quantize(inv.inv, "bf16")[0])
        else:
            assert inv.shifted == 0 and shifted == 0
        parts.append(inv.apply(r[sl]))
    ref = np.concatenate(parts)
    # the inverses agree to fp64 rounding before storage; one 16-bit rounding may then differ by an ulp
    # the fp64 inversions differ by u64 x κ(block) (BA's point blocks are far from well conditioned)
    kappa = max(
        float(np.linalg.cond(D + d[sl].reshape(D.shape[:2])[:, :, None] * np.eye(D.shape[1])).max())
        for D, sl in scaled_diag_blocks(lin, s)
    )
    u_store = Precision(storage).unit_roundoff
    tol = (
        tol_for(acc, 2 * lin.p) + tol_for("fp64", lin.p, kappa) + (2 * u_store if storage in ("fp16", "bf16") else 0.0)
    )
    close(z, ref, tol, what="block-Jacobi")
    assert st.count == sum(D.size for D, _ in scaled_diag_blocks(lin, s))
