"""Batch execution for studies (:mod:`mixslam.slam.study`) and the benchmark (:mod:`mixslam.bench`): the same
ordered ``map`` serially, on a local process pool or on Dask.

Every task is a top-level function plus its arguments, and carries its own seed, so the results are the
same whichever executor runs them and however many workers it has (tested). Results come back in task
order; a progress bar on stderr counts finished tasks.

Interrupts: a :class:`KeyboardInterrupt` (Ctrl-C; the command line turns SIGTERM into one) while
:meth:`TaskRunner.map` waits stops the batch (pending tasks cancelled, worker processes ended within about two
seconds, see :class:`ProcessPool`) and raises :class:`BatchInterrupted`, a ``KeyboardInterrupt`` that carries
the results of the tasks that finished, so the caller can still report them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures import wait as wait_futures
from typing import Any

from .errors import ConfigError

__all__ = ["BatchInterrupted", "ProcessPool", "TaskRunner", "progress_line"]


def progress_line(label: str, done: int, total: int, t0: float, stream) -> None:
    """One ``\\r``-refreshed progress bar: ``[####----] done/total label  elapsed  ETA``."""
    width = 30
    frac = done / total if total else 1.0
    el = time.perf_counter() - t0
    eta = el / done * (total - done) if done else float("nan")
    bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
    end = "\n" if done == total else ""
    stream.write(f"\r[{bar}] {done}/{total} {label}  {el:6.1f} s elapsed  ETA {eta:6.1f} s{end}")
    stream.flush()


class BatchInterrupted(KeyboardInterrupt):
    """A batch stopped by Ctrl-C / SIGTERM, its workers already stopped; what finished rides along.

    A ``KeyboardInterrupt``, so code that does not look at the partial results still stops as on any Ctrl-C
    (and ``except Exception`` does not swallow it).
    """

    results: list
    """One entry per task, in task order: its result, or None where the task did not finish."""
    finished: tuple[int, ...]
    """The indices (into ``results``) of the tasks that finished, ascending."""
    label: str
    """What the tasks are ("trajectories", "PGO problems", "figures"), for messages."""
    report: Any
    """None from :meth:`TaskRunner.map`; a caller that turns the finished tasks into its partial report
    (:func:`mixslam.slam.study.run_study`, :func:`mixslam.bench.run.run_bench`) puts it here and re-raises."""

    def __init__(self, results: Sequence, finished: Iterable[int], label: str = "tasks", report: Any = None):
        self.results = list(results)
        self.finished = tuple(sorted(int(i) for i in finished))
        self.label = label
        self.report = report
        super().__init__(f"interrupted: {self.done} of {self.total} {label} finished")

    def __reduce__(self):  # the constructor's own arguments, not the message
        return (type(self), (self.results, self.finished, self.label, self.report))

    @property
    def done(self) -> int:
        """How many tasks finished."""
        return len(self.finished)

    @property
    def total(self) -> int:
        """How many tasks the batch had."""
        return len(self.results)

    def finished_results(self) -> list:
        """The results of the tasks that finished, in task order."""
        return [self.results[i] for i in self.finished]


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """While a batch is being stopped, a further Ctrl-C or SIGTERM is ignored (main thread only): the stop is
    already under way, and a KeyboardInterrupt in the middle of it would leave worker processes behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def _start_worker(pids) -> None:
    """Worker initializer of :class:`ProcessPool`: SIGINT is the parent's to handle (a Ctrl-C at the terminal
    reaches the whole process group; the parent decides, instead of one traceback per worker); SIGTERM gets
    its default action back (ends the process: a handler inherited through ``fork`` would turn the parent's
    ``terminate()`` into a KeyboardInterrupt the worker survives); then the worker reports its pid."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    pids.put(os.getpid())


