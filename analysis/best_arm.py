"""Which arm is best, and by how much: the probability that each arm is the best, the rule for
diverged runs, comparisons of two arms on the seeds they share, and Holm's correction.

The rule for diverged runs (a non-finite final value: NaN or inf):

- A diverged run is a failure of its arm on that seed, worse than any finite value. Arms are
  ordered first on their number of diverged runs, then on the mean of their finite runs: an arm
  with more divergences never leads an arm with fewer (``order_key``).
- Two arms are compared on the seeds they share. When one of them diverged on a shared seed
  where the other did not, the comparison is a sign test over the shared seeds
  (``scipy.stats.binomtest``: a divergence loses that seed, a tie is dropped); otherwise a paired
  t-test over the shared seeds where both finished (``ttest_rel``); arms without 2 shared seeds
  fall back to Welch's t-test over all their finite runs.
- P(best) (:func:`p_best`) is computed among the arms with the fewest divergences; the others
  get 0.

P(best) is a posterior probability, not a bootstrap frequency: the arms' values on the seeds all
of them finished (each seed once: a duplicated seed is averaged) are read as
``value = arm effect + seed effect + noise`` (two-way layout, pooled noise variance drawn from
its scaled inverse chi-square, df = (k - 1)(n - 1)), the arm effects drawn from a normal whose
spread is estimated from the arms themselves (empirical Bayes: each arm's mean is shrunk toward
the grand mean by ``1 - noise / between-arm variance``, clipped to [0, 1]). The flat-prior t
posterior was overconfident on close arms (the leader's median P(best) 0.56 with 4 equal arms);
shrinkage is what makes "P(best) = 0.9" mean 9 in 10 (RESULTS.md, section 9). ``rounds`` draws,
the best mean in each draw wins, ties split evenly (all arms tied when nothing separates them). Without ``MIN_SEEDS`` common seeds each
arm's mean gets its own t posterior (its own finite runs, ``MIN_SEEDS`` or more each);
otherwise P(best) is not given. Its calibration is measured in tests/test_stat_simulations.py
and benchmarks/RESULTS.md (section 9).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.stats import CONFIDENCE

MIN_SEEDS = 3  # P(best) needs this many seeds (common to the arms, or per arm)


def order_key(arm: dict[str, Any], minimize: bool) -> tuple:
    """Fewer divergences first, then the better mean of the finite runs; no finite run last."""
    mean = arm.get("mean")
    if mean is None or not math.isfinite(mean):
        return (1, arm.get("n_failed", 0), 0.0)
    return (0, arm.get("n_failed", 0), mean if minimize else -mean)


def p_best(arms: list[dict[str, Any]], *, minimize: bool, rounds: int, seed: int
           ) -> tuple[list[float | None], dict[str, Any]]:
    """P(arm has the best mean) for each arm (``seeds``/``values``: its finite runs;
    ``n_failed``: its diverged runs), and how it was computed: ``{"method", "seeds", "note"}``."""
    out: list[float | None] = [None] * len(arms)
    ran = [i for i, a in enumerate(arms) if a["values"]]
    info: dict[str, Any] = {"method": None, "seeds": 0, "note": None}
    if not ran:
        info["note"] = "no finite run"
        return out, info
    fewest = min(arms[i].get("n_failed", 0) for i in ran)
    eligible = [i for i in ran if arms[i].get("n_failed", 0) == fewest]
    for i in ran:
        out[i] = 0.0
    if fewest:
        info["note"] = f"every arm diverged on {fewest} or more seed(s)"
    elif len(eligible) < len(ran):
        info["note"] = "arms with diverged runs are never best (0)"
    if len(eligible) == 1:
        out[eligible[0]] = 1.0
        info["method"] = ("the only arm" if len(ran) == 1
                          else "the only arm with the fewest diverged runs")
        return out, info
    per_seed = [_per_seed(arms[i]) for i in eligible]
    common = sorted(set.intersection(*(set(s.index) for s in per_seed)), key=repr)
    rng = np.random.default_rng(seed)
    sign = 1.0 if minimize else -1.0
    if len(common) >= MIN_SEEDS:
        y = sign * np.stack([s.loc[common].to_numpy(float) for s in per_seed])  # (arms, seeds)
        k, n = y.shape
        resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
        df, rss = (k - 1) * (n - 1), float((resid ** 2).sum())
        noise = rss / rng.chisquare(df, size=rounds) / n  # (rounds,): variance of an arm mean
        m = y.mean(1)
        spread = float(m.var(ddof=1))  # between-arm variance of the means
        shrink = np.clip(1 - noise / spread, 0, 1) if spread > 0 else np.zeros(rounds)
        means = m.mean() + shrink * (m - m.mean())[:, None] + np.sqrt(
            shrink * noise) * rng.standard_normal((k, rounds))
        info.update(method="paired posterior, arm effects shrunk (empirical Bayes)", seeds=n)
    else:
        small = [len(s) for s in per_seed if len(s) < MIN_SEEDS]
        if small:
            info["note"] = (f"P(best) needs {MIN_SEEDS} seeds shared by the arms or {MIN_SEEDS} "
                            f"runs per arm; an arm has {min(small)}")
            return [None] * len(arms), info
        means = np.stack([
            sign * s.mean() + (s.std(ddof=1) / math.sqrt(len(s)))
            * rng.standard_t(len(s) - 1, size=rounds) for s in per_seed])
        info.update(method="independent t posteriors", seeds=min(len(s) for s in per_seed))
    best = means == means.min(axis=0, keepdims=True)  # ties split evenly
    shares = (best / best.sum(axis=0, keepdims=True)).mean(axis=1)
    for slot, i in enumerate(eligible):
        out[i] = float(shares[slot])
    return out, info


def compare_runs(a: pd.Series, b: pd.Series, *, minimize: bool = True) -> dict[str, Any]:
    """``a`` against ``b`` (values indexed by seed; non-finite = diverged), on their shared
    seeds (see the module docstring); effect ``mean(a) - mean(b)`` with its 95% interval."""
    a, b = _per_seed(_named(a)), _per_seed(_named(b))
    shared = a.index.intersection(b.index)
    fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
    one_sided = [s for s in shared if np.isfinite(a[s]) != np.isfinite(b[s])]
    both = [s for s in shared if np.isfinite(a[s]) and np.isfinite(b[s])]
    out: dict[str, Any] = {"test": None, "n": [len(fa), len(fb)], "effect": None,
                           "effect_ci95": None, "t": None, "df": None, "p_value": None,
                           "diverged": [int((~np.isfinite(a)).sum()),
                                        int((~np.isfinite(b)).sum())],
                           "wins": None, "reason": None}
    if one_sided:
        out.update(_sign_test(a.loc[shared], b.loc[shared], minimize))
        x, y = fa.loc[both], fb.loc[both]
        if len(both):
            out["effect"] = float((x - y).mean())
        if len(both) >= 2 and np.ptp(x - y) > 0:
            out["effect_ci95"] = _t_interval(x.to_numpy(), y.to_numpy(), paired=True)
        return out
    paired = len(both) >= 2
    x, y = (fa.loc[both], fb.loc[both]) if paired else (fa, fb)
    out.update(test="paired_t" if paired else "welch_t", n=[len(x), len(y)])
    if len(x) and len(y):
        out["effect"] = float(x.mean() - y.mean())
    if min(len(x), len(y)) < 2:
        out["reason"] = f"{len(x)} vs {len(y)} run(s): needs 2 or more on each side"
        return out
    x, y = x.to_numpy(float), y.to_numpy(float)
    if (np.ptp(x - y) if paired else x.std() + y.std()) == 0:
        out["reason"] = "no spread across seeds: no test possible"
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sps.ttest_rel(x, y) if paired else sps.ttest_ind(x, y, equal_var=False)
        ci = result.confidence_interval(CONFIDENCE)
    out.update(t=float(result.statistic), df=float(result.df), p_value=float(result.pvalue),
               effect_ci95=[float(ci.low), float(ci.high)])
    return out


def holm(p_values: list[float | None], alpha: float) -> list[tuple[float, bool] | None]:
    """Holm-adjusted p-values and rejections, ``None`` kept where there was no test; the family
    is every p-value given. The step-down in numpy (the i-th smallest of m times m - i, running
    maximum, at most 1): the same numbers as ``statsmodels``' ``multipletests(method="holm")``
    (tests/test_confirm_stats.py checks both), without its ``gc.collect()`` on every call, which
    costs 0.1 s in a loaded process and made the simulations slow."""
    tested = [i for i, p in enumerate(p_values) if p is not None]
    out: list[tuple[float, bool] | None] = [None] * len(p_values)
    if tested:
        raw = np.asarray([p_values[i] for i in tested], dtype=float)
        order = np.argsort(raw, kind="stable")
        steps = raw[order] * (len(raw) - np.arange(len(raw)))
        adjusted = np.empty_like(raw)
        adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
        for i, p in zip(tested, adjusted):
            out[i] = (float(p), bool(p <= alpha))
    return out


def rank_correlation(x: list[float], y: list[float]) -> tuple[float, float, str]:
    """Spearman's rho and its two-sided p-value: exact (every pairing, ``permutation_test``) up
    to 8 values, scipy's t approximation above; ``(rho, p, method)``."""
    rho = float(sps.spearmanr(x, y).statistic)
    if len(x) > 8:
        return rho, float(sps.spearmanr(x, y).pvalue), "t approximation"
    result = sps.permutation_test(
        (np.asarray(x, float), np.asarray(y, float)),
        lambda a, b: sps.spearmanr(a, b).statistic, permutation_type="pairings",
        n_resamples=math.inf, alternative="two-sided")
    return rho, float(min(1.0, result.pvalue)), "exact permutation"


