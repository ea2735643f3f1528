"""analysis.stats against numbers worked out by hand (and scipy's t distribution)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis.stats import describe, verdict, welch


def test_describe_known_values():
    d = describe([1.0, 2.0, 3.0])
    # mean 2, sample std 1, sem 1/sqrt(3), t(0.975, df=2) = 4.302652729911275
    half = 4.302652729911275 / math.sqrt(3)
    assert (d["n"], d["mean"], d["std"]) == (3, 2.0, 1.0)
    assert d["sem"] == pytest.approx(1 / math.sqrt(3))
    assert d["ci95"] == pytest.approx([2 - half, 2 + half])
    assert d["ci95"] == pytest.approx([-0.484137712, 4.484137712])
    assert (d["min"], d["max"]) == (1.0, 3.0)


def test_describe_drops_non_finite_and_needs_two_values_for_spread():
    d = describe([6.5, float("inf"), float("nan"), None])
    assert (d["n"], d["mean"], d["std"], d["ci95"]) == (1, 6.5, None, None)
    assert describe([])["mean"] is None


def test_welch_known_p_value():
    # a = 1,2,3 and b = 4,5,6: t = -3 / sqrt(1/3 + 1/3) = -3.6742, Welch df = 4
    result = welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    t = -3 / math.sqrt(2 / 3)
    assert result["t"] == pytest.approx(t)
    assert result["df"] == pytest.approx(4.0)
    assert result["p_value"] == pytest.approx(2 * sps.t.sf(abs(t), 4))
    assert result["p_value"] == pytest.approx(0.0213116, rel=1e-5)


def test_welch_unequal_variances_seeded():
    rng = np.random.default_rng(0)
    a, b = rng.normal(6.7, 0.05, 5), rng.normal(6.8, 0.2, 4)
    va, vb = a.var(ddof=1) / 5, b.var(ddof=1) / 4
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 3)  # Welch-Satterthwaite, by hand
    result = welch(a.tolist(), b.tolist())
    assert result["t"] == pytest.approx(t)
    assert result["df"] == pytest.approx(df)
    assert result["p_value"] == pytest.approx(2 * sps.t.sf(abs(t), df))


def test_welch_needs_two_values_per_side_and_some_spread():
    assert welch([1.0], [2.0, 3.0])["p_value"] is None
    assert welch([1.0, 1.0], [2.0, 2.0])["p_value"] is None


@pytest.mark.parametrize(
    ("difference", "p", "n", "expected"),
    [
        (-0.1, 0.41, (3, 3), "within noise (p=0.41)"),
        (-0.1, 0.003, (3, 3), "better than the baseline (p=0.003)"),
        (0.1, 0.003, (3, 3), "worse than the baseline (p=0.003)"),
        (-0.98, None, (1, 1), "cannot be told from noise: 1 vs 1 seed(s)"),
        (-0.1, None, (3, 3), "no spread across seeds: no test possible"),
    ],
)
def test_verdict(difference, p, n, expected):
    assert verdict(difference, p, n=n).startswith(expected)


def test_verdict_when_higher_is_better():
    assert verdict(0.1, 0.01, n=(3, 3), better="higher").startswith("better")
