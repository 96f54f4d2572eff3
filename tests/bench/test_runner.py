"""The bench's task runner: same ordered results serially, on a process pool and on a local Dask cluster."""
from dataclasses import replace

import numpy as np
import pytest

from mixslam.bench import TaskRunner, bench_config
from mixslam.errors import ConfigError
from mixslam.sim.world import TrajectoryConfig
from mixslam.slam.study import demo_config, run_study, trajectory_seed

SHORT = replace(demo_config(), trajectory=TrajectoryConfig(keyframes=40))


def seeded_task(seed, n):
    """A task that carries its own seed: its answer must not depend on where it runs."""
    return float(np.random.default_rng(seed).standard_normal(n).sum())


TASKS = [(s, 100 + s) for s in range(7)]
EXPECTED = [seeded_task(*t) for t in TASKS]


def test_serial_and_process_pool_give_the_same_ordered_results():
    assert TaskRunner("process", 1).map(seeded_task, TASKS) == EXPECTED
    with TaskRunner("process", 2) as runner:
        assert runner.map(seeded_task, TASKS) == EXPECTED
        assert runner.describe() == "process pool (2 workers)"
    assert TaskRunner().map(seeded_task, []) == []


def test_progress_bar_counts_tasks(capsys):
    import io
    stream = io.StringIO()
    TaskRunner("process", 1, progress=True, stream=stream).map(seeded_task, TASKS[:3], label="problems")
    text = stream.getvalue()
    assert "3/3 problems" in text and text.endswith("\n")


def test_bad_runner_settings_are_refused():
    with pytest.raises(ConfigError, match="executor"):
        TaskRunner("threads", 1)
    with pytest.raises(ConfigError, match="workers"):
        TaskRunner("process", 0)
    with pytest.raises(ConfigError, match="scale"):
        bench_config("huge")
    with pytest.raises(ConfigError, match="figure"):
        bench_config("quick", figures=(9,))
    with pytest.raises(ConfigError, match="scheduler"):
        bench_config("quick", scheduler="tcp://localhost:8786")


def _script_function():
    import importlib.util
    import sys
    import tempfile
    from pathlib import Path
    path = Path(tempfile.mkdtemp()) / "user_script_mixslam_test.py"
    path.write_text("import numpy as np\n\ndef seeded_task(seed, n):\n"
                    "    return float(np.random.default_rng(seed).standard_normal(n).sum())\n")
    spec = importlib.util.spec_from_file_location("user_script_mixslam_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.seeded_task


def test_dask_executor_gives_identical_results():
    pytest.importorskip("dask.distributed")
    tasks = [(s, i) for s in range(3) for i in range(3)]
    with TaskRunner("dask", 2) as runner:
        assert runner.map(trajectory_seed, tasks) == [trajectory_seed(*t) for t in tasks]
        # A function from a module the workers cannot import (a script loaded from a path) is shipped by value.
        assert runner.map(_script_function(), TASKS[:3]) == EXPECTED[:3]
        assert "dask" in runner.describe()
        by_dask = run_study(2, 4, ("fp64",), SHORT, runner=runner)
    serial = run_study(2, 4, ("fp64",), SHORT, workers=1)

    def key(r):
        return [(t["seed"], t["ate_vo_rmse"], t["ate_lc_rmse"]) for t in r["policies"]["fp64"]["trajectories"]]

    assert key(by_dask) == key(serial)
    assert by_dask["policies"]["fp64"]["ate_vo"] == serial["policies"]["fp64"]["ate_vo"]


def test_dask_missing_is_a_clear_error(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("dask"):
            raise ImportError("no dask here")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ConfigError, match=r"mixslam\[distributed\]"):
        TaskRunner("dask", 1)


def test_every_preset_is_valid_and_names_existing_data_files():
    from mixslam.data import data_dir
    for scale in ("quick", "default", "full"):
        cfg = bench_config(scale)
        assert cfg.sizes.vo_trajectories >= 1 and cfg.sizes.pgo_problems >= 1
        assert list(cfg.sizes.pgo_keyframes) == sorted(cfg.sizes.pgo_keyframes)
    full = bench_config("full").sizes
    assert full.vo_trajectories == 1703 and full.pgo_problems == 800  # the claim's sizes
    root = data_dir()
    if root is None:
        pytest.skip("benchmark data folder absent")
    for scale in ("default", "full"):
        s = bench_config(scale).sizes
        missing = [f for f in s.pgo_files if not (root / "pgo" / f).is_file()]
        missing += [f for f in s.ba_files if not (root / "ba" / f).is_file()]
        assert not missing, f"{scale} preset names missing data files: {missing}"
