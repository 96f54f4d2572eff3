"""Batch execution for studies (:mod:`mixslam.slam.study`) and the benchmark (:mod:`mixslam.bench`): the same
ordered ``map`` serially, on a local process pool or on Dask.

Every task is a top-level function plus its arguments, and carries its own seed, so the results are the
same whichever executor runs them and however many workers it has (tested). Results come back in task
order; a progress bar on stderr counts finished tasks.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Sequence

from .errors import ConfigError


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


def ignore_sigint() -> None:
    """Process-pool worker initializer: SIGINT is the parent's to handle (see :func:`stop_process_pool`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_process_pool(pool, timeout: float = 2.0) -> None:
    """Cancel a ``ProcessPoolExecutor``'s pending tasks and end its workers (SIGTERM, then SIGKILL after
    ``timeout`` seconds), leaving no orphan process. ``concurrent.futures`` offers no public way to end the
    running tasks before Python 3.14 (``terminate_workers``), hence the worker table read here."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


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

    ``kind``: ``"process"`` (serial in this process when ``workers`` is 1, else a process pool) or
    ``"dask"`` (a Dask distributed client: on ``scheduler`` when given, else on a local cluster of
    ``workers`` single-threaded worker processes, started on first use and closed by :meth:`close`).
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
        tasks = [tuple(t) for t in tasks]
        n = len(tasks)
        results = [None] * n
        t0 = time.perf_counter()
        if n == 0:
            return results
        if self.kind == "process" and self.workers == 1:
            for i, args in enumerate(tasks):
                results[i] = fn(*args)
                if self.progress:
                    progress_line(label, i + 1, n, t0, self.stream)
            return results
        if self.kind == "process":
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # The workers ignore SIGINT: a Ctrl-C at the terminal reaches the whole process group, and only this
            # process decides what happens (it stops them below), instead of one traceback per worker.
            pool = ProcessPoolExecutor(max_workers=min(self.workers, n), initializer=ignore_sigint)
            try:
                futures = {pool.submit(fn, *args): i for i, args in enumerate(tasks)}
                for done, fut in enumerate(as_completed(futures), 1):
                    results[futures[fut]] = fut.result()
                    if self.progress:
                        progress_line(label, done, n, t0, self.stream)
            except (KeyboardInterrupt, SystemExit):
                # Interrupted: drop the pending tasks and end the workers now (shutdown alone would wait for the
                # running tasks, minutes of work); the caller reports the interruption.
                stop_process_pool(pool)
                raise
            pool.shutdown(wait=True)
            return results
        from dask.distributed import as_completed as dask_completed

        client = self._dask_client()
        if _needs_shipping(fn):
            import cloudpickle

            if fn.__module__ != "__main__":  # cloudpickle already ships __main__ by value
                cloudpickle.register_pickle_by_value(sys.modules[fn.__module__])
            payload = cloudpickle.dumps(fn)
            submitted = [client.submit(_call_shipped, payload, *args, pure=False) for args in tasks]
        else:
            submitted = [client.submit(fn, *args, pure=False) for args in tasks]
        index = {f.key: i for i, f in enumerate(submitted)}
        try:
            for done, fut in enumerate(dask_completed(submitted), 1):
                results[index[fut.key]] = fut.result()
                if self.progress:
                    progress_line(label, done, n, t0, self.stream)
        except KeyboardInterrupt:
            client.cancel(submitted)  # the local cluster's workers stop when close() closes it
            raise
        return results

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
