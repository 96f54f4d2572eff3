"""The SLAM pipeline end to end on a small simulated flat: determinism, loop closure, mixed = fp64, study, CLI."""
import json
from dataclasses import replace

import numpy as np
import pytest

from mixslam.cli import main
from mixslam.eval import ate
from mixslam.sim.world import TrajectoryConfig
from mixslam.slam.study import demo_config, run_study, run_trajectory, trajectory_seed

SHORT = replace(demo_config(), trajectory=TrajectoryConfig(keyframes=60))


@pytest.fixture(scope="module")
def demo_run():
    return run_trajectory(0, ("fp64", "mixed"), demo_config(), keep=True)


def test_loop_closure_lowers_ate_and_rejects_false_loops(demo_run):
    p = demo_run["policies"]["fp64"]
    # No false loop (measurement off the truth) admitted, none left. The default loose verification admits
    # one candidate that is not a true revisit (a nearby place seen from 1-2 m) but measures it correctly.
    assert p["loops_accepted"] > 5 and p["loops_wrong"] == 0 and p["loops_wrong_kept"] == 0
    assert p["loops_accepted_false"] <= 1 and p["loops_rejected"] == 0
    assert p["ate_lc"]["mean"] < p["ate_vo"]["mean"] and p["ate_lc"]["max"] < p["ate_vo"]["max"]
    assert p["ba_not_converged"] == 0 and p["fp16_overflows"] == 0
    # The monocular scale is 2.5% off on this run; with it aligned away (Sim(3)), loop closure removes at
    # least a quarter of the error.
    run, res = demo_run["_objects"]["run"], demo_run["_objects"]["results"]["fp64"]
    rmse = {s: float(np.sqrt(np.mean(ate(run.R_wc, run.t_wc, R, t, mode="sim3") ** 2)))
            for s, (R, t) in {"vo": (res.vo_R, res.vo_t), "lc": (res.lc_R, res.lc_t)}.items()}
    assert rmse["lc"] < 0.75 * rmse["vo"], rmse


def test_mixed_matches_fp64(demo_run):
    ref, mix = demo_run["policies"]["fp64"], demo_run["policies"]["mixed"]
    for stage in ("vo", "lc"):
        assert abs(mix[f"ate_{stage}_rmse"] / ref[f"ate_{stage}_rmse"] - 1) < 0.01
    assert mix["fp16_overflows"] == 0 and mix["fallbacks"] == 0


def test_trajectory_is_deterministic_per_seed():
    a = run_trajectory(5, ("fp64",), SHORT)
    b = run_trajectory(5, ("fp64",), SHORT)
    c = run_trajectory(6, ("fp64",), SHORT)
    assert a["policies"]["fp64"]["errors_vo"] == b["policies"]["fp64"]["errors_vo"]
    assert a["policies"]["fp64"]["errors_vo"] != c["policies"]["fp64"]["errors_vo"]
    assert trajectory_seed(0, 1) != trajectory_seed(0, 2) and trajectory_seed(0, 1) == trajectory_seed(0, 1)


def test_study_does_not_depend_on_workers():
    one = run_study(2, 3, ("fp64",), SHORT, workers=1)
    two = run_study(2, 3, ("fp64",), SHORT, workers=2)

    def key(r):
        return [(t["seed"], t["ate_vo_rmse"], t["ate_lc_rmse"]) for t in r["policies"]["fp64"]["trajectories"]]

    assert key(one) == key(two)
    for stage in ("ate_vo", "ate_lc"):
        assert set(one["policies"]["fp64"][stage]) >= {"max", "p99", "p90", "mean", "median", "rmse"}
    # the VO windows' solve times: per trajectory and pooled over the study, against the 100 ms budget
    pooled = one["policies"]["fp64"]["vo_window_time_s"]
    rows = one["policies"]["fp64"]["trajectories"]
    per = [t["vo_window_time_s"] for t in rows]
    assert pooled["count"] == sum(p["count"] for p in per) == sum(t["ba_solves"] for t in rows) > 0
    assert pooled["budget"] == 0.1 and pooled["over_budget"] == sum(p["over_budget"] for p in per)
    assert 0 < pooled["median"] <= pooled["p99"] <= pooled["max"] == max(p["max"] for p in per)
    assert all("vo_window_seconds" not in t for t in rows)  # the raw list stays out of the rows


def _rows(report, policy="fp64"):
    return [(t["seed"], t["ate_vo_rmse"], t["ate_lc_rmse"]) for t in report["policies"][policy]["trajectories"]]


