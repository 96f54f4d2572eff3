"""Loop policy (issue 18, item 5): strict verification vs loose verification + GNC, and the simulator's
perceptually aliased candidates that make false loops pass a verification."""

from dataclasses import replace

import numpy as np
import pytest

from mixslam.errors import ConfigError
from mixslam.eval import ate
from mixslam.sim.world import (
    LoopConfig,
    TrajectoryConfig,
    aliased_candidates,
    loop_candidates,
    make_world,
    simulate_run,
)
from mixslam.slam.global_ba import fuse_tracks
from mixslam.slam.loop_closure import LoopEdge, LoopVerifyConfig
from mixslam.slam.pipeline import LOOP_POLICIES, PipelineConfig, loop_is_wrong, run_pipeline
from mixslam.slam.study import demo_config, run_trajectory

# The demo world, 150 keyframes (about one and a half laps: true loops at the end), 3% aliased candidates.
CFG = replace(demo_config(), trajectory=TrajectoryConfig(keyframes=150))
ALIASED = replace(CFG, pipeline=replace(CFG.pipeline, loops=replace(CFG.pipeline.loops, aliasing_rate=0.03)))


def _with_policy(cfg, policy):
    return replace(cfg, pipeline=replace(cfg.pipeline, loop_policy=policy))


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("loop_policy", dict(loop_policy="loose")),
        ("loop_policy", dict(loop_policy=None)),
        ("loose_verify", dict(loose_verify=LoopConfig())),
    ],
)
def test_pipeline_config_rejects_a_bad_loop_policy(field, kwargs):
    with pytest.raises(ConfigError, match=f"PipelineConfig.{field}"):
        PipelineConfig(**kwargs)
    for policy in LOOP_POLICIES:
        assert PipelineConfig(loop_policy=policy).loop_policy == policy


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("aliasing_rate", dict(aliasing_rate=1.5)),
        ("aliasing_rate", dict(aliasing_rate=-0.1)),
        ("aliasing_matches", dict(aliasing_matches=(20, 10))),
        ("aliasing_matches", dict(aliasing_matches=(6.0, 40))),
        ("aliasing_outliers", dict(aliasing_outliers=(-1, 3))),
        ("aliasing_outliers", dict(aliasing_outliers=5)),
    ],
)
def test_loop_config_rejects_bad_aliasing(field, kwargs):
    with pytest.raises(ConfigError, match=f"LoopConfig.{field}"):
        LoopConfig(**kwargs)


def test_loose_verification_is_looser_than_strict():
    cfg = PipelineConfig()
    assert cfg.loose_verify.min_inliers < cfg.verify.min_inliers
    assert cfg.loose_verify.min_inlier_ratio < cfg.verify.min_inlier_ratio
    assert isinstance(cfg.loose_verify, LoopVerifyConfig)


@pytest.fixture(scope="module")
def run():
    return simulate_run(make_world(CFG.world, 2), CFG.trajectory, CFG.camera, 2)


def test_aliased_candidates_are_seeded_wrong_and_leave_the_others_alone(run):
    loops = ALIASED.pipeline.loops
    a, b = aliased_candidates(run, loops, 2), aliased_candidates(run, loops, 2)
    assert len(a) >= 1 and [(c.i, c.j) for c in a] == [(c.i, c.j) for c in b]
    assert all(np.array_equal(x.pixels_j, y.pixels_j) for x, y in zip(a, b))
    assert aliased_candidates(run, CFG.pipeline.loops, 2) == []  # off by default
    # their own random stream: the simulator's candidates do not change
    assert np.array_equal(loop_candidates(run, loops, 2), loop_candidates(run, CFG.pipeline.loops, 2))
    K = run.intrinsics
    for c in a:
        assert c.j - c.i > loops.min_separation
        assert np.linalg.norm(run.t_wc[c.i] - run.t_wc[c.j]) > 2 * loops.max_distance  # a different place
        # the consistent matches are i's landmarks seen from the wrong pose (R, t) of j relative to i
        X = (run.landmarks[c.landmarks_i[: c.consistent]] - run.t_wc[c.i]) @ run.R_wc[c.i]
        X = (X - c.t) @ c.R
        uv = K[:2] * X[:, :2] / X[:, 2:] + K[2:]
        assert np.max(np.abs(uv - c.pixels_j[: c.consistent])) < 6 * run.pixel_noise
        assert np.isnan(c.points_j[c.consistent :]).all()
        # ... which is far from the truth: an edge measuring it is a false loop
        edge = LoopEdge(c.i, c.j, c.R, c.t, np.eye(6), c.consistent, len(c.landmarks_i), 1.0)
        assert loop_is_wrong(run, edge)
        assert set(c.landmarks_j) <= set(run.obs_landmark[run.obs_frame == c.j])


