"""Linear solvers for one LM step: direct sparse Cholesky (fp64), CGNR with block-Jacobi, CGNR with a
static block incomplete-Cholesky (IC(k), default k = 2) preconditioner. Each takes a :class:`Linearization` and returns a :class:`LinearResult`.

The damped system is (JᵀJ + λ·D) δ = -Jᵀr with D = clamp(diag(JᵀJ)). The CG solvers work on the
column-scaled system (S JᵀJ S + λ S D S) x = -S Jᵀr, δ = S x, with S a power-of-two Jacobi scaling, so that
the scaled normal matrix has a diagonal near 1 and 16-bit storage neither overflows nor underflows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..kernels import jac_rmatvec
from ..kernels.products import column_sq_norms_nb, diag_blocks_nb
from ..errors import ConfigError
from ..precision import PrecisionPolicy, Precision, QuantizationStats
from ..solve.config import IC_ORDERINGS as ORDERINGS
from ..solve.config import IC_REFACTOR, CGConfig
from .block_pattern import BlockPattern
from .cgnr import pcg
from .operators import JacobianOperator, KrylovArith, power_of_two, split_stacked
from .preconditioners import BlockJacobi, StaticIC


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
    """Variables of a second set (BA: points); 0 means B multiplies the first set too (pose graphs)."""
    pb: int = 0
    """Tangent size of a second-set variable."""
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
        A = np.ascontiguousarray(self.A, dtype=dtype)
        B = np.ascontiguousarray(self.B, dtype=dtype)
        jac_rmatvec(A, self.ia, B, self.ib, np.ascontiguousarray(self.r, dtype=dtype), ga, gb, False)
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
        off_b = self.nv * self.p if self.nb else 0
        return ((self.A, self.ia, 0, self.p), (self.B, self.ib, off_b, self.pb or self.p))


@dataclass
class LinearResult:
    delta: np.ndarray
    """(nv*p,) fp64 step."""
    iterations: int
    relative_residual: float
    status: str
    model_decrease: float
    """Predicted cost decrease -gᵀδ - 0.5‖Jδ‖² (fp64)."""
    stats: QuantizationStats = field(default_factory=QuantizationStats)
    fallbacks: int = 0
    times: dict = field(default_factory=dict)


def _damping(colsq: np.ndarray, lam: float, lo: float, hi: float) -> np.ndarray:
    return lam * np.clip(colsq, lo, hi)


def _model_decrease(lin: Linearization, g: np.ndarray, delta: np.ndarray) -> float:
    from ..kernels import jac_matvec
    Jd = np.empty_like(lin.r, dtype=np.float64)
    da, db = lin.split(delta)
    jac_matvec(np.ascontiguousarray(lin.A, np.float64), lin.ia, np.ascontiguousarray(lin.B, np.float64), lin.ib,
               da, db, Jd, False)
    return float(-(g @ delta) - 0.5 * np.sum(Jd * Jd))


class CholeskySolver:
    """fp64 sparse Cholesky of the assembled damped normal matrix (the accuracy baseline)."""

    name = "cholesky"

    def __init__(self, pattern: BlockPattern, policy: PrecisionPolicy, cg: CGConfig | None = None,
                 backend: str = "auto"):
        self.pattern = pattern
        self.policy = policy
        from .direct import SparseCholesky
        self.chol = SparseCholesky(pattern.csc_pattern(), backend=backend)
        self.memory = {}

    def solve(self, lin: Linearization, lam: float, eta: float, lo: float, hi: float) -> LinearResult:
        t0 = time.perf_counter()
        g = lin.gradient(np.float64)
        colsq = lin.column_sq_norms()
        H = self.pattern.to_csc(self.pattern.assemble(lin.A, lin.B), _damping(colsq, lam, lo, hi))
        t1 = time.perf_counter()
        self.chol.factorize(H)
        delta = -self.chol.solve(g)
        t2 = time.perf_counter()
        res = float(np.linalg.norm(H @ delta + g) / max(np.linalg.norm(g), 1e-300))
        self.memory = {"factor_bytes": getattr(self.chol, "nbytes", float("nan"))}  # NaN: the backend does not say
        return LinearResult(delta, 1, res, "converged", _model_decrease(lin, g, delta),
                            times={"assemble": t1 - t0, "factor_solve": t2 - t1})


class CGNRSolver:
    """CGNR on the column-scaled Jacobian with a block-Jacobi (``"jacobi"``) or static IC(k) (``"ic"``)
    preconditioner, every operation in the precision the policy names."""

    def __init__(self, pattern: BlockPattern | None, policy: PrecisionPolicy, cg: CGConfig | None = None,
                 preconditioner: str = "jacobi"):
        """``pattern``: the normal matrix's block pattern, needed by ``"ic"`` only (None otherwise)."""
        if preconditioner not in ("jacobi", "ic", "none"):
            raise ConfigError(f"unknown preconditioner {preconditioner!r}; expected 'jacobi', 'ic' or 'none'")
        if preconditioner == "ic" and pattern is None:
            raise ConfigError("the IC preconditioner needs the normal matrix's block pattern")
        self.cg = cg or CGConfig()
        if self.cg.ic_refactor not in IC_REFACTOR:
            raise ConfigError(f"unknown ic_refactor {self.cg.ic_refactor!r}; expected one of {IC_REFACTOR}")
        if self.cg.ic_ordering not in ORDERINGS:
            raise ConfigError(f"unknown ic_ordering {self.cg.ic_ordering!r}; expected one of {ORDERINGS}")
        self._graph_pattern = pattern
        self.escalated = False
        self._factored_for = None  # the linearization the current IC factor was computed at
        fill_level_of(self.cg.ic_fill_level, 1)  # validated whatever the preconditioner
        if not (self.cg.ic_escalate_residual > 0 and np.isfinite(self.cg.ic_escalate_residual)):
            raise ConfigError(f"ic_escalate_residual must be a positive finite number, got {self.cg.ic_escalate_residual!r}")
        if preconditioner == "ic":
            if self.cg.ic_ordering == "min-degree":
                pattern = pattern.with_min_degree_order()
            pattern = pattern.with_fill(fill_level_of(self.cg.ic_fill_level, pattern.nv))
        self.pattern = pattern
        self.policy = policy
        self.kind = preconditioner
        self.name = {"jacobi": "cgnr", "ic": "ic", "none": "cg"}[preconditioner]
        self.arith = KrylovArith(policy.krylov)
        self.ic: StaticIC | None = None
        self._op, self._op_for = None, None
        self.ic_age = 0
        self.ic_factorizations = 0
        self.memory = {}

    def _factor_ic(self, lin, scale, damping, stats, fallbacks, times):
        t0 = time.perf_counter()
        pol = self.policy
        # An escalated factor is recomputed at every linearization, so the damping it is used with is known.
        damped = damping if (self.cg.ic_damped or self.escalated) else None
        while True:
            self.ic = StaticIC(self.pattern, self.pattern.assemble(lin.A, lin.B), scale, pol.preconditioner_storage,
                               pol.preconditioner_accumulate, self.cg.ic_shift, pol.fallback, damped)
            if self.ic.shift <= self.cg.ic_shift_tolerance or self.pattern.fill_level + 2 > self.cg.ic_max_fill_level:
                break
            # The factor only exists with a large shift: a poor approximation. Keep more fill instead.
            self.pattern = self.pattern.with_fill(self.pattern.fill_level + 2)
        self.ic.factor_stats["fill_level"] = "complete" if self.pattern.is_complete else self.pattern.fill_level
        self.ic.factor_stats["ordering"] = "min-degree" if self.pattern.order is not None else "natural"
        self.ic.factor_stats["escalated"] = self.escalated
        self.ic_age = 0
        self._factored_for = lin
        self.ic_factorizations += 1
        times["ic_factor"] = times.get("ic_factor", 0.0) + time.perf_counter() - t0
        return stats.merge(self.ic.stats), fallbacks + self.ic.fallbacks

    def solve(self, lin: Linearization, lam: float, eta: float, lo: float, hi: float) -> LinearResult:
        pol = self.policy
        times = {}
        t0 = time.perf_counter()
        colsq = lin.column_sq_norms()
        scale = power_of_two(1.0 / np.sqrt(np.maximum(colsq, 1e-300)))
        scale = np.where(colsq > 0, scale, 1.0)
        rhs_dtype = np.float64 if pol.rhs is Precision.FP64 else np.float32
        g = lin.gradient(rhs_dtype).astype(np.float64)
        # A column no residual touches (a BAL camera's frozen pose) is decoupled with a zero right-hand side:
        # damping 1 keeps its preconditioner entries O(1) (not 1/(λ·min_diagonal)) and its step exactly 0.
        damping = np.where(colsq > 0, _damping(colsq, lam, lo, hi) * scale * scale, 1.0)
        new_linearization = self._op_for is not lin
        if not new_linearization:
            # Same linearization, new damping (a rejected step): the quantized Jacobian is reused and its
            # quantization is not counted twice.
            op, stats, fallbacks = self._op, QuantizationStats(), 0
        else:
            op = JacobianOperator.from_linearization(lin, scale, pol.jacobian_storage, pol.jacobian_accumulate,
                                                     pol.fallback)
            self._op, self._op_for = op, lin
            stats, fallbacks = op.stats, op.fallbacks
        t1 = time.perf_counter()
        times["quantize"] = t1 - t0
        if self.kind == "jacobi":
            parts = []
            for diag, sl in _scaled_diag_blocks(lin, scale):
                parts.append(BlockJacobi(diag, damping[sl], pol.preconditioner_storage,
                                         pol.preconditioner_accumulate, pol.fallback))
                stats, fallbacks = stats.merge(parts[-1].stats), fallbacks + parts[-1].fallbacks
            pre = parts[0] if len(parts) == 1 else StackedPreconditioner(parts)
        elif self.kind == "ic":
            # Once escalated, the factor is recomputed at every new linearization: escalation means the
            # Jacobian changes too much between iterations for any static factor (ais2klinik: 29 s instead of
            # 106 s with refactoring on stalls only, to the same optimum).
            if self.ic is None or ((self.cg.ic_refactor == "always" or self.escalated) and new_linearization):
                stats, fallbacks = self._factor_ic(lin, scale, damping, stats, fallbacks, times)
            self.ic.set_scale(scale)
            pre = self.ic
        else:
            pre = None
        t2 = time.perf_counter()
        times["preconditioner"] = t2 - t1
        self.arith.overflows = 0
        b = -scale * g
        # Power-of-two scaling of the right-hand side to max|b| ~ 1 (exact; keeps 16-bit vectors in range).
        bmax = float(np.max(np.abs(b))) if b.size else 0.0
        rhs_scale = float(power_of_two(1.0 / bmax)) if bmax > 0 and np.isfinite(bmax) else 1.0
        res = pcg(op, damping, b * rhs_scale, pre, self.arith, tol=eta, max_iterations=self.cg.max_iterations,
                  refresh_every=self.cg.refresh_every, stagnation_window=self.cg.stagnation_window)
        def redo(res):
            self.ic.set_scale(scale)
            again = pcg(op, damping, b * rhs_scale, self.ic, self.arith, tol=eta,
                        max_iterations=self.cg.max_iterations, refresh_every=self.cg.refresh_every,
                        stagnation_window=self.cg.stagnation_window)
            again.iterations += res.iterations
            return again

        if (self.kind == "ic" and self.cg.ic_refactor == "on_stall" and res.status != "converged"
                and self.ic_age > 0):
            # The static factor no longer approximates JᵀJ here: refactor at this linearization and redo.
            stats, fallbacks = self._factor_ic(lin, scale, damping, stats, fallbacks, times)
            res = redo(res)
        complete_md = self.kind == "ic" and self.pattern.order is not None and self.pattern.is_complete
        if (self.kind == "ic" and self.cg.ic_escalate and self.cg.ic_refactor != "never" and not self.escalated
                and not complete_md and self._factored_for is lin and res.status != "converged"
                and not res.relative_residual <= self.cg.ic_escalate_residual):
            # Even a factor of this very linearization leaves CG far from the solution: the incomplete
            # factor is too weak for this graph (a long chain with few loops: ais2klinik). Switch, for the
            # rest of the solve, to the complete factor in minimum-degree order, which stays sparse.
            self.pattern = self._graph_pattern.with_min_degree_order().with_fill(self._graph_pattern.nv)
            self.escalated = True
            stats, fallbacks = self._factor_ic(lin, scale, damping, stats, fallbacks, times)
            res = redo(res)
        self.ic_age += 1
        if self.arith.overflows:
            stats = stats.merge(QuantizationStats(overflows=self.arith.overflows))
        t3 = time.perf_counter()
        times["cg"] = t3 - t2
        delta = scale * res.x.astype(np.float64) / rhs_scale
        pre_now = self.ic if self.kind == "ic" else pre  # the factor in use at the end (after a refactor)
        self.memory = {"jacobian_bytes": op.nbytes, "preconditioner_bytes": getattr(pre_now, "nbytes", 0)}
        if not np.all(np.isfinite(delta)):
            return LinearResult(np.zeros_like(delta), res.iterations, float("nan"), "nonfinite", float("nan"),
                                stats, fallbacks, times)
        return LinearResult(delta, res.iterations, res.relative_residual, res.status,
                            _model_decrease(lin, g, delta), stats, fallbacks, times)


