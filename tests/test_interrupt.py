"""Ctrl-C on the command line (issue 15, "nothing lost, nothing silent"): a real ``mixslam pgo`` process stops at
the end of the current iteration, writes its best iterate and the report (the cost of the written graph equals
the report's final cost) and exits 130 with one line; ``mixslam sim --workers 2`` exits 130 within seconds and
leaves no worker process behind. Both run as subprocesses receiving a real SIGINT."""
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


def _mixslam(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "mixslam", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


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


def test_interrupting_a_batch_study_ends_its_workers(tmp_path):
    proc = _mixslam("sim", "--workers", "2", "--trajectories", "8", "--precision", "fp64,mixed",
                    "--report", str(tmp_path / "r.json"))
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2:  # both pool workers started
        time.sleep(0.2)
        workers = _children(proc.pid)
        assert proc.poll() is None, proc.communicate()
    assert len(workers) >= 2
    time.sleep(1.0)  # the workers are inside their trajectories
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 10
    assert "Traceback" not in err and "mixslam: interrupted" in err
    time.sleep(0.5)
    assert not [p for p in workers if _alive(p)], "worker processes left behind"


def test_handlers_are_restored_and_the_flag_cleared():
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