class ProcessPool:
    """A :class:`~concurrent.futures.ProcessPoolExecutor` whose running tasks can be ended at once, through
    public APIs only.

    ``concurrent.futures`` has no public way to end the running tasks before Python 3.14
    (``terminate_workers``): ``shutdown(cancel_futures=True)`` drops the pending tasks but waits for the
    running ones (minutes of work after a Ctrl-C). So each worker reports its pid from the executor's
    ``initializer`` (through a :class:`multiprocessing.SimpleQueue`) before it takes its first task, and
    :meth:`stop` ends those of :func:`multiprocessing.active_children` (SIGTERM, SIGKILL after ``timeout``);
    once one worker is gone the executor itself marks the pool broken and ends the rest, so no process is
    left behind.

    Why not :class:`multiprocessing.pool.Pool`, whose ``terminate()`` is public: a worker that dies (the
    out-of-memory killer, a crash in compiled code) makes its task wait forever there, while the executor
    raises ``BrokenProcessPool``.
    """

    def __init__(self, workers: int):
        context = multiprocessing.get_context()
        self._pids = context.SimpleQueue()
        self._reported: set[int] = set()
        self.executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(self._pids,)
        )

    def submit(self, fn: Callable, *args) -> Future:
        return self.executor.submit(fn, *args)

    def workers(self) -> list:
        """The live worker processes (:class:`multiprocessing.Process`) that have reported their pid."""
        while not self._pids.empty():
            self._reported.add(self._pids.get())
        return [p for p in multiprocessing.active_children() if p.pid in self._reported]

    def stop(self, futures: Iterable[Future], timeout: float = 2.0) -> None:
        """Cancel the pending tasks and end the workers now: SIGTERM, then SIGKILL to those still alive after
        ``timeout`` seconds. Returns once every future is done or cancelled and every worker joined."""
        futures = list(futures)
        self.executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        ended: dict[int, Any] = {}
        while True:
            # A worker that runs a task has reported its pid first (the initializer runs before any task).
            for proc in self.workers():
                if proc.pid not in ended:
                    proc.terminate()
                    ended[proc.pid] = proc
            pending = [f for f in futures if not f.done()]
            if not pending or time.monotonic() >= deadline:
                break
            wait_futures(pending, timeout=0.05)
        for proc in ended.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        self.close()

    def close(self) -> None:
        """Wait for the executor to wind down (its workers joined) and release the pid queue."""
        self.executor.shutdown(wait=True)
        self._pids.close()


