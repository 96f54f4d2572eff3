"""Preconditioners for CGNR on the scaled normal equations: block-Jacobi and static block IC(k).

Precision decisions made here: the preconditioner is computed in fp64, stored in
``policy.preconditioner_storage`` (fp16 as real binary16 bits) and applied with
``policy.preconditioner_accumulate`` arithmetic.
"""
from __future__ import annotations

import numpy as np

from ..errors import SolverError
from ..kernels import ic0_factor, ic_solve, round16_array
from ..kernels.fp16 import block_diag_apply16
from ..kernels.products import block_diag_apply_nb, spd_block_inverse_nb
from ..precision import Precision, quantize_with_fallback
from .block_pattern import BlockPattern
from .operators import kernel_storage


def scale_blocks(pattern: BlockPattern, blocks: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """S H S for block storage (in the pattern's order) and a scalar column scale (nv*p,, variables' order)."""
    s = pattern.to_pattern_order(scale.reshape(pattern.nv, pattern.p))
    return blocks * s[pattern.block_rows][:, :, None] * s[pattern.indices][:, None, :]


class BlockJacobi:
    """Inverse of the diagonal blocks of the scaled, damped normal matrix, rebuilt per linear solve."""

    name = "block-jacobi"

    def __init__(self, diag_blocks: np.ndarray, damping: np.ndarray, storage: Precision, accumulate: Precision,
                 fallback: bool = True):
        nv, p, _ = diag_blocks.shape
        inv = np.empty((nv, p, p))
        # Compiled per-block Cholesky inverse; a block that is not positive definite (a variable no factor
        # constrains: the caller checks gauge first) gets a tiny relative diagonal shift.
        self.shifted = int(spd_block_inverse_nb(np.ascontiguousarray(diag_blocks, np.float64),
                                                np.ascontiguousarray(damping.reshape(nv, p), np.float64), inv))
        stored, self.stats, storage, fell = quantize_with_fallback(inv, storage, fallback)
        self.fallbacks = int(fell)
        self.storage = storage
        self.acc16 = accumulate in (Precision.FP16, Precision.BF16)
        self.inv = stored.astype(accumulate.compute_dtype)
        self.nv, self.p = nv, p
        self.nbytes = stored.nbytes

    def apply(self, r: np.ndarray) -> np.ndarray:
        rv = r.reshape(self.nv, self.p).astype(self.inv.dtype, copy=False)
        if self.acc16:
            rv = round16_array(rv)  # operands enter fp16 arithmetic as fp16
        if not self.acc16:
            out = np.empty_like(rv)
            block_diag_apply_nb(self.inv, np.ascontiguousarray(rv), out)
            return out.reshape(-1).astype(r.dtype, copy=False)
        # Emulated fp16 arithmetic: one rounding after every multiply and every add, in a fixed order.
        out = np.empty((self.nv, self.p), np.float32)
        block_diag_apply16(np.ascontiguousarray(self.inv, np.float32), np.ascontiguousarray(rv, np.float32), out)
        return out.reshape(-1).astype(r.dtype, copy=False)


class StaticIC:
    """Block IC(k) of the scaled JᵀJ (k = the pattern's fill level) at the first linearization, reused after.

    The factor approximates S0 H0 S0 (S0 the first column scaling); for a later scaled system S H S it is
    applied as z = c ∘ (L Lᵀ)⁻¹ (c ∘ r) with c = S0 / S, a diagonal correction that costs one multiply.
    With an elimination order on the pattern, L is the factor of P S0 H0 S0 Pᵀ and the vector is permuted
    in and out around the two triangular solves.
    """

    name = "ic"

    def __init__(self, pattern: BlockPattern, blocks: np.ndarray, scale0: np.ndarray, storage: Precision,
                 accumulate: Precision, first_shift: float = 1e-4, fallback: bool = True,
                 damping: np.ndarray | None = None):
        """``damping`` (nv*p,, variables' order): the scaled LM damping to add to the diagonal, or None."""
        self.pattern = pattern
        scaled = scale_blocks(pattern, blocks, scale0)
        if damping is not None:
            idx = np.arange(pattern.p)
            d = pattern.to_pattern_order(np.asarray(damping, np.float64).reshape(pattern.nv, pattern.p))
            scaled[pattern.diag_pos[:, None], idx[None, :], idx[None, :]] += d
        shift, L, ok, bad = 0.0, None, False, -1
        self.shift_tries = 0
        for attempt in range(12):
            if attempt:
                shift = first_shift if shift == 0.0 else shift * 10.0
                self.shift_tries += 1
            L, ok, bad = ic0_factor(pattern.indptr, pattern.indices, np.ascontiguousarray(scaled), shift)
            if ok:
                break
        if not ok:
            raise SolverError(f"incomplete Cholesky broke down at block row {bad} even with a diagonal shift "
                              f"of {shift:g}; the normal matrix is far from positive definite")
        self.shift = shift
        stored, self.stats, storage, fell = quantize_with_fallback(L, storage, fallback)
        self.fallbacks = int(fell)
        self.storage = storage
        self.L = kernel_storage(stored, storage)
        self.acc16 = accumulate in (Precision.FP16, Precision.BF16)
        self.compute_dtype = accumulate.compute_dtype
        self.scale0 = scale0
        self.correction = np.ones_like(scale0)
        self.nbytes = self.L.nbytes
        self.factor_stats = {"shift": shift, "shift_tries": self.shift_tries}

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
