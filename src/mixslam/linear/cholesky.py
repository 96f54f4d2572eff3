"""Sparse Cholesky of the assembled damped normal matrix of a pose graph: fp64, or fp32 refined to fp64.

The policy's ``factor`` field decides (the one place it is read for pose graphs):

fp64
    :class:`~mixslam.linear.direct.SparseCholesky` with the fastest installed backend (the accuracy baseline).
fp32
    :class:`~mixslam.linear.supernodal.SupernodalCholesky` factors in fp32; :func:`~mixslam.linear.refinement.
    refine` brings the step to the fp64 residual tolerance of :class:`~mixslam.linear.config.DirectConfig`
    with fp64 residuals (PCG with the factor when refinement stalls). With ``reuse``, the next system (a new
    λ, or the next linearization) is first tried by PCG preconditioned with the factor already there; when
    that takes more than ``reuse_max_iterations`` the matrix is factored. Where fp32 does not pay (the fp32
    factorization breaks down, or a freshly factored step needs more than ``max_fp32_iterations`` solves,
    or does not converge: κ·u32 near 1, e.g. ais2klinik) the rest of the solve factors in fp64, and a step
    that had not converged is redone in fp64 (``fp64_fallback``). Every choice is counted in
    :class:`~mixslam.linear.base.DirectStats` and named in the step's ``LinearResult.decision``.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import SolverError
from ..precision import Precision, PrecisionPolicy, QuantizationStats
from .base import Damping, DirectStats, LinearResult, LinearSolver, LinearStatus, MemoryUse
from .block_pattern import BlockPattern
from .config import DirectConfig
from .direct import SparseCholesky
from .linearization import Linearization, model_decrease
from .refinement import fp32_verdict, pcg, refine_to

__all__ = ["CholeskySolver", "SHIFTS"]

#: Relative residual of :meth:`CholeskySolver.solve_again` with the fp32 factor: the geodesic acceleration it
#: serves is a correction of a few percent of the step, which LM's gain ratio checks anyway.
SOLVE_AGAIN_TOLERANCE = 1e-6

#: Relative diagonal shifts tried, in turn, when the fp32 factorization breaks down.
SHIFTS = (1e-6, 1e-4, 1e-2)


class CholeskySolver(LinearSolver):
    """Assembles JᵀJ + λD on the analyzed block pattern and factors it (fill-reducing ordering and symbolic
    analysis once, numeric factorization per step) in the policy's ``factor`` format."""

    name = "cholesky"
    initial_lambda = 1e-12
    """Measured on the 12 reference pose graphs (session 16, with geodesic acceleration): the same optima as
    1e-8 in as many or fewer LM iterations (parking-garage 8 -> 4, ais2klinik 17 -> 9, cubicle 9 -> 5, CSAIL
    7 -> 4, kitti_00 5 -> 3). Their flattest directions have curvatures near 1e-9 of diag(JᵀJ), so any larger
    damping shortens those steps, and Nielsen's rule only divides it by 3 per accepted step. (1e-8 had halved
    the iterations of 1e-5.)"""

    def __init__(
        self,
        pattern: BlockPattern,
        policy: PrecisionPolicy,
        config: DirectConfig | None = None,
    ):
        self.pattern = pattern
        self.policy = policy
        self.config = config or DirectConfig()
        self.mixed = policy.factor in (Precision.FP32, Precision.FP16)
        self.store16 = policy.factor is Precision.FP16
        """The fp16 factor: factored in fp32, then kept in fp16 panels with a power-of-two scale per
        supernode (half the bytes of every refinement solve); refined to fp64 like the fp32 factor."""
        if self.mixed:  # only the mixslam backend factors below fp64
            self.chol = SparseCholesky(
                pattern.csc_pattern(),
                backend="mixslam",
                dtype=np.float32,
                ordering=self.config.ordering,
            )
        else:  # DirectConfig refuses an ordering other than "auto" with a backend that orders by itself
            self.chol = SparseCholesky(
                pattern.csc_pattern(), backend=self.config.backend, ordering=self.config.ordering
            )
        self.factor_flops: float | None = self.chol.flops
        """Estimated flops of one numeric factorization (None when the backend does not tell)."""
        self._memory = MemoryUse()
        self._H = None  # the damped matrix of the last solve (solve_again)
        self._qstats = QuantizationStats()
        self._stats = DirectStats(factor=policy.factor.value, backend=self.chol.backend)
        self._t_factor: float | None = None
        self._t_iteration: float | None = None
        self._switch_reason: str | None = None
        self.adaptive = policy.adaptive and policy.factor is Precision.FP32
        self._measuring = False
        self._t32: float | None = None
        self._failures = 0
        self._skip = 0

    def solve(self, lin: Linearization, damping: Damping, rtol: float = 0.0) -> LinearResult:
        t0 = time.perf_counter()
        g = lin.gradient(np.float64)
        colsq = lin.column_sq_norms()
        H = self.pattern.assemble_csc(lin.A, lin.B, damping.diagonal(colsq))  # one pass, no block array
        self._H = H
        t1 = time.perf_counter()
        measuring = self._measuring
        self._qstats = QuantizationStats()
        if self.mixed:
            delta, iters, res, status, decision, times = self._mixed_solve(H, g)
            if self._switch_reason is not None and self.mixed:  # this step showed fp32 does not pay here
                self._switch_to_fp64()
                if status is not LinearStatus.CONVERGED:  # redo the step exactly
                    delta, res = self._fp64_solve(H, g)
                    iters, status = iters + 1, LinearStatus.CONVERGED
                    self._stats.not_converged -= 1  # the step ends converged after all
                decision += f"; fp32 -> fp64 factor ({self._switch_reason})"
        else:
            delta, res = self._fp64_solve(H, g)
            iters, status, decision, times = 1, LinearStatus.CONVERGED, "factor", {}
        t2 = time.perf_counter()
        if self.adaptive:
            decision = self._adapt(measuring, t2 - t1, decision)
        self._memory = MemoryUse(factor_bytes=self.chol.nbytes)
        self._stats.steps += 1
        return LinearResult(
            delta,
            iters,
            res,
            status,
            model_decrease(lin, g, delta),
            stats=self._qstats,
            times={"assemble": t1 - t0, "factor_solve": t2 - t1, **times},
            decision=decision,
        )

    can_solve_again = True

    def solve_again(self, b: np.ndarray) -> np.ndarray | None:
        """The last damped system solved for ``b``: with the fp64 factor, or refined to ``SOLVE_AGAIN_TOLERANCE``
        with the fp32 factor there (which may be an earlier matrix's, when the step reused it). None when no
        factor is there (the step that switched from fp32 to fp64)."""
        H = self._H
        if H is None or not self.chol.factorized:
            return None
        if not self.mixed:
            return self.chol.solve(b)
        out = refine_to(H.dot, self.chol.solve, b, self.config, SOLVE_AGAIN_TOLERANCE)
        return out.x if out.converged else None

    def _adapt(self, measuring: bool, seconds: float, decision: str) -> str:
        """The ``auto`` policy's measurement: the first step runs with the fp32 factor, the second with an
        fp64 factor of the same analysis; the faster serves the rest of the solve."""
        st = self._stats
        if self._switch_reason is not None:  # fp32 did not work here: fp64 it is
            self.adaptive = False
            st.choice = f"fp64 factor: {self._switch_reason}"
            return decision
        if not measuring:  # first step done in fp32: measure fp64 next
            self._t32 = seconds
            st.choice = f"fp32 factor + PCG for the first step ({seconds:.4f} s); fp64 not measured yet"
            self.chol.set_dtype(np.float64)
            self.mixed, self._measuring = False, True
            return decision + "; auto: fp64 factor next, to compare"
        self.adaptive = self._measuring = False
        assert self._t32 is not None
        if self._t32 < seconds:
            self.chol.set_dtype(np.float32)
            self.mixed = True
            st.choice = f"fp32 factor + PCG: {self._t32:.4f} s per step against fp64's {seconds:.4f} s"
        else:
            st.choice = f"fp64 factor: {seconds:.4f} s per step against fp32 + PCG's {self._t32:.4f} s"
        st.factor = "fp32" if self.mixed else "fp64"
        return decision + f"; auto: {st.choice}"

    def _fp64_solve(self, H, g):
        self.chol.factorize(H)
        delta = -self.chol.solve(g)
        self._stats.factorizations += 1
        return delta, float(np.linalg.norm(H @ delta + g)) / max(float(np.linalg.norm(g)), 1e-300)

    def _switch_to_fp64(self) -> None:
        """The rest of the solve factors in fp64: with the analysis already done when the configured backend
        is ``mixslam`` or ``auto`` (which resolves to it: first in ``AUTO_ORDER``, always installed), else with
        a new analysis by the configured backend."""
        if self.config.backend in ("auto", "mixslam"):
            self.chol.set_dtype(np.float64)
        else:
            self.chol = SparseCholesky(self.pattern.csc_pattern(), backend=self.config.backend)
        self.mixed = self.store16 = False
        self._stats.switched_to_fp64 = self._switch_reason
        self._stats.backend = f"mixslam (fp32), then {self.chol.backend} (fp64)"

    def _mixed_solve(self, H, g):
        """fp32 factor + fp64 refinement, trying the factor already there first (see the module docstring)."""
        cfg, st = self.config, self._stats
        b = -g
        times = {}
        budget = self._reuse_budget()
        if budget > 0:
            t = time.perf_counter()
            out = pcg(H.dot, self.chol.solve, b, None, cfg.tolerance, budget)
            times["reuse"] = time.perf_counter() - t
            st.cg_iterations += out.cg_iterations
            if out.cg_iterations:
                self._t_iteration = times["reuse"] / out.cg_iterations
            if out.converged:
                st.reuses += 1
                self._failures = 0
                return out.x, out.cg_iterations, out.relative_residual, LinearStatus.CONVERGED, "reuse", times
            st.failed_reuses += 1
            self._failures += 1
            self._skip = 2**self._failures - 1
            decision = "reuse failed: factor"
        else:
            decision = "factor"
        t = time.perf_counter()
        shift = self._factorize_fp32(H)
        if shift:
            decision += f" (shift {shift:g})"
            if cfg.fp64_fallback:
                # κ(H)·u32 is near 1: PCG with the shifted factor would take a hundred iterations or more
                # (ais2klinik: 145, 25x an fp64 factorization); the step is done in fp64 at once
                times["factor"] = self._t_factor = time.perf_counter() - t
                st.factorizations += 1
                st.not_converged += 1  # solve() redoes the step exactly and takes this back
                self._switch_reason = f"fp32 factorization broke down, shift {shift:g} needed"
                return np.zeros_like(b), 1, float("inf"), LinearStatus.MAX_ITERATIONS, decision, times
        if self.store16:
            self._qstats = self._qstats.merge(self.chol.store_panels16(self.policy.fallback))
            decision += " (fp16 panels)"
        times["factor"] = self._t_factor = time.perf_counter() - t
        st.factorizations += 1
        t = time.perf_counter()
        out = refine_to(H.dot, self.chol.solve, b, cfg)
        times["refine"] = time.perf_counter() - t
        if out.iterations:
            self._t_iteration = times["refine"] / (1 + out.iterations)
        st.count(out)
        if out.cg_iterations:
            decision += " + pcg"
        status = LinearStatus.CONVERGED if out.converged else LinearStatus.MAX_ITERATIONS
        if cfg.fp64_fallback:
            if shift:
                self._switch_reason = f"fp32 factorization broke down, shift {shift:g} needed"
            else:
                self._switch_reason = fp32_verdict(out, cfg, "factor")
        return out.x, 1 + out.iterations, out.relative_residual, status, decision, times

    def _factorize_fp32(self, H) -> float:
        """Factor H in fp32; when fp32's rounding breaks the factorization down (κ(H)·u32 near 1: a pivot
        rounds to zero or below), factor H + σ·diag(H) instead with σ = 1e-6, 1e-4, 1e-2 in turn: the
        shifted factor still preconditions H, and PCG on the fp64 H removes the shift from the answer.
        Returns σ (0 for no shift); raises the last SolverError if every shift fails."""
        try:
            self.chol.factorize(H)
            return 0.0
        except SolverError as first:
            err = first
        d = H.diagonal()
        for sigma in SHIFTS:
            Hs = H.copy()
            Hs.setdiag(d * (1.0 + sigma))
            try:
                self.chol.factorize(Hs)
            except SolverError as e:
                err = e
                continue
            self._stats.shifts += 1
            return sigma
        raise err

    def _reuse_budget(self) -> int:
        """PCG iterations a reuse of the last factor may take: the configured cap, lowered so that a reuse
        that fails costs less than one factorization (from the last measured factorization and iteration
        times); 0 when there is no factor, reuse is off, or the back-off after failed reuses says so."""
        cfg = self.config
        if not (cfg.reuse and self.chol.factorized):
            return 0
        if self._skip > 0:  # back-off: after k failed reuses in a row, 2^k - 1 steps factor directly
            self._skip -= 1
            return 0
        if self._t_factor is None or self._t_iteration is None:
            return cfg.reuse_max_iterations
        return max(0, min(cfg.reuse_max_iterations, int(self._t_factor / self._t_iteration) - 1))

    def memory(self) -> MemoryUse:
        return self._memory

    def warm(self) -> float:
        from ..kernels.supernodal import warm

        return self.pattern.warm() + (warm() if self.chol.backend == "mixslam" else 0.0)

    def direct_stats(self) -> DirectStats:
        return self._stats