def _needs_shipping(fn) -> bool:
    """Dask workers import a task's function by module name: a function from a script or a test module
    (not importable there) would leave its tasks failing to deserialize, forever pending."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    if module is None or module.__name__.split(".")[0] == "mixslam":
        return False
    origin = getattr(getattr(module, "__spec__", None), "origin", "") or ""
    return "site-packages" not in origin and "dist-packages" not in origin


def _call_shipped(payload: bytes, *args):
    """Run a function that travelled by value (see :func:`_needs_shipping`)."""
    import cloudpickle

    return cloudpickle.loads(payload)(*args)


class TaskRunner:
    """Runs ``fn(*args)`` for each argument tuple and returns the results in order.

    ``kind``: ``"process"`` (serial in this process when ``workers`` is 1, else a :class:`ProcessPool`) or
    ``"dask"`` (a Dask distributed client: on ``scheduler`` when given, else on a local cluster of
    ``workers`` single-threaded worker processes, started on first use and closed by :meth:`close`).

    A task that raises stops the batch (the other tasks are cancelled, the pool's workers ended) and its
    exception propagates. A KeyboardInterrupt stops it the same way and becomes :class:`BatchInterrupted`.
    """

    def __init__(
        self, kind: str = "process", workers: int = 1, scheduler: str | None = None, progress: bool = False, stream=None
    ):
        if kind not in ("process", "dask"):
            raise ConfigError(f"unknown executor {kind!r}; expected 'process' or 'dask'")
        if int(workers) < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        self.kind, self.workers, self.scheduler = kind, int(workers), scheduler
        self.progress = progress
        self.stream = stream or sys.stderr
        self._client = None
        self._cluster = None
        if kind == "dask":
            try:
                import dask.distributed  # noqa: F401
            except ImportError as exc:
                raise ConfigError("--executor dask needs Dask distributed: pip install 'mixslam[distributed]'") from exc

    def describe(self) -> str:
        if self.kind == "dask":
            return f"dask ({self.scheduler or f'local cluster, {self.workers} worker(s)'})"
        return "serial (1 process)" if self.workers == 1 else f"process pool ({self.workers} workers)"

    def map(self, fn: Callable, tasks: Sequence[tuple], label: str = "tasks") -> list:
        """``[fn(*args) for args in tasks]``, run by this runner's executor. On a KeyboardInterrupt the batch
        is stopped and :class:`BatchInterrupted` raised with the results of the tasks that finished."""
        tasks = [tuple(t) for t in tasks]
        results: list = [None] * len(tasks)
        finished: list[int] = []
        if not tasks:
            return results
        try:
            if self.kind == "process" and self.workers == 1:
                self._map_serial(fn, tasks, label, results, finished)
            elif self.kind == "process":
                self._map_pool(fn, tasks, label, results, finished)
            else:
                self._map_dask(fn, tasks, label, results, finished)
        except KeyboardInterrupt:
            if self.progress and 0 < len(finished) < len(tasks):
                self.stream.write("\n")  # end the progress bar's line: the caller's message comes next
                self.stream.flush()
            raise BatchInterrupted(results, finished, label) from None
        return results

    def _finish(self, i: int, value, results: list, finished: list, label: str, t0: float) -> None:
        results[i] = value
        finished.append(i)
        if self.progress:
            progress_line(label, len(finished), len(results), t0, self.stream)

    def _map_serial(self, fn: Callable, tasks: list, label: str, results: list, finished: list) -> None:
        t0 = time.perf_counter()
        for i, args in enumerate(tasks):
            self._finish(i, fn(*args), results, finished, label, t0)

    def _map_pool(self, fn: Callable, tasks: list, label: str, results: list, finished: list) -> None:
        t0 = time.perf_counter()
        pool = ProcessPool(min(self.workers, len(tasks)))
        futures: dict[Future, int] = {}
        try:
            for i, args in enumerate(tasks):
                futures[pool.submit(fn, *args)] = i
            for fut in as_completed(futures):
                self._finish(futures[fut], fut.result(), results, finished, label, t0)
        except BaseException:
            # Interrupted, or a task raised: drop the pending tasks and end the workers now (shutdown alone
            # would wait for the running tasks, minutes of work).
            with _signals_held():
                pool.stop(futures)
            raise
        pool.close()

    def _map_dask(self, fn: Callable, tasks: list, label: str, results: list, finished: list) -> None:
        from dask.distributed import as_completed as dask_completed

        client = self._dask_client()
        t0 = time.perf_counter()
        submitted: list = []
        try:
            if _needs_shipping(fn):
                import cloudpickle

                if fn.__module__ != "__main__":  # cloudpickle already ships __main__ by value
                    cloudpickle.register_pickle_by_value(sys.modules[fn.__module__])
                payload = cloudpickle.dumps(fn)
                submitted = [client.submit(_call_shipped, payload, *args, pure=False) for args in tasks]
            else:
                submitted = [client.submit(fn, *args, pure=False) for args in tasks]
            index = {f.key: i for i, f in enumerate(submitted)}
            for fut in dask_completed(submitted):
                self._finish(index[fut.key], fut.result(), results, finished, label, t0)
        except BaseException:
            # The scheduler forgets the cancelled tasks; a task already running finishes on its worker and its
            # result is dropped (Dask cannot stop a running task). A local cluster's worker processes end when
            # close() closes it.
            with _signals_held():
                client.cancel(submitted)
            raise

    def _dask_client(self):
        if self._client is None:
            from dask.distributed import Client, LocalCluster

            if self.scheduler:
                self._client = Client(self.scheduler)
            else:
                self._cluster = LocalCluster(
                    n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None
                )
                self._client = Client(self._cluster)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
