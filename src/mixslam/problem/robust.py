"""Robust losses of whitened residual blocks, and the graduated non-convexity (GNC) weight rules.

Every edge (pose graphs) or observation (bundle adjustment) has a whitened residual block r = W e; its
squared norm s = rᵀr = eᵀΩe is what a loss acts on (per block, not per component). The robust cost is

    cost = 0.5 Σ ρ(s),     with ρ(s) = s for plain least squares,

accumulated in fp64 whatever the policy (it is what LM accepts steps by and what the report gives). Each
loss has a scale c in units of the whitened residual norm (√s): residual blocks within about c are treated
as inliers. Near zero every ρ(s) ≈ s.

=============== ===================================================== ==========================================
loss            ρ(s)                                                  weight w = ρ'(s)
=============== ===================================================== ==========================================
huber           s (s ≤ c²), 2c√s − c² (beyond)                        1, c/√s
cauchy          c² log(1 + s/c²)                                      1 / (1 + s/c²)
geman-mcclure   s c² / (c² + s)                                       c⁴ / (c² + s)²
tls             min(s, c²)  (truncated least squares)                 1 (s ≤ c²), 0
tukey           c²/3 (1 − (1 − s/c²)³) (s ≤ c²), c²/3                 (1 − s/c²)² (s ≤ c²), 0
=============== ===================================================== ==========================================

A Gauss-Newton / LM step on the robust cost scales each block's residual and Jacobian rows by √w (the
iteratively reweighted least-squares approximation GTSAM and g2o use: ρ'' is dropped, so the normal matrix
stays positive semidefinite). The weights are computed in the residual precision from the residuals of
that precision; a weight of 0 gives rows of exact zeros, which 16-bit storage holds exactly.

The default scale is the 99% quantile of the χ² distribution of the block's dimension, √χ²_k(0.99)
(k = 3: 3.37, k = 6: 4.10, bundle adjustment's k = 2: 3.03): an inlier block with unit-covariance noise
lies below it 99% of the time. Decided so that one rule serves every loss and block size; pass
``name:SCALE`` to choose another.

GNC (Yang, Antonante, Tzoumas, Carlone, "Graduated Non-Convexity for Robust Spatial Perception", RA-L 2020)
minimizes a surrogate ρ_μ that starts convex and is moved to the loss by the control parameter μ. With fixed
weights the surrogate's minimization is weighted least squares; after each solve the weights have the
closed forms of :func:`gnc_weights`:

* Geman-McClure: ρ_μ(s) = μ c² s / (μ c² + s); w = (μ c² / (s + μ c²))²; μ starts at 2 s_max / c² and is
  divided by ``factor`` (1.4) each iteration until it reaches 1 (the loss itself).
* TLS: w = 0 for s ≥ (μ+1)/μ c², 1 for s ≤ μ/(μ+1) c², else c √(μ(μ+1)/s) − μ; μ starts at
  c² / (2 s_max − c²) and is multiplied by ``factor`` until every weight is 0 or 1 (within 1e-6) or μ exceeds
  a bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = [
    "LOSSES",
    "GNC_LOSSES",
    "RobustLoss",
    "default_scale",
    "gnc_initial_mu",
    "gnc_weights",
    "gnc_update_mu",
    "gnc_done",
    "RobustWeighting",
]

LOSSES = ("huber", "cauchy", "geman-mcclure", "tls", "tukey")
"""The losses, by the names of the command line (``--robust NAME[:SCALE]``)."""
GNC_LOSSES = ("geman-mcclure", "tls")
"""The losses GNC has a surrogate for."""


def default_scale(block_dim: int) -> float:
    """√χ²_k(0.99) for a residual block of dimension k (see the module docstring)."""
    from scipy.stats import chi2

    return float(math.sqrt(chi2.ppf(0.99, block_dim)))


@dataclass(frozen=True)
class RobustLoss:
    """A loss ρ of the squared whitened norm of a residual block, with its scale."""

    name: str
    """One of :data:`LOSSES`."""
    scale: float | str | None = None
    """c, in units of the whitened residual norm; None: :func:`default_scale` of the block dimension;
    ``"auto"`` (with GNC only): the default for a first GNC run, then the scale measured from its accepted
    blocks (:func:`mixslam.solve.gnc.measured_scale`) for a second (for underconfident information matrices;
    measured to help intel, to hurt kitti_00: :data:`mixslam.solve.gnc.AUTO_SCALE_FACTOR`)."""

    def __post_init__(self):
        if self.name not in LOSSES:
            raise ConfigError(f"RobustLoss.name must be one of {list(LOSSES)}, got {self.name!r}")
        if (
            self.scale is not None
            and self.scale != "auto"
            and not (
                isinstance(self.scale, (int, float))
                and not isinstance(self.scale, bool)
                and math.isfinite(self.scale)
                and self.scale > 0
            )
        ):
            raise ConfigError(f"RobustLoss.scale must be a positive finite number, 'auto' or None, got {self.scale!r}")

    @classmethod
    def parse(cls, text: str) -> RobustLoss:
        """``"tls"``, ``"cauchy:2.5"`` (NAME[:SCALE])."""
        name, _, scale = str(text).strip().lower().partition(":")
        name = {"gm": "geman-mcclure", "geman_mcclure": "geman-mcclure", "truncated": "tls"}.get(name, name)
        if name not in LOSSES:
            raise ConfigError(f"--robust: unknown loss {name!r}; expected one of {', '.join(LOSSES)}[:SCALE]")
        if not scale:
            return cls(name)
        if scale == "auto":
            return cls(name, "auto")
        try:
            value = float(scale)
        except ValueError:
            raise ConfigError(
                f"--robust: the scale after ':' must be a positive number or 'auto', got {scale!r}"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--robust: the scale after ':' must be a positive number, got {scale!r}")
        return cls(name, value)

    def resolved(self, block_dim: int) -> float:
        """The scale c for blocks of dimension ``block_dim``."""
        return float(self.scale) if isinstance(self.scale, (int, float)) else default_scale(block_dim)

    def rho(self, s: np.ndarray, c: float) -> np.ndarray:
        """ρ(s) elementwise (same dtype as ``s``)."""
        s = np.asarray(s)
        c2 = s.dtype.type(c * c) if s.dtype.kind == "f" else c * c
        if self.name == "huber":
            return np.where(s <= c2, s, 2.0 * c * np.sqrt(s) - c2).astype(s.dtype, copy=False)
        if self.name == "cauchy":
            return (c2 * np.log1p(s / c2)).astype(s.dtype, copy=False)
        if self.name == "geman-mcclure":
            return (s * c2 / (c2 + s)).astype(s.dtype, copy=False)
        if self.name == "tls":
            return np.minimum(s, c2)
        t = np.minimum(s / c2, 1.0)  # tukey
        return (c2 / 3.0 * (1.0 - (1.0 - t) ** 3)).astype(s.dtype, copy=False)

    def weight(self, s: np.ndarray, c: float) -> np.ndarray:
        """w = ρ'(s) elementwise, in [0, 1] (same dtype as ``s``)."""
        s = np.asarray(s)
        c2 = c * c
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.name == "huber":
                w = np.where(s <= c2, 1.0, c / np.sqrt(np.maximum(s, c2)))
            elif self.name == "cauchy":
                w = 1.0 / (1.0 + s / c2)
            elif self.name == "geman-mcclure":
                w = (c2 / (c2 + s)) ** 2
            elif self.name == "tls":
                w = np.where(s <= c2, 1.0, 0.0)
            else:  # tukey
                w = np.where(s <= c2, (1.0 - np.minimum(s / c2, 1.0)) ** 2, 0.0)
        return np.asarray(w, dtype=s.dtype if s.dtype.kind == "f" else np.float64)