def fill_level_of(level, nv: int) -> int:
    """CGConfig.ic_fill_level as an integer level (``"complete"``: ``nv``, more than any fill path needs)."""
    if level == "complete":
        return max(int(nv), 1)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 0:
        raise ConfigError(f"ic_fill_level must be a non-negative integer or 'complete', got {level!r}")
    return int(level)


def _scaled_diag_blocks(lin: Linearization, scale: np.ndarray) -> list:
    """Diagonal blocks of S JᵀJ S in fp64: [(blocks (n, p, p), slice of the stacked vector)] per variable set."""
    sa, sb = lin.split(scale)
    Da = np.empty((lin.nv, lin.p, lin.p))
    Db = np.empty((lin.nb, lin.pb, lin.pb)) if lin.nb else Da
    diag_blocks_nb(np.ascontiguousarray(lin.A), lin.ia, np.ascontiguousarray(lin.B), lin.ib,
                   np.ascontiguousarray(sa), np.ascontiguousarray(sb), Da, Db)
    n_a = lin.nv * lin.p
    if not lin.nb:
        return [(Da, slice(0, n_a))]
    return [(Da, slice(0, n_a)), (Db, slice(n_a, lin.size))]


class StackedPreconditioner:
    """Block-diagonal preconditioner made of one preconditioner per variable set (BA: cameras, points)."""

    def __init__(self, parts):
        self.parts = parts
        self.sizes = [q.nv * q.p for q in parts]
        self.nbytes = sum(q.nbytes for q in parts)

    def apply(self, r: np.ndarray) -> np.ndarray:
        out, o = [], 0
        for q, n in zip(self.parts, self.sizes):
            out.append(q.apply(r[o:o + n]))
            o += n
        return np.concatenate(out)


def make_linear_solver(name: str, pattern: BlockPattern, policy: PrecisionPolicy, cg: CGConfig | None = None):
    """``"cholesky"`` | ``"cgnr"`` (block-Jacobi) | ``"ic"`` (static IC(k), ``CGConfig.ic_fill_level``)."""
    if name == "cholesky":
        return CholeskySolver(pattern, policy, cg)
    if name == "cgnr":
        return CGNRSolver(pattern, policy, cg, "jacobi")
    if name == "ic":
        return CGNRSolver(pattern, policy, cg, "ic")
    raise ConfigError(f"unknown linear solver {name!r}; expected 'cholesky', 'cgnr' or 'ic'")
