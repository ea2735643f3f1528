"""Seed statistics: mean, spread, a 95% t-interval, and Welch's t-test with a plain verdict."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
SIGNIFICANCE = 0.05


def describe(values: Sequence[float], *, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """n, mean, sample std (ddof=1) and the t-interval of the mean of the finite ``values``.

    With fewer than two values the spread and the interval are ``None``.

    Example:
        >>> d = describe([1.0, 2.0, 3.0])  # ci95 = 2 -/+ t(0.975, df=2) * 1 / sqrt(3)
        >>> d["mean"], d["std"], [round(v, 4) for v in d["ci95"]]
        (2.0, 1.0, [-0.4841, 4.4841])
    """
    x = _finite(values)
    n = len(x)
    out: dict[str, Any] = {
        "n": n,
        "mean": None,
        "std": None,
        "sem": None,
        "ci95": None,
        "min": None,
        "max": None,
    }
    if n == 0:
        return out
    out.update(mean=float(x.mean()), min=float(x.min()), max=float(x.max()))
    if n >= 2:
        std = float(x.std(ddof=1))
        sem = std / math.sqrt(n)
        half = float(sps.t.ppf(0.5 + confidence / 2, df=n - 1)) * sem
        out.update(std=std, sem=sem, ci95=[out["mean"] - half, out["mean"] + half])
    return out


def welch(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Welch's two-sided t-test of mean(a) == mean(b): ``{"t", "df", "p_value", "test",
    "ci95"}`` (``ci95``: the 95% interval of mean(a) - mean(b)).

    Needs two finite values on each side and some spread; otherwise the fields are ``None``.
    """
    x, y = _finite(a), _finite(b)
    out: dict[str, Any] = {"test": "welch_t", "t": None, "df": None, "p_value": None,
                           "ci95": None}
    if len(x) < 2 or len(y) < 2:
        return out
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    if vx + vy == 0:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sps.ttest_ind(x, y, equal_var=False)
        interval = result.confidence_interval(CONFIDENCE)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    out.update(t=float(result.statistic), df=float(df), p_value=float(result.pvalue),
               ci95=[float(interval.low), float(interval.high)])
    return out


def verdict(
    difference: float | None,
    p_value: float | None,
    *,
    n: tuple[int, int],
    better: str = "lower",
    alpha: float = SIGNIFICANCE,
) -> str:
    """One plain sentence on ``difference = arm - baseline`` of the metric.

    ``better`` says which direction wins (``"lower"`` for a loss).
    """
    if difference is None:
        return "no finite results to compare"
    if min(n) < 2:
        return (
            f"cannot be told from noise: {n[0]} vs {n[1]} seed(s); "
            "run at least 2 seeds per arm (3+ for a useful p-value)"
        )
    if p_value is None:
        return "no spread across seeds: no test possible"
    if p_value >= alpha:
        return f"within noise (p={p_value:.2g})"
    wins = difference < 0 if better == "lower" else difference > 0
    return f"{'better' if wins else 'worse'} than the baseline (p={p_value:.2g})"


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray([v for v in values if v is not None], dtype=float)
    return x[np.isfinite(x)]
