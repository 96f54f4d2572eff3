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


# ---- interrupts (issue 15): Ctrl-C stops the batch and hands back what finished -------------------------------
def nap(i, seconds, folder=None):
    """Task ``i``: marks its start in ``folder`` (when given), sleeps, returns ``i``."""
    import time
    from pathlib import Path
    if folder is not None:
        (Path(folder) / f"{i}.started").touch()
    time.sleep(seconds)
    return i


class InterruptWhen:
    """A progress stream that sends this process a real SIGINT ``delay`` seconds after the progress bar first
    shows ``text`` (the batch is then waiting for its long tasks). Records the pool's live workers then."""

    def __init__(self, text, delay=0.3):
        self.text, self.delay, self.fired, self.workers = text, delay, False, set()
        self.written = []

    def write(self, s):
        import multiprocessing
        import os
        import signal
        import threading
        self.written.append(s)
        if self.text in s and not self.fired:
            self.fired = True
            self.workers = {p.pid for p in multiprocessing.active_children()}
            threading.Timer(self.delay, os.kill, (os.getpid(), signal.SIGINT)).start()

    def flush(self):
        pass


@pytest.fixture
def sigint_raises():
    """A real SIGINT to this process raises KeyboardInterrupt in the test (Python's default handler), also when
    the tests run in a process that ignores SIGINT (started with ``&`` from a script)."""
    import signal
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _alive(pid):
    import os
    from pathlib import Path
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_a_process_pool_within_seconds_and_hands_back_what_finished(sigint_raises):
    import multiprocessing
    import time

    from mixslam.runner import BatchInterrupted
    tasks = [(0, 0.0), (1, 0.05), (2, 30.0), (3, 30.0), (4, 30.0), (5, 0.0)]
    before = {p.pid for p in multiprocessing.active_children()}
    stream = InterruptWhen("2/6")
    runner = TaskRunner("process", 2, progress=True, stream=stream)
    t0 = time.monotonic()
    with pytest.raises(BatchInterrupted) as stop:
        runner.map(nap, tasks, label="naps")
    assert time.monotonic() - t0 < 5  # not the 30 s of the running tasks
    assert stop.value.finished == (0, 1) and stop.value.finished_results() == [0, 1]
    assert stop.value.results == [0, 1, None, None, None, None]
    assert (stop.value.done, stop.value.total, stop.value.label) == (2, 6, "naps")
    assert isinstance(stop.value, KeyboardInterrupt) and stop.value.report is None
    assert "".join(stream.written).endswith("\n")  # the progress bar's line is ended for the next message
    workers = stream.workers - before
    assert len(workers) == 2
    assert not [p for p in workers if _alive(p)], "worker processes left behind"
    assert_no_new_children(before)


def test_ctrl_c_in_a_serial_map_hands_back_what_finished():
    from mixslam.runner import BatchInterrupted
    calls = []

    def task(i):
        calls.append(i)
        if i == 2:
            raise KeyboardInterrupt
        return i * 10
    with pytest.raises(BatchInterrupted) as stop:
        TaskRunner("process", 1).map(task, [(i,) for i in range(5)])
    assert calls == [0, 1, 2] and stop.value.finished_results() == [0, 10] and stop.value.total == 5


def test_a_failing_task_stops_the_pool_at_once():
    import multiprocessing
    import time
    before = {p.pid for p in multiprocessing.active_children()}
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="task 0 fails"):
        TaskRunner("process", 2).map(_fail_or_nap, [(0,), (1,), (2,)])
    assert time.monotonic() - t0 < 5  # the running 30 s task was ended, not waited for
    assert_no_new_children(before)


def assert_no_new_children(before: set, grace: float = 3.0) -> None:
    """No child process beyond ``before`` is left, allowing a loaded machine a moment to reap them (CI once
    saw a terminated worker still listed right after the stop returned)."""
    import multiprocessing
    import time

    deadline = time.monotonic() + grace
    while {p.pid for p in multiprocessing.active_children()} - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {p.pid for p in multiprocessing.active_children()} <= before


def _fail_or_nap(i):
    import time
    if i == 0:
        time.sleep(0.2)  # the other worker is inside its long task by now
        raise ValueError("task 0 fails")
    time.sleep(30)
    return i


def test_ctrl_c_cancels_a_dask_map_and_hands_back_what_finished(tmp_path, sigint_raises):
    pytest.importorskip("dask.distributed")
    import time

    from dask.distributed import Client, LocalCluster

    from mixslam.runner import BatchInterrupted
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    observer = Client(cluster)
    try:
        stream = InterruptWhen("2/6")
        runner = TaskRunner("dask", 2, scheduler=cluster.scheduler_address, progress=True, stream=stream)
        # Two quick tasks, then two that run for 1.5 s on the two workers while two more wait for a worker.
        tasks = [(0, 0.0, str(tmp_path)), (1, 0.0, str(tmp_path))] + [(i, 1.5, str(tmp_path)) for i in range(2, 6)]
        with pytest.raises(BatchInterrupted) as stop:
            runner.map(nap, tasks, label="naps")
        assert stop.value.finished == (0, 1) and stop.value.finished_results() == [0, 1]
        assert stop.value.results[2:] == [None] * 4
        # Cancelled: the scheduler forgets every task at once (the running ones would hold it for 1.5 s more).
        forgotten = time.monotonic() + 1.0
        while observer.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) and \
                time.monotonic() < forgotten:
            time.sleep(0.05)
        assert observer.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0
        runner.close()
        time.sleep(1.8)  # the running tasks have ended; the two that waited for a worker never started
        started = sorted(int(p.stem) for p in tmp_path.glob("*.started"))
        assert started[:2] == [0, 1] and len(started) == 4, started
    finally:
        observer.close()
        cluster.close()
