"""The Jacobian as an operator stored in the policy's precision, and the Krylov arithmetic of a precision.

Precision decisions made here (all read from the :class:`~mixslam.precision.PrecisionPolicy`):

* :class:`JacobianOperator` stores the column-scaled Jacobian blocks in ``jacobian_storage`` (fp16 as real
  binary16 bits, read by the kernels through ``vcvtph2ps``) and runs J·x, Jᵀ·y and JᵀJ·p with
  ``jacobian_accumulate`` arithmetic (fp16 accumulation is emulated exactly: fp32 op + one fp16 rounding).
* :class:`KrylovArith` holds vectors and scalars in ``krylov`` precision (fp16 emulated the same way, with
  dot products accumulated sequentially in fp16).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..kernels import jac_matvec, jac_rmatvec, normal_matvec
from ..kernels.camera_major import CameraMajor, cm_matvec, cm_normal, cm_rmatvec, fill_scaled
from ..kernels.camera_major import structure_of as camera_major_structure
from ..kernels.fp16 import axpy16, dot16, round16_count
from ..kernels.products import plan_for, scaled_rows_nb
from ..kernels.vector_products import ProductPlan
from ..precision import Precision, QuantizationStats, is_16bit
from ..storage import kernel_dtype, store_chunked, store_filled


def split_stacked(x: np.ndarray, nv: int, p: int, nb: int = 0, pb: int = 0):
    """Views (xa (nv, p), xb (nb, pb)) of a vector stacking two variable sets; xb is xa when pb == 0 (one set,
    as in pose graphs, where both Jacobian blocks of a row act on the same vector)."""
    xa = x[: nv * p].reshape(nv, p)
    return (xa, xa) if not pb else (xa, x[nv * p :].reshape(nb, pb))


def power_of_two(x: np.ndarray | float) -> np.ndarray:
    """Round positive factors to the nearest power of two (scaling by them is exact in binary floating point)."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp2(np.round(np.log2(x)))


def column_scale(colsq: np.ndarray) -> np.ndarray:
    """The power-of-two Jacobi scaling S of the CG solvers: S JᵀJ S has a diagonal near 1, so 16-bit storage
    neither overflows nor underflows; a column no residual touches keeps scale 1."""
    scale = power_of_two(1.0 / np.sqrt(np.maximum(colsq, 1e-300)))
    return np.where(colsq > 0, scale, 1.0)


QUANTIZE_CHUNK = 1 << 20
"""Jacobian entries scaled and quantized per chunk (8 MiB of fp64)."""


