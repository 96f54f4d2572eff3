"""Graduated non-convexity around Levenberg-Marquardt (Yang, Antonante, Tzoumas, Carlone, RA-L 2020).

Each GNC iteration fixes the weights, solves the weighted least-squares problem with LM (warm-started, at
most ``gnc_inner_iterations`` iterations, with the problem's linear solver and policy), then updates the
weights in closed form from the new residuals (:func:`~mixslam.problem.robust.gnc_weights`) and moves the
control parameter μ towards the loss. μ₀ and the first weights come from the residuals at the initial guess;
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
from typing import Protocol

import numpy as np

from ..problem.robust import RobustWeighting, gnc_done, gnc_initial_mu, gnc_update_mu, gnc_weights
from .config import LMConfig, RobustConfig
from .lm import levenberg_marquardt
from .report import Status

__all__ = ["RobustProblem", "graduated_non_convexity"]

log = logging.getLogger("mixslam")


class RobustProblem(Protocol):
    robust: RobustWeighting | None

    def block_sq_norms(self, state) -> np.ndarray:
        """(blocks,) fp64 squared whitened norms eᵀΩe of every residual block at ``state``."""


def graduated_non_convexity(problem, state, solver, policy, lm: LMConfig, config: RobustConfig):
    """Run GNC from ``state``; returns (state, report) like :func:`~mixslam.solve.lm.levenberg_marquardt`."""
    rw: RobustWeighting = problem.robust
    loss = rw.loss.name
    free = ~rw.fixed_weight_mask if rw.fixed_weight_mask is not None else None
    inner = dataclasses.replace(lm, max_iterations=min(lm.max_iterations, config.gnc_inner_iterations))
    totals = {"iterations": 0, "linear_iterations": 0}
    timing: dict = {}
    history: list = []

    def run(x, weights):
        rw.fix(weights)
        x, rep = levenberg_marquardt(problem, x, solver, policy, inner)
        totals["iterations"] += rep.iterations
        totals["linear_iterations"] += rep.linear_iterations
        for k, v in rep.timing.items():
            if isinstance(v, (int, float)):
                timing[k] = timing.get(k, 0.0) + v
        history.extend(rep.history)
        return x, rep

    n = problem.block_sq_norms(state).shape[0]
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
                "[gnc %3d] mu %.3g  weights < 0.5: %d of %d  weighted cost %.10g",
                it,
                mu,
                int(np.sum(w < 0.5)),
                n,
                report.final_cost,
            )
        if report.status in (Status.FAILED, Status.INTERRUPTED):
            break
        if gnc_done(loss, mu, w):
            break
        mu = gnc_update_mu(loss, mu, config.gnc_factor)
    rw.fix(w)  # the final weights stay with the problem (the report reads them)
    assert report is not None  # gnc_max_iterations >= 1
    report.iterations = totals["iterations"]
    report.linear_iterations = totals["linear_iterations"]
    report.history = history
    report.timing = dict(timing)
    finished = gnc_done(loss, mu, w)
    report.robust = {
        "gnc_iterations": it,
        "gnc_mu": mus,
        "gnc_finished": bool(finished),
    }
    if not finished and report.status is Status.CONVERGED:
        report.status = Status.HIT_ITERATION_LIMIT
        report.reason = f"GNC stopped after gnc_max_iterations={config.gnc_max_iterations} before its weights settled"
    else:
        report.reason = f"GNC: {it} weighted solves; last solve: {report.reason}"
    return state, report
