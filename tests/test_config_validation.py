"""One validation style: every configuration dataclass checks itself when constructed and raises ConfigError
naming ``Class.field``; the library entry points refuse bad seeds with a ConfigError naming the argument."""
import dataclasses
import math

import pytest

from mixslam.bench.config import BenchConfig, BenchSizes
from mixslam.errors import ConfigError, check_seed
from mixslam.sim.bundle import WindowConfig, simulate_window
from mixslam.sim.pose_graph import simulate_pose_graph
from mixslam.sim.world import CameraConfig, LoopConfig, TrajectoryConfig, WorldConfig, make_world
from mixslam.slam.global_ba import GlobalBAConfig
from mixslam.slam.loop_closure import LoopVerifyConfig
from mixslam.slam.pipeline import PipelineConfig
from mixslam.slam.study import MIN_KEYFRAMES, StudyConfig, run_study, run_trajectory, trajectory_seed, with_overrides
from mixslam.slam.vo import VOConfig

NAN = math.nan

# (class, field named in the message, bad keyword arguments)
BAD = {
    WorldConfig: [("rooms", dict(rooms=(1, 3))), ("rooms", dict(rooms=(2.5, 2))), ("rooms", dict(rooms=(True, 2))),
                  ("room_size", dict(room_size=(5.0, 4.0))), ("room_size", dict(room_size=(0.0, 4.0))),
                  ("room_size", dict(room_size=(1.0, 1.5))), ("door_width", dict(door_width=(1.3,))),
                  ("wall_height", dict(wall_height=0.0)), ("extra_door_prob", dict(extra_door_prob=1.5)),
                  ("wall_density", dict(wall_density=-1.0)), ("ceiling_density", dict(ceiling_density=NAN)),
                  ("furniture_per_room", dict(furniture_per_room=-1)), ("route_clearance", dict(route_clearance=-0.1))],
    CameraConfig: [("fx", dict(fx=0.0)), ("fy", dict(fy=-1.0)), ("cx", dict(cx=NAN)), ("width", dict(width=0)),
                   ("max_range", dict(max_range=0.1)), ("min_depth", dict(min_depth=-0.2)),
                   ("pixel_noise", dict(pixel_noise=-1.0)), ("outlier_fraction", dict(outlier_fraction=1.5))],
    TrajectoryConfig: [("keyframes", dict(keyframes=1)), ("keyframes", dict(keyframes=-5)),
                       ("keyframes", dict(keyframes=10.5)), ("laps", dict(laps=0.0)), ("speed", dict(speed=0.0)),
                       ("planar", dict(planar="yes")), ("lateral_wobble", dict(lateral_wobble=-0.1)),
                       ("odometry_noise", dict(odometry_noise=(0.1,))),
                       ("odometry_noise", dict(odometry_noise=(0.1, -0.1)))],
    LoopConfig: [("recall", dict(recall=2.0)), ("false_positive_rate", dict(false_positive_rate=-0.1)),
                 ("min_separation", dict(min_separation=-1)), ("max_distance", dict(max_distance=-1.0)),
                 ("max_angle", dict(max_angle=200.0))],
    WindowConfig: [("keyframes", dict(keyframes=1)), ("landmarks_per_frame", dict(landmarks_per_frame=0)),
                   ("pixel_noise", dict(pixel_noise=-1.0)), ("image_size", dict(image_size=(640, 0))),
                   ("fx", dict(fx=0.0)), ("fy", dict(fy=-1.0)), ("cx", dict(cx=NAN)), ("speed", dict(speed=0.0)),
                   ("pose_noise", dict(pose_noise=(0.1,))), ("point_noise", dict(point_noise=-1.0)),
                   ("fixed_frames", dict(fixed_frames=60)), ("min_observations", dict(min_observations=51)),
                   ("track_length", dict(track_length=(5, 2)))],
    VOConfig: [("window", dict(window=1)), ("fixed", dict(fixed=0)), ("fixed", dict(window=5, fixed=5)),
               ("ba_every", dict(ba_every=0)), ("max_iterations", dict(max_iterations=0)),
               ("bootstrap_baseline", dict(bootstrap_baseline=0)), ("cg_max_iterations", dict(cg_max_iterations=0)),
               ("function_tolerance", dict(function_tolerance=-1e-8)), ("min_parallax_deg", dict(min_parallax_deg=NAN)),
               ("gate", dict(gate=0.0)), ("odometry_scale", dict(odometry_scale="no"))],
    GlobalBAConfig: [("enabled", dict(enabled="no")), ("max_iterations", dict(max_iterations=0)),
                     ("rounds", dict(rounds=0)), ("gate", dict(gate=NAN)),
                     ("min_observations", dict(min_observations=-1)), ("association", dict(association="ids"))],
    LoopVerifyConfig: [("min_inliers", dict(min_inliers=2)), ("min_inlier_ratio", dict(min_inlier_ratio=1.5)),
                       ("inlier_px", dict(inlier_px=0.0)), ("information_inflation", dict(information_inflation=-1.0))],
    PipelineConfig: [("vo", dict(vo=None)), ("loops", dict(loops=VOConfig())),
                     ("odometry_sigma", dict(odometry_sigma=(0.01, 0.0))),
                     ("odometry_sigma", dict(odometry_sigma=0.01)),
                     ("wheel_odometry", dict(wheel_odometry=None)), ("pgo_max_iterations", dict(pgo_max_iterations=0)),
                     ("pgo_min_gap", dict(pgo_min_gap=-1))],
    StudyConfig: [("world", dict(world=None)), ("align", dict(align="sim2")),
                  ("trajectory.keyframes", dict(trajectory=TrajectoryConfig(keyframes=MIN_KEYFRAMES - 1)))],
    BenchSizes: [("vo_trajectories", dict(vo_trajectories=0)), ("vo_keyframes", dict(vo_keyframes=2)),
                 ("vo_window", dict(vo_window=1)), ("vo_rooms", dict(vo_rooms=(1, 2))),
                 ("pgo_keyframes", dict(pgo_keyframes=(1, 100))), ("repeats", dict(repeats=0)),
                 ("ba_window_seeds", dict(ba_window_seeds=-1)), ("use_data", dict(use_data="yes")),
                 ("pgo_files", dict(pgo_files=("intel.g2o", 3)))],
    BenchConfig: [("scale", dict(scale="huge")), ("seed", dict(seed=-1)), ("workers", dict(workers=0)),
                  ("executor", dict(executor="threads")), ("figures", dict(figures=(9,))),
                  ("figures", dict(figures=())),
                  ("scheduler", dict(scheduler="tcp://localhost:8786")), ("sizes", dict(sizes=None))],
}
CASES = [(cls, name, kw) for cls, rows in BAD.items() for name, kw in rows]


