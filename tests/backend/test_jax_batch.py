"""Batched device solves: the same results as one-at-a-time device solves, per-problem reports, refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("jax")

from mixslam.backend.jax_batch import solve_batch  # noqa: E402
from mixslam.errors import ConfigError  # noqa: E402
from mixslam.pgo import PGOConfig, optimize_pose_graph  # noqa: E402


def _variants(g, n=3, seed=0):
    """``n`` graphs with ``g``'s edges: different initial poses and (one) different measurements."""
    rng = np.random.default_rng(seed)
    out = [
        g.with_poses(g.rotations, g.translations + rng.normal(scale=0.05, size=g.translations.shape)) for _ in range(n)
    ]
    noisy = out[1].meas_translations + rng.normal(scale=0.01, size=g.meas_translations.shape)
    out[1] = dataclasses.replace(out[1], meas_translations=noisy)
    out[0] = g  # one unchanged
    return out


def test_batch_equals_one_at_a_time(graphs):
    gs = _variants(graphs["se2"])
    cfg = PGOConfig(backend="jax", device="cpu", init="file", precision="fp64")
    batch = solve_batch(gs, cfg)
    assert len(batch) == len(gs)
    finals = set()
    for (out, rep), g in zip(batch, gs):
        single_out, single = optimize_pose_graph(g, cfg)
        assert rep.converged and rep.backend == "jax:cpu" and rep.timing["batch_size"] == len(gs)
        assert rep.final_cost == pytest.approx(single.final_cost, rel=1e-12)
        assert rep.initial_cost == pytest.approx(single.initial_cost, rel=1e-12)
        assert rep.iterations == single.iterations
        np.testing.assert_allclose(out.translations, single_out.translations, rtol=0, atol=1e-8)
        finals.add(round(rep.final_cost, 6))
    assert len(finals) >= 2  # the measurements differ: so do the optima


def test_batch_refuses_different_shapes(graphs):
    g = graphs["se2"]
    from mixslam.sim.generate import generate_pose_graph

    other = generate_pose_graph("grid2d", 30, seed=1).initial
    with pytest.raises(ConfigError, match="problem 1 differs in shape"):
        solve_batch([g, other], PGOConfig(backend="jax", device="cpu"))
    with pytest.raises(ConfigError, match="all PoseGraph or all BundleData"):
        solve_batch([g, object()], PGOConfig(backend="jax", device="cpu"))
