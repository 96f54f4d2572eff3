"""Ctrl-C on the command line (issue 15, "nothing lost, nothing silent"): a real ``mixslam pgo`` process stops at
the end of the current iteration, writes its best iterate and the report (the cost of the written graph equals
the report's final cost) and exits 130 with one line; ``mixslam sim --workers 2`` exits 130 within seconds,
writes a report of the trajectories that finished and leaves no worker process behind (both subprocesses
receiving a real SIGINT); ``mixslam bench`` writes its report for the figures that finished."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixslam.io import read_pose_graph, write_g2o
from mixslam.problem.between import cost
from mixslam.sim import simulate_pose_graph
from mixslam.solve.interrupt import handle_interrupts, interrupt_requested

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


def _sigint_default() -> None:
    """In the child before exec: SIGINT back to its default, in case these tests run in a process that ignores
    it (started with ``&`` from a script), which mixslam would then rightly keep ignoring."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_raises():
    """A real SIGINT to this process raises KeyboardInterrupt in the test (Python's default handler)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _mixslam(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "mixslam", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_sigint_default)


def _children(pid: int) -> set[int]:
    """Every descendant process of ``pid`` (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return {c.pid for c in psutil.Process(pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out.update(kids)
        todo.extend(kids)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose (its parent, here gone, would reap it)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_interrupting_a_pose_graph_solve_writes_its_best_iterate(tmp_path):
    """Interrupting a 10-second pose-graph solve writes its best iterate; its cost equals the report's."""
    graph_file, out, report = tmp_path / "grid.g2o", tmp_path / "out.g2o", tmp_path / "report.json"
    write_g2o(simulate_pose_graph("grid3d", 8000, seed=3).graph, graph_file)
    proc = _mixslam("pgo", str(graph_file), "-o", str(out), "--report", str(report), "--precision", "mixed",
                    "--solver", "cg", "--preconditioner", "jacobi", "--max-iterations", "1000", "-v")
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # the first iteration line: the solve is under way (it needs ~14 iterations)
        seen.append(line)
        if line.startswith("[iter"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    err = "".join(seen) + err
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "mixslam: interrupted after" in err and str(out) in err
    data = json.loads(report.read_text())
    assert data["status"] == "interrupted" and data["converged"] is False
    assert 1 <= data["iterations"] < 14
    written = read_pose_graph(out)
    assert cost(written) == pytest.approx(data["final_cost"], rel=1e-12)
    assert data["final_cost"] < data["initial_cost"]


class _StderrReader:
    """Collects a subprocess's stderr as it comes (the progress bar refreshes with \\r, without newlines)."""

    def __init__(self, proc: subprocess.Popen):
        import threading
        self.chunks: list[bytes] = []
        assert proc.stderr is not None
        self._fd = proc.stderr.fileno()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := os.read(self._fd, 4096):
            self.chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def finished(self, total: int, label: str) -> int:
        """The highest ``k`` of the progress bar's ``k/total label`` so far."""
        import re
        return max((int(k) for k in re.findall(rf"(\d+)/{total} {label}", self.text())), default=0)

    def join(self) -> str:
        self._thread.join(10)
        return self.text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupting_a_batch_study_writes_what_finished_and_ends_its_workers(tmp_path, signum):
    """SIGINT (or SIGTERM) to ``mixslam sim --workers 2`` once a trajectory has finished: exit 130 within
    seconds, one line, a partial report of the finished trajectories, no worker process left."""
    from mixslam.slam.study import trajectory_seed
    report = tmp_path / "r.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mixslam", "sim", "--workers", "2", "--trajectories", "40",
                             "--keyframes", "60", "--precision", "fp64", "--seed", "7", "--report", str(report)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, preexec_fn=_sigint_default)
    err = _StderrReader(proc)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and err.finished(40, "trajectories") < 1:  # about 0.7 s a trajectory
        time.sleep(0.05)
        workers |= _children(proc.pid)
        assert proc.poll() is None, err.join()
    assert err.finished(40, "trajectories") >= 1, err.text()
    workers |= _children(proc.pid)
    assert len(workers) >= 2
    proc.send_signal(signum)
    t0 = time.monotonic()
    proc.wait(timeout=20)
    assert time.monotonic() - t0 < 10
    text = err.join()
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    data = json.loads(report.read_text())
    done = data["trajectories_finished"]
    last = text.splitlines()[-1]
    assert last == f"mixslam sim: interrupted after {done} of 40 trajectories; partial report (interrupted: true) " \
                   f"written to {report}", text
    assert data["interrupted"] is True and data["trajectories"] == 40 and 1 <= done < 40
    rows = data["policies"]["fp64"]["trajectories"]
    assert len(rows) == done
    assert {r["seed"] for r in rows} <= {trajectory_seed(7, i) for i in range(40)}
    assert data["policies"]["fp64"]["ate_lc"]["n"] == 60 * done  # pooled over the finished trajectories only
    time.sleep(0.5)
    assert not [p for p in workers if _alive(p)], "worker processes left behind"


def test_sim_interrupted_before_any_trajectory_finished_writes_an_empty_partial_report(tmp_path, monkeypatch, capsys):
    import mixslam.slam.study as study
    from mixslam.cli import main

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(study, "run_trajectory", interrupted)
    report = tmp_path / "r.json"
    argv = ["sim", "--trajectories", "3", "--keyframes", "20", "--precision", "fp64,mixed", "-q"]
    assert main([*argv, "--report", str(report)]) == 130
    assert capsys.readouterr().err == (f"mixslam sim: interrupted after 0 of 3 trajectories; partial report "
                                       f"(interrupted: true) written to {report}\n")
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and (data["trajectories"], data["trajectories_finished"]) == (3, 0)
    assert data["policies"]["mixed"]["trajectories"] == [] and data["policies"]["mixed"]["ate_lc"] is None
    assert main(argv) == 130
    assert capsys.readouterr().err == "mixslam sim: interrupted after 0 of 3 trajectories; nothing written " \
                                      "(no --report named)\n"


def _bench_figure(number, ctx):
    """A stand-in figure: 2 is a batch of two quick tasks and two long ones, interrupted by a real SIGINT
    once the quick ones are done; the others finish at once."""
    import threading

    from mixslam.bench.context import FigureResult
    if number == 2:
        done = ctx.out / "quick-done"
        done.mkdir()

        def interrupt_after_the_quick_tasks():
            deadline = time.monotonic() + 30
            while len(list(done.iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)  # their results are back in the parent by now
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt_after_the_quick_tasks, daemon=True).start()
        ctx.runner.map(_nap, [(0.0, done / "0"), (0.0, done / "1"), (30.0, None), (30.0, None)], label="test tasks")
    return FigureResult(number, f"stand-in {number}", files=[ctx.write_csv(f"fig{number}.csv", [{"x": number}])],
                        table=[{"x": number}], summary={"x": number})


def _nap(seconds, marker):
    time.sleep(seconds)
    if marker is not None:
        marker.touch()
    return seconds


def test_interrupting_a_bench_writes_the_finished_figures_and_ends_its_workers(tmp_path, monkeypatch, capsys,
                                                                              sigint_raises):
    import functools
    import multiprocessing

    from mixslam.bench import run as bench_run
    from mixslam.cli import main
    monkeypatch.setattr(bench_run, "figure_function", lambda n: functools.partial(_bench_figure, n))
    before = {p.pid for p in multiprocessing.active_children()}
    out = tmp_path / "bench"
    t0 = time.monotonic()
    rc = main(["bench", "--quick", "--figures", "1,2,3", "--workers", "2", "--out", str(out), "-q"])
    assert time.monotonic() - t0 < 8  # not the 30 s of the long tasks
    err = capsys.readouterr().err
    assert rc == 130, err
    assert err == (f"mixslam bench: interrupted during figure 2 (2 of 4 test tasks finished); 1 of 3 figures "
                   f"finished; partial report written to {out / 'REPORT.md'} and {out / 'report.json'}\n")
    data = json.loads((out / "report.json").read_text())
    assert data["interrupted"] is True and data["figures_requested"] == [1, 2, 3] and data["figures_finished"] == [1]
    assert data["interrupted_figure"] == {"number": 2, "label": "test tasks", "tasks_finished": 2, "tasks": 4}
    assert [f["number"] for f in data["figures"]] == [1] and (out / "fig1.csv").is_file()
    assert not (out / "fig2.csv").exists() and not (out / "fig3.csv").exists()
    text = (out / "REPORT.md").read_text()
    assert "**Interrupted** during figure 2 (2 of 4 test tasks finished, not reported)" in text
    assert "## Figure 1. stand-in 1" in text and "## Figure 2" not in text
    assert {p.pid for p in multiprocessing.active_children()} <= before


def test_handlers_are_restored_and_the_flag_cleared(sigint_raises):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with handle_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert interrupt_requested()
        with pytest.raises(KeyboardInterrupt):  # a second signal aborts at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert not interrupt_requested()
