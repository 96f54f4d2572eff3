"""Graduated non-convexity around Levenberg-Marquardt (Yang, Antonante, Tzoumas, Carlone, RA-L 2020).

Each GNC iteration fixes the weights, solves the weighted least-squares problem with LM (warm-started, at
most ``gnc_inner_iterations`` iterations, with the problem's linear solver and policy), then updates the
weights in closed form from the new residuals (:func:`~mixslam.problem.robust.gnc_weights`) and moves the
control parameter μ towards the loss. The intermediate solves stop at ``RobustConfig.gnc_inner_tolerance``
(relative cost decrease 1e-5, GTSAM's LM default): only their residuals matter, to update the weights. One
final solve with the settled weights runs to ``LMConfig.function_tolerance``. Measured on intel and CSAIL
with 10-50% false loop closures: the same rejected edges and answers (RMSE to the clean optimum unchanged
in its order of magnitude), 2-3x fewer LM iterations and time; 1e-4 and 1e-3 were faster still on those but
not better on input_M3500_g2o, so the default stays at GTSAM's. Solves whose factor would fill run on CG + IC
(:data:`MAX_FACTOR_FLOPS_PER_ENTRY`). μ₀ and the first weights come from the residuals at the initial guess;
the paper (and GTSAM's ``GncOptimizer``) first solve the plain least-squares problem and start from its
residuals (``RobustConfig.gnc_initial_solve``). Measured on intel with 30% random false loop closures
(``benchmarks/robust.py``): from the least-squares solution 1/3 of the rejected edges were inliers (precision
0.68), from the initial guess none (precision 1.00) in a third of the time; so the default skips it. Known
inliers keep weight 1 throughout.

The problem supplies :class:`RobustProblem`'s methods. The returned report is the last inner solve's, with
iterations, linear iterations, timings and the history summed over all of them, and the GNC details in
``report.robust``; the driver then sets its initial and final costs to the robust loss's (fp64).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Protocol

import numpy as np

from ..linear.config import ICConfig
from ..problem.robust import RobustWeighting, gnc_done, gnc_initial_mu, gnc_update_mu, gnc_weights
from .config import LMConfig, RobustConfig
from .lm import levenberg_marquardt
from .report import Status

__all__ = [
    "RobustProblem",
    "graduated_non_convexity",
    "measured_scale",
    "too_filled",
    "fallback_ic",
    "AUTO_SCALE_FACTOR",
    "REANALYZE_FRACTION",
    "MAX_FACTOR_FLOPS_PER_ENTRY",
]

log = logging.getLogger("mixslam")

#: ``scale="auto"``: c² = this many times the median eᵀΩe of the blocks a first GNC run accepted (known
#: inliers apart), never above the χ² default. The χ² default assumes calibrated information matrices; the
#: shared graphs' are underconfident by 20-30,000x (median eᵀΩe of their loop closures at the clean optimum
#: 8e-5 to 0.13, against 2.37 for a calibrated SE(2) edge and 5.35 for SE(3)), so outliers that bend the
#: map can stay under it. The median of the accepted blocks is robust to such a bend (intel's bent first
#: runs: 0.017-0.026, clean 0.016). Measured with 100 (README, "Outliers (session 13)"): intel meets every
#: target in 17 of 18 corrupted cases (5 of 18 with the χ² default), CSAIL in 18 of 18, but kitti_00 loses its two
#: largest true loop closures (c² = 3.8, its largest inlier 1.8: a tail 49x the median) and parking-garage's
#: first run is too far off to measure from. Tails run from 6x to 213x the median on the shared graphs, so
#: no factor fits all: ``auto`` is an option, not the default.
AUTO_SCALE_FACTOR = 100.0

#: A GNC iteration re-analyzes the linear systems without the blocks whose weight reached exactly zero (TLS)
#: when at least this fraction of all blocks newly did, and always when a block left out gets a weight again.
#: False loop closures between random poses fill the factor: city10000 with 10% of them needs 118x the clean
#: graph's factorization flops, with 30% 1,400x; an analysis costs about one factorization of the clean graph.
REANALYZE_FRACTION = 0.01

#: A GNC weighted solve runs on CG + IC instead of the direct solver when the factor of its normal matrix
#: would cost more than this many flops per stored entry of the matrix (the analysis's estimate). False loop
#: closures between random poses fill the factor: per entry of the normal matrix, the clean shared graphs need
#: 24-2,000 flops (torus3D the most), city10000 with 10% / 30% / 50% random false loop closures 3.0e4 /
#: 3.8e5 / 1.2e6, sphere2500 5.6e3 / 4.9e4 / 1.7e5, input_M3500_g2o 8.8e2 / 1.5e4 / 5.7e4. The early GNC
#: iterations keep every edge (all weights are small and the residuals do not yet tell outliers apart), so
#: they factor the filled matrix. Measured on city10000 (one core): with 30% random false loop closures GNC
#: did not finish in 15 minutes on the direct solver, and takes 65 s with its first 11 weighted solves on
#: CG + IC; with 10% the direct solver alone was faster (17 s against 23 s with 6 solves on CG + IC), hence
#: a limit above 3e4. Applies to the default solver (a solver the user names is kept) with a backend whose
#: analysis estimates flops (``mixslam``, the default; CHOLMOD and the others do not tell).
MAX_FACTOR_FLOPS_PER_ENTRY = 5e4


def fallback_ic(config):
    """The IC configuration of the CG + IC fallback: ``config`` (an ``ICConfig``) without escalation to the
    complete factor and without raising its fill level (both lead back to the filled factor the fallback
    avoids). Measured on city10000 with 30% random false loop closures, ``mixed`` (16-bit IC): the escalated
    complete factors took 31 of its 106 s."""
    cfg = config if config is not None else ICConfig()
    level = cfg.fill_level if isinstance(cfg.fill_level, int) else ICConfig().fill_level
    return dataclasses.replace(cfg, fill_level=level, escalate=False, max_fill_level=level)


def too_filled(factor_flops: float | None, structure) -> bool:
    """Whether a direct factor of ``factor_flops`` (None: unknown) for ``structure``'s pattern costs more
    than :data:`MAX_FACTOR_FLOPS_PER_ENTRY` per entry of its normal matrix."""
    pattern = getattr(structure, "pattern", None)
    return pattern is not None and pattern.fill_flops_above(factor_flops, MAX_FACTOR_FLOPS_PER_ENTRY)


def measured_scale(accepted_sq_norms: np.ndarray, scale: float) -> float:
    """c = sqrt(AUTO_SCALE_FACTOR × median of the accepted blocks' eᵀΩe), at most ``scale``; ``scale`` when
    there are none or their median is not a positive finite number."""
    q = np.asarray(accepted_sq_norms, dtype=np.float64)
    if q.size == 0:
        return scale
    med = float(np.median(q))
    if not (math.isfinite(med) and med > 0.0):
        return scale
    return min(scale, math.sqrt(AUTO_SCALE_FACTOR * med))


class RobustProblem(Protocol):
    robust: RobustWeighting | None

    def block_sq_norms(self, state) -> np.ndarray:
        """(blocks,) fp64 squared whitened norms eᵀΩe of every residual block at ``state``."""


def graduated_non_convexity(problem, state, solver, policy, lm: LMConfig, config: RobustConfig, new_solver=None):
    """Run GNC from ``state``; returns (state, report) like :func:`~mixslam.solve.lm.levenberg_marquardt`.

    With ``new_solver`` (a callable: the problem's current ``linear_structure()`` -> a warmed linear solver)
    and a problem that has ``restrict_blocks``, the blocks whose weight is exactly zero leave the linear
    systems (:data:`REANALYZE_FRACTION`)."""
    rw: RobustWeighting = problem.robust
    loss = rw.loss.name
    free = ~rw.fixed_weight_mask if rw.fixed_weight_mask is not None else None
    inner = dataclasses.replace(lm, max_iterations=min(lm.max_iterations, config.gnc_inner_iterations))
    loose = dataclasses.replace(inner, function_tolerance=max(lm.function_tolerance, config.gnc_inner_tolerance))
    totals = {"iterations": 0, "linear_iterations": 0, "accelerated_steps": 0, "reanalyses": 0}
    solvers: dict[str, int] = {}  # weighted solves per linear solver (CG + IC where the factor fills)
    timing: dict = {}
    history: list = []
    current = {"solver": solver}
    restrict = new_solver is not None and hasattr(problem, "restrict_blocks")

    def pattern_for(weights):
        """Rebuild the linear solver without the zero-weight blocks when one of them came back (needed) or
        enough new ones reached zero (worth an analysis)."""
        active = problem.active
        keep = weights > 0.0
        if active is None:
            active = np.ones_like(keep)
        back = int(np.count_nonzero(keep & ~active))
        gone = int(np.count_nonzero(~keep & active))
        if back or gone >= REANALYZE_FRACTION * keep.size:
            problem.restrict_blocks(keep)
            current["solver"] = new_solver(problem.linear_structure())
            totals["reanalyses"] += 1

    def run(x, weights, cfg=loose):
        rw.fix(weights)
        if restrict and rw.weights is not None:
            pattern_for(rw.weights)
        x, rep = levenberg_marquardt(problem, x, current["solver"], policy, cfg)
        name = current["solver"].label
        solvers[name] = solvers.get(name, 0) + 1
        totals["iterations"] += rep.iterations
        totals["linear_iterations"] += rep.linear_iterations
        totals["accelerated_steps"] += rep.accelerated_steps
        for k, v in rep.timing.items():
            if isinstance(v, (int, float)):
                timing[k] = timing.get(k, 0.0) + v
        history.extend(rep.history)
        return x, rep

    n = problem.block_sq_norms(state).shape[0]

    def gnc_pass(state):
        report = None
        if config.gnc_initial_solve:
            state, report = run(state, np.ones(n))
        s = problem.block_sq_norms(state)
        mu = gnc_initial_mu(loss, s if free is None else s[free], rw.c)
        mus = []
        w = np.ones(n)
        it = 0
        for it in range(1, config.gnc_max_iterations + 1):
            w = gnc_weights(loss, s, rw.c, mu)
            if rw.fixed_weight_mask is not None:
                w[rw.fixed_weight_mask] = 1.0
            mus.append(mu)
            state, report = run(state, w)
            s = problem.block_sq_norms(state)
            if lm.verbose:
                log.info(
                    "[gnc %3d] mu %.3g  weights < 0.5: %d of %d  weighted cost %.10g  (%d LM iterations, %s)",
                    it,
                    mu,
                    int(np.sum(w < 0.5)),
                    n,
                    report.final_cost,
                    report.iterations,
                    current["solver"].label,
                )
            if report.status in (Status.FAILED, Status.INTERRUPTED):
                break
            if gnc_done(loss, mu, w):
                break
            mu = gnc_update_mu(loss, mu, config.gnc_factor)
        assert report is not None  # gnc_max_iterations >= 1
        return state, report, w, mu, it, mus

    start = state
    state, report, w, mu, it, mus = gnc_pass(start)
    auto = {}
    if rw.loss.scale == "auto" and report.status not in (Status.FAILED, Status.INTERRUPTED):
        accepted = w >= 0.5 if free is None else (w >= 0.5) & free
        c = measured_scale(problem.block_sq_norms(state)[accepted], rw.c)
        auto = {"first_scale": rw.c, "first_gnc_iterations": it}
        if c < rw.c:
            if lm.verbose:
                log.info("[gnc] scale from the accepted blocks: %.4g (was %.4g); GNC again from the start", c, rw.c)
            rw.c = c
            first = it
            state, report, w, mu, it, mus = gnc_pass(start)
            it += first
    final_its = 0
    exact = loose.function_tolerance <= lm.function_tolerance and report.status is Status.CONVERGED
    if not exact and report.status not in (Status.FAILED, Status.INTERRUPTED):
        # the last weights' solve to LM's own tolerance and iteration limit (the intermediate ones stopped at
        # the loose tolerance or gnc_inner_iterations)
        state, report = run(state, w, lm)
        final_its = report.iterations
        if lm.verbose:
            log.info("[gnc] final solve with the settled weights: %d LM iterations", final_its)
    rw.fix(w)  # the final weights stay with the problem (the report reads them)
    if restrict and problem.active is not None:  # the problem leaves GNC with every block in its systems
        problem.restrict_blocks(None)
    assert report is not None  # gnc_max_iterations >= 1
    report.iterations = totals["iterations"]
    report.linear_iterations = totals["linear_iterations"]
    report.accelerated_steps = totals["accelerated_steps"]
    report.history = history
    report.timing = dict(timing)
    finished = gnc_done(loss, mu, w)
    report.robust = {
        "gnc_iterations": it,
        "gnc_mu": mus,
        "gnc_finished": bool(finished),
        "gnc_reanalyses": totals["reanalyses"],
        "gnc_final_solve_iterations": final_its,
        "gnc_solvers": solvers,
        **auto,
    }
    if not finished and report.status is Status.CONVERGED:
        report.status = Status.HIT_ITERATION_LIMIT
        report.reason = f"GNC stopped after gnc_max_iterations={config.gnc_max_iterations} before its weights settled"
    else:
        report.reason = f"GNC: {it} weighted solves; last solve: {report.reason}"
    return state, report
