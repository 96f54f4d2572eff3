"""One linearization of a least-squares problem: whitened residuals and two Jacobian blocks per row.

Every problem kind (pose graphs: both blocks act on poses; bundle adjustment: a camera block and a point block)
hands the linear solvers a :class:`Linearization`; the solvers never see the problem itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..kernels import jac_matvec, jac_rmatvec
from ..kernels.products import column_sq_norms_nb
from .operators import split_stacked

__all__ = ["Linearization", "model_decrease"]


@dataclass
class Linearization:
    """Whitened residuals and Jacobian blocks at one point, in the policy's residual precision."""

    r: np.ndarray
    """(m, k) whitened residuals."""
    A: np.ndarray
    """(m, k, p) whitened Jacobian blocks of each row's first variable."""
    B: np.ndarray
    """(m, k, p) whitened Jacobian blocks of each row's second variable."""
    ia: np.ndarray
    """(m,) variable index of the first block, -1 if that pose is fixed."""
    ib: np.ndarray
    """(m,) variable index of the second block, -1 if fixed."""
    nv: int
    """Variables of the first set (poses; BA: cameras)."""
    p: int
    """Tangent size of a first-set variable."""
    nb: int = 0
    """Variables of a second set (BA: points; may be 0 when every point is fixed)."""
    pb: int = 0
    """Tangent size of a second-set variable; 0 means there is no second set and B multiplies the first set
    too (pose graphs)."""
    _cache: dict = field(default_factory=dict, repr=False)
    """Gradients and column norms already computed for this linearization (LM and the solver both need
    them; a rejected step re-solves the same linearization)."""

    @property
    def size(self) -> int:
        """Length of the stacked update vector: nv*p (+ nb*pb)."""
        return self.nv * self.p + self.nb * self.pb

    def split(self, x: np.ndarray):
        """Views (xa (nv, p), xb) of a stacked vector; xb is xa when there is one variable set."""
        return split_stacked(x, self.nv, self.p, self.nb, self.pb)

    def gradient(self, dtype=np.float64) -> np.ndarray:
        """Jᵀr (size,) from the unquantized Jacobian, computed in ``dtype``."""
        key = ("gradient", np.dtype(dtype).str)
        if key not in self._cache:
            self._cache[key] = self._gradient(dtype)
        return self._cache[key]

    def _gradient(self, dtype) -> np.ndarray:
        g = np.zeros(self.size, dtype=dtype)
        ga, gb = self.split(g)
        jac_rmatvec(
            blocks_for(self.A, dtype),
            self.ia,
            blocks_for(self.B, dtype),
            self.ib,
            np.ascontiguousarray(self.r, dtype=dtype),
            ga,
            gb,
            False,
        )
        return g

    def column_sq_norms(self) -> np.ndarray:
        """diag(JᵀJ) (nv*p,) in fp64."""
        if "colsq" not in self._cache:
            self._cache["colsq"] = self._column_sq_norms()
        return self._cache["colsq"]

    def _column_sq_norms(self) -> np.ndarray:
        out = np.zeros(self.size)
        oa, ob = self.split(out)
        column_sq_norms_nb(np.ascontiguousarray(self.A), self.ia, np.ascontiguousarray(self.B), self.ib, oa, ob)
        return out

    def block_sets(self):
        """(blocks, variable index, offset in the stacked vector, block width) for A and for B."""
        off_b = self.nv * self.p if self.pb else 0
        return ((self.A, self.ia, 0, self.p), (self.B, self.ib, off_b, self.pb or self.p))


def blocks_dtype(blocks, arithmetic) -> np.dtype:
    """The dtype Jacobian blocks of dtype ``blocks`` enter a product computed in ``arithmetic`` with: their own
    when no wider (the kernels widen each value exactly as they load it: fp32 blocks in fp64 arithmetic need no
    full-size copy, 393 MB in fp64 on 2M BA observations, and give the same result bit for bit), else
    ``arithmetic`` (wider blocks are rounded first, as the arithmetic asks)."""
    blocks, arithmetic = np.dtype(blocks), np.dtype(arithmetic)
    if blocks in (np.float32, np.float64) and blocks.itemsize <= arithmetic.itemsize:
        return blocks
    return arithmetic


def blocks_for(M: np.ndarray, arithmetic) -> np.ndarray:
    """``M`` C-contiguous in :func:`blocks_dtype` (no copy when it already is)."""
    return np.ascontiguousarray(M, dtype=blocks_dtype(M.dtype, arithmetic))


def model_decrease(lin: Linearization, g: np.ndarray, delta: np.ndarray) -> float:
    """The decrease -gᵀδ - 0.5‖Jδ‖² the linear model predicts for ``delta`` (fp64, unquantized Jacobian)."""
    Jd = np.empty_like(lin.r, dtype=np.float64)
    da, db = lin.split(delta)
    jac_matvec(blocks_for(lin.A, np.float64), lin.ia, blocks_for(lin.B, np.float64), lin.ib, da, db, Jd, False)
    return float(-(g @ delta) - 0.5 * np.sum(Jd * Jd))