# ---------------------------------------------------------------------------------------------------------
# GNC
# ---------------------------------------------------------------------------------------------------------
def gnc_initial_mu(loss: str, s: np.ndarray, c: float) -> float:
    """μ₀ from the squared residual norms ``s`` at the initial guess (Yang et al. 2020, Sec. IV)."""
    smax = float(np.max(s)) if np.size(s) else 0.0
    c2 = c * c
    if loss == "geman-mcclure":
        return max(1.0, 2.0 * smax / c2)
    if loss == "tls":
        d = 2.0 * smax - c2
        return c2 / d if d > 0 else 1e6  # every residual already within the threshold: TLS = LS
    raise ConfigError(f"GNC needs geman-mcclure or tls, got {loss!r}")


def gnc_weights(loss: str, s: np.ndarray, c: float, mu: float) -> np.ndarray:
    """The closed-form GNC weights of the squared residual norms ``s`` (fp64) for control parameter ``mu``."""
    s = np.asarray(s, dtype=np.float64)
    c2 = c * c
    if loss == "geman-mcclure":
        return (mu * c2 / (s + mu * c2)) ** 2
    if loss == "tls":
        hi = (mu + 1.0) / mu * c2
        lo = mu / (mu + 1.0) * c2
        with np.errstate(divide="ignore", invalid="ignore"):
            mid = c * np.sqrt(mu * (mu + 1.0) / np.maximum(s, 1e-300)) - mu
        return np.clip(np.where(s >= hi, 0.0, np.where(s <= lo, 1.0, mid)), 0.0, 1.0)
    raise ConfigError(f"GNC needs geman-mcclure or tls, got {loss!r}")