def _sign_test(a: pd.Series, b: pd.Series, minimize: bool) -> dict[str, Any]:
    sign = 1.0 if minimize else -1.0
    worse_a = np.where(np.isfinite(a), sign * a, np.inf)  # a divergence loses its seed
    worse_b = np.where(np.isfinite(b), sign * b, np.inf)
    wins, losses = int((worse_a < worse_b).sum()), int((worse_a > worse_b).sum())
    p = float(sps.binomtest(wins, wins + losses).pvalue) if wins + losses else None
    return {"test": "sign_test", "n": [len(a), len(b)], "wins": [wins, losses], "p_value": p,
            "reason": "a divergence on a shared seed: sign test, a diverged run loses its seed"}


def _t_interval(x: np.ndarray, y: np.ndarray, *, paired: bool) -> list[float]:
    result = sps.ttest_rel(x, y) if paired else sps.ttest_ind(x, y, equal_var=False)
    ci = result.confidence_interval(CONFIDENCE)
    return [float(ci.low), float(ci.high)]


def _named(s: pd.Series) -> pd.Series:
    return pd.Series(np.asarray(s, dtype=float), index=list(s.index))


def _per_seed(arm: dict[str, Any] | pd.Series) -> pd.Series:
    """One value per seed (a duplicated seed averaged); a divergence stays non-finite."""
    if isinstance(arm, dict):
        arm = pd.Series(arm["values"], index=arm["seeds"], dtype=float)
    if arm.index.is_unique:
        return arm
    with np.errstate(invalid="ignore"):
        return arm.groupby(level=0, sort=False).mean()
