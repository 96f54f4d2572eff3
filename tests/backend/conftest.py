"""Small generated problems shared by the device backend's tests (skipped without JAX)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

jax = pytest.importorskip("jax")

# JAX's persistent compilation cache: a second run of these tests loads the compiled functions instead of
# compiling them again (most of their time on a CPU)
jax.config.update("jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "mixslam-jax-test-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _observe(nc, npts, rng, per_point=3):
    ci, pi = [], []
    for j in range(npts):
        for c in rng.choice(nc, size=min(per_point, nc), replace=False):
            ci.append(int(c))
            pi.append(j)
    return np.array(ci), np.array(pi)


@pytest.fixture(scope="session")
def graphs():
    """{"se2": PoseGraph, "se3": PoseGraph}: 40-pose generated graphs with loops, odometry initial guess."""
    from mixslam.sim.generate import generate_pose_graph

    return {
        "se2": generate_pose_graph("grid2d", 40, seed=1).initial,
        "se3": generate_pose_graph("sphere", 40, seed=1).initial,
    }


@pytest.fixture(scope="session")
def bundles():
    """{"bal": BundleData, "pinhole": BundleData}: a generated BAL problem (camera 0 fixed: its pose columns
    frozen, f, k1, k2 free) and a pinhole problem (camera 0 and point 0 fixed)."""
    from mixslam.lie import so3
    from mixslam.problem.bundle import BundleData
    from mixslam.problem.camera import pinhole_project
    from mixslam.sim.generate import generate_bundle

    bal = generate_bundle(8, 40, seed=2).initial
    rng = np.random.default_rng(3)
    nc, npts = 6, 30
    R = so3.exp(rng.normal(scale=0.8, size=(nc, 3)))
    pts = rng.normal(size=(npts, 3))
    t = np.array([0.0, 0.0, 8.0]) + rng.normal(scale=0.4, size=(nc, 3))
    cams = np.concatenate([R.reshape(nc, 9), t], axis=1)
    K = np.array([520.0, 515.0, 320.5, 239.5])
    ci, pi = _observe(nc, npts, rng)
    pred, depth = pinhole_project(cams[ci], pts[pi], K)
    obs = pred + rng.normal(scale=2.0, size=pred.shape)
    fixed_p = np.zeros(npts, bool)
    fixed_p[0] = True
    pin = BundleData("pinhole", cams, pts, obs, ci, pi, intrinsics=K, sigma=0.8, fixed_points=fixed_p)
    return {"bal": bal, "pinhole": pin}


@pytest.fixture(scope="session")
def close():
    """``close(actual, expected, rtol, scale=None, what="")``: max|actual - expected| <= rtol * scale (default
    scale: max|expected|), device arrays and 16-bit types widened to fp64 first."""

    def check(actual, expected, rtol, scale=None, what=""):
        a = np.asarray(np.asarray(actual, np.float32) if str(actual.dtype) == "bfloat16" else actual, np.float64)
        e = np.asarray(expected, np.float64)
        assert a.shape == e.shape, (what, a.shape, e.shape)
        s = float(np.max(np.abs(e))) if scale is None else float(scale)
        err = float(np.max(np.abs(a - e))) if a.size else 0.0
        assert err <= rtol * s, f"{what}: max error {err:.3e} > {rtol:.1e} x {s:.3e}"

    return check