def test_an_interrupted_study_reports_the_trajectories_that_finished(monkeypatch):
    """Ctrl-C during the second of three trajectories: the partial report is the normal report of the first."""
    import mixslam.slam.study as study
    from mixslam.runner import BatchInterrupted
    real, calls = study.run_trajectory, []

    def second_is_interrupted(*args):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(study, "run_trajectory", second_is_interrupted)
    with pytest.raises(BatchInterrupted) as stop:
        run_study(3, 3, ("fp64",), SHORT, workers=1)
    monkeypatch.undo()
    part, whole = stop.value.report, run_study(1, 3, ("fp64",), SHORT, workers=1)
    assert len(calls) == 2 and (stop.value.done, stop.value.total) == (1, 3)
    assert part["interrupted"] is True and whole["interrupted"] is False
    assert (part["trajectories"], part["trajectories_finished"]) == (3, 1)
    assert (whole["trajectories"], whole["trajectories_finished"]) == (1, 1)
    assert set(part) == set(whole) and set(part["policies"]["fp64"]) == set(whole["policies"]["fp64"])
    assert _rows(part) == _rows(whole) and part["policies"]["fp64"]["ate_lc"] == whole["policies"]["fp64"]["ate_lc"]


def test_a_study_interrupted_before_any_trajectory_finished_still_reports(monkeypatch):
    import mixslam.slam.study as study
    from mixslam.runner import BatchInterrupted

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(study, "run_trajectory", interrupted)
    with pytest.raises(BatchInterrupted) as stop:
        run_study(2, 0, ("fp64", "mixed"), SHORT)
    rep = stop.value.report
    assert rep["interrupted"] is True and (rep["trajectories"], rep["trajectories_finished"]) == (2, 0)
    for name in ("fp64", "mixed"):  # no statistics of nothing, no ratios
        assert rep["policies"][name] == {"ate_vo": None, "ate_pgo": None, "ate_lc": None, "vo_window_time_s": None,
                                         "loops": None, "trajectories": []}
    json.dumps(rep, allow_nan=False)


def test_sim_cli_report_and_histograms(tmp_path, capsys):
    rep = tmp_path / "r.json"
    rc = main(["sim", "--trajectories", "2", "--keyframes", "60", "--window", "20", "--precision", "fp64,mixed",
               "--out", str(tmp_path / "h"), "--report", str(rep), "-q"])
    assert rc == 0
    data = json.loads(rep.read_text())
    for name in ("fp64", "mixed"):
        d = data["policies"][name]
        assert {"ate_vo", "ate_lc", "trajectories"} <= set(d)
        assert {"seed", "ate_vo_rmse", "ate_lc_rmse"} <= set(d["trajectories"][0])
        assert np.isfinite(d["ate_vo"]["rmse"])
    assert "ratio_to_fp64_vo" in data["policies"]["mixed"]
    for stage in ("vo", "lc"):
        assert (tmp_path / "h" / f"ate_{stage}_cdf.png").stat().st_size > 0
        assert (tmp_path / "h" / f"ate_{stage}_cdf.csv").read_text().startswith("policy,value,cdf")
    assert data["config"]["pipeline"]["wheel_odometry"] is True
    assert data["interrupted"] is False and data["trajectories_finished"] == data["trajectories"] == 2
    assert main(["sim", "--precision", "fp8"]) == 2
    assert "unknown precision" in capsys.readouterr().err


def test_sim_cli_without_wheel_odometry(tmp_path, capsys):
    rep = tmp_path / "r.json"
    assert main(["sim", "--trajectories", "1", "--keyframes", "40", "--window", "20", "--precision", "fp64",
                 "--no-wheel-odometry", "--report", str(rep)]) == 0
    data = json.loads(rep.read_text())
    assert data["config"]["pipeline"]["wheel_odometry"] is False
    w = data["policies"]["fp64"]["vo_window_time_s"]
    out = capsys.readouterr().out
    assert f"VO window solve median {1e3 * w['median']:.1f} ms" in out and f"of {w['count']} over 100 ms" in out


def test_demo_writes_files(tmp_path, capsys):
    from mixslam.demo import run_demo
    assert run_demo(out=str(tmp_path), policies=("fp64",)) == 0
    out = capsys.readouterr().out
    assert "fp64 VO" in out and "mean" in out
    for name in ("groundtruth.tum", "fp64_vo.tum", "fp64_lc.tum", "fp64_graph.g2o", "top_view_fp64.png",
                 "error_over_time.png", "ate_table.png", "report.json"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_wheel_odometry_edges_are_added():
    from mixslam.sim.world import make_world, simulate_run
    from mixslam.slam.pipeline import run_pipeline
    cfg = demo_config()
    run = simulate_run(make_world(cfg.world, 0), TrajectoryConfig(keyframes=40), cfg.camera, 0)
    plain = run_pipeline(run, "fp64", replace(cfg.pipeline, wheel_odometry=False), 0)
    both = run_pipeline(run, "fp64", replace(cfg.pipeline, wheel_odometry=True), 0, vo=plain.vo)
    n = len(run.R_wc)
    assert plain.graph.num_edges == n - 1 + plain.accepted
    assert both.graph.num_edges == 2 * (n - 1) + both.accepted
    assert np.isfinite(both.lc_t).all()
