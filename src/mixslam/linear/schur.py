"""Schur-complement solver of bundle adjustment: fp64, or fp32 refined to fp64 (a mixed-precision direct solve).

Eliminates the points (3x3 blocks, factored exactly), forms the dense reduced camera system S with the
compiled kernels of :mod:`mixslam.kernels.schur`, factors it with LAPACK's Cholesky and back-substitutes the
points. The policy's ``factor`` field decides the format of all of it (the one place it is read for bundle
adjustment):

fp64
    Point blocks, S, its factor and the back-substitution in fp64 (an fp32 linearization is widened exactly):
    the accuracy baseline.
fp32
    The same in fp32 (fp32 accumulation, ``spotrf``), used as an approximate inverse M ≈ H⁻¹ of the full
    damped normal matrix H = JᵀJ + D: :func:`~mixslam.linear.refinement.refine` brings the step to the fp64
    residual tolerance of :class:`~mixslam.linear.config.DirectConfig` with fp64 residuals ‖-g - H δ‖ (the
    Jacobian as evaluated, products in fp64), PCG with M when refinement stalls. When fp32 does not pay on a
    problem (its factorization breaks down, or a step needs more than ``max_fp32_iterations`` solves with
    M, or does not converge) the rest of the solve runs in fp64 (``fp64_fallback``), and a step that had not
    converged is redone in fp64. Every choice is counted in :class:`~mixslam.linear.base.DirectStats`.

Decision: the reduced camera system is dense. BA windows and the BAL files used here have at most a few
hundred cameras (49 x 9 = 441 unknowns), where a dense factorization takes a millisecond or less and beats
any sparse one; above ``MAX_DENSE`` unknowns the solver refuses and names the CG solver instead.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg

from ..errors import ConfigError
from ..kernels import normal_matvec
from ..kernels.products import static_size
from ..kernels.schur import camera_pairs, padded_width, schur_back, schur_point_blocks, schur_reduce, schur_rhs
from ..precision import Precision, PrecisionPolicy
from .base import Damping, DirectStats, LinearResult, LinearSolver, LinearStatus, MemoryUse
from .config import DirectConfig
from .linearization import Linearization, model_decrease
from .refinement import fp32_verdict, refine_to

_F64 = np.dtype(np.float64)
_F32 = np.dtype(np.float32)

SCHUR_KERNELS = ("schur", _F64, _F64, False)
"""The Schur solver's compiled kernels (pairs, point blocks, reduction, solves) in fp64 as one warm-up entry."""
SCHUR_KERNELS_32 = ("schur", _F32, _F32, False)
"""The same in fp32 (the elimination of a policy whose ``factor`` is fp32)."""

MAX_DENSE = 6000
"""Largest reduced camera system (cameras x camera tangent size) factored densely."""

#: Relative diagonal shifts tried, in turn, when the fp32 factorization of S breaks down.
SHIFTS = (1e-6, 1e-4, 1e-2)


