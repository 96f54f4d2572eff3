"""Configuration of the nonlinear solve (frozen, documented, visible defaults, validated when built).

The linear solvers' own settings (:class:`~mixslam.linear.config.CGConfig`,
:class:`~mixslam.linear.config.ICConfig`) live with them in :mod:`mixslam.linear`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, check_config_fields

LM_METHODS = ("lm", "gn")
"""The values of :attr:`LMConfig.method`."""


@dataclass(frozen=True)
class LMConfig:
    """Levenberg-Marquardt (or Gauss-Newton) settings."""

    max_iterations: int = 100
    """Outer iterations (linearizations) at most."""
    method: str = "lm"
    """``"lm"`` (damped, gain-ratio updates) or ``"gn"`` (undamped Gauss-Newton; a failed step stops)."""
    initial_lambda: float | None = None
    """Initial damping, relative: the system is (JᵀJ + λ·diag(JᵀJ)) δ = -Jᵀr. None takes the linear solver's
    own (``LinearSolver.initial_lambda``), as measured on the reference pose graphs: 1e-12 with the direct
    solver (fewer LM iterations than 1e-8 and 1e-5, same optima: pose graphs have curvatures far below
    diag(JᵀJ), which damping only slows) and 1e-5 with CG (the damping also conditions its inexact solves;
    with 1e-8 mixed+IC on kitti_00 stops 4e-5 above the optimum instead of 2e-8)."""
    min_lambda: float = 1e-12
    """Damping never goes below this."""
    max_lambda: float = 1e12
    """Above this no step reduces the cost: stop (converged at the attainable accuracy)."""
    function_tolerance: float = 1e-10
    """Stop when an accepted step lowers the cost by less than this fraction of it (or, with ``predict_stop``,
    when the steps still to come would together)."""
    predict_stop: bool = True
    """Also stop when the last two accepted decreases shrink by a factor q <= 0.5 and the decreases still to
    come, rel q / (1 - q) if they keep shrinking so, add up to less than ``function_tolerance``: the step that
    would only confirm it is saved (one LM iteration on every shared pose graph, the same optima to
    1e-10)."""
    gradient_tolerance: float = 1e-12
    """Stop when max|Jᵀr| falls below this fraction of its initial value."""
    step_tolerance: float = 1e-12
    """Stop when ‖δ‖ < step_tolerance · (‖x‖ + step_tolerance), x the stacked translations."""
    min_diagonal: float = 1e-6
    """diag(JᵀJ) entries are clamped to [min_diagonal, max_diagonal] in the damping term (as Ceres)."""
    max_diagonal: float = 1e32
    """See ``min_diagonal``."""
    callback: Callable | None = None
    """Called as ``callback(record: IterationRecord)`` after each iteration; raise StopIteration to stop."""
    verbose: bool = False
    """Log one progress line per iteration on the ``mixslam`` logger (INFO)."""
    geodesic_acceleration: bool = True
    """Add the second-order "geodesic acceleration" correction to each damped step where the problem and the
    linear solver support it (pose graphs with the direct solver; :mod:`mixslam.solve.acceleration`).
    Measured: parking-garage 20 -> 8 LM iterations and ais2klinik 33 -> 17, the same optima; the other shared
    graphs converge in as many iterations as without it."""
    acceleration_ratio: float = 0.75
    """The correction a is kept only when 2‖a‖ <= acceleration_ratio · ‖v‖, v the damped step (Transtrum and
    Sethna's α; their recommended 0.75)."""
    acceleration_step: float = 0.1
    """Finite-difference step h of the second directional derivative of the residuals, as a fraction of v
    (Transtrum and Sethna's 0.1)."""
    acceleration_min_ratio: float = 1e-3
    """The rest of the solve goes without the correction once 2‖a‖/‖v‖ falls below this: the ratio scales
    with the step, which shrinks as LM converges, and a correction of a thousandth of the step changes
    nothing measurable (measured on the shared graphs: 1e-1 to 1 in the first steps, below 1e-3 within 2-6
    steps, 1e-6 at the end), while it costs a residual evaluation and a solve per step (smallGrid3D: 15%
    of its solve)."""

    def __post_init__(self):
        check_config_fields(
            self,
            ints={"max_iterations": 0},
            positive=(
                "min_lambda",
                "max_lambda",
                "min_diagonal",
                "max_diagonal",
                "acceleration_ratio",
                "acceleration_step",
            ),
            nonnegative=("function_tolerance", "gradient_tolerance", "step_tolerance", "acceleration_min_ratio"),
            bools=("geodesic_acceleration", "predict_stop"),
            choices={"method": LM_METHODS, "verbose": (True, False)},
        )
        if self.acceleration_step > 1:
            raise ConfigError(f"LMConfig.acceleration_step must be in (0, 1], got {self.acceleration_step!r}")
        lam = self.initial_lambda
        if lam is not None and (
            isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0
        ):
            raise ConfigError(f"LMConfig.initial_lambda must be None or a finite number > 0, got {lam!r}")
        for lo, hi in (("min_lambda", "max_lambda"), ("min_diagonal", "max_diagonal")):
            if getattr(self, lo) > getattr(self, hi):
                raise ConfigError(f"LMConfig.{lo} must be <= {hi}, got {getattr(self, lo)!r} > {getattr(self, hi)!r}")
        if self.callback is not None and not callable(self.callback):
            raise ConfigError(f"LMConfig.callback must be callable or None, got {self.callback!r}")


KNOWN_INLIERS = ("auto", "odometry", "none")
"""The values of :attr:`RobustConfig.known_inliers`."""


@dataclass(frozen=True)
class RobustConfig:
    """Robust losses and graduated non-convexity (:mod:`mixslam.problem.robust`)."""

    loss: Any = None
    """A :class:`~mixslam.problem.robust.RobustLoss`, its text (``"tls"``, ``"cauchy:2.5"``), or None (plain
    least squares)."""
    gnc: bool = False
    """Graduated non-convexity on the loss (``geman-mcclure`` or ``tls`` only)."""
    known_inliers: str = "auto"
    """Blocks that keep weight 1: ``odometry`` (pose graphs: edges between consecutive vertex ids), ``none``;
    ``auto`` = ``odometry`` for a pose graph with GNC, else ``none``."""
    gnc_factor: float = 1.4
    """μ's factor per GNC iteration (Yang et al. 2020)."""
    gnc_max_iterations: int = 100
    """GNC iterations (weighted solves) at most."""
    gnc_inner_iterations: int = 50
    """LM iterations of each intermediate weighted solve at most (warm-started from the previous one); the
    final solve with the settled weights has ``LMConfig.max_iterations``. Measured against 10 (session 15):
    the same answers on intel and CSAIL (10% and 50%, seed 0) and on city10000 30% random, but city10000 30%
    grouped seed 2 missed with 10 (5.0e-3 of the extent from the clean optimum) and met every target with
    50 (5.2e-5). Geman-McClure GNC on city10000 30% finishes in 4 minutes with 10 (and misses: precision
    0.46); with 50 each of its early weighted solves takes all 50 iterations."""
    gnc_inner_tolerance: float = 1e-5
    """Relative cost decrease at which an intermediate weighted solve stops (GTSAM's LM default); the last
    solve, with the settled weights, runs to ``LMConfig.function_tolerance``. 0 runs every solve to it (then
    the last one is repeated only if it stopped at ``gnc_inner_iterations``).
    Measured in :mod:`mixslam.solve.gnc`."""
    gnc_initial_solve: bool = False
    """Solve the plain least-squares problem first and start GNC from its residuals (the paper's and GTSAM's
    order); False starts from the initial guess's residuals (measured better with false loop closures, see
    :mod:`mixslam.solve.gnc`)."""

    def __post_init__(self):
        from ..problem.robust import GNC_LOSSES, RobustLoss

        if isinstance(self.loss, str):
            object.__setattr__(self, "loss", RobustLoss.parse(self.loss))
        if self.loss is not None and not isinstance(self.loss, RobustLoss):
            raise ConfigError(f"RobustConfig.loss must be a RobustLoss, a loss name or None, got {self.loss!r}")
        check_config_fields(
            self,
            ints={"gnc_max_iterations": 1, "gnc_inner_iterations": 1},
            fractions=("gnc_inner_tolerance",),
            bools=("gnc", "gnc_initial_solve"),
            choices={"known_inliers": KNOWN_INLIERS},
        )
        if not (isinstance(self.gnc_factor, (int, float)) and math.isfinite(self.gnc_factor) and self.gnc_factor > 1):
            raise ConfigError(f"RobustConfig.gnc_factor must be a number > 1, got {self.gnc_factor!r}")
        if self.gnc and (self.loss is None or self.loss.name not in GNC_LOSSES):
            name = None if self.loss is None else self.loss.name
            raise ConfigError(
                f"RobustConfig.gnc needs the loss geman-mcclure or tls (GNC has a surrogate for those only), "
                f"got {name!r}; e.g. --robust tls --gnc"
            )
        if self.loss is not None and self.loss.scale == "auto" and not self.gnc:
            raise ConfigError(
                "RobustConfig.loss: the scale 'auto' is measured from a first GNC run's accepted edges; add --gnc "
                "(e.g. --robust tls:auto --gnc), or give a number"
            )

    @property
    def active(self) -> bool:
        return self.loss is not None
