"""Block-sparse products with the stored Jacobian on a JAX device, and the block-Jacobi preconditioner.

The operations of :class:`mixslam.linear.operators.JacobianOperator` and
:class:`mixslam.linear.preconditioners.BlockJacobiInverse`, on stacked vectors (size nv*p + nb*pb):

* ``jac_matvec``: y = J x, (m, k) per-row block products (a gather of each row's variables);
* ``jac_rmatvec``: g = Jᵀ y (a scatter-add, ``jax.ops.segment_sum``);
* ``normal_matvec``: JᵀJ p in one jitted function (XLA fuses the gather, the row products and the scatter),
  and ‖J p‖².

Precision: the stored blocks (fp64 / fp32 / fp16 / bf16) are widened exactly to the accumulation dtype (fp32,
or fp64 for fp64 storage after a fallback or an fp64 policy) and every product and sum runs in it:
``jnp.einsum(..., preferred_element_type=acc, precision=HIGHEST)``, the form that on a GPU keeps fp32
accumulation of 16-bit operands and keeps fp32 products out of TF32. Vectors enter in any float dtype and are
rounded once to the accumulation dtype (the CPU kernels compute in their vectors' dtype; in every preset the
two are the same). The order of the sums differs from the numba kernels': results agree to the rounding of a
k- or p-term sum.

Block-Jacobi: the diagonal blocks of S JᵀJ S are formed in fp64 from the unquantized blocks, the damping added,
each block inverted by Cholesky in fp64 (a block that is not positive definite gets the CPU's diagonal shift
of 1e-12 x its trace, then x1e6 until it factors), and the inverses stored in ``preconditioner_storage`` and
applied in ``preconditioner_accumulate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..precision import Precision, QuantizationStats, next_wider
from .jax_device import jax, jnp, lax
from .jax_linearization import HIGHEST, DeviceLinearization, gather_rows, scatter_rows, split_stacked
from .jax_storage import StoredJacobian, check_arithmetic, quantization_stats, quantize, scaled_blocks

__all__ = [
    "jac_matvec",
    "jac_rmatvec",
    "normal_matvec",
    "diag_blocks",
    "spd_block_inverse",
    "BlockJacobi",
    "block_jacobi",
    "apply_block_jacobi",
]


def _rows(J: StoredJacobian, x, acc):
    xa, xb = split_stacked(x.astype(acc), J.nv, J.p, J.nb, J.pb)
    ga = gather_rows(xa, J.ia, J.nv)
    gb = gather_rows(xb, J.ib, J.b_set[0])
    y = jnp.einsum("ekc,ec->ek", J.A, ga, preferred_element_type=acc, precision=HIGHEST)
    return y + jnp.einsum("ekc,ec->ek", J.B, gb, preferred_element_type=acc, precision=HIGHEST)


def _scatter(J: StoredJacobian, y, acc):
    y = y.astype(acc)
    ta = jnp.einsum("ekc,ek->ec", J.A, y, preferred_element_type=acc, precision=HIGHEST)
    tb = jnp.einsum("ekc,ek->ec", J.B, y, preferred_element_type=acc, precision=HIGHEST)
    if not J.pb:  # one variable set: both blocks land in the same rows
        g = scatter_rows(jnp.concatenate([ta, tb]), jnp.concatenate([J.ia, J.ib]), J.nv)
        return g.reshape(-1)
    return jnp.concatenate([scatter_rows(ta, J.ia, J.nv).reshape(-1), scatter_rows(tb, J.ib, J.nb).reshape(-1)])


@jax.jit
def jac_matvec(J: StoredJacobian, x):
    """y = J x, (m, k) in the accumulation dtype (fixed variables' blocks skipped)."""
    return _rows(J, x, J.acc_dtype)


@jax.jit
def jac_rmatvec(J: StoredJacobian, y):
    """g = Jᵀ y, (size,) in the accumulation dtype."""
    return _scatter(J, y, J.acc_dtype)


@jax.jit
def normal_matvec(J: StoredJacobian, p):
    """(JᵀJ p (size,), ‖J p‖²), both in the accumulation dtype, in one fused pass."""
    acc = J.acc_dtype
    t = _rows(J, p, acc)
    return _scatter(J, t, acc), jnp.sum(t * t)


@jax.jit
def diag_blocks(lin: DeviceLinearization, scale):
    """The diagonal blocks of S JᵀJ S in fp64 from the unquantized blocks: (Da (nv, p, p), Db (nb, pb, pb)),
    Db None for one variable set (the CPU's ``scaled_diag_blocks``)."""
    As, Bs = scaled_blocks(lin, scale)
    ga = jnp.einsum("ekc,ekd->ecd", As, As, precision=HIGHEST)
    gb = jnp.einsum("ekc,ekd->ecd", Bs, Bs, precision=HIGHEST)
    if not lin.pb:
        return scatter_rows(jnp.concatenate([ga, gb]), jnp.concatenate([lin.ia, lin.ib]), lin.nv), None
    return scatter_rows(ga, lin.ia, lin.nv), scatter_rows(gb, lin.ib, lin.nb)


@jax.jit
def spd_block_inverse(D, damping):
    """((D[n] + diag(damping[n]))⁻¹ per block in fp64, blocks that needed a shift): Cholesky, with the CPU's
    shift rule for a block that is not positive definite (1e-12 x its trace, then x1e6; an all-zero block the
    identity's shift 1)."""
    p = D.shape[-1]
    eye = jnp.eye(p, dtype=jnp.float64)
    H = D + damping[:, :, None] * eye
    tr = jnp.trace(H, axis1=1, axis2=2)
    base = jnp.where(tr > 0, 1e-12 * tr, 1.0)

    def factor(shift):
        L = jnp.linalg.cholesky(H + shift[:, None, None] * eye)
        return L, jnp.any(~jnp.isfinite(L), axis=(1, 2))

    L0, bad0 = factor(jnp.zeros_like(tr))

    def more(state):
        shift, L, bad, tries = state
        shift = jnp.where(bad, jnp.maximum(shift * 1e6, base), shift)
        L2, bad2 = factor(shift)
        return shift, jnp.where(bad[:, None, None], L2, L), bad & bad2, tries + 1

    _, L, _, _ = lax.while_loop(
        lambda s: jnp.any(s[2]) & (s[3] < 12), more, (jnp.zeros_like(tr), L0, bad0, jnp.zeros((), jnp.int32))
    )
    Linv = jax.scipy.linalg.solve_triangular(L, jnp.broadcast_to(eye, L.shape), lower=True)
    return jnp.einsum("nqi,nqj->nij", Linv, Linv, precision=HIGHEST), jnp.sum(bad0)


@dataclass(frozen=True)
class BlockJacobi:
    """The stored inverse diagonal blocks of the scaled, damped normal matrix, one array per variable set. A
    JAX pytree (the formats static)."""

    inv_a: Any
    """(nv, p, p) stored inverses of the first set."""
    inv_b: Any
    """(nb, pb, pb) of the second set, or None (one set)."""
    storage: Precision
    accumulate: Precision

    @property
    def acc_dtype(self):
        return jnp.float64 if self.accumulate is Precision.FP64 else jnp.float32

    @property
    def nbytes(self) -> int:
        return int(self.inv_a.nbytes + (0 if self.inv_b is None else self.inv_b.nbytes))


jax.tree_util.register_dataclass(BlockJacobi, data_fields=["inv_a", "inv_b"], meta_fields=["storage", "accumulate"])


def block_jacobi(
    lin: DeviceLinearization,
    scale,
    damping,
    storage: Precision | str,
    accumulate: Precision | str,
    fallback: bool = True,
) -> tuple[BlockJacobi, QuantizationStats, int]:
    """Block-Jacobi of the scaled system (S JᵀJ S + diag(``damping``)) of ``lin`` (``scale``, ``damping``:
    (size,) fp64), stored in ``storage`` for ``accumulate`` arithmetic; returns (it, the statistics of storing
    it, the blocks that needed a shift). One fallback decision for both sets, as one stored operand."""
    storage, accumulate = Precision.parse(storage), Precision.parse(accumulate)
    check_arithmetic(accumulate, "preconditioner_accumulate")
    Da, Db = diag_blocks(lin, jnp.asarray(scale, jnp.float64))
    d = jnp.asarray(damping, jnp.float64)
    da, db = split_stacked(d, lin.nv, lin.p, lin.nb, lin.pb)
    inv_a, sh_a = spd_block_inverse(Da, da)
    invs, shifted = [inv_a], int(sh_a)
    if Db is not None:
        inv_b, sh_b = spd_block_inverse(Db, db)
        invs.append(inv_b)
        shifted += int(sh_b)
    q = [quantize(v, storage) for v in invs]
    counts = sum(c for _, c, _ in q)
    stats = quantization_stats(sum(v.size for v in invs), counts, max(float(m) for _, _, m in q))
    used = storage
    if stats.overflows and fallback and storage is not Precision.FP64:
        used = next_wider(storage)
        q = [quantize(v, used) for v in invs]
        stats.fallbacks = 1
    acc = accumulate if accumulate.contains(used) else used
    stored = [s for s, _, _ in q]
    return BlockJacobi(stored[0], stored[1] if len(stored) > 1 else None, used, acc), stats, shifted


@jax.jit
def apply_block_jacobi(M: BlockJacobi, r):
    """z = M r (size,): each variable's block times its rows of ``r``, in the accumulation dtype; returned in
    ``r``'s dtype (the CPU's ``BlockJacobiInverse.apply``)."""
    acc = M.acc_dtype
    out = []
    o = 0
    for inv in (M.inv_a, M.inv_b):
        if inv is None:
            continue
        n, p, _ = inv.shape
        rv = r[o : o + n * p].reshape(n, p).astype(acc)
        out.append(jnp.einsum("nij,nj->ni", inv, rv, preferred_element_type=acc, precision=HIGHEST).reshape(-1))
        o += n * p
    z = out[0] if len(out) == 1 else jnp.concatenate(out)
    return z.astype(r.dtype)


def host(x) -> np.ndarray:
    """A device array as numpy (16-bit formats widened to fp32: numpy has no bfloat16)."""
    a = np.asarray(x.astype(jnp.float32) if x.dtype in (jnp.float16, jnp.bfloat16) else x)
    return a
