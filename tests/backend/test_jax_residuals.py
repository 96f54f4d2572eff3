"""Device residuals, Jacobian blocks and costs against the CPU's (numpy / numba) in fp64 and fp32.

Tolerances: ``tol_for(residual precision, n)`` relative to the array's largest entry (reprojection
residuals: to the largest prediction / sigma, since r = (pred - obs) / sigma cancels), with n the roundings
on the longest path of the formula (products of three rotations, the quaternion; the projection's chain).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")

from helpers import depth_guard_case, tol_for  # noqa: E402
from mixslam.ba import BundleProblem  # noqa: E402
from mixslam.backend import jax_residuals as jr  # noqa: E402
from mixslam.pgo import PoseGraphProblem  # noqa: E402
from mixslam.precision import PrecisionPolicy  # noqa: E402
from mixslam.problem import reprojection as rp  # noqa: E402

PREC = {np.float64: "fp64", np.float32: "fp32"}
N_PGO = 20
"""Roundings on the longest path of a between error and its Jacobian (R_zᵀ R_iᵀ R_j, the quaternion, W)."""
N_BA = 20
"""Roundings on the longest path of a reprojection (rotation, projection, distortion, J R [X]x Jr)."""


def _policy(dtype, kind):
    return PrecisionPolicy.preset(PREC[dtype], kind)


@pytest.mark.parametrize(
    "graph,dtype,method",
    [
        ("se2", np.float64, "closed"),
        ("se2", np.float32, "closed"),
        ("se2", np.float64, "jacfwd"),
        ("se3", np.float64, "closed"),
        ("se3", np.float32, "closed"),
        ("se3", np.float64, "jacfwd"),
    ],
)
def test_pose_graph_linearization_matches_cpu(graphs, close, graph, dtype, method):
    g = graphs[graph]
    cpu = PoseGraphProblem(g, _policy(dtype, "pgo")).linearize((g.rotations, g.translations))
    dev = jr.pose_graph_linearization(jr.pose_graph_arrays(g), g.rotations, g.translations, dtype, method=method)
    tol = tol_for(PREC[dtype], N_PGO)
    for name in ("r", "A", "B"):
        assert getattr(dev, name).dtype == np.dtype(dtype)
        close(getattr(dev, name), getattr(cpu, name), tol, what=f"{graph} {method} {name}")
    np.testing.assert_array_equal(np.asarray(dev.ia), cpu.ia)
    np.testing.assert_array_equal(np.asarray(dev.ib), cpu.ib)
    assert (dev.nv, dev.p, dev.nb, dev.pb) == (cpu.nv, cpu.p, cpu.nb, cpu.pb)


def test_pose_graph_costs_match_cpu(graphs):
    for g in graphs.values():
        pg = jr.pose_graph_arrays(g)
        state = (g.rotations, g.translations)
        ref = PoseGraphProblem(g, _policy(np.float64, "pgo")).fp64_cost(state)
        assert float(jr.pose_graph_cost(pg, *state)) == pytest.approx(ref, rel=tol_for("fp64", N_PGO))
        ref32 = PoseGraphProblem(g, _policy(np.float32, "pgo").replace(cost="fp32")).cost(state)
        dev32 = float(jr.pose_graph_cost(pg, *state, dtype=np.float32))
        assert dev32 == pytest.approx(ref32, rel=tol_for("fp32", N_PGO + g.num_edges))


@pytest.mark.parametrize(
    "model,dtype,method",
    [
        ("bal", np.float64, "closed"),
        ("bal", np.float32, "closed"),
        ("bal", np.float64, "jacfwd"),
        ("pinhole", np.float64, "closed"),
        ("pinhole", np.float32, "closed"),
        ("pinhole", np.float64, "jacfwd"),
    ],
)
def test_bundle_linearization_matches_cpu(bundles, close, model, dtype, method):
    data = bundles[model]
    state = (data.cameras, data.points)
    cpu = BundleProblem(data, _policy(dtype, "ba")).linearize(state)
    ba = jr.bundle_arrays(data)
    dev = jr.bundle_linearization(ba, *state, dtype, method=method)
    tol = tol_for(PREC[dtype], N_BA)
    pred_scale = np.max(np.abs(data.observations)) / data.sigma
    close(dev.r, cpu.r, tol, scale=pred_scale, what=f"{model} r")
    for name in ("A", "B"):
        assert getattr(dev, name).dtype == np.dtype(dtype)
        close(getattr(dev, name), getattr(cpu, name), tol, what=f"{model} {method} {name}")
    np.testing.assert_array_equal(np.asarray(dev.ia), cpu.ia)
    np.testing.assert_array_equal(np.asarray(dev.ib), cpu.ib)
    assert (dev.nv, dev.p, dev.nb, dev.pb) == (cpu.nv, cpu.p, cpu.nb, cpu.pb)
    if model == "bal":  # camera 0 is fixed: its pose columns are frozen, its intrinsics free
        rows = np.asarray(data.cam_idx) == 0
        assert rows.any() and np.all(np.asarray(dev.A)[rows, :, :6] == 0) and np.any(np.asarray(dev.A)[rows, :, 6:])


def test_bundle_costs_match_cpu(bundles):
    for data in bundles.values():
        state = (data.cameras, data.points)
        ref = BundleProblem(data, _policy(np.float64, "ba")).fp64_cost(state)
        dev = float(jr.reprojection_cost(jr.bundle_arrays(data), *state))
        assert dev == pytest.approx(ref, rel=tol_for("fp64", N_BA))




@pytest.mark.parametrize("model", ["bal", "pinhole"])
def test_depth_guard_and_counts_match_cpu(close, model):
    data = depth_guard_case(model)
    r, A, B, nb, ncl = rp.linearize(*rp.bundle_arrays(data))
    rd, Ad, Bd, nbd, ncld = jr.reprojection_linearize(jr.bundle_arrays(data), data.cameras, data.points)
    assert (int(nbd), int(ncld)) == (nb, ncl) == (4, 3)
    tol = tol_for("fp64", N_BA)
    for dev, ref in ((rd, r), (Ad, A), (Bd, B)):
        assert np.isfinite(np.asarray(dev)).all()
        close(dev, ref, tol)
    assert np.all(np.asarray(Bd)[:3, :, 2] == 0)  # no derivative through a clamped depth


def test_argument_checks(graphs):
    g = graphs["se2"]
    pg = jr.pose_graph_arrays(g)
    with pytest.raises(ValueError, match="float64 or float32"):
        jr.between_linearize(pg, g.rotations, g.translations, np.float16)
    with pytest.raises(ValueError, match="method"):
        jr.between_linearize(pg, g.rotations, g.translations, method="numeric")
