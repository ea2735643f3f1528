"""Is the search's winner real? The statistics of a confirmation stage, from its runs.

A search keeps the luckiest of many noisy trials, so its best value is optimistic (the winner's
curse: the prior campaign's best gated run scored 6.597 and re-ran at 6.775). A confirmation
stage re-runs the search's top configurations with fresh seeds at their full budget, optionally
beside a baseline arm; :func:`confirm_stats` turns those runs (a DataFrame with one row per
confirmation run: columns ``arm``, ``role`` = ``candidate`` | ``baseline``, ``seed``, ``value``,
and for candidates ``search_value`` and ``search_rank``) into numbers and verdicts.
``analysis.confirm`` builds that frame from the experiment folders and adds the rest of
summary.json's ``confirm`` section (the schema below).

Statistics (scipy; Holm step-down in numpy, checked against statsmodels in the tests):

- per arm: n, mean, sample std, 95% t-interval of the mean (``analysis.stats.describe``) of
  its finite runs; non-finite values (a diverged run) are counted in ``n_failed``;
- the order (and the leader): fewer diverged runs first, then the better mean (the rule of
  ``analysis.best_arm``): an arm that diverged never leads one that did not; when every
  candidate diverged somewhere the leader is flagged in ``notes``;
- comparisons, on the seeds the two arms share (``analysis.best_arm.compare_runs``): a paired
  t-test (``scipy.stats.ttest_rel``) over the shared seeds both finished, a sign test when one
  arm diverged on a shared seed where the other did not, Welch's t-test when they share fewer
  than 2 seeds; the effect is ``mean(arm) - mean(against)`` with the test's 95% interval;
- Holm's correction (``analysis.best_arm.holm``, as ``statsmodels``' ``multipletests``) over one
  family: every pair of candidates (the leader was chosen as the best mean of these same runs,
  so "vs leader" is tested as one of all pairwise comparisons) and each candidate against the
  baseline; ``family_size`` says how many tests it held. A verdict per comparison shown:
  ``better`` / ``worse`` (Holm-adjusted p < 0.05, direction from ``mode``), ``within noise``,
  or ``not tested`` (fewer than 2 runs on a side, or no spread; ``reason`` says which);
- P(best), the probability that each arm has the best mean: a t posterior over the seeds the
  arms share (``analysis.best_arm.p_best``; ties split evenly; ``None`` with fewer than
  ``MIN_SEEDS`` seeds); ``POSTERIOR_DRAWS`` draws of ``numpy.random.default_rng(seed)``: the same
  runs give the same probabilities. Its calibration: benchmarks/RESULTS.md, section 9;
- ``notes``: a leader that diverged, and a baseline whose mean beats the leader's (significant
  or not);
- the winner's curse: per candidate ``search_minus_confirmed = search_value - confirmed mean``
  and ``optimism`` (the same gap signed so that > 0 means the search looked better than the
  confirmation: ``confirmed - search`` for ``mode: min``), and Spearman's rank correlation
  between the search's values and the confirmed means of the candidates (3 or more; its
  p-value exact, over every pairing, up to 8).

Schema of the section (JSON-ready; ``None`` where a number cannot be computed)::

    {
      "metric": "val_loss", "mode": "min", "confidence": 0.95, "alpha": 0.05,
      "correction": "holm",
      "family_size": int,
      "p_best": {"draws": 10000, "seed": 0, "method": str | None, "seeds": int, "note": str | None},
      "search_experiment": str | None, "experiment": str | None,
      "arms": [   # in confirmed order: candidates by confirmed mean, then the baseline
        {"arm": str (label), "role": "candidate" | "baseline",
         "config_id": str | None, "params": {key: value},
         "search_rank": int | None, "search_value": float | None,
         "n": int, "n_failed": int, "mean", "std", "sem", "min", "max": float | None,
         "ci95": [low, high] | None, "seeds": [int], "values": [float], "failed_seeds": [int],
         "confirmed_rank": int | None (candidates only), "p_best": float | None,
         "search_minus_confirmed": float | None, "optimism": float | None,
         "vs_leader": verdict | None, "vs_baseline": verdict | None}
      ],
      "comparisons": [
        {"arm": str, "against": str, "against_role": "leader" | "baseline",
         "test": "paired_t" | "welch_t" | "sign_test", "n": [n_arm, n_against],
         "diverged": [k_arm, k_against], "wins": [wins, losses] | None (sign test),
         "effect": float | None, "effect_ci95": [low, high] | None,
         "t": float | None, "df": float | None,
         "p_value": float | None, "p_holm": float | None,
         "verdict": "better" | "worse" | "within noise" | "not tested", "reason": str | None}
      ],
      "winners_curse": {"n": int, "mean_optimism": float | None,
                        "spearman": float | None, "spearman_p": float | None,
                        "spearman_method": "exact permutation" | "t approximation" | None,
                        "search_order": [arm], "confirmed_order": [arm], "note": str | None},
      "not_counted": [{"trial_id", "status", "group"}],  # confirmation trials that did not
                                   # finish (errored, unfinished): the stage is incomplete
      "leader": str | None,        # the first candidate in confirmed order
      "notes": [str],
      "winner": {"arm", "config_id", "params", "n", "mean", "ci95", "trial_id", "config",
                 "config_path", "command", "note"} | None
    }

``verdict`` reads "arm is better / worse than against"; ``effect`` is in the metric's units.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.best_arm import (
    MIN_SEEDS,
    compare_runs,
    holm,
    order_key,
    p_best,
    rank_correlation,
)
from analysis.stats import CONFIDENCE, SIGNIFICANCE, describe

POSTERIOR_DRAWS = 10_000
POSTERIOR_SEED = 0
MIN_SPEARMAN = 3  # rho from 3 candidates; its p-value is exact below 9 (analysis.best_arm)
VERDICTS = ("better", "worse", "within noise", "not tested")
__all__ = ["MIN_SEEDS", "compare_runs", "confirm_stats", "winners_curse"]


def confirm_stats(
    runs: pd.DataFrame,
    *,
    mode: str = "min",
    metric: str = "val_loss",
    alpha: float = SIGNIFICANCE,
    rounds: int = POSTERIOR_DRAWS,
    seed: int = POSTERIOR_SEED,
) -> dict[str, Any]:
    """The ``confirm`` section's statistics from one row per confirmation run.

    ``runs`` columns: ``arm`` (label), ``role`` (``candidate`` or ``baseline``), ``seed``,
    ``value`` (the run's final metric; non-finite: diverged); for candidates ``search_value``
    and ``search_rank``; optionally ``config_id``. At most one baseline arm.

    Example:
        >>> runs = pd.DataFrame({"arm": ["a"] * 3 + ["b"] * 3, "role": "candidate",
        ...                      "seed": [10, 11, 12] * 2, "value": [1.0, 1.2, 1.1, 1.5, 1.6, 1.7],
        ...                      "search_value": [0.9] * 3 + [1.0] * 3,
        ...                      "search_rank": [1] * 3 + [2] * 3})
        >>> section = confirm_stats(runs)
        >>> section["leader"], section["comparisons"][0]["test"]
        ('a', 'paired_t')
    """
    minimize = mode == "min"
    arms = _arms(runs)
    candidates = [a for a in arms if a["role"] == "candidate"]
    baselines = [a for a in arms if a["role"] == "baseline"]
    if len(baselines) > 1:
        raise ValueError(f"at most one baseline arm, got {[b['arm'] for b in baselines]}")
    candidates.sort(key=lambda a: (order_key(a, minimize), a["search_rank"] or 0))
    for rank, arm in enumerate(candidates, start=1):
        arm["confirmed_rank"] = rank
    leader = candidates[0] if candidates and candidates[0]["mean"] is not None else None
    baseline = baselines[0] if baselines else None
    ordered = candidates + baselines

    # the family Holm corrects: every pair of candidates (the leader was chosen from the same
    # data, so "vs leader" is one of all pairwise comparisons) and each candidate vs baseline
    family = []
    for i, arm in enumerate(candidates):
        if baseline is not None:
            family.append(_compare(arm, baseline, "baseline", minimize))
        for other in candidates[:i]:
            family.append(_compare(arm, other, "leader" if other is leader else "other",
                                   minimize))
    for c, result in zip(family, holm([c["p_value"] for c in family], alpha)):
        if result is not None:
            c["p_holm"], reject = result
            c["verdict"] = "within noise" if not reject else ("better" if _wins(c, minimize)
                                                               else "worse")
    comparisons = [c for c in family if c["against_role"] != "other"]
    for arm in ordered:
        for c in comparisons:
            if c["arm"] == arm["arm"]:
                arm[f"vs_{c['against_role']}"] = c["verdict"]

    probabilities, how = p_best(ordered, minimize=minimize, rounds=rounds, seed=seed)
    for arm, p in zip(ordered, probabilities):
        arm["p_best"] = p
    for arm in candidates:
        search, mean = arm["search_value"], arm["mean"]
        gap = None if search is None or mean is None else search - mean
        arm["search_minus_confirmed"] = gap
        arm["optimism"] = None if gap is None else (-gap if minimize else gap)

    return {
        "metric": metric,
        "mode": mode,
        "confidence": CONFIDENCE,
        "alpha": alpha,
        "correction": "holm",
        "family_size": sum(c["p_value"] is not None for c in family),
        "p_best": {"draws": rounds, "seed": seed, **how},
        "arms": ordered,
        "comparisons": comparisons,
        "winners_curse": winners_curse(candidates),
        "leader": None if leader is None else leader["arm"],
        "notes": _notes(leader, baseline, minimize),
    }


def winners_curse(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean optimism and Spearman's rank correlation of search values vs confirmed means
    (its p-value exact below 9 candidates)."""
    both = [a for a in candidates if a["search_value"] is not None and a["mean"] is not None]
    out: dict[str, Any] = {
        "n": len(both),
        "mean_optimism": float(np.mean([a["optimism"] for a in both])) if both else None,
        "spearman": None,
        "spearman_p": None,
        "spearman_method": None,
        "search_order": [a["arm"] for a in sorted(
            both, key=lambda a: (a["search_rank"] is None, a["search_rank"] or 0))],
        "confirmed_order": [a["arm"] for a in both],  # candidates come in confirmed order
        "note": None,
    }
    if len(both) < MIN_SPEARMAN:
        out["note"] = f"rank correlation needs >= {MIN_SPEARMAN} confirmed candidates"
        return out
    search = [a["search_value"] for a in both]
    confirmed = [a["mean"] for a in both]
    if len(set(search)) < 2 or len(set(confirmed)) < 2:
        out["note"] = "all search values or all confirmed means are equal: no rank correlation"
        return out
    rho, p, method = rank_correlation(search, confirmed)
    out.update(spearman=rho, spearman_p=p, spearman_method=method)
    return out


# ---- helpers ------------------------------------------------------------------------------
def _arms(runs: pd.DataFrame) -> list[dict[str, Any]]:
    arms = []
    for label, group in runs.groupby("arm", sort=False):
        first = group.iloc[0]
        ok = np.isfinite(group["value"].astype(float))
        finite = group[ok]
        arm = {
            "arm": str(label),
            "role": str(first.get("role", "candidate")),
            "config_id": _plain(first.get("config_id")),
            "params": first.get("params") if isinstance(first.get("params"), dict) else {},
            "search_rank": _int_or_none(first.get("search_rank")),
            "search_value": _float_or_none(first.get("search_value")),
            **describe(finite["value"].tolist()),
            "n_failed": int(len(group) - len(finite)),
            "seeds": [_plain(s) for s in finite["seed"]],
            "values": [float(v) for v in finite["value"]],
            "failed_seeds": [_plain(s) for s in group[~ok]["seed"]],
            "confirmed_rank": None,
            "p_best": None,
            "search_minus_confirmed": None,
            "optimism": None,
            "vs_leader": None,
            "vs_baseline": None,
        }
        arms.append(arm)
    return arms


def _compare(arm: dict, against: dict, role: str, minimize: bool) -> dict[str, Any]:
    return {
        "arm": arm["arm"],
        "against": against["arm"],
        "against_role": role,
        **compare_runs(_series(arm), _series(against), minimize=minimize),
        "p_holm": None,
        "verdict": "not tested",
    }


def _series(arm: dict) -> pd.Series:
    """The arm's runs by seed, a diverged run as inf."""
    return pd.Series(arm["values"] + [math.inf] * len(arm["failed_seeds"]),
                     index=arm["seeds"] + arm["failed_seeds"], dtype=float)


def _wins(c: dict[str, Any], minimize: bool) -> bool:
    if c["test"] == "sign_test":
        return c["wins"][0] > c["wins"][1]
    return c["effect"] < 0 if minimize else c["effect"] > 0


def _notes(leader: dict | None, baseline: dict | None, minimize: bool) -> list[str]:
    """What a reader must not miss: a leader that diverged, a baseline whose mean is better."""
    notes = []
    if leader is not None and leader["n_failed"]:
        notes.append(f"the leader {leader['arm']} diverged on {leader['n_failed']} of "
                     f"{leader['n'] + leader['n_failed']} seeds (every candidate diverged)")
    base = None if baseline is None else baseline["mean"]
    if leader is not None and base is not None and (
            base < leader["mean"] if minimize else base > leader["mean"]):
        verdict = leader.get("vs_baseline") or "not tested"
        notes.append(f"the baseline's mean ({base:.4f}) is better than the leader's "
                     f"({leader['mean']:.4f}); leader vs baseline: {verdict}")
    return notes


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _int_or_none(value: Any) -> int | None:
    value = _plain(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def _float_or_none(value: Any) -> float | None:
    value = _plain(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)
