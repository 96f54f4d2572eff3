"""Sliding-window VO: configuration checks and the bootstrap windows (where two policies' runs used to part)."""
from dataclasses import replace

import numpy as np
import pytest

from mixslam.errors import ConfigError
from mixslam.eval import ate
from mixslam.sim.world import make_world, simulate_run
from mixslam.slam.study import StudyConfig
from mixslam.slam.vo import VOConfig, run_vo


@pytest.mark.parametrize("kw", [dict(window=1), dict(fixed=0), dict(window=10, fixed=10), dict(ba_every=0),
                                dict(bootstrap_baseline=0), dict(max_iterations=0), dict(gate=float("nan")),
                                dict(min_parallax_deg=-1.0), dict(window=2.5)])
def test_config_rejects_bad_values(kw):
    with pytest.raises(ConfigError, match="VOConfig"):
        VOConfig(**kw)


# Seeds of the default study (trajectory_seed(0, i)) whose bootstrap windows, with keyframes 0 and 1 as the
# gauge, inflated the map, stopped at the LM cap and left mixed up to 3x off fp64 (docs/slam_results.md).
@pytest.mark.parametrize("seed", [1283680154, 3078617249])
def test_bootstrap_windows_converge_and_mixed_matches_fp64(seed):
    cfg = StudyConfig()
    world = make_world(cfg.world, seed)
    run = simulate_run(world, replace(cfg.trajectory, keyframes=46), cfg.camera, seed)
    vo = replace(cfg.pipeline.vo, window=30)
    out = {p: run_vo(run, p, config=vo) for p in ("fp64", "mixed")}
    err = {}
    for p, r in out.items():
        assert r.ba.not_converged == 0, (p, r.ba.statuses)
        assert r.ba.overflows == 0
        err[p] = float(np.sqrt(np.mean(ate(run.R_wc, run.t_wc, r.R_wc, r.t_wc, mode="se3") ** 2)))
        # A map at the right scale: every landmark snapshot is within the camera's range (8 m), not inflated.
        depth = np.concatenate([s[1][:, 2] for s in r.snapshots if len(s[0])])
        assert depth.max() < 1.5 * cfg.camera.max_range, p
    assert abs(err["mixed"] / err["fp64"] - 1) < 0.01, err


# A run of the default study (trajectory_seed(0, 24)) whose windows 241..290 and 246..295, after a sharp turn,
# need about 30 LM iterations: with a cap of 20 both policies stopped short at different points, mixed then
# gated 287 observations that fp64 kept, and its VO ATE was 2.1x fp64's (docs/slam_results.md).
def test_hard_windows_run_to_convergence_and_mixed_matches_fp64():
    cfg = StudyConfig()
    seed = 397828459
    run = simulate_run(make_world(cfg.world, seed), cfg.trajectory, cfg.camera, seed)
    assert cfg.pipeline.vo.window == 50 and cfg.pipeline.vo.max_iterations >= 60
    err = {}
    for p in ("fp64", "mixed"):
        r = run_vo(run, p, config=cfg.pipeline.vo)
        assert r.ba.not_converged == 0, (p, r.ba.statuses)
        assert r.gated == 0, p
        err[p] = float(np.sqrt(np.mean(ate(run.R_wc, run.t_wc, r.R_wc, r.t_wc, mode="se3") ** 2)))
    assert abs(err["mixed"] / err["fp64"] - 1) < 0.01, err


def test_an_adaptive_policy_keeps_the_first_full_windows_measured_choice():
    from types import SimpleNamespace

    from mixslam.linear.base import DirectStats
    from mixslam.precision import PrecisionPolicy
    from mixslam.slam.vo import _keep_measured_choice

    mixed = PrecisionPolicy.preset("mixed", "ba")

    def rep(choice):
        return SimpleNamespace(direct=DirectStats("fp32", "lapack (dense)", choice=choice))

    kept64 = _keep_measured_choice(mixed, rep("fp64 Schur: 0.002 s per step against fp32 + PCG's 0.003 s"), 10)
    assert not kept64.adaptive and kept64.factor.value == "fp64" and kept64.name == "mixed"
    kept32 = _keep_measured_choice(mixed, rep("fp32 Schur + PCG: 0.002 s per step against fp64's 0.003 s"), 10)
    assert not kept32.adaptive and kept32.factor.value == "fp32"
    # not yet measured (a one-step solve), the bootstrap window, a CG solve, a fixed policy: unchanged
    assert _keep_measured_choice(mixed, rep("fp32 Schur + PCG for the first step (0.001 s); fp64 not measured yet"),
                                 10) is mixed
    assert _keep_measured_choice(mixed, rep("fp64 Schur: 1 s"), 0) is mixed
    assert _keep_measured_choice(mixed, SimpleNamespace(direct=None), 10) is mixed
    fp64 = PrecisionPolicy.preset("fp64", "ba")
    assert _keep_measured_choice(fp64, rep("fp64 Schur: 1 s"), 10) is fp64
