"""Kernel threads: how many, and running a fixed list of chunks on them.

Results never depend on the thread count: a kernel splits its work into a number of chunks that depends on
the problem's size only (:func:`chunk_count`), each chunk writes its own partial result, and the partial
results are combined in chunk order. One thread runs the chunks one after the other; two threads run them
two at a time; the floating-point operations and their order are the same.

The thread count is ``MIXSLAM_THREADS`` when set, else the number of cores this process may run on. The
compiled chunk kernels release the GIL (``nogil``), so plain Python threads run them in parallel; a
thread pool (not numba's ``parallel`` threading layer) keeps the kernels safe to call from several threads
at once (Dask's threaded scheduler does).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

__all__ = ["default_threads", "chunk_count", "run_chunks", "CHUNK_ROWS", "OBSERVATION_ROWS", "MAX_CHUNKS"]

CHUNK_ROWS = 16384
"""Fewest row blocks per chunk: below this, threads cost more than they save (measured:
``benchmarks/kernels.py``)."""
OBSERVATION_ROWS = 8192
"""Fewest observations per chunk of bundle adjustment's per-observation kernels (residuals and Jacobians,
Schur point blocks, right-hand side, back-substitution): each costs 3-10x a row block of a product, so
half as many pay for a thread (measured: problem-49-7776's 31,843 observations in three chunks)."""
MAX_CHUNKS = 8
"""Most chunks per product (each holds a private copy of the small accumulators)."""

_POOLS: dict[int, ThreadPoolExecutor] = {}


def default_threads() -> int:
    """``MIXSLAM_THREADS`` if set (a positive integer), else the cores this process may use."""
    env = os.environ.get("MIXSLAM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"MIXSLAM_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"MIXSLAM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def chunk_count(rows: int, per_chunk: int = CHUNK_ROWS) -> int:
    """Chunks for ``rows`` row blocks of at least ``per_chunk`` each: a function of the size only, never of
    the thread count."""
    return max(1, min(MAX_CHUNKS, rows // per_chunk))


def bounds(rows: int, chunks: int) -> list[tuple[int, int]]:
    """Contiguous, nearly equal [start, stop) ranges covering ``rows``."""
    edges = [rows * c // chunks for c in range(chunks + 1)]
    return list(zip(edges[:-1], edges[1:]))


def run_chunks(fn, chunks: int, threads: int | None = None) -> list:
    """``[fn(c) for c in range(chunks)]``, on up to ``threads`` threads (default :func:`default_threads`)."""
    threads = default_threads() if threads is None else threads
    if threads <= 1 or chunks <= 1:
        return [fn(c) for c in range(chunks)]
    n = min(threads, chunks)
    pool = _POOLS.get(n)
    if pool is None:
        pool = _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="mixslam-kernel")
    return list(pool.map(fn, range(chunks)))