def test_loose_gnc_admits_a_false_loop_rejects_it_and_is_not_worse(run):
    """Strict rejects the aliased candidate, loose admits it as a false loop, GNC rejects exactly that one; the
    correct loops are all kept, the global BA runs on them alone, and the ATE is no worse than strict's."""
    out = {}
    vo = None
    for policy in LOOP_POLICIES:
        res = run_pipeline(run, "fp64", _with_policy(ALIASED, policy).pipeline, 2, vo=vo)
        vo = res.vo
        out[policy] = res
    strict, loose = out["strict"], out["loose+gnc"]
    assert strict.aliased_candidates == loose.aliased_candidates >= 1
    assert strict.wrong == 0 and strict.rejected == 0  # plain least squares rejects nothing
    assert loose.wrong >= 1 and loose.accepted > strict.accepted
    assert loose.rejected_wrong == loose.wrong == loose.rejected and loose.wrong_kept == 0
    assert np.array_equal(loose.loop_rejected, loose.loop_wrong)
    assert loose.gba is not None and loose.gba.ok
    kept = [e for e, r in zip(loose.loops, loose.loop_rejected) if not r]
    assert loose.gba.fused == fuse_tracks(run, ALIASED.pipeline.vo.window, kept)[1]
    e = {p: float(np.sqrt(np.mean(ate(run.R_wc, run.t_wc, r.lc_R, r.lc_t) ** 2))) for p, r in out.items()}
    assert e["loose+gnc"] <= 1.001 * e["strict"], e


def test_strict_keeps_a_strong_false_loop_that_gnc_rejects():
    """With aliased matches that pass the strict verification too, strict fuses the false loops (metres of
    error) and loose+gnc rejects them; the study's rows carry the counts."""
    rows = {p: run_trajectory(4, ("fp64",), _with_policy(ALIASED, p))["policies"]["fp64"] for p in LOOP_POLICIES}
    strict, loose = rows["strict"], rows["loose+gnc"]
    assert strict["loop_policy"] == "strict" and loose["loop_policy"] == "loose+gnc"
    assert strict["loop_candidates_aliased"] == loose["loop_candidates_aliased"] >= 1
    assert strict["loops_wrong_kept"] == strict["loops_wrong"] >= 1 and strict["loops_rejected"] == 0
    assert loose["loops_wrong"] >= 1 and loose["loops_wrong_kept"] == 0
    assert loose["loops_rejected"] == loose["loops_rejected_wrong"] == loose["loops_wrong"]
    assert strict["ate_lc_rmse"] > 0.3 and loose["ate_lc_rmse"] < 0.05


def test_fuse_tracks_merges_the_landmarks_a_wrong_match_associated(run):
    """A loop edge's j side is ``landmarks_j`` when given: a wrong association merges two landmarks' tracks,
    which is why the pipeline keeps the loops GNC rejected out of the global BA."""
    window = CFG.pipeline.vo.window
    i, j = 10, 120
    a = run.obs_landmark[run.obs_frame == i][0]
    b = np.setdiff1d(run.obs_landmark[run.obs_frame == j], run.obs_landmark[run.obs_frame == i])[0]
    obs_i = np.flatnonzero((run.obs_frame == i) & (run.obs_landmark == a))[0]
    obs_j = np.flatnonzero((run.obs_frame == j) & (run.obs_landmark == b))[0]
    base, none = fuse_tracks(run, window, [])
    same = LoopEdge(i, j, np.eye(3), np.zeros(3), np.eye(6), 1, 1, 1.0, np.array([a]))
    by_id, n_id = fuse_tracks(run, window, [same])
    wrong = LoopEdge(i, j, np.eye(3), np.zeros(3), np.eye(6), 1, 1, 1.0, np.array([a]), np.array([b]))
    fused, n_wrong = fuse_tracks(run, window, [wrong])
    assert base[obs_i] != base[obs_j] and by_id[obs_i] != by_id[obs_j] and none == n_id == 0
    assert fused[obs_i] == fused[obs_j] and n_wrong == 1