def gnc_update_mu(loss: str, mu: float, factor: float) -> float:
    """The next μ: GM divides it down to 1, TLS multiplies it up."""
    return max(1.0, mu / factor) if loss == "geman-mcclure" else mu * factor


def gnc_done(loss: str, mu: float, weights: np.ndarray, max_mu: float = 1e9) -> bool:
    """GM: μ has reached 1 (the surrogate is the loss); TLS: every weight is 0 or 1 (within 1e-6), or μ is
    beyond ``max_mu``."""
    if loss == "geman-mcclure":
        return mu <= 1.0
    binary = bool(np.all((weights <= 1e-6) | (weights >= 1.0 - 1e-6)))
    return binary or mu >= max_mu


class RobustWeighting:
    """The robust part of a problem's cost and linearization, in one of two modes:

    * loss mode (``weights is None``): cost 0.5 Σ ρ(s); each linearization scales a block's rows by √ρ'(s)
      with s from the residuals of that linearization (residual precision);
    * fixed weights (GNC's inner solves, :meth:`fix`): cost 0.5 Σ w s; rows scaled by √w.
    """

    def __init__(self, loss: RobustLoss, block_dim: int, fixed_weight_mask: np.ndarray | None = None):
        self.loss = loss
        self.c = loss.resolved(block_dim)
        self.weights: np.ndarray | None = None
        """(blocks,) fp64 weights of the fixed-weight mode, or None (loss mode)."""
        self.fixed_weight_mask = fixed_weight_mask
        """(blocks,) bool: blocks whose weight is 1 whatever their residual (known inliers), or None."""

    def fix(self, weights: np.ndarray | None) -> None:
        """Enter the fixed-weight mode with ``weights`` (known inliers forced to 1), or leave it (None)."""
        if weights is None:
            self.weights = None
            return
        w = np.array(weights, dtype=np.float64)
        if self.fixed_weight_mask is not None:
            w[self.fixed_weight_mask] = 1.0
        self.weights = w

    def cost(self, s: np.ndarray) -> float:
        """0.5 Σ ρ(s) (or 0.5 Σ w s with fixed weights) in fp64, from the squared block norms ``s``: what LM
        minimizes."""
        if self.weights is not None:
            return 0.5 * float(np.sum(self.weights * np.asarray(s, dtype=np.float64)))
        return self.loss_cost(s)

    def loss_cost(self, s: np.ndarray) -> float:
        """0.5 Σ ρ(s) in fp64 whatever the mode (known inliers count s): the robust objective a report gives."""
        s = np.asarray(s, dtype=np.float64)
        rho = self.loss.rho(s, self.c)
        if self.fixed_weight_mask is not None:
            rho = np.where(self.fixed_weight_mask, s, rho)
        return 0.5 * float(np.sum(rho))

    def final_weights(self, s: np.ndarray) -> np.ndarray:
        """The weights a report gives: the fixed ones (GNC) or ρ'(s) at the final residuals (fp64)."""
        if self.weights is not None:
            return self.weights.copy()
        return self.block_weights(np.asarray(s, dtype=np.float64))

    def summary(self) -> dict:
        known = 0 if self.fixed_weight_mask is None else int(np.sum(self.fixed_weight_mask))
        return {"loss": self.loss.name, "scale": self.c, "known_inliers": known}

    def block_weights(self, s: np.ndarray) -> np.ndarray:
        """The weight of each block for squared norms ``s`` (computed in the dtype of ``s``)."""
        if self.weights is not None:
            return self.weights.astype(s.dtype, copy=False)
        w = self.loss.weight(s, self.c)
        if self.fixed_weight_mask is not None:
            w = np.where(self.fixed_weight_mask, w.dtype.type(1), w)
        return w

    def apply(self, r: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Scale each block's whitened residual and Jacobian rows by √w in place (their dtype); returns w."""
        s = np.einsum("mi,mi->m", r, r)
        w = self.block_weights(s)
        sw = np.sqrt(w).astype(r.dtype, copy=False)
        r *= sw[:, None]
        A *= sw[:, None, None]
        B *= sw[:, None, None]
        return w