class SchurSolver(LinearSolver):
    """Levenberg-Marquardt step by landmark elimination in the policy's ``factor`` format (fp64 or fp32)."""

    name = "schur"
    initial_lambda = 1e-5
    """Used only when ``LMConfig.initial_lambda`` is None (bundle adjustment's defaults set 1e-4, as Ceres)."""

    def __init__(
        self, nc: int, pc: int, npts: int, policy: PrecisionPolicy | None = None, config: DirectConfig | None = None
    ):
        self._jd2: float | None = None
        if nc * pc > MAX_DENSE:
            raise ConfigError(
                f"the reduced camera system has {nc * pc} unknowns (> {MAX_DENSE}), too many for the "
                "dense Schur solver; use solver='cg' (CGNR)"
            )
        factor = Precision.FP64 if policy is None else policy.factor
        if factor not in (Precision.FP64, Precision.FP32):
            raise ConfigError(f"the schur solver factors in fp64 or fp32, not {factor.value}")
        self.nc, self.pc, self.npts = nc, pc, npts
        self.config = config or DirectConfig()
        self.dtype = np.dtype(factor.storage_dtype)
        self._residual_dtype = np.dtype(np.float64 if policy is None else policy.residual.compute_dtype)
        self.width = padded_width(pc)
        self._pairs: tuple | None = None
        self._pairs_for: tuple | None = None
        self._Z: np.ndarray | None = None
        self._memory = MemoryUse()
        self._stats = DirectStats(factor=factor.value, backend="lapack (dense)")
        self._switch_reason: str | None = None
        self.adaptive = policy is not None and policy.adaptive and factor is Precision.FP32
        self._measuring = False
        self._t32: float | None = None

    @property
    def mixed(self) -> bool:
        return self.dtype == _F32

    def memory(self) -> MemoryUse:
        return self._memory

    def direct_stats(self) -> DirectStats:
        return self._stats

    def kernel_specs(self) -> set:
        # normal_matvec (fp64 vectors on the Jacobian as evaluated): the true residual and the refinement
        out: set = {("normal_matvec", self._residual_dtype, _F64, False)}
        if self.mixed:
            out.add(SCHUR_KERNELS_32)
        if not self.mixed or self.adaptive or self.config.fp64_fallback:
            out.add(SCHUR_KERNELS)
        return out

    def _pairs_of(self, lin: Linearization):
        if self._pairs is None or self._pairs_for is None or self._pairs_for[0] is not lin.ia:
            self._pairs = camera_pairs(lin.ia, lin.ib, lin.nv, lin.nb)
            self._pairs_for = (lin.ia, lin.ib)
        return self._pairs

    def solve(self, lin: Linearization, damping: Damping, rtol: float = 0.0) -> LinearResult:
        t0 = time.perf_counter()
        g = lin.gradient(np.float64)
        colsq = lin.column_sq_norms()
        d = np.where(colsq > 0, damping.diagonal(colsq), 1.0)  # decoupled columns (a frozen BAL pose): step 0
        times: dict = {}
        M = self._eliminate(lin, d, self.dtype, times)
        decision = "factor"
        self._jd2 = None  # ‖J δ‖² in fp64 when the residual check computed it (saves the model's product)
        if not self.mixed:
            delta, status, res, iters = self._direct(lin, M, g, d)
        else:
            delta, status, res, iters, decision = self._refined(lin, M, g, d, times)
            if self._switch_reason is not None:
                self._switch_to_fp64()
                decision += f"; fp32 -> fp64 ({self._switch_reason})"
                if status is not LinearStatus.CONVERGED:  # redo this step exactly
                    self._jd2 = None
                    M = self._eliminate(lin, d, self.dtype, times)
                    delta, status, res, more = self._direct(lin, M, g, d)
                    iters += more
                    self._stats.not_converged -= 1
        self._stats.steps += 1
        t2 = time.perf_counter()
        times["factor_solve"] = t2 - t0 - times["schur"]
        if self.adaptive:
            decision = self._adapt(t2 - t0, decision)
        if not np.all(np.isfinite(delta)):
            return LinearResult(
                np.zeros_like(delta), iters, float("nan"), LinearStatus.NONFINITE, float("nan"), times=times
            )
        model = -float(g @ delta) - 0.5 * self._jd2 if self._jd2 is not None else model_decrease(lin, g, delta)
        return LinearResult(delta, iters, res, status, model, times=times, decision=decision)

    # -- elimination and the solve with M ------------------------------------------------------------------
    def _eliminate(self, lin: Linearization, d: np.ndarray, dtype: np.dtype, times: dict):
        """Point blocks, Z and S in ``dtype``, and S's Cholesky factor (None if it does not exist)."""
        t = time.perf_counter()
        pe, pf, bptr, bkey = self._pairs_of(lin)
        A = np.ascontiguousarray(lin.A, dtype=dtype)
        B = np.ascontiguousarray(lin.B, dtype=dtype)
        da, db = (np.ascontiguousarray(x, dtype=dtype) for x in lin.split(d))
        shape = (A.shape[0], 3, self.width)
        if self._Z is None or self._Z.shape != shape or self._Z.dtype != dtype:
            self._Z = np.empty(shape, dtype)
        Z = self._Z
        PC, W = static_size(self.pc), static_size(self.width)
        U, Linv, _ = schur_point_blocks(A, lin.ia, B, lin.ib, da, db, Z, PC, W)
        S = schur_reduce(U, Z, pe, pf, bptr, bkey, PC, W)
        t1 = time.perf_counter()
        times["schur"] = times.get("schur", 0.0) + t1 - t
        self._memory = MemoryUse(reduced_system_bytes=S.nbytes, point_blocks_bytes=Linv.nbytes + Z.nbytes)
        shift, cho = self._factor(S)
        times["factor"] = times.get("factor", 0.0) + time.perf_counter() - t1
        self._stats.factorizations += 1
        return lin, Z, Linv, cho, shift

    def _factor(self, S: np.ndarray):
        """(shift, Cholesky factor of S) in S's dtype; an fp32 factor that breaks down (κ(S)·u32 near 1) is
        redone on S + σ diag(S) with σ = 1e-6, 1e-4, 1e-2 (PCG on the fp64 system removes the shift);
        (0, None) when no factor exists (fp64, or every shift failed)."""
        try:
            return 0.0, scipy.linalg.cho_factor(S, lower=True, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            if S.dtype != _F32:
                return 0.0, None
        diag = S.diagonal().copy()
        for sigma in SHIFTS:
            Ss = S.copy()
            np.fill_diagonal(Ss, diag * np.float32(1 + sigma))
            try:
                cho = scipy.linalg.cho_factor(Ss, lower=True, check_finite=False, overwrite_a=True)
            except (np.linalg.LinAlgError, ValueError):
                continue
            self._stats.shifts += 1
            return sigma, cho
        return 0.0, None

    def _apply(self, M, r: np.ndarray) -> np.ndarray:
        """M r ≈ H⁻¹ r by the Schur solve in M's format (r scaled to unit max-norm first: fp32 range)."""
        lin, Z, Linv, cho, _ = M
        dt = Z.dtype
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        if not (scale > 0 and np.isfinite(scale)):
            return np.zeros_like(r) if scale == 0 else np.full_like(r, np.nan)
        x = (r / scale).astype(dt)
        rc, rp = lin.split(x)
        bc = np.empty((lin.nv, lin.p), dt)
        t = np.empty((lin.nb, 3), dt)
        schur_rhs(Z, Linv, lin.ia, lin.ib, rc, rp, bc, t)
        dc = scipy.linalg.cho_solve(cho, bc.reshape(-1), check_finite=False).astype(dt, copy=False)
        dp = np.empty((lin.nb, 3), dt)
        schur_back(Z, Linv, lin.ia, lin.ib, t, dc.reshape(lin.nv, lin.p), dp)
        out = np.concatenate([dc, dp.reshape(-1)]).astype(np.float64)
        out *= scale
        return out

    def _matvec(self, lin: Linearization, d: np.ndarray, norms: list | None = None):
        """x -> (JᵀJ + D) x in fp64 (the Jacobian as evaluated; fp32 blocks widened in the kernel); ``norms``
        collects ‖J x‖² of each product (the fused kernel returns it)."""
        A, B = np.ascontiguousarray(lin.A), np.ascontiguousarray(lin.B)

        def matvec(x: np.ndarray) -> np.ndarray:
            out = np.empty_like(x)
            (pa, pb), (oa, ob) = lin.split(x), lin.split(out)
            jx2 = normal_matvec(A, lin.ia, B, lin.ib, pa, pb, oa, ob)
            if norms is not None:
                norms.append(jx2)
            out += d * x
            return out

        return matvec

    def _direct(self, lin, M, g, d):
        """The fp64 step: one solve with the fp64 factor; the true relative residual measured in fp64 (its
        product also gives ‖J δ‖² for the model decrease)."""
        if M[3] is None:
            return np.zeros_like(g), LinearStatus.NONFINITE, float("nan"), 1
        delta = -self._apply(M, g)
        norms: list = []
        r = self._matvec(lin, d, norms)(delta) + g
        res = float(np.linalg.norm(r)) / max(float(np.linalg.norm(g)), 1e-300)
        self._jd2 = float(norms[0])
        return delta, LinearStatus.CONVERGED, res, 1

    def _refined(self, lin, M, g, d, times):
        """The fp32 step: refinement / PCG with the fp32 Schur solve to the fp64 tolerance."""
        cfg, st = self.config, self._stats
        shift = M[4]
        decision = "factor" + (f" (shift {shift:g})" if shift else "")
        if M[3] is None:
            if cfg.fp64_fallback:
                self._switch_reason = "the fp32 factorization of S broke down at every shift"
            st.not_converged += 1
            return np.zeros_like(g), LinearStatus.NONFINITE, float("nan"), 1, decision
        t = time.perf_counter()
        out = refine_to(self._matvec(lin, d), lambda r: self._apply(M, r), -g, cfg)
        times["refine"] = time.perf_counter() - t
        st.count(out)
        if out.cg_iterations:
            decision += " + pcg"
        status = LinearStatus.CONVERGED if out.converged else LinearStatus.MAX_ITERATIONS
        if cfg.fp64_fallback:  # a shift alone is no reason: PCG removes it (counted in DirectStats.shifts)
            self._switch_reason = fp32_verdict(out, cfg, "Schur factor")
        return out.x, status, out.relative_residual, 1 + out.iterations, decision

    def _adapt(self, seconds: float, decision: str) -> str:
        """The ``auto`` policy's measurement: the first step runs in fp32 (S, factor, PCG), the second in fp64;
        the faster serves the rest of the solve (as :class:`~mixslam.linear.cholesky.CholeskySolver`)."""
        st = self._stats
        if self._switch_reason is not None:
            self.adaptive = False
            st.choice = f"fp64: {self._switch_reason}"
            return decision
        if not self._measuring:
            self._t32, self._measuring = seconds, True
            st.choice = f"fp32 Schur + PCG for the first step ({seconds:.4f} s); fp64 not measured yet"
            self.dtype = _F64
            return decision + "; auto: fp64 next, to compare"
        self.adaptive = self._measuring = False
        assert self._t32 is not None
        if self._t32 < seconds:
            self.dtype = _F32
            st.choice = f"fp32 Schur + PCG: {self._t32:.4f} s per step against fp64's {seconds:.4f} s"
        else:
            st.choice = f"fp64 Schur: {seconds:.4f} s per step against fp32 + PCG's {self._t32:.4f} s"
        st.factor = "fp32" if self.mixed else "fp64"
        return decision + f"; auto: {st.choice}"

    def _switch_to_fp64(self) -> None:
        self.dtype = _F64
        self._stats.switched_to_fp64 = self._switch_reason
        self._stats.factor = "fp32, then fp64"
