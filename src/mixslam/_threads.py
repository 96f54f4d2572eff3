"""Thread control for the solves.

The compiled kernels are single-threaded; BLAS (OpenBLAS in numpy/scipy wheels) is called in between for
small dense work. OpenBLAS worker threads busy-wait after each call, and on a 2-core machine they take the
core the next numba kernel needs: measured on problem-16-22106 (fp64 Schur), the whole BA solve takes
0.76 s with the default BLAS threads and about 0.5 s with one. So every solve runs with BLAS limited to
one thread (restored afterwards).
"""
from __future__ import annotations

import contextlib


def single_threaded_blas():
    """Context manager: BLAS limited to one thread inside (no-op if threadpoolctl is missing)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a core dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
