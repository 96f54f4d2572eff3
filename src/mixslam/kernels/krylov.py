"""Fused, in-place vector updates of conjugate gradients in fp32 or fp64.

One CG iteration outside its matrix product is a handful of vector passes (the damping term, the x and r
updates, two dot products, the search-direction update). Written with numpy, each is a separate pass and most
allocate a fresh result (on 1.2M-entry vectors, page faults included, 15-17 ms per iteration on 2M BA
observations: as much as the fused product itself). These kernels fuse them into three passes over
preallocated arrays. Arithmetic is that of the arrays' dtype; products are rounded before they are added (no
FMA contraction), as numpy rounds them; only the dot products are reassociated (vectorized partial sums),
which changes their last bits, not their precision. Single-threaded and deterministic.
"""

from __future__ import annotations

from numba import njit

_REDUCE = {"reassoc", "nsz"}
"""fastmath flags: reassociation for vectorized sums, no contraction (a*x + y stays two roundings)."""


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def dot(x, y):
    """x · y in the arrays' dtype."""
    s = x.dtype.type(0.0)
    for i in range(x.shape[0]):
        s += x[i] * y[i]
    return s


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def add_damping_dot(q, d, v):
    """q += d * v (in place: q becomes (JᵀJ + diag(d)) v when it held JᵀJ v); returns v · q."""
    s = q.dtype.type(0.0)
    for i in range(q.shape[0]):
        t = q[i] + d[i] * v[i]
        q[i] = t
        s += v[i] * t
    return s


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def step(x, r, p, ap, alpha, best, save):
    """x += alpha p, r -= alpha ap (in place); returns r · r. With ``save``, x's old value goes to ``best``
    first (the best iterate so far, kept without a separate copy pass)."""
    a = r.dtype.type(alpha)
    s = r.dtype.type(0.0)
    for i in range(x.shape[0]):
        if save:
            best[i] = x[i]
        x[i] = x[i] + a * p[i]
        t = r[i] - a * ap[i]
        r[i] = t
        s += t * t
    return s


@njit(cache=True, nogil=True)
def direction(p, z, beta):
    """p = z + beta p (in place)."""
    b = p.dtype.type(beta)
    for i in range(p.shape[0]):
        p[i] = z[i] + b * p[i]
