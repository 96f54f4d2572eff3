"""Preconditioners of CG on the column-scaled normal equations: block-Jacobi, block incomplete Cholesky, none.

Precision decisions made here: each preconditioner is computed in fp64 and handed to
:func:`mixslam.storage.store` with ``policy.preconditioner_storage`` / ``preconditioner_accumulate`` (fp16 as
real binary16 bits, fallback as for every stored operand); it is applied with that arithmetic.

Two layers: the numeric objects (:class:`BlockJacobiInverse`, :class:`ICFactor`) hold one stored
preconditioner; the :class:`~mixslam.linear.base.Preconditioner` implementations (:class:`JacobiPreconditioner`,
:class:`ICPreconditioner`, :class:`IdentityPreconditioner`) decide when to build them. The incomplete
factor's refactor and escalation policy (:class:`~mixslam.linear.config.ICConfig`) lives in
:class:`ICPreconditioner` alone.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import SolverError
from ..kernels import ic0_factor, ic_solve, round16_array
from ..kernels.fp16 import block_diag_apply16
from ..kernels.products import block_diag_apply_nb, diag_blocks_nb, spd_block_inverse_nb
from ..precision import Precision, PrecisionPolicy, QuantizationStats
from ..storage import kernel_types, store
from .base import LinearStatus, Preconditioner, PreconditionerStats
from .block_pattern import BlockPattern
from .config import ICConfig, fill_level_of

__all__ = [
    "BlockJacobiInverse",
    "ICFactor",
    "JacobiPreconditioner",
    "ICPreconditioner",
    "IdentityPreconditioner",
    "scale_blocks",
    "scaled_diag_blocks",
]

_F64 = np.dtype(np.float64)


def scale_blocks(pattern: BlockPattern, blocks: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """S H S for block storage (in the pattern's order) and a scalar column scale (nv*p,, variables' order)."""
    s = pattern.to_pattern_order(scale.reshape(pattern.nv, pattern.p))
    return blocks * s[pattern.block_rows][:, :, None] * s[pattern.indices][:, None, :]


def scaled_diag_blocks(lin, scale: np.ndarray) -> list:
    """Diagonal blocks of S JᵀJ S in fp64: [(blocks (n, p, p), slice of the stacked vector)] per variable set."""
    sa, sb = lin.split(scale)
    Da = np.empty((lin.nv, lin.p, lin.p))
    Db = np.empty((lin.nb, lin.pb, lin.pb)) if lin.pb else Da
    diag_blocks_nb(
        np.ascontiguousarray(lin.A),
        lin.ia,
        np.ascontiguousarray(lin.B),
        lin.ib,
        np.ascontiguousarray(sa),
        np.ascontiguousarray(sb),
        Da,
        Db,
    )
    n_a = lin.nv * lin.p
    if not lin.pb:
        return [(Da, slice(0, n_a))]
    return [(Da, slice(0, n_a)), (Db, slice(n_a, lin.size))]


class BlockJacobiInverse:
    """Inverse of the diagonal blocks of one variable set of the scaled, damped normal matrix."""

    def __init__(
        self,
        diag_blocks: np.ndarray,
        damping: np.ndarray,
        storage: Precision,
        accumulate: Precision,
        fallback: bool = True,
    ):
        nv, p, _ = diag_blocks.shape
        inv = np.empty((nv, p, p))
        # Compiled per-block Cholesky inverse; a block that is not positive definite (a variable no factor
        # constrains: the caller checks gauge first) gets a tiny relative diagonal shift.
        self.shifted = int(
            spd_block_inverse_nb(
                np.ascontiguousarray(diag_blocks, np.float64),
                np.ascontiguousarray(damping.reshape(nv, p), np.float64),
                inv,
            )
        )
        st = store(inv, storage, accumulate, fallback)
        self.stats = st.stats
        self.storage = st.storage
        self.acc16 = st.acc16
        self.inv = st.dequantized()  # the kernel reads the stored values widened to its arithmetic's dtype
        self.nv, self.p = nv, p
        self.nbytes = st.nbytes

    def apply(self, r: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """M⁻¹ r for this set's blocks; written into ``out`` (r's shape and dtype) when given."""
        rv = r.reshape(self.nv, self.p).astype(self.inv.dtype, copy=False)
        if not self.acc16 and out is not None and out.dtype == self.inv.dtype and out.flags.c_contiguous:
            block_diag_apply_nb(self.inv, np.ascontiguousarray(rv), out.reshape(self.nv, self.p))  # in place
            return out
        if not self.acc16:
            res = np.empty_like(rv)
            block_diag_apply_nb(self.inv, np.ascontiguousarray(rv), res)
        else:
            # Emulated fp16 arithmetic: operands enter as fp16, one rounding after every multiply and every
            # add, in a fixed order.
            res = np.empty((self.nv, self.p), np.float32)
            inv32 = np.ascontiguousarray(self.inv, np.float32)
            block_diag_apply16(inv32, np.ascontiguousarray(round16_array(rv), np.float32), res)
        z = res.reshape(-1).astype(r.dtype, copy=False)
        if out is None:
            return z
        out[:] = z
        return out


class ICFactor:
    """Block IC(k) of the scaled JᵀJ (k = the pattern's fill level) at one linearization, stored.

    The factor approximates S0 H0 S0 (S0 the column scaling it was computed with); for a later scaled system
    S H S it is applied as z = c ∘ (L Lᵀ)⁻¹ (c ∘ r) with c = S0 / S, a diagonal correction that costs one
    multiply. With an elimination order on the pattern, L is the factor of P S0 H0 S0 Pᵀ and the vector is
    permuted in and out around the two triangular solves.
    """

    def __init__(
        self,
        pattern: BlockPattern,
        blocks: np.ndarray,
        scale0: np.ndarray,
        storage: Precision,
        accumulate: Precision,
        first_shift: float = 1e-4,
        fallback: bool = True,
        damping: np.ndarray | None = None,
    ):
        """``damping`` (nv*p,, variables' order): the scaled LM damping to add to the diagonal, or None."""
        self.pattern = pattern
        scaled = scale_blocks(pattern, blocks, scale0)
        if damping is not None:
            idx = np.arange(pattern.p)
            d = pattern.to_pattern_order(np.asarray(damping, np.float64).reshape(pattern.nv, pattern.p))
            scaled[pattern.diag_pos[:, None], idx[None, :], idx[None, :]] += d
        shift, ok, bad = 0.0, False, -1
        L = np.empty(0)
        self.shift_tries = 0
        for attempt in range(12):
            if attempt:
                shift = first_shift if shift == 0.0 else shift * 10.0
                self.shift_tries += 1
            L, ok, bad = ic0_factor(pattern.indptr, pattern.indices, np.ascontiguousarray(scaled), shift)
            if ok:
                break
        if not ok:
            raise SolverError(
                f"incomplete Cholesky broke down at block row {bad} even with a diagonal shift "
                f"of {shift:g}; the normal matrix is far from positive definite"
            )
        self.shift = shift
        st = store(L, storage, accumulate, fallback)
        self.stats = st.stats
        self.storage = st.storage
        self.L = st.values
        self.acc16 = st.acc16
        self.compute_dtype = st.compute_dtype
        self.scale0 = scale0
        self.correction = np.ones_like(scale0)
        self.nbytes = st.nbytes

    def set_scale(self, scale: np.ndarray) -> None:
        self.correction = self.scale0 / scale

    def apply(self, r: np.ndarray) -> np.ndarray:
        nv, p = self.pattern.nv, self.pattern.p
        c = self.correction.astype(self.compute_dtype)
        pat = self.pattern
        b = np.ascontiguousarray(pat.to_pattern_order((c * r.astype(self.compute_dtype)).reshape(nv, p)))
        x = np.empty_like(b)
        ic_solve(pat.indptr, pat.indices, self.L, b, x, self.acc16)
        return (c * pat.from_pattern_order(x).reshape(-1)).astype(r.dtype, copy=False)


class IdentityPreconditioner(Preconditioner):
    """No preconditioning (``none``): plain CGNR, for studies."""

    name = "none"
    is_identity = True

    def prepare(self, lin, scale, damping, new_linearization, times) -> QuantizationStats:
        return QuantizationStats()

    def apply(self, r: np.ndarray) -> np.ndarray:
        return r


class JacobiPreconditioner(Preconditioner):
    """Block-Jacobi: the inverse diagonal blocks of the scaled, damped normal matrix, one set per variable
    kind (BA: cameras and points), rebuilt for every solve (the damping changes on a rejected step)."""

    name = "jacobi"

    def __init__(self, policy: PrecisionPolicy):
        self.policy = policy
        self.parts: list[BlockJacobiInverse] = []
        self.sizes: list[int] = []

    def prepare(self, lin, scale, damping, new_linearization, times) -> QuantizationStats:
        pol = self.policy
        stats = QuantizationStats()
        self.parts, self.sizes = [], []
        for diag, sl in scaled_diag_blocks(lin, scale):
            part = BlockJacobiInverse(
                diag, damping[sl], pol.preconditioner_storage, pol.preconditioner_accumulate, pol.fallback
            )
            self.parts.append(part)
            self.sizes.append(part.nv * part.p)
            stats = stats.merge(part.stats)
        return stats

    def apply(self, r: np.ndarray) -> np.ndarray:
        if len(self.parts) == 1:
            return self.parts[0].apply(r)
        out = np.empty_like(r)
        o = 0
        for q, n in zip(self.parts, self.sizes):
            q.apply(r[o : o + n], out[o : o + n])  # each set into its slice: no concatenation pass
            o += n
        return out

    @property
    def nbytes(self) -> int:
        return sum(q.nbytes for q in self.parts)


class ICPreconditioner(Preconditioner):
    """Static block incomplete Cholesky IC(k) of the scaled JᵀJ, with its refactor and escalation policy.

    The factor is computed at the first linearization and reused (``ICConfig.refactor``: recomputed when a
    solve stalls with an old factor, at every linearization, or never). If even a factor of the current
    linearization leaves CG far from the solution, the preconditioner escalates once, for the rest of the
    solve, to the complete factor in minimum-degree order (``ICConfig.escalate``).
    """

    name = "ic"

    def __init__(self, pattern: BlockPattern, policy: PrecisionPolicy, config: ICConfig | None = None):
        """``pattern``: the block pattern of the normal matrix (the pose graph's); fill and ordering are
        applied here."""
        self.config = config or ICConfig()
        self.policy = policy
        self._graph_pattern = pattern
        if self.config.ordering == "min-degree":
            pattern = pattern.with_min_degree_order()
        self.pattern = pattern.with_fill(fill_level_of(self.config.fill_level, pattern.nv))
        self.factor: ICFactor | None = None
        self.escalated = False
        self._factored_for = None  # the linearization the current factor was computed at
        self.age = 0  # linear solves since the last factorization
        self.factorizations = 0

    def _factorize(self, lin, scale, damping, times) -> QuantizationStats:
        t0 = time.perf_counter()
        cfg, pol = self.config, self.policy
        # An escalated factor is recomputed at every linearization, so the damping it is used with is known.
        damped = damping if (cfg.damped or self.escalated) else None
        while True:
            self.factor = ICFactor(
                self.pattern,
                self.pattern.assemble(lin.A, lin.B),
                scale,
                pol.preconditioner_storage,
                pol.preconditioner_accumulate,
                cfg.shift,
                pol.fallback,
                damped,
            )
            if self.factor.shift <= cfg.shift_tolerance or self.pattern.fill_level + 2 > cfg.max_fill_level:
                break
            # The factor only exists with a large shift: a poor approximation. Keep more fill instead.
            self.pattern = self.pattern.with_fill(self.pattern.fill_level + 2)
        self.age = 0
        self._factored_for = lin
        self.factorizations += 1
        self._current().set_scale(scale)
        times["ic_factor"] = times.get("ic_factor", 0.0) + time.perf_counter() - t0
        return self._current().stats

    def prepare(self, lin, scale, damping, new_linearization, times) -> QuantizationStats:
        stats = QuantizationStats()
        # Once escalated, the factor is recomputed at every new linearization: escalation means the Jacobian
        # changes too much between iterations for any static factor (ais2klinik: 29 s instead of 106 s with
        # refactoring on stalls only, to the same optimum).
        if self.factor is None or ((self.config.refactor == "always" or self.escalated) and new_linearization):
            stats = self._factorize(lin, scale, damping, times)
        self._current().set_scale(scale)
        return stats

    def _current(self) -> ICFactor:
        if self.factor is None:
            raise RuntimeError("ICPreconditioner used before prepare()")
        return self.factor

    def retry(self, lin, scale, damping, result, times) -> QuantizationStats | None:
        cfg = self.config
        if result.status == LinearStatus.CONVERGED:
            return None
        if cfg.refactor == "on_stall" and self.age > 0:
            # The static factor no longer approximates JᵀJ here: refactor at this linearization and redo.
            return self._factorize(lin, scale, damping, times)
        complete_md = self.pattern.order is not None and self.pattern.is_complete
        if (
            cfg.escalate
            and cfg.refactor != "never"
            and not self.escalated
            and not complete_md
            and self._factored_for is lin
            and not result.relative_residual <= cfg.escalate_residual
        ):
            # Even a factor of this very linearization leaves CG far from the solution: the incomplete
            # factor is too weak for this graph (a long chain with few loops: ais2klinik). Switch, for the
            # rest of the solve, to the complete factor in minimum-degree order, which stays sparse.
            self.pattern = self._graph_pattern.with_min_degree_order().with_fill(self._graph_pattern.nv)
            self.escalated = True
            return self._factorize(lin, scale, damping, times)
        return None

    def end_solve(self) -> None:
        self.age += 1

    def apply(self, r: np.ndarray) -> np.ndarray:
        return self._current().apply(r)

    @property
    def nbytes(self) -> int:
        return 0 if self.factor is None else self.factor.nbytes

    def stats(self) -> PreconditionerStats | None:
        if self.factor is None:
            return None
        pat = self.pattern
        return PreconditionerStats(
            shift=self.factor.shift,
            shift_tries=self.factor.shift_tries,
            fill_level="complete" if pat.is_complete else pat.fill_level,
            ordering="min-degree" if pat.order is not None else "natural",
            escalated=self.escalated,
            factorizations=self.factorizations,
        )

    def kernel_specs(self) -> set:
        pol = self.policy
        store_dt, compute_dt, acc16 = kernel_types(pol.preconditioner_storage, pol.preconditioner_accumulate)
        return {("ic_factor", _F64, _F64, False), ("ic_solve", store_dt, compute_dt, acc16)}
