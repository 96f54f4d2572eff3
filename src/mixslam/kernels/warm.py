"""Compile (or load from numba's cache) the kernel specializations a solve will call, before it is timed.

numba specializes each product kernel on its argument types and block shape: the Jacobian's storage
(float64, float32, or fp16 bits as uint16), the vectors' type (float64, float32), the arithmetic tag (fp32/fp64
or emulated fp16) and the block shape (k, pa, pb). All 12 type combinations of the four product kernels for
every block shape cost about a minute of compilation on 2 cores the first time a machine runs mixslam; one
solve needs at most six specializations (IC factorization included). Which ones is decided where the
operands are stored: each linear solver and preconditioner lists its own (``kernel_specs``, from
:func:`mixslam.storage.kernel_types`, the function :func:`mixslam.storage.store` uses) and
:func:`mixslam.linear.choice.solve_kernel_specs` adds the common ones, so a first ``mixslam demo`` compiles
only those.

A specialization this does not list is still compiled, on first use, by numba itself: the only cost is that
its compile time then lands in the solve's timing instead of ``timing["compile"]``. That happens only when a
16-bit store overflows and falls back to fp32 (``PrecisionPolicy.fallback``).
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from .camera_major import build, cm_matvec, cm_normal, cm_rmatvec
from .ic import ic0_factor, ic_solve
from .products import jac_matvec, jac_rmatvec, normal_matvec

__all__ = ["ALL", "warm_products"]

_STORE = (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16))
_VEC = (np.dtype(np.float64), np.dtype(np.float32))

_F64 = np.dtype(np.float64)
#: Every (kernel, storage, vector, acc16) combination the kernels accept: what ``warmup()`` without a policy
#: compiles (the benchmarks, which time every policy).
ALL = frozenset(
    {
        (kernel, store, vec, acc16)
        for kernel in ("jac_matvec", "jac_rmatvec", "normal_matvec", "ic_solve")
        for store, vec, acc16 in itertools.product(_STORE, _VEC, (False, True))
    }
    | {("ic_factor", _F64, _F64, False)}
)


_DONE: set = set()


def _bits(M: np.ndarray, store: np.dtype) -> np.ndarray:
    M = np.ascontiguousarray(M, store)
    return M.view(np.uint16) if store == np.float16 else M


def warm_products(specs, shape: tuple[int, int, int], two_sets: bool = False) -> float:
    """Call each of ``specs`` once on a tiny problem with blocks (k, pa, pb); returns the seconds it took.

    A combination already warmed in this process is skipped. The IC kernels are warmed for (pa x pa) blocks,
    the pose blocks of a pose graph (only pose graphs have an IC preconditioner). ``two_sets`` (bundle
    adjustment): the camera-major kernels of the fp32/fp64 products are warmed too (CGNR uses them).
    """
    k, pa, pb = shape
    todo = [s for s in specs if (s, shape, two_sets) not in _DONE]
    if not todo:
        return 0.0
    t0 = time.perf_counter()
    ia, ib = np.array([-1, 0], np.int64), np.array([0, 1], np.int64)
    # Two rows: row 0 touches only set b, row 1 both (the kernels' absent-block branch is compiled too).
    A64, B64 = np.ones((2, k, pa)), np.ones((2, k, pb))
    indptr, indices = np.array([0, 1, 3], np.int64), np.array([0, 0, 1], np.int64)
    L64 = np.stack([2 * np.eye(pa), 0.1 * np.ones((pa, pa)), 2 * np.eye(pa)])
    for spec in todo:
        kernel, store, vec, acc16 = spec
        xa, xb, y = np.ones((2, pa), vec), np.ones((2, pb), vec), np.ones((2, k), vec)
        if kernel == "ic_factor":
            ic0_factor(indptr, indices, L64, 0.0)
            continue
        if kernel == "ic_solve":
            ic_solve(indptr, indices, _bits(L64, store), xa, np.empty_like(xa), acc16)
            continue
        A, B = _bits(A64, store), _bits(B64, store)
        if two_sets and not acc16:
            _warm_camera_major(kernel, A, ia, B, ib, xa, xb, y)
        if kernel == "jac_matvec":
            jac_matvec(A, ia, B, ib, xa, xb, y, acc16)
        elif kernel == "jac_rmatvec":
            jac_rmatvec(A, ia, B, ib, y, xa, xb, acc16)
        else:
            normal_matvec(A, ia, B, ib, xa, xb, xa.copy(), xb.copy(), acc16)
    _DONE.update((s, shape, two_sets) for s in todo)
    return time.perf_counter() - t0


def _warm_camera_major(kernel, A, ia, B, ib, xa, xb, y) -> None:
    L = build(A, ia, B, ib, xa.shape[0], xb.shape[0])
    assert L is not None
    if kernel == "jac_matvec":
        cm_matvec(L, xa, xb, y)
    elif kernel == "jac_rmatvec":
        cm_rmatvec(L, y, xa, xb)
    else:
        cm_normal(L, xa, xb, xa.copy(), xb.copy())
