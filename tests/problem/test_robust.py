"""Robust losses: ρ(s) ≈ s near 0, w = ρ'(s) (checked by finite differences), weights in [0, 1], the scale
rule, parsing and its errors; the GNC weight rules at their limits."""
from __future__ import annotations

import numpy as np
import pytest

from mixslam.errors import ConfigError
from mixslam.problem.robust import (
    LOSSES,
    RobustLoss,
    RobustWeighting,
    default_scale,
    gnc_done,
    gnc_initial_mu,
    gnc_update_mu,
    gnc_weights,
)

S = np.concatenate([np.linspace(1e-6, 30.0, 400), [100.0, 1e4]])


@pytest.mark.parametrize("name", LOSSES)
def test_weight_is_the_derivative_of_rho(name):
    loss, c = RobustLoss(name), 2.0
    h = 1e-6
    # away from the kinks of huber / tls / tukey at s = c²
    s = S[np.abs(S - c * c) > 1e-3]
    num = (loss.rho(s + h, c) - loss.rho(s - h, c)) / (2 * h)
    assert np.allclose(loss.weight(s, c), num, rtol=1e-5, atol=1e-7)
    w = loss.weight(S, c)
    assert np.all((w >= 0) & (w <= 1))
    assert loss.rho(np.array([1e-9]), c)[0] == pytest.approx(1e-9, rel=1e-6)  # ρ(s) ≈ s near 0


def test_loss_shapes():
    c = 1.5
    s = np.array([0.5, 4.0, 100.0])
    assert np.allclose(RobustLoss("tls").rho(s, c), [0.5, 2.25, 2.25])
    assert np.array_equal(RobustLoss("tls").weight(s, c), [1.0, 0.0, 0.0])
    assert np.allclose(RobustLoss("huber").rho(s, c), [0.5, 2 * c * 2 - c * c, 2 * c * 10 - c * c])
    assert RobustLoss("tukey").weight(s, c)[2] == 0.0
    assert RobustLoss("geman-mcclure").rho(np.array([1e12]), c)[0] == pytest.approx(c * c, rel=1e-9)
    # fp32 residuals get fp32 weights
    assert RobustLoss("cauchy").weight(s.astype(np.float32), c).dtype == np.float32


def test_parse_and_errors():
    assert RobustLoss.parse("tls") == RobustLoss("tls")
    assert RobustLoss.parse("Cauchy:2.5") == RobustLoss("cauchy", 2.5)
    assert RobustLoss.parse("gm").name == "geman-mcclure"
    for bad in ("l1", "tls:abc", "tls:-1", "tls:nan"):
        with pytest.raises(ConfigError, match="--robust"):
            RobustLoss.parse(bad)
    with pytest.raises(ConfigError, match="RobustLoss.scale"):
        RobustLoss("tls", 0.0)
    assert default_scale(3) == pytest.approx(3.368, abs=1e-3)
    assert default_scale(2) == pytest.approx(3.035, abs=1e-3)
    assert RobustLoss("tls").resolved(6) == pytest.approx(4.100, abs=1e-3)


def test_weighting_modes_and_known_inliers():
    mask = np.array([True, False, False])
    rw = RobustWeighting(RobustLoss("tls", 1.0), 3, mask)
    s = np.array([9.0, 9.0, 0.25])
    assert rw.cost(s) == pytest.approx(0.5 * (9.0 + 1.0 + 0.25))  # the known inlier is never truncated
    assert np.array_equal(rw.block_weights(s), [1.0, 0.0, 1.0])
    rw.fix(np.array([0.0, 0.5, 1.0]))
    assert rw.cost(s) == pytest.approx(0.5 * (9.0 + 4.5 + 0.25))  # fixed weights; known inlier forced to 1
    assert rw.loss_cost(s) == pytest.approx(0.5 * (9.0 + 1.0 + 0.25))
    r = np.ones((3, 2)) * 3.0
    A, B = np.ones((3, 2, 4)), np.ones((3, 2, 3))
    rw.apply(r, A, B)
    assert np.allclose(r[:, 0], [3.0, 3.0 * np.sqrt(0.5), 3.0]) and np.allclose(A[1], np.sqrt(0.5))
    rw.fix(None)
    assert rw.weights is None


def test_gnc_weight_rules():
    c = 2.0
    s = np.array([0.1, 3.0, 3.9, 4.2, 400.0])
    # GM: μ large -> weights near 1 (convex); μ = 1 -> the loss's own weights
    assert np.all(gnc_weights("geman-mcclure", s, c, 1e8) > 0.999)
    assert np.allclose(gnc_weights("geman-mcclure", s, c, 1.0), RobustLoss("geman-mcclure").weight(s, c))
    # TLS: μ → ∞ -> binary weights at c²; weights in [0, 1] on the way
    w = gnc_weights("tls", s, c, 1e9)
    assert np.array_equal(w, [1.0, 1.0, 1.0, 0.0, 0.0])
    for mu in (1e-4, 0.1, 1.0, 10.0):
        wt = gnc_weights("tls", s, c, mu)
        assert np.all((wt >= 0) & (wt <= 1))
    assert gnc_initial_mu("geman-mcclure", s, c) == pytest.approx(2 * 400 / 4)
    assert gnc_initial_mu("tls", s, c) == pytest.approx(4 / (800 - 4))
    assert gnc_update_mu("geman-mcclure", 1.2, 1.4) == 1.0
    assert gnc_update_mu("tls", 1.0, 1.4) == pytest.approx(1.4)
    assert gnc_done("geman-mcclure", 1.0, w) and not gnc_done("geman-mcclure", 2.0, w)
    assert gnc_done("tls", 5.0, np.array([0.0, 1.0])) and not gnc_done("tls", 5.0, np.array([0.3, 1.0]))
    with pytest.raises(ConfigError):
        gnc_weights("huber", s, c, 1.0)