class JacobianOperator:
    """J (two blocks per row, one variable set) with columns scaled by ``scale``, stored in ``storage``."""

    def __init__(
        self,
        A,
        ia,
        B,
        ib,
        nv: int,
        p: int,
        scale: np.ndarray,
        storage: Precision,
        accumulate: Precision,
        fallback: bool = True,
        nb: int = 0,
        pb: int = 0,
        layout: str = "rows",
        like: CameraMajor | None = None,
    ):
        if layout not in ("rows", "auto"):
            raise ValueError(f"layout must be 'rows' or 'auto', got {layout!r}")
        self.ia, self.ib, self.nv, self.p, self.nb, self.pb = ia, ib, nv, p, nb, pb
        sa, sb = self.split(scale)
        A, B = np.ascontiguousarray(A), np.ascontiguousarray(B)
        sa, sb = np.ascontiguousarray(sa), np.ascontiguousarray(sb)

        self.k = A.shape[1]
        self.A: np.ndarray | None = None
        self.B: np.ndarray | None = None
        """The stored row blocks (``rows`` layout; None when the camera-major layout holds the values)."""
        self.camera_major: CameraMajor | None = None
        """The camera-major layout (:mod:`mixslam.kernels.camera_major`) when ``layout="auto"`` chose it: two
        variable sets, fp32/fp64 arithmetic, each camera sees a point once. The row blocks are then dropped."""
        storage, accumulate = Precision.parse(storage), Precision.parse(accumulate)
        structure = None
        if layout == "auto" and pb and not is_16bit(accumulate) and storage is not Precision.BF16:
            structure = camera_major_structure(A, ia, B, ib, nv, nb, like=like)
        if structure is not None:
            # Scaled, rounded and placed in the batches in one compiled pass per block set (no row-block copy):
            # 0.1 s -> about 0.02 s per linearization on 600k BA observations.
            def fill(prec: Precision):
                JA, JB, st = fill_scaled(structure, A, ia, sa, B, ib, sb, kernel_dtype(prec))
                stats = QuantizationStats(count=A.size + B.size)
                (stats.nonfinite_inputs, stats.max_abs, stats.overflows, stats.underflows, stats.subnormals) = st
                return (JA, JB), stats

            (JA, JB), used, acc, stats = store_filled(fill, storage, accumulate, fallback)
            self.stats, self.storage, self.accumulate = stats, used, acc
            self.acc16 = is_16bit(acc)
            self.camera_major = dataclasses.replace(structure, JA=JA, JB=JB)
            self.nbytes = self.camera_major.nbytes
        else:
            self.nbytes = self._store_rows(A, ia, sa, B, ib, sb, storage, accumulate, fallback)
        self.plan: ProductPlan | None = None
        """The products' chunking and accumulators (:class:`~mixslam.kernels.vector_products.ProductPlan`),
        built by the first product and reused by the others."""

    def _store_rows(self, A, ia, sa, B, ib, sb, storage: Precision, accumulate: Precision, fallback: bool) -> int:
        """The row-block layout: the scaled blocks quantized in chunks (no full-size fp64 copy); returns the
        stored bytes."""

        def parts():
            """The scaled blocks, A's rows then B's, in chunks."""
            off = 0
            for M, idx, s in ((A, ia, sa), (B, ib, sb)):
                per = M.shape[1] * M.shape[2]
                step = max(1, QUANTIZE_CHUNK // max(per, 1))
                buf = np.empty(step * per)
                for e0 in range(0, M.shape[0], step):
                    e1 = min(M.shape[0], e0 + step)
                    n = (e1 - e0) * per
                    scaled_rows_nb(M, idx, s, e0, e1, buf)
                    yield off, buf[:n]
                    off += n

        # One quantization of both blocks together, so a fallback applies to the whole operator.
        st = store_chunked(A.size + B.size, parts, storage, accumulate, fallback)
        self.stats = st.stats
        self.storage, self.accumulate = st.storage, st.accumulate
        self.A = st.values[: A.size].reshape(A.shape)
        self.B = st.values[A.size :].reshape(B.shape)
        self.acc16 = st.acc16
        return int(st.values.nbytes)

    @property
    def fallbacks(self) -> int:
        return self.stats.fallbacks

    @classmethod
    def from_linearization(
        cls,
        lin,
        scale,
        storage: Precision,
        accumulate: Precision,
        fallback: bool = True,
        layout: str = "rows",
        like: CameraMajor | None = None,
    ):
        """The column-scaled Jacobian of ``lin`` stored in ``storage`` for ``accumulate`` arithmetic.

        ``layout``: ``rows`` keeps the row blocks (``A``, ``B``: what the implicit Schur kernels read);
        ``auto`` uses the camera-major layout where it serves (bundle adjustment's CG products, 2-5x faster);
        ``like``: the previous operator's layout, whose structure is reused when ``lin`` has the same indices.
        """
        return cls(
            lin.A,
            lin.ia,
            lin.B,
            lin.ib,
            lin.nv,
            lin.p,
            scale,
            storage,
            accumulate,
            fallback,
            lin.nb,
            lin.pb,
            layout,
            like,
        )

    @property
    def size(self) -> int:
        return self.nv * self.p + self.nb * self.pb

    def split(self, x: np.ndarray):
        return split_stacked(x, self.nv, self.p, self.nb, self.pb)

    def normal_matvec(self, p_vec: np.ndarray, out: np.ndarray) -> float:
        """out = JᵀJ p (scaled space); returns ‖J p‖²."""
        pa, pb = self.split(p_vec)
        oa, ob = self.split(out)
        if self.camera_major is not None:
            return cm_normal(self.camera_major, pa, pb, oa, ob)
        self.plan = plan_for(self.ia, self.ib, oa is ob, self.plan)
        return normal_matvec(self.A, self.ia, self.B, self.ib, pa, pb, oa, ob, self.acc16, plan=self.plan)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        y = np.empty((self.ia.shape[0], self.k), dtype=x.dtype)
        xa, xb = self.split(x)
        if self.camera_major is not None:
            cm_matvec(self.camera_major, xa, xb, y)
            return y
        self.plan = plan_for(self.ia, self.ib, xa is xb, self.plan)
        jac_matvec(self.A, self.ia, self.B, self.ib, xa, xb, y, self.acc16, plan=self.plan)
        return y

    def rmatvec(self, y: np.ndarray, dtype=None) -> np.ndarray:
        g = np.zeros(self.size, dtype=dtype or y.dtype)
        ga, gb = self.split(g)
        y = np.ascontiguousarray(y, dtype=g.dtype)
        if self.camera_major is not None:
            cm_rmatvec(self.camera_major, y, ga, gb)
            return g
        self.plan = plan_for(self.ia, self.ib, ga is gb, self.plan)
        jac_rmatvec(self.A, self.ia, self.B, self.ib, y, ga, gb, self.acc16, plan=self.plan)
        return g


class KrylovArith:
    """Vector arithmetic of one precision: fp64, fp32, or fp16 emulated exactly on fp32 arrays."""

    def __init__(self, precision: Precision):
        self.precision = precision
        self.dtype = precision.compute_dtype
        self.r16 = is_16bit(precision)
        self.overflows = 0
        """Finite values that became infinite when rounded to fp16 (counted, never hidden)."""

    def round(self, x):
        """One rounding to the Krylov precision (identity for fp32/fp64 arrays of that dtype)."""
        x = np.asarray(x, dtype=self.dtype)
        if self.r16:
            flat = np.ascontiguousarray(x).reshape(-1)
            out = np.empty_like(flat)
            self.overflows += int(round16_count(flat, out))
            return out.reshape(x.shape)
        return x

    def scalar(self, a: float):
        if self.r16:
            with np.errstate(over="ignore"):
                return np.float32(np.float16(a))
        return self.dtype.type(a)

    def dot(self, x, y) -> float:
        if self.r16:
            # Sequential fp16 accumulation (each product and each partial sum rounded to fp16).
            return float(dot16(np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.float32)))
        return float(np.dot(x, y))

    def axpy(self, a, x, y):
        """y + a x, rounded per operation."""
        if self.r16:
            out = np.empty(np.shape(x), np.float32)
            self.overflows += int(
                axpy16(float(a), np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.float32), out)
            )
            return out
        return y + self.scalar(a) * x

    def mul(self, a, x):
        """Elementwise a * x (a a vector or scalar)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self.round(np.asarray(a, dtype=self.dtype) * x)
