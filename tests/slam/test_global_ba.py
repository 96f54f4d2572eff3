"""Global bundle adjustment after loop closure: track fusion through loop inliers, the solve per policy,
failures reported (never NaN poses as success), config errors."""
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from mixslam.errors import ConfigError
from mixslam.eval import ate
from mixslam.lie import so3
from mixslam.sim.world import TrajectoryConfig, make_world, simulate_run
from mixslam.slam.global_ba import GlobalBAConfig, fuse_tracks, global_bundle_adjustment
from mixslam.slam.loop_closure import LoopEdge
from mixslam.slam.study import demo_config


def _edge(i, j, landmarks):
    return LoopEdge(i, j, np.eye(3), np.zeros(3), np.eye(6), len(landmarks), len(landmarks), 0.0,
                    np.asarray(landmarks, np.int64))


def test_fuse_tracks_merges_only_through_loop_inliers():
    # Landmark 0 seen in frames 0, 1 and again 60, 61; landmark 1 likewise; window 50 splits each in two.
    frame = np.array([0, 0, 1, 1, 60, 60, 61, 61])
    landmark = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    run = SimpleNamespace(obs_frame=frame, obs_landmark=landmark)
    plain, merges = fuse_tracks(run, 50, [])
    assert merges == 0 and len(np.unique(plain)) == 4
    fused, merges = fuse_tracks(run, 50, [_edge(1, 60, [0])])  # the loop matched landmark 0 only
    assert merges == 1 and len(np.unique(fused)) == 3
    assert len(set(fused[landmark == 0])) == 1 and len(set(fused[landmark == 1])) == 2
    # A loop naming a landmark one of its keyframes did not observe merges nothing.
    _, merges = fuse_tracks(run, 50, [_edge(1, 30, [0])])
    assert merges == 0
    empty = SimpleNamespace(obs_frame=np.zeros(0, np.int64), obs_landmark=np.zeros(0, np.int64))
    ids, merges = fuse_tracks(empty, 50, [_edge(0, 1, [0])])
    assert ids.size == 0 and merges == 0


@pytest.fixture(scope="module")
def short_run():
    cfg = demo_config()
    return simulate_run(make_world(cfg.world, 0), TrajectoryConfig(keyframes=40), cfg.camera, 0)


def _perturbed(run, seed=1, sigma_t=0.03, sigma_r=0.01):
    rng = np.random.default_rng(seed)
    n = len(run.R_wc)
    R = run.R_wc @ so3.exp(rng.normal(0, sigma_r, (n, 3)))
    t = run.t_wc + rng.normal(0, sigma_t, (n, 3))
    R[0], t[0] = run.R_wc[0], run.t_wc[0]
    return R, t


def _rmse(run, R, t):
    return float(np.sqrt(np.mean(ate(run.R_wc, run.t_wc, R, t) ** 2)))


@pytest.mark.parametrize("precision", ["fp64", "mixed"])
def test_global_ba_recovers_the_trajectory(short_run, precision):
    R0, t0 = _perturbed(short_run)
    before = _rmse(short_run, R0, t0)
    res = global_bundle_adjustment(short_run, R0, t0, [], precision, window=30)
    assert res.ok, res.reason
    after = _rmse(short_run, res.R_wc, res.t_wc)
    # 3 cm of pose noise; 40 keyframes of ~100 landmarks at 1 px: the BA's error is a few mm (its scale
    # rests on the wheel odometry's path length, 5% per step: about 1% over 40 steps).
    assert after < 0.3 * before, (before, after)
    assert res.points > 50 and res.observations > 1000 and abs(res.scale - 1) < 0.2
    assert np.isfinite(res.R_wc).all() and np.isfinite(res.t_wc).all()


def test_mixed_matches_fp64(short_run):
    R0, t0 = _perturbed(short_run)
    ref = global_bundle_adjustment(short_run, R0, t0, [], "fp64", window=30)
    mix = global_bundle_adjustment(short_run, R0, t0, [], "mixed", window=30)
    assert ref.ok and mix.ok and mix.solves.overflows == 0
    e_ref, e_mix = _rmse(short_run, ref.R_wc, ref.t_wc), _rmse(short_run, mix.R_wc, mix.t_wc)
    assert abs(e_mix / e_ref - 1) < 0.01, (e_ref, e_mix)


def test_failure_keeps_the_input_poses(short_run):
    R0, t0 = _perturbed(short_run)
    t0 = t0.copy()
    t0[5] = np.nan  # a non-finite pose: the BA refuses it
    res = global_bundle_adjustment(short_run, R0, t0, [], "fp64", window=30)
    assert not res.ok and "keyframe(s) [5]" in res.reason
    np.testing.assert_array_equal(res.t_wc, t0)


def test_config_errors():
    with pytest.raises(ConfigError, match="rounds"):
        GlobalBAConfig(rounds=0)
    with pytest.raises(ConfigError, match="gate"):
        GlobalBAConfig(gate=float("nan"))


def test_pipeline_keeps_both_stages(short_run):
    from mixslam.slam.pipeline import run_pipeline
    cfg = demo_config().pipeline
    run = simulate_run(make_world(demo_config().world, 0), TrajectoryConfig(keyframes=150), demo_config().camera, 0)
    on = run_pipeline(run, "fp64", cfg, 0)
    off = run_pipeline(run, "fp64", replace(cfg, global_ba=replace(cfg.global_ba, enabled=False)), 0, vo=on.vo)
    assert on.gba is not None and on.gba.ok and on.gba.fused > 0 and off.gba is None
    np.testing.assert_array_equal(off.lc_t, off.pgo_t)
    np.testing.assert_allclose(on.pgo_t, off.pgo_t)
    # The global BA goes back to the pixels: lower error than the pose graph on this run (1.97 -> 1.06 cm mean).
    assert _rmse(run, on.lc_R, on.lc_t) < 0.8 * _rmse(run, on.pgo_R, on.pgo_t)


def test_oracle_association_is_one_track_per_landmark(short_run):
    R0, t0 = _perturbed(short_run)
    oracle = global_bundle_adjustment(short_run, R0, t0, [], "fp64", window=30,
                                      config=GlobalBAConfig(association="truth"))
    assert oracle.ok and oracle.fused == 0
    assert oracle.tracks == len(np.unique(short_run.obs_landmark))
    with pytest.raises(ConfigError, match="association"):
        GlobalBAConfig(association="ids")
