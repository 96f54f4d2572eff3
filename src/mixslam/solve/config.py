"""Configuration dataclasses of the nonlinear solve (frozen, documented, visible defaults)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

IC_REFACTOR = ("never", "on_stall", "always")
"""The values of :attr:`CGConfig.ic_refactor`."""
IC_ORDERINGS = ("natural", "min-degree")
"""The values of :attr:`CGConfig.ic_ordering`."""


@dataclass(frozen=True)
class LMConfig:
    """Levenberg-Marquardt (or Gauss-Newton) settings."""

    max_iterations: int = 100
    """Outer iterations (linearizations) at most."""
    method: str = "lm"
    """``"lm"`` (damped, gain-ratio updates) or ``"gn"`` (undamped Gauss-Newton; a failed step stops)."""
    initial_lambda: Optional[float] = None
    """Initial damping, relative: the system is (JᵀJ + λ·diag(JᵀJ)) δ = -Jᵀr. None picks by solver, as
    measured on the 11 reference pose graphs: 1e-8 with the direct solver (half the LM iterations of 1e-5,
    same optima: pose graphs have curvatures far below 1e-5 diag(JᵀJ), which damping only slows) and 1e-5
    with the CG solvers (the damping also conditions their inexact solves; with 1e-8 mixed+IC on kitti_00
    stops 4e-5 above the optimum instead of 2e-8)."""
    min_lambda: float = 1e-12
    """Damping never goes below this."""
    max_lambda: float = 1e12
    """Above this no step reduces the cost: stop (converged at the attainable accuracy)."""
    function_tolerance: float = 1e-10
    """Stop when an accepted step lowers the cost by less than this fraction of it."""
    gradient_tolerance: float = 1e-12
    """Stop when max|Jᵀr| falls below this fraction of its initial value."""
    step_tolerance: float = 1e-12
    """Stop when ‖δ‖ < step_tolerance · (‖x‖ + step_tolerance), x the stacked translations."""
    min_diagonal: float = 1e-6
    """diag(JᵀJ) entries are clamped to [min_diagonal, max_diagonal] in the damping term (as Ceres)."""
    max_diagonal: float = 1e32
    """See ``min_diagonal``."""
    callback: Optional[Callable] = None
    """Called as ``callback(record: IterationRecord)`` after each iteration; raise StopIteration to stop."""
    verbose: bool = False
    """Log one progress line per iteration on the ``mixslam`` logger (INFO)."""


@dataclass(frozen=True)
class CGConfig:
    """Inner conjugate-gradient (CGNR) settings."""

    max_iterations: int = 500
    """CG iterations per linear solve at most."""
    forcing: str = "superlinear"
    """Inexact-Newton forcing rule for the relative residual the CG solve stops at:
    ``"superlinear"``: eta_k = min(eta_max, sqrt(‖g_k‖/‖g_0‖)) (Dembo-Steihaug; tightens as the gradient
    falls, which the ill-conditioned pose-graph systems need to reach 1e-6 relative cost);
    ``"eisenstat-walker"`` (choice 2: gamma (‖g_k‖/‖g_k-1‖)^alpha, safeguarded); ``"fixed"``: eta_max."""
    eta_max: float = 0.1
    """Largest relative residual the solve may stop at (first iterations)."""
    eta_min: float = 1e-10
    """Smallest relative residual asked for (below what fp32 Krylov vectors can reach, the stagnation
    guard stops the solve)."""
    ew_gamma: float = 0.9
    """Eisenstat-Walker gamma in eta_k = gamma (‖g_k‖/‖g_k-1‖)^alpha."""
    ew_alpha: float = 2.0
    """Eisenstat-Walker alpha."""
    refresh_every: int = 50
    """Recompute the true residual b - A x every this many iterations (fights drift in low precision)."""
    stagnation_window: int = 200
    """Stop if the residual norm has not improved by 1% in this many iterations (CG residual norms are not
    monotone, so this is long; it ends hopeless low-precision solves, not slow ones)."""
    ic_shift: float = 1e-4
    """First diagonal shift tried when IC(0) breaks down (multiplied by 10 on each further breakdown)."""
    ic_fill_level: int | str = 2
    """Levels of block fill kept by the incomplete Cholesky factor: 0 is IC(0) (the pattern of JᵀJ); each
    level adds the blocks between poses that share an earlier neighbour; ``"complete"`` keeps them all (the
    pattern of the complete Cholesky factor in the chosen ``ic_ordering``: sparse only in ``"min-degree"``). Default 2, by measurement: on the
    real datasets IC(0) needs 3-8x more CG iterations and on kitti_00 stalls 9e-6 above the fp64 optimum in
    the mixed policy, IC(2) reaches it (docs/pgo_results.md); its factor is still static and 16-bit."""
    ic_ordering: str = "natural"
    """Elimination order of the incomplete Cholesky factor: ``"natural"`` (the variables' order, i.e. the
    file's vertex order) or ``"min-degree"`` (multiple minimum degree of the pose graph, computed once per
    problem, the ordering a sparse direct solver would use)."""
    ic_damped: bool = False
    """Factor the damped matrix S (JᵀJ + λD) S of the linearization the factor is computed at (True), or
    the undamped S JᵀJ S (False)."""
    ic_escalate: bool = True
    """If a linear solve still stops unconverged with a relative residual above ``ic_escalate_residual``
    after the factor was recomputed at that very linearization, switch (once, for the rest of the solve) to
    the complete factor in minimum-degree order, recomputed (with the LM damping) at every new
    linearization from then on; it is stored in ``preconditioner_storage`` (16-bit in ``mixed``). Never
    with ``ic_refactor="never"`` (strictly static). Measured on ais2klinik (15k poses, a long chain with
    few loops): natural-order IC(2)..IC(12) stop 7.5e-6..6.5e-5 above the optimum after 100 LM
    iterations, the escalated solve reaches 1e-7."""
    ic_escalate_residual: float = 0.1
    """Relative residual above which a stopped CG solve counts as failed for ``ic_escalate`` (a step that
    leaves more than 10% of the right-hand side is a poor Newton step; fp32 CG stagnating near its
    attainable accuracy, around 1e-5, is not a failure)."""
    ic_max_fill_level: int = 8
    """If the factor at the current fill level needs a diagonal shift above ``ic_shift_tolerance`` to exist
    (a breakdown: the incomplete factor is a poor one), the fill level is raised by 2, up to this. Measured
    on parking-garage: IC(2) needs a shift of 0.01 and mixed CG stops 7e-5 above the optimum after 60 LM
    iterations; IC(6) needs 1e-4 and converges."""
    ic_shift_tolerance: float = 1e-4
    """Largest breakdown shift accepted before raising the fill level (see ``ic_max_fill_level``)."""
    ic_refactor: str = "on_stall"
    """When the static IC(0) factor is recomputed: ``"never"`` (strictly static: factored once at the first
    linearization), ``"on_stall"`` (refactor at the current linearization when CG stagnates or hits its
    cap with the old factor, then redo that solve) or ``"always"`` (refactor at every new linearization,
    i.e. every LM iteration after an accepted step: the conventional, non-static preconditioner, kept as
    the baseline the static factor is compared with; a rejected step's re-solve keeps the factor, its
    linearization is the same). Far from the optimum the poses rotate a lot and the
    first factor stops approximating JᵀJ (measured on sphere2500 from the file's guess: CG stalls at a
    relative residual of 1 after 10 LM iterations), so the default refreshes it only when it stops working."""
