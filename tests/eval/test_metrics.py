"""Tests of mixslam.eval.metrics: ATE, RPE, statistics, association, evaluate_files and ``mixslam eval``."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import least_squares

from mixslam.cli import main
from mixslam.errors import ConfigError, InputFormatError, NonFiniteError
from mixslam.eval import EvaluationError, associate, ate, ate_rotation, evaluate_files, rpe, stats
from mixslam.io import write_tum
from mixslam.lie import so3


def _trajectory(n=100, seed=0):
    rng = np.random.default_rng(seed)
    return so3.exp(rng.normal(size=(n, 3))), np.cumsum(rng.normal(size=(n, 3)), axis=0)


def _rz(a):
    a = np.asarray(a, dtype=float)
    return so3.exp(np.stack([np.zeros_like(a), np.zeros_like(a), a], axis=-1))


# ----------------------------------------------------------------------------------------------- stats


def test_stats_known_values():
    s = stats([3.0, 4.0])
    assert s == {"max": 4.0, "p99": pytest.approx(3.99), "p90": pytest.approx(3.9), "mean": 3.5, "median": 3.5,
                 "rmse": pytest.approx(np.sqrt(12.5)), "n": 2}
    e = np.arange(101.0)  # percentiles of 0..100 are the values themselves
    s = stats(e)
    assert s["p99"] == pytest.approx(99.0) and s["p90"] == pytest.approx(90.0) and s["median"] == 50.0
    assert s["max"] == 100.0 and s["mean"] == 50.0 and s["n"] == 101
    assert s["rmse"] == pytest.approx(np.sqrt(np.sum(e ** 2) / 101))
    s = stats([2.0])
    assert all(s[k] == 2.0 for k in ("max", "p99", "p90", "mean", "median", "rmse")) and s["n"] == 1
    assert isinstance(s["n"], int) and isinstance(s["rmse"], float)
    json.dumps(s)


def test_stats_bad_input():
    with pytest.raises(EvaluationError, match="empty"):
        stats([])
    with pytest.raises(ValueError, match="1-D"):
        stats(np.zeros((2, 2)))
    with pytest.raises(NonFiniteError):
        stats([1.0, np.nan])


# ----------------------------------------------------------------------------------------------- ATE


@pytest.mark.parametrize("mode", ["se3", "sim3"])
def test_ate_zero_for_transformed_copy(mode):
    R, t = _trajectory()
    rng = np.random.default_rng(9)
    Ra, ta = so3.exp(rng.normal(size=3)), rng.normal(size=3) * 10
    sa = 3.0 if mode == "sim3" else 1.0
    est_R, est_t = Ra @ R, sa * t @ Ra.T + ta
    assert ate(R, t, est_R, est_t, mode).max() < 1e-11
    assert ate_rotation(R, t, est_R, est_t, mode).max() < 1e-9
    assert stats(ate(R, t, est_R, est_t, "none"))["rmse"] > 1.0
    assert ate_rotation(R, t, est_R, est_t, "none").min() > 1.0
    if mode == "sim3":  # a rigid alignment cannot undo the scale
        assert stats(ate(R, t, est_R, est_t, "se3"))["rmse"] > 0.1


def test_ate_constant_offset():
    R, t = _trajectory()
    off = np.array([0.06, 0.0, -0.08])  # norm 0.1
    s = stats(ate(R, t, R, t + off, "none"))
    for k in ("max", "p99", "p90", "mean", "median", "rmse"):
        assert s[k] == pytest.approx(0.1, abs=1e-14)
    assert ate(R, t, R, t + off, "se3").max() < 1e-12
    assert ate_rotation(R, t, R, t + off, "none").max() == 0.0


def test_ate_single_outlier():
    R, t = _trajectory()
    est_t = t.copy()
    est_t[37] += [0.0, 1.0, 0.0]
    s = stats(ate(R, t, R, est_t, "none"))
    assert s["max"] == 1.0 and s["median"] == 0.0 and s["p90"] == 0.0
    assert s["mean"] == pytest.approx(0.01) and s["rmse"] == pytest.approx(0.1)
    assert s["p99"] == pytest.approx(0.01)  # position 0.99 * 99 = 98.01 between 0 and 1
    # se3: compare with an independent least-squares fit of (rotation vector, translation).
    def resid(x):
        return (t - (est_t @ so3.exp(x[:3]).T + x[3:])).ravel()
    sol = least_squares(resid, np.zeros(6), xtol=1e-15, ftol=1e-15, gtol=1e-15)
    expected = np.linalg.norm(sol.fun.reshape(-1, 3), axis=1)
    got = ate(R, t, R, est_t, "se3")
    assert np.abs(got - expected).max() < 1e-9
    assert got.max() < 1.0 and stats(got)["rmse"] < 0.1


def test_ate_rotation_angles():
    R, t = _trajectory(20)
    angles = np.linspace(0.0, np.pi, 20)
    est_R = R @ _rz(angles)
    got = ate_rotation(R, t, est_R, t, "none")
    assert np.abs(got - np.degrees(angles)).max() < 1e-9
    assert got[-1] == pytest.approx(180.0, abs=1e-9)


# ----------------------------------------------------------------------------------------------- RPE


def test_rpe_constant_translation_drift():
    R, t = _trajectory(50)
    d = np.array([0.0, 0.6, 0.8])
    est_t = t + np.arange(50)[:, None] * 0.01 * d  # 0.01 m more per step, in the world frame
    tr, rot = rpe(R, t, R, est_t)
    assert tr.shape == (49,) and rot.shape == (49,)
    assert np.abs(tr - 0.01).max() < 1e-12 and rot.max() < 1e-6
    tr2, _ = rpe(R, t, R, est_t, delta=2)
    assert tr2.shape == (48,) and np.abs(tr2 - 0.02).max() < 1e-12
    # A rigid transform of the estimate changes nothing.
    Ra, ta = so3.exp(np.array([0.3, -1.0, 2.0])), np.array([5.0, 6.0, 7.0])
    tr3, rot3 = rpe(R, t, Ra @ R, est_t @ Ra.T + ta)
    assert np.abs(tr3 - tr).max() < 1e-11 and rot3.max() < 1e-6


def test_rpe_constant_rotation_drift():
    n, theta = 30, 0.02
    phi = np.random.default_rng(0).normal(size=n)
    ref_R, est_R = _rz(phi), _rz(phi + theta * np.arange(n))
    z = np.zeros((n, 3))
    tr, rot = rpe(ref_R, z, est_R, z)
    assert tr.max() == 0.0 and np.abs(rot - np.degrees(theta)).max() < 1e-9


def test_rpe_matches_4x4_loop():
    R, t = _trajectory(15, seed=1)
    eR, et = _trajectory(15, seed=2)

    def T(Ri, ti):
        M = np.eye(4)
        M[:3, :3], M[:3, 3] = Ri, ti
        return M

    for delta in (1, 3):
        tr, rot = rpe(R, t, eR, et, delta)
        for i in range(15 - delta):
            j = i + delta
            E = np.linalg.inv(np.linalg.inv(T(R[i], t[i])) @ T(R[j], t[j])) @ (
                np.linalg.inv(T(eR[i], et[i])) @ T(eR[j], et[j]))
            assert tr[i] == pytest.approx(np.linalg.norm(E[:3, 3]), rel=1e-10)
            c = np.clip((np.trace(E[:3, :3]) - 1) / 2, -1, 1)
            assert rot[i] == pytest.approx(np.degrees(np.arccos(c)), abs=1e-6)


def test_rpe_errors():
    R, t = _trajectory(5)
    with pytest.raises(EvaluationError, match="more than 5"):
        rpe(R, t, R, t, delta=5)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError):
            rpe(R, t, R, t, delta=bad)


# ----------------------------------------------------------------------------------------------- associate


def test_associate_exact_and_jittered():
    rng = np.random.default_rng(4)
    t_ref = np.arange(200) * 0.1 + 1000.0
    idx_r, idx_e = associate(t_ref, t_ref.copy())
    assert np.array_equal(idx_r, np.arange(200)) and np.array_equal(idx_e, np.arange(200))
    # The estimate: every other reference stamp, jittered by up to 15 ms, shuffled, plus far-away stamps.
    keep = np.arange(0, 200, 2)
    t_est = np.concatenate([t_ref[keep] + rng.uniform(-0.015, 0.015, keep.size), [0.0, 5000.0]])
    perm = rng.permutation(t_est.size)
    idx_r, idx_e = associate(t_ref, t_est[perm], max_difference=0.02)
    assert np.array_equal(idx_r, keep)
    assert np.array_equal(perm[idx_e], np.arange(keep.size))
    assert idx_r.dtype == np.int64 and idx_e.dtype == np.int64
    assert associate(t_ref, t_est, max_difference=0.001)[0].size < keep.size


def test_associate_one_to_one_nearest_first():
    # 0.10 is nearest to 0.105 (0.005) and to 0.098 (0.002): the closer pair wins, then 0.105 pairs with 0.11.
    idx_r, idx_e = associate([0.10, 0.11, 0.5], [0.105, 0.098, 0.3], max_difference=0.02)
    assert idx_r.tolist() == [0, 1] and idx_e.tolist() == [1, 0]
    # The boundary is inclusive; exact duplicates are used once.
    assert associate([1.0], [1.25], max_difference=0.25)[0].tolist() == [0]
    idx_r, idx_e = associate([1.0, 1.0], [1.0], max_difference=0.0)
    assert idx_r.tolist() == [0] and idx_e.tolist() == [0]
    assert associate([], [1.0])[0].size == 0
    with pytest.raises(ConfigError):
        associate([1.0], [1.0], max_difference=-1)
    with pytest.raises(NonFiniteError):
        associate([np.nan], [1.0])


# ----------------------------------------------------------------------------------------------- files, CLI


@pytest.fixture()
def tum_pair(tmp_path):
    R, t = _trajectory(60, seed=5)
    rng = np.random.default_rng(6)
    stamps = 100.0 + np.arange(60) / 30.0
    Ra, ta = so3.exp(np.array([0.1, 0.2, 2.5])), np.array([1.0, -2.0, 0.5])
    est_t = 0.5 * (t + rng.normal(scale=0.01, size=t.shape)) @ Ra.T + ta
    ref, est = tmp_path / "ref.tum", tmp_path / "est.tum"
    write_tum(ref, R, t, stamps)
    write_tum(est, Ra @ R, est_t, stamps + rng.uniform(-0.005, 0.005, 60))
    return ref, est, (R, t, Ra @ R, est_t)


def test_evaluate_files_round_trip(tum_pair):
    ref, est, (R, t, eR, et) = tum_pair
    res = evaluate_files(ref, est, align="sim3")
    assert res["matched"] == 60 and res["reference_poses"] == 60 and res["estimated_poses"] == 60
    for key in ("ate", "ate_rot_deg", "rpe_trans", "rpe_rot_deg"):
        assert set(res[key]) == {"max", "p99", "p90", "mean", "median", "rmse", "n"}
    assert res["ate"] == pytest.approx(stats(ate(R, t, eR, et, "sim3")), rel=1e-9)
    assert res["ate"]["rmse"] < 0.03 and res["alignment"]["scale"] == pytest.approx(2.0, rel=1e-2)
    assert res["alignment"]["mode"] == "sim3" and np.asarray(res["alignment"]["rotation"]).shape == (3, 3)
    json.dumps(res)
    assert evaluate_files(ref, est, align="se3")["ate"]["rmse"] > 1.0  # the scale is wrong
    assert evaluate_files(ref, est, align="none")["ate"]["rmse"] > 1.0
    with pytest.raises(EvaluationError, match="no timestamps"):
        evaluate_files(ref, est, max_difference=0.0)
    with pytest.raises(ConfigError):
        evaluate_files(ref, est, align="bogus")


def test_cli_eval(tum_pair, tmp_path, capsys):
    ref, est, _ = tum_pair
    out = tmp_path / "eval.json"
    assert main(["eval", str(ref), str(est), "--align", "sim3", "--max-difference", "0.01", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert "60 matched poses" in lines[0] and "ATE [m]" in lines[1] and "RPE [deg]" in lines[1]
    assert [ln.split()[0] for ln in lines[2:]] == ["max", "p99", "p90", "mean", "median", "rmse", "n"]
    data = json.loads(out.read_text())
    assert data["matched"] == 60 and data["alignment"]["mode"] == "sim3"
    assert float(lines[7].split()[1]) == pytest.approx(data["ate"]["rmse"], rel=1e-5)


def test_cli_eval_bad_input(tum_pair, tmp_path, capsys):
    ref, _, _ = tum_pair
    bad = tmp_path / "bad.tum"
    bad.write_text("# t x y z qx qy qz qw\n0.0 1 2 3 0 0 0\n")
    assert main(["eval", str(ref), str(bad)]) == 2
    assert "bad.tum:2" in capsys.readouterr().err
    assert main(["eval", str(ref), str(tmp_path / "missing.tum")]) == 2
    far = tmp_path / "far.tum"
    R, t = _trajectory(5)
    write_tum(far, R, t, np.arange(5) + 1e6)
    assert main(["eval", str(ref), str(far)]) == 2
    assert "no timestamps" in capsys.readouterr().err
    with pytest.raises(InputFormatError):
        evaluate_files(ref, bad)
