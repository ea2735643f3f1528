"""analysis/ladder_fit.py: the per-size optimum, the log-log trend with its bootstrap CI, and
the fit over a ladder's size folders."""

from __future__ import annotations

import numpy as np
import pytest
from ladder_data import SIZES, TARGET, synthetic_trials

from analysis.ladder_fit import fit_ladder, fit_trend, size_optimum
from ngpt_tune.space import Param
from ngpt_tune.spec_sections import parse_ladder


def test_trend_recovers_a_known_exponent_within_its_ci():
    ladder = parse_ladder({"sizes": SIZES, "target": TARGET})
    truth = {"optim.lr": (0.01, -0.35), "model.alpha": (0.2, -0.15)}
    params = [Param("optim.lr", "loguniform", (1e-4, 1.0)),
              Param("model.alpha", "loguniform", (0.01, 1.0))]
    # 40 trials per rung, two parameters; the per-size fit is the two-sided parabola (a
    # curvature per side: one more parameter than a parabola, so a wider spread); its coverage
    # is measured in tests/test_stat_simulations.py: this seed is one that covers
    section = fit_ladder(ladder, synthetic_trials(ladder, truth, n=40), params)
    target = ladder.size_of(ladder.target)
    for key, (scale, exponent) in truth.items():
        fit = section["fits"][key]
        low, high = fit["exponent_ci"]
        assert low <= exponent <= high, (key, fit)
        assert abs(fit["exponent"] - exponent) < 0.1
        truth_at_target = scale * (target / 1e5) ** exponent
        assert fit["prediction_ci"][0] <= truth_at_target <= fit["prediction_ci"][1]
    assert all(r["optima"]["optim.lr"]["method"] == "quadratic" for r in section["rungs"])


def test_fit_trend_exact_power_law():
    sizes = np.array([1e4, 4e4, 1.6e5])
    optima = 0.5 * sizes**-0.5
    draws = [np.full(200, o) for o in optima]
    fit = fit_trend(sizes, optima, draws, 6.4e5)
    assert fit["exponent"] == pytest.approx(-0.5)
    assert fit["prediction"] == pytest.approx(0.5 * 6.4e5**-0.5)


def test_size_optimum_on_noisy_quadratic():
    rng = np.random.default_rng(0)
    x = np.exp(rng.uniform(np.log(1e-4), np.log(1e-1), 40))
    y = 2.0 + 0.3 * (np.log(x) - np.log(3e-3)) ** 2 + rng.normal(0, 0.05, 40)
    est = size_optimum(x, y, bootstrap=500, seed=0)
    assert est["method"] == "quadratic"
    assert est["low"] <= 3e-3 <= est["high"]
    assert 1.5e-3 < est["value"] < 6e-3
    assert est["n_fit"] == 20  # the better half
    assert 0 <= est["failed_draws"] < 0.3 and "percentile bootstrap" in est["covers"]


def test_size_optimum_mode_max():
    x = np.geomspace(0.01, 1.0, 15)
    y = -((np.log(x) - np.log(0.1)) ** 2)  # accuracy-like: higher is better
    est = size_optimum(x, y, mode="max", bootstrap=200, near_best=1.0)
    assert est["value"] == pytest.approx(0.1, rel=1e-6)


def test_size_optimum_falls_back_when_not_convex():
    x = np.geomspace(1e-3, 1e-1, 12)
    y = -np.log(x)  # monotone: the best trial sits at the edge, no interior minimum
    est = size_optimum(x, y, bootstrap=200, near_best=1.0)
    assert est["method"].startswith("fallback")
    assert est["value"] == pytest.approx(np.exp(np.mean(np.log(x[-3:]))))


def test_a_fallback_size_and_unequal_budgets_are_flagged_in_printout_and_target_spec():
    from analysis.ladder import _warnings
    from analysis.ladder_fit import budget_warning
    from analysis.report import _stage_lines

    assert budget_warning([1.0, 1.0, 1.0]) is None
    warning = budget_warning([1.0, 0.5, 1.0])
    assert "different fractions of their budget (100%, 50%, 100%)" in warning
    fit = {"exponent": -0.3, "exponent_ci": [-0.4, -0.2], "prediction": 1e-3,
           "prediction_ci": [5e-4, 2e-3], "fallback_sizes": [2e5], "covers": "90% ..."}
    section = {"fits": {"optim.lr": fit}, "budget_warning": warning, "rungs": [
        {"size": 2e5, "optima": {"optim.lr": {"method": "fallback: the fit is not convex",
                                              "failed_draws": 0.3}}}]}
    head = _warnings(section)
    assert head.startswith("# WARNING: optim.lr: no convex fit at size(s) 200,000")
    assert "# WARNING: the sizes are compared at different fractions" in head
    printed = "\n".join(_stage_lines({"ladder": section}))
    assert "ladder: WARNING no convex fit, best-3 fallback used" in printed
    assert "optim.lr at size 200,000 (30%)" in printed  # failed bootstrap fits
    assert "ladder: WARNING the sizes are compared at different fractions" in printed
