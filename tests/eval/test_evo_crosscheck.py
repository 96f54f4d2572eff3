"""Cross-check of mixslam.eval against evo (``pip install evo``; skipped without it).

evo is GPL-3.0: it is only called here, as an external reference, never copied into mixslam.
"""
from __future__ import annotations

import numpy as np
import pytest

from mixslam.eval import align_trajectory, ate, ate_rotation, rpe, stats
from mixslam.lie import so3

evo_metrics = pytest.importorskip("evo.core.metrics")
evo_trajectory = pytest.importorskip("evo.core.trajectory")
from evo.core.units import Unit  # noqa: E402

N = 120


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(42)
    R = so3.exp(np.cumsum(rng.normal(scale=0.1, size=(N, 3)), axis=0))
    t = np.cumsum(rng.normal(scale=0.5, size=(N, 3)), axis=0)
    Ra, ta, sa = so3.exp(rng.normal(size=3)), rng.normal(size=3) * 3, 0.8
    est_R = Ra @ R @ so3.exp(rng.normal(scale=0.02, size=(N, 3)))
    est_t = sa * (t + rng.normal(scale=0.05, size=t.shape)) @ Ra.T + ta
    return R, t, est_R, est_t, np.arange(N) * 0.1


def _evo(R, t, stamps):
    q = so3.to_quaternion(R)  # x y z w
    return evo_trajectory.PoseTrajectory3D(positions_xyz=t.copy(), orientations_quat_wxyz=q[:, [3, 0, 1, 2]],
                                           timestamps=stamps.copy())


def _compare(ours: dict, theirs: dict, errors_ours, errors_theirs, rtol=1e-9, atol=1e-12):
    np.testing.assert_allclose(errors_ours, errors_theirs, rtol=rtol, atol=atol)
    for k in ("max", "mean", "median", "rmse"):
        assert ours[k] == pytest.approx(theirs[k], rel=rtol, abs=atol), k


@pytest.mark.parametrize("mode", ["se3", "sim3"])
def test_ate_matches_evo_ape(pair, mode):
    R, t, est_R, est_t, stamps = pair
    ref, est = _evo(R, t, stamps), _evo(est_R, est_t, stamps)
    r, tr, s = est.align(ref, correct_scale=(mode == "sim3"))
    _, _, (r2, t2, s2) = align_trajectory(R, t, est_R, est_t, mode)
    np.testing.assert_allclose(r2, r, atol=1e-10)
    np.testing.assert_allclose(t2, tr, atol=1e-10)
    assert s2 == pytest.approx(s, rel=1e-10)

    ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    e = ate(R, t, est_R, est_t, mode)
    _compare(stats(e), ape.get_all_statistics(), e, ape.error)

    ape_rot = evo_metrics.APE(evo_metrics.PoseRelation.rotation_angle_deg)
    ape_rot.process_data((ref, est))
    e = ate_rotation(R, t, est_R, est_t, mode)
    _compare(stats(e), ape_rot.get_all_statistics(), e, ape_rot.error, rtol=1e-6, atol=1e-6)


def test_rpe_matches_evo_rpe(pair):
    R, t, est_R, est_t, stamps = pair
    ref, est = _evo(R, t, stamps), _evo(est_R, est_t, stamps)
    tr, rot = rpe(R, t, est_R, est_t, delta=1)
    for relation, ours, tol in ((evo_metrics.PoseRelation.translation_part, tr, 1e-9),
                                (evo_metrics.PoseRelation.rotation_angle_deg, rot, 1e-6)):
        m = evo_metrics.RPE(relation, delta=1, delta_unit=Unit.frames, all_pairs=False)
        m.process_data((ref, est))
        _compare(stats(ours), m.get_all_statistics(), ours, m.error, rtol=tol, atol=tol)
    # delta > 1: ours uses all overlapping pairs, evo's all_pairs=True does too.
    tr3, rot3 = rpe(R, t, est_R, est_t, delta=3)
    m = evo_metrics.RPE(evo_metrics.PoseRelation.translation_part, delta=3, delta_unit=Unit.frames, all_pairs=True)
    m.process_data((ref, est))
    _compare(stats(tr3), m.get_all_statistics(), tr3, m.error)


def test_associate_matches_evo_on_jittered_stamps():
    from evo.core import sync

    from mixslam.eval import associate

    # Reference stamps 0.1 s apart (> 2 max_difference): evo's nearest-per-reference matching is then one to
    # one as well and the two agree. (At 30 Hz with 15 ms jitter evo matches some estimated stamps to two
    # reference stamps; ours never does.)
    rng = np.random.default_rng(3)
    t_ref = 50.0 + np.arange(300) * 0.1
    t_est = np.sort(np.concatenate([t_ref[::3] + rng.uniform(-0.015, 0.015, 100), [0.0, 1e4]]))
    i1, i2 = sync.matching_time_indices(t_ref, t_est, max_diff=0.02)
    r1, r2 = associate(t_ref, t_est, max_difference=0.02)
    assert r1.size == 100 and r1.tolist() == list(i1) and r2.tolist() == list(i2)
