"""Configuration of the iterative linear solver and of the incomplete-Cholesky preconditioner.

Frozen dataclasses with a docstring per field, validated when built (:class:`~mixslam.errors.ConfigError`
naming the field and the rule). :class:`CGConfig` owns the inexact-Newton forcing rule of the CG solves
(:class:`Forcing` carries its state through one nonlinear solve); :class:`ICConfig` owns the incomplete
Cholesky factor's fill, ordering, refactor and escalation policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np

from ..errors import ConfigError, check_config_fields
from .direct import AUTO_ORDER

__all__ = [
    "CGConfig",
    "ICConfig",
    "DirectConfig",
    "DIRECT_ORDERINGS",
    "DIRECT_METHODS",
    "Forcing",
    "FORCING_RULES",
    "IC_REFACTOR",
    "IC_ORDERINGS",
    "fill_level_of",
]

FORCING_RULES = ("superlinear", "eisenstat-walker", "fixed")
"""The values of :attr:`CGConfig.forcing`."""
IC_REFACTOR = ("never", "on_stall", "always")
"""The values of :attr:`ICConfig.refactor`."""
IC_ORDERINGS = ("natural", "min-degree")
"""The values of :attr:`ICConfig.ordering`."""


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

    def __post_init__(self):
        check_config_fields(
            self,
            ints={"max_iterations": 1, "refresh_every": 0, "stagnation_window": 1},
            positive=("eta_max", "eta_min", "ew_gamma", "ew_alpha"),
            choices={"forcing": FORCING_RULES},
        )
        if self.eta_min > self.eta_max:
            raise ConfigError(
                f"CGConfig.eta_min must be <= eta_max, got eta_min={self.eta_min!r} > eta_max={self.eta_max!r}"
            )


class Forcing:
    """The forcing sequence of one nonlinear solve: the relative residual each CG solve is asked for."""

    def __init__(self, config: CGConfig):
        self.config = config
        self.cap = config.eta_max
        self._prev_gnorm: float | None = None
        self._prev_eta: float | None = None

    def _rule(self, gnorm: float, g0norm: float) -> float:
        cg = self.config
        if cg.forcing == "superlinear":
            return float(min(cg.eta_max, max(cg.eta_min, np.sqrt(gnorm / max(g0norm, 1e-300)))))
        if cg.forcing == "fixed" or self._prev_gnorm is None or self._prev_eta is None:
            return cg.eta_max
        eta = cg.ew_gamma * (gnorm / max(self._prev_gnorm, 1e-300)) ** cg.ew_alpha
        guard = cg.ew_gamma * self._prev_eta**cg.ew_alpha
        if guard > 0.1:
            eta = max(eta, guard)
        return float(min(max(eta, cg.eta_min), cg.eta_max))

    def next(self, gnorm: float, g0norm: float) -> float:
        """The tolerance for the solves of a new linearization with gradient 2-norm ``gnorm`` (``g0norm`` at
        the start)."""
        eta = min(self.cap, self._rule(gnorm, g0norm))
        self._prev_gnorm, self._prev_eta = gnorm, eta
        return eta

    def tighten(self, relative_residual: float) -> None:
        """Ask later solves for 100x less than ``relative_residual`` (a small decrease from a loose solve
        proves little)."""
        self.cap = max(self.config.eta_min, min(self.cap, 0.01 * relative_residual))


def fill_level_of(level, nv: int) -> int:
    """ICConfig.fill_level as an integer level (``"complete"``: ``nv``, more than any fill path needs)."""
    if level == "complete":
        return max(int(nv), 1)
    if isinstance(level, bool) or not isinstance(level, (Integral, np.integer)) or level < 0:
        raise ConfigError(f"ICConfig.fill_level must be a non-negative integer or 'complete', got {level!r}")
    return int(level)


@dataclass(frozen=True)
class ICConfig:
    """The block incomplete-Cholesky preconditioner: its pattern, its factor and when it is recomputed."""

    shift: float = 1e-4
    """First diagonal shift tried when IC breaks down (multiplied by 10 on each further breakdown)."""
    fill_level: int | str = 2
    """Levels of block fill kept by the incomplete Cholesky factor: 0 is IC(0) (the pattern of JᵀJ); each
    level adds the blocks between poses that share an earlier neighbour; ``"complete"`` keeps them all (the
    pattern of the complete Cholesky factor in the chosen ``ordering``: sparse only in ``"min-degree"``).
    Default 2, by measurement: on the real datasets IC(0) needs 3-8x more CG iterations and on kitti_00
    stalls 9e-6 above the fp64 optimum in the mixed policy, IC(2) reaches it (docs/pgo_results.md); its
    factor is still static and 16-bit."""
    ordering: str = "natural"
    """Elimination order of the factor: ``"natural"`` (the variables' order, i.e. the file's vertex order) or
    ``"min-degree"`` (multiple minimum degree of the pose graph, computed once per problem, the ordering a
    sparse direct solver would use)."""
    damped: bool = False
    """Factor the damped matrix S (JᵀJ + λD) S of the linearization the factor is computed at (True), or
    the undamped S JᵀJ S (False)."""
    escalate: bool = True
    """If a linear solve still stops unconverged with a relative residual above ``escalate_residual`` after
    the factor was recomputed at that very linearization, switch (once, for the rest of the solve) to the
    complete factor in minimum-degree order, recomputed (with the LM damping) at every new linearization
    from then on; it is stored in ``preconditioner_storage`` (16-bit in ``mixed``). Never with
    ``refactor="never"`` (strictly static). Measured on ais2klinik (15k poses, a long chain with few loops):
    natural-order IC(2)..IC(12) stop 7.5e-6..6.5e-5 above the optimum after 100 LM iterations, the
    escalated solve reaches 1e-7."""
    escalate_residual: float = 0.1
    """Relative residual above which a stopped CG solve counts as failed for ``escalate`` (a step that leaves
    more than 10% of the right-hand side is a poor Newton step; fp32 CG stagnating near its attainable
    accuracy, around 1e-5, is not a failure)."""
    max_fill_level: int = 8
    """If the factor at the current fill level needs a diagonal shift above ``shift_tolerance`` to exist (a
    breakdown: the incomplete factor is a poor one), the fill level is raised by 2, up to this. Measured on
    parking-garage: IC(2) needs a shift of 0.01 and mixed CG stops 7e-5 above the optimum after 60 LM
    iterations; IC(6) needs 1e-4 and converges."""
    shift_tolerance: float = 1e-4
    """Largest breakdown shift accepted before raising the fill level (see ``max_fill_level``)."""
    refactor: str = "on_stall"
    """When the static factor is recomputed: ``"never"`` (strictly static: factored once at the first
    linearization), ``"on_stall"`` (refactor at the current linearization when CG stagnates or hits its cap
    with the old factor, then redo that solve) or ``"always"`` (refactor at every new linearization, i.e.
    every LM iteration after an accepted step: the conventional, non-static preconditioner, kept as the
    baseline the static factor is compared with; a rejected step's re-solve keeps the factor, its
    linearization is the same). Far from the optimum the poses rotate a lot and the first factor stops
    approximating JᵀJ (measured on sphere2500 from the file's guess: CG stalls at a relative residual of 1
    after 10 LM iterations), so the default refreshes it only when it stops working."""

    def __post_init__(self):
        fill_level_of(self.fill_level, 1)
        check_config_fields(
            self,
            ints={"max_fill_level": 0},
            positive=("shift", "escalate_residual"),
            nonnegative=("shift_tolerance",),
            choices={
                "ordering": IC_ORDERINGS,
                "refactor": IC_REFACTOR,
                "damped": (True, False),
                "escalate": (True, False),
            },
        )


DIRECT_ORDERINGS = ("auto", "mmd", "metis", "amd", "natural")
"""The values of :attr:`DirectConfig.ordering`."""
DIRECT_METHODS = ("pcg", "refinement")
"""The values of :attr:`DirectConfig.method`."""


@dataclass(frozen=True)
class DirectConfig:
    """Settings of the direct solver's factor below fp64 (policy field ``factor`` = fp32): iterative
    refinement with fp64 residuals, PCG fallback, and the reuse of a factor across LM steps."""

    tolerance: float = 1e-10
    """Relative fp64 residual ‖b - A x‖ / ‖b‖ the solution of every step must reach. The fp64 factor gives
    1e-11 to 1e-16 on the shared graphs; LM's steps and optimum do not change below about 1e-8."""
    method: str = "pcg"
    """How the factor's solution F⁻¹b is brought to ``tolerance``: ``pcg`` (conjugate gradients on the fp64
    matrix preconditioned by the factor, fp64 vectors) or ``refinement`` (classic mixed-precision iterative
    refinement x += F⁻¹(b - A x), handing over to PCG when a step stalls). Measured on city10000,
    sphere2500 and torus3D (benchmarks/pgo_mixed.py): PCG needs fewer solves with the factor per step
    (2-3 against 3-5 for 1e-10), as CG is optimal in the same Krylov space."""
    max_refinement_iterations: int = 10
    """``refinement``: steps at most; refinement stops early when a step reduces the residual by less than
    half (the factor's error times the condition number is near 1) and PCG takes over."""
    max_cg_iterations: int = 200
    """PCG iterations (fp64 vectors, the factor as preconditioner) after refinement stalls, at most."""
    reuse: bool = True
    """Try the last numeric factor as the PCG preconditioner of the next step's system before factoring it
    (the next λ of a rejected step, or the next linearization near convergence): the article's "factor
    once", with a complete factor."""
    reuse_max_iterations: int = 4
    """A reuse that has not converged after this many PCG iterations is abandoned and the matrix factored
    (measured: one PCG iteration costs about a fifth of a factorization on the 3-D graphs, a third on the
    2-D ones)."""
    fp64_fallback: bool = True
    """Go on with an fp64 factor when fp32 does not pay on this problem: the fp32 factorization broke down
    (a shift was needed), a freshly factored step needed more than ``max_fp32_iterations`` solves with the
    factor, or did not reach ``tolerance`` (that step is redone in fp64). Measured: ais2klinik (κ beyond
    1e8 at LM's small damping) broke down in fp32 at 31 of 33 steps and needed 4,407 PCG iterations."""
    max_fp32_iterations: int = 8
    """Solves with a fresh fp32 factor per step above which fp32 does not pay (each costs a quarter to a
    third of a factorization on the shared graphs)."""
    ordering: str = "auto"
    """Fill-reducing ordering of the ``mixslam`` factor (fp32, and fp64 with that backend): ``auto`` (the
    cheaper in estimated flops of ``mmd`` and, when ``pymetis`` is installed, ``metis``), ``mmd``
    (multiple minimum degree, core), ``metis`` (needs pymetis), ``amd`` (needs cvxopt), ``natural``."""
    backend: str = "auto"
    """Backend of the fp64 factor (:class:`~mixslam.linear.direct.SparseCholesky`): ``auto`` (the fastest
    installed, :data:`~mixslam.linear.direct.AUTO_ORDER`) or one of its names. The fp32 factor is always
    ``mixslam``'s."""

    def __post_init__(self):
        check_config_fields(
            self,
            ints={
                "max_refinement_iterations": 0,
                "max_cg_iterations": 0,
                "reuse_max_iterations": 1,
                "max_fp32_iterations": 1,
            },
            positive=("tolerance",),
            bools=("reuse", "fp64_fallback"),
            choices={
                "ordering": DIRECT_ORDERINGS,
                "method": DIRECT_METHODS,
                "backend": ("auto", *AUTO_ORDER),
            },
        )
        if self.ordering != "auto" and self.backend not in ("auto", "mixslam"):
            raise ConfigError(
                f"DirectConfig.ordering={self.ordering!r} is the mixslam factor's; backend {self.backend!r} "
                "orders with its own method (use ordering 'auto' with it)"
            )