@pytest.mark.parametrize("cls,name,kwargs", CASES,
                         ids=[f"{c.__name__}-{'-'.join(map(str, kw))}" for c, _, kw in CASES])
def test_bad_value_names_class_and_field(cls, name, kwargs):
    with pytest.raises(ConfigError) as exc:
        cls(**kwargs)
    assert f"{cls.__name__}.{name}" in str(exc.value)
    assert isinstance(exc.value, ValueError)  # callers that caught ValueError still do


@pytest.mark.parametrize("cls", list(BAD))
def test_defaults_are_valid_and_replace_revalidates(cls):
    cfg = cls()
    assert dataclasses.replace(cfg) == cfg
    name, kwargs = BAD[cls][0]
    with pytest.raises(ConfigError, match=f"{cls.__name__}.{name}"):
        dataclasses.replace(cfg, **kwargs)


def test_defaults_unchanged():
    # the values every published number was measured with
    assert TrajectoryConfig().keyframes == 300 and VOConfig().window == 50 and VOConfig().fixed == 5
    assert WindowConfig().keyframes == 50 and LoopConfig().min_separation == 50
    assert LoopVerifyConfig().min_inliers == 20 and GlobalBAConfig().rounds == 2
    assert PipelineConfig().odometry_sigma == (0.01, 0.005) and StudyConfig().align == "se3"


def test_numpy_scalars_and_optional_fields_are_accepted():
    import numpy as np
    assert TrajectoryConfig(keyframes=np.int64(5)).keyframes == 5
    assert TrajectoryConfig(keyframes=None, laps=1.5).keyframes is None
    assert WindowConfig(fy=None, cx=None, cy=None, track_length=(2, 5)).track_length == (2, 5)
    assert CameraConfig(fx=np.float64(300.0), cx=-5.0).cx == -5.0
    assert StudyConfig(trajectory=TrajectoryConfig(keyframes=2), align="none").trajectory.keyframes == 2


@pytest.mark.parametrize("call,where", [
    (lambda: make_world(WorldConfig(), -1), "make_world"),
    (lambda: simulate_window(WindowConfig(keyframes=8, landmarks_per_frame=30, fixed_frames=2), seed=-3),
     "simulate_window"),
    (lambda: simulate_pose_graph("circle", 10, seed=-1), "simulate_pose_graph"),
    (lambda: trajectory_seed(-1, 0), "trajectory_seed"),
    (lambda: run_trajectory(-1, ("fp64",)), "run_trajectory"),
    (lambda: run_study(1, seed=-1, policies=("fp64",), workers=2), "run_study"),
    (lambda: run_study(1, seed=1.5, policies=("fp64",)), "run_study"),
])
def test_bad_seed_names_the_entry_point(call, where):
    with pytest.raises(ConfigError, match=f"{where}: seed must be an integer >= 0"):
        call()


def test_run_study_checks_everything_before_starting_workers():
    with pytest.raises(ConfigError, match="run_study: trajectories"):
        run_study(0, policies=("fp64",), workers=2)
    with pytest.raises(ConfigError, match="run_study: workers"):
        run_study(1, policies=("fp64",), workers=0)
    with pytest.raises(ConfigError, match="run_study: policies"):
        run_study(1, policies=("fp8",), workers=2)
    with pytest.raises(ConfigError, match="run_trajectory: policies"):
        run_trajectory(0, ())


def test_run_demo_refuses_a_bad_seed_before_writing(tmp_path):
    from mixslam.demo import run_demo
    with pytest.raises(ConfigError, match="run_demo: seed"):
        run_demo(out=str(tmp_path / "demo"), seed=-1, quiet=True)
    assert not (tmp_path / "demo").exists()


def test_with_overrides_goes_through_the_configs_rules():
    with pytest.raises(ConfigError, match="TrajectoryConfig.keyframes"):
        with_overrides(StudyConfig(), keyframes=1)
    with pytest.raises(ConfigError, match="StudyConfig.trajectory.keyframes"):
        with_overrides(StudyConfig(), keyframes=MIN_KEYFRAMES - 1)
    with pytest.raises(ConfigError, match="VOConfig.window"):
        with_overrides(StudyConfig(), window=1)
    cfg = with_overrides(StudyConfig(), keyframes=MIN_KEYFRAMES, window=2)
    assert cfg.trajectory.keyframes == MIN_KEYFRAMES and cfg.pipeline.vo.window == 2 and cfg.pipeline.vo.fixed == 1


def test_check_seed():
    assert check_seed(7) == 7 and check_seed(0) == 0
    for bad in (-1, True, 1.0, "3", None):
        with pytest.raises(ConfigError, match="myseed must be an integer >= 0"):
            check_seed(bad, "myseed")
