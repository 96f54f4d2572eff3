"""One linearization on the device: whitened residuals and two Jacobian blocks per row (JAX arrays).

The device twin of :class:`mixslam.linear.linearization.Linearization`, with the same layout and index
convention (``ia``/``ib`` = -1 for a fixed variable; ``pb == 0``: one variable set, both blocks act on it, as
in pose graphs). It is a JAX pytree: the arrays are its leaves, the sizes its static data, so jitted
functions take it as an argument and specialize on its shapes only.

Scatter-adds over the variables use ``jax.ops.segment_sum`` with the fixed rows sent to one extra segment
(index ``n``) that is dropped: no masking of the gathered values, no out-of-range index.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .jax_device import jax, jnp

__all__ = ["DeviceLinearization", "gather_rows", "scatter_rows", "split_stacked", "column_sq_norms", "gradient"]

HIGHEST = jax.lax.Precision.HIGHEST
"""The precision of every fp32 dot product of the backend: on a GPU, JAX's default runs fp32 matrix products
in TF32 (10-bit significands), which is not the fp32 the policy asks for."""


@dataclass(frozen=True)
class DeviceLinearization:
    """Whitened residuals and Jacobian blocks at one point, in the policy's residual precision, on a device."""

    r: Any
    """(m, k) whitened residuals."""
    A: Any
    """(m, k, p) whitened Jacobian blocks of each row's first variable."""
    B: Any
    """(m, k, pb or p) whitened Jacobian blocks of each row's second variable."""
    ia: Any
    """(m,) int variable index of the first block, -1 if fixed."""
    ib: Any
    """(m,) int variable index of the second block, -1 if fixed."""
    nv: int
    """Variables of the first set (poses; BA: cameras)."""
    p: int
    """Tangent size of a first-set variable."""
    nb: int = 0
    """Variables of the second set (BA: points)."""
    pb: int = 0
    """Tangent size of a second-set variable; 0: one set (B multiplies the first set too)."""

    @property
    def size(self) -> int:
        """Length of the stacked update vector: nv*p (+ nb*pb)."""
        return self.nv * self.p + self.nb * self.pb

    @property
    def b_set(self) -> tuple[int, int]:
        """(variables, tangent size) of the set the B blocks act on."""
        return (self.nb, self.pb) if self.pb else (self.nv, self.p)

    @classmethod
    def from_host(cls, lin, device=None) -> DeviceLinearization:
        """A CPU :class:`~mixslam.linear.linearization.Linearization` copied to ``device`` (None: JAX's default)."""

        def put(x):
            return jax.device_put(np.ascontiguousarray(x), device)

        return cls(put(lin.r), put(lin.A), put(lin.B), put(lin.ia), put(lin.ib), lin.nv, lin.p, lin.nb, lin.pb)

    def to_host(self):
        """The CPU :class:`~mixslam.linear.linearization.Linearization` of the same values (numpy copies)."""
        from ..linear.linearization import Linearization

        return Linearization(
            np.asarray(self.r),
            np.asarray(self.A),
            np.asarray(self.B),
            np.asarray(self.ia, np.int64),
            np.asarray(self.ib, np.int64),
            self.nv,
            self.p,
            self.nb,
            self.pb,
        )


jax.tree_util.register_dataclass(
    DeviceLinearization, data_fields=["r", "A", "B", "ia", "ib"], meta_fields=["nv", "p", "nb", "pb"]
)


def replace(lin: DeviceLinearization, **changes) -> DeviceLinearization:
    """A copy with some fields changed (``dataclasses.replace``)."""
    return dataclasses.replace(lin, **changes)


def split_stacked(x, nv: int, p: int, nb: int = 0, pb: int = 0):
    """Views (xa (nv, p), xb (nb, pb)) of a stacked vector; xb is xa when pb == 0 (one variable set)."""
    xa = x[: nv * p].reshape(nv, p)
    return (xa, xa) if not pb else (xa, x[nv * p :].reshape(nb, pb))


def gather_rows(x, idx, n: int):
    """x[idx] (rows of an (n, p) array) with zero rows where idx == -1."""
    ext = jnp.concatenate([x, jnp.zeros((1, x.shape[1]), x.dtype)], axis=0)
    return ext[jnp.where(idx >= 0, idx, n)]


def scatter_rows(values, idx, n: int):
    """Σ of ``values`` (m, ...) into n rows by ``idx`` (rows with idx == -1 dropped)."""
    return jax.ops.segment_sum(values, jnp.where(idx >= 0, idx, n), num_segments=n + 1)[:n]


def _stack_sets(lin: DeviceLinearization, ga, gb):
    return ga.reshape(-1) if not lin.pb else jnp.concatenate([ga.reshape(-1), gb.reshape(-1)])


def _scatter_both(lin: DeviceLinearization, ta, tb):
    """Jᵀ-style scatter of per-row values ta (m, p, ...) / tb (m, pb, ...) into the stacked variables."""
    if not lin.pb:  # one set: both blocks' contributions land in the same rows
        vals = jnp.concatenate([ta, tb], axis=0)
        idx = jnp.concatenate([lin.ia, lin.ib])
        g = scatter_rows(vals, idx, lin.nv)
        return g, g
    return scatter_rows(ta, lin.ia, lin.nv), scatter_rows(tb, lin.ib, lin.nb)


@jax.jit
def column_sq_norms(lin: DeviceLinearization):
    """diag(JᵀJ) (size,) in fp64 from the unquantized blocks (the CPU's ``Linearization.column_sq_norms``)."""
    A = lin.A.astype(jnp.float64)
    B = lin.B.astype(jnp.float64)
    ga, gb = _scatter_both(lin, jnp.sum(A * A, axis=1), jnp.sum(B * B, axis=1))
    return _stack_sets(lin, ga, gb)


def gradient(lin: DeviceLinearization, dtype=jnp.float64):
    """Jᵀr (size,) from the unquantized Jacobian, computed in ``dtype`` (the policy's ``rhs`` precision)."""
    return _gradient(lin, np.dtype(dtype))


@partial(jax.jit, static_argnums=1)
def _gradient(lin: DeviceLinearization, dt):
    A, B, r = lin.A.astype(dt), lin.B.astype(dt), lin.r.astype(dt)
    ta = jnp.einsum("ekc,ek->ec", A, r, precision=HIGHEST, preferred_element_type=dt)
    tb = jnp.einsum("ekc,ek->ec", B, r, precision=HIGHEST, preferred_element_type=dt)
    ga, gb = _scatter_both(lin, ta, tb)
    return _stack_sets(lin, ga, gb)


def scatter_blocks(lin: DeviceLinearization, ta, tb):
    """Public form of the per-variable scatter: (ga, gb) sums of per-row values ta / tb (ga is gb for one
    variable set)."""
    return _scatter_both(lin, ta, tb)


def stack_sets(lin: DeviceLinearization, ga, gb):
    """The stacked vector (size,) of per-variable rows ga (nv, p) and gb (nb, pb)."""
    return _stack_sets(lin, ga, gb)
