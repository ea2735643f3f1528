"""Is the search's winner real? The statistics of a confirmation stage, from its runs.

A search keeps the luckiest of many noisy trials, so its best value is optimistic (the winner's
curse: the prior campaign's best gated run scored 6.597 and re-ran at 6.775). A confirmation
stage re-runs the search's top configurations with fresh seeds at their full budget, optionally
beside a baseline arm; :func:`confirm_stats` turns those runs (a DataFrame with one row per
confirmation run: columns ``arm``, ``role`` = ``candidate`` | ``baseline``, ``seed``, ``value``,
and for candidates ``search_value`` and ``search_rank``) into numbers and verdicts.
``analysis.confirm`` builds that frame from the experiment folders and adds the rest of
summary.json's ``confirm`` section (the schema below).

Statistics (scipy and statsmodels; nothing re-implemented):

- per arm: n, mean, sample std, 95% t-interval of the mean (``analysis.stats.describe``);
  non-finite values (a diverged run) are left out and counted in ``n_failed``;
- each candidate against the baseline and each other candidate against the leader (the
  candidate with the best confirmed mean): a paired t-test (``scipy.stats.ttest_rel``) when both
  arms ran exactly the same seeds (same seed = same initialisation and data order), else
  Welch's t-test (``ttest_ind(equal_var=False)``); the effect is ``mean(arm) - mean(against)``
  (for a paired test, the mean of the per-seed differences) with the test's 95% interval;
- Holm's correction over all comparisons of the section
  (``statsmodels.stats.multitest.multipletests(method="holm")``); a verdict per comparison:
  ``better`` / ``worse`` (Holm-adjusted p < 0.05, direction from ``mode``), ``within noise``,
  or ``not tested`` (fewer than 2 runs on a side, or no spread; ``reason`` says which);
- probability that each arm is the best: a bootstrap over seeds, ``BOOTSTRAP_ROUNDS`` rounds of
  ``numpy.random.default_rng(BOOTSTRAP_SEED)``; each round resamples seeds with replacement and
  takes the arm with the best mean (ties to the first arm in confirmed order). When every arm
  ran the same seeds, one draw of seeds serves all arms (pairing kept: ``"joint"``), else each
  arm is resampled on its own (``"independent"``). Fixed seed: the same runs give the same
  probabilities. An arm with one run contributes its single value every round;
- the winner's curse: per candidate ``search_minus_confirmed = search_value - confirmed mean``
  and ``optimism`` (the same gap signed so that > 0 means the search looked better than the
  confirmation: ``confirmed - search`` for ``mode: min``), and Spearman's rank correlation
  (``scipy.stats.spearmanr``) between the search's values and the confirmed means of the
  candidates (needs 3 or more candidates).

Schema of the section (JSON-ready; ``None`` where a number cannot be computed)::

    {
      "metric": "val_loss", "mode": "min", "confidence": 0.95, "alpha": 0.05,
      "correction": "holm",
      "bootstrap": {"rounds": 10000, "seed": 0, "resampling": "joint" | "independent"},
      "search_experiment": str | None, "experiment": str | None,
      "arms": [   # in confirmed order: candidates by confirmed mean, then the baseline
        {"arm": str (label), "role": "candidate" | "baseline",
         "config_id": str | None, "params": {key: value},
         "search_rank": int | None, "search_value": float | None,
         "n": int, "n_failed": int, "mean", "std", "sem", "min", "max": float | None,
         "ci95": [low, high] | None, "seeds": [int], "values": [float],
         "confirmed_rank": int | None (candidates only), "p_best": float | None,
         "search_minus_confirmed": float | None, "optimism": float | None,
         "vs_leader": verdict | None, "vs_baseline": verdict | None}
      ],
      "comparisons": [
        {"arm": str, "against": str, "against_role": "leader" | "baseline",
         "test": "paired_t" | "welch_t", "n": [n_arm, n_against],
         "effect": float | None, "effect_ci95": [low, high] | None,
         "t": float | None, "df": float | None,
         "p_value": float | None, "p_holm": float | None,
         "verdict": "better" | "worse" | "within noise" | "not tested", "reason": str | None}
      ],
      "winners_curse": {"n": int, "mean_optimism": float | None,
                        "spearman": float | None, "spearman_p": float | None,
                        "search_order": [arm], "confirmed_order": [arm], "note": str | None},
      "not_counted": [{"trial_id", "status", "group"}],  # confirmation trials that did not
                                   # finish (errored, unfinished): the stage is incomplete
      "leader": str | None,        # the candidate with the best confirmed mean
      "winner": {"arm", "config_id", "params", "n", "mean", "ci95", "trial_id", "config",
                 "config_path", "command", "note"} | None
    }

``verdict`` reads "arm is better / worse than against"; ``effect`` is in the metric's units.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.ranking import sort_key
from analysis.stats import CONFIDENCE, SIGNIFICANCE, describe

BOOTSTRAP_ROUNDS = 10_000
BOOTSTRAP_SEED = 0
MIN_SPEARMAN = 3
VERDICTS = ("better", "worse", "within noise", "not tested")


def confirm_stats(
    runs: pd.DataFrame,
    *,
    mode: str = "min",
    metric: str = "val_loss",
    alpha: float = SIGNIFICANCE,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """The ``confirm`` section's statistics from one row per confirmation run.

    ``runs`` columns: ``arm`` (label), ``role`` (``candidate`` or ``baseline``), ``seed``,
    ``value`` (the run's final metric); for candidates ``search_value`` and ``search_rank``;
    optionally ``config_id``. At most one baseline arm.

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
    candidates.sort(key=lambda a: (sort_key(a["mean"], minimize), a["search_rank"] or 0))
    for rank, arm in enumerate(candidates, start=1):
        arm["confirmed_rank"] = rank
    leader = candidates[0] if candidates and candidates[0]["mean"] is not None else None
    baseline = baselines[0] if baselines else None
    ordered = candidates + baselines

    comparisons = []
    for arm in candidates:
        if baseline is not None:
            comparisons.append(_compare(arm, baseline, "baseline", minimize))
        if leader is not None and arm is not leader:
            comparisons.append(_compare(arm, leader, "leader", minimize))
    _holm(comparisons, alpha, minimize)
    for arm in ordered:
        for c in comparisons:
            if c["arm"] == arm["arm"]:
                arm[f"vs_{c['against_role']}"] = c["verdict"]

    p_best, resampling = bootstrap_p_best(ordered, minimize=minimize, rounds=rounds, seed=seed)
    for arm, p in zip(ordered, p_best):
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
        "bootstrap": {"rounds": rounds, "seed": seed, "resampling": resampling},
        "arms": ordered,
        "comparisons": comparisons,
        "winners_curse": winners_curse(candidates),
        "leader": None if leader is None else leader["arm"],
    }


def compare_runs(
    a: pd.Series, b: pd.Series, *, minimize: bool = True
) -> dict[str, Any]:
    """``a`` against ``b`` (values indexed by seed): paired t-test when both ran exactly the
    same seeds, Welch's otherwise; effect ``mean(a) - mean(b)`` with its 95% interval."""
    a, b = _finite_series(a), _finite_series(b)
    paired = len(a) == len(b) and set(a.index) == set(b.index) and a.index.is_unique
    out: dict[str, Any] = {
        "test": "paired_t" if paired else "welch_t",
        "n": [len(a), len(b)],
        "effect": None,
        "effect_ci95": None,
        "t": None,
        "df": None,
        "p_value": None,
        "reason": None,
    }
    if len(a) and len(b):
        out["effect"] = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        out["reason"] = f"{len(a)} vs {len(b)} run(s): needs 2 or more on each side"
        return out
    x, y = a.to_numpy(float), (b.loc[a.index] if paired else b).to_numpy(float)
    spread = np.ptp(x - y) if paired else x.std() + y.std()
    if spread == 0:
        out["reason"] = "no spread across seeds: no test possible"
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sps.ttest_rel(x, y) if paired else sps.ttest_ind(x, y, equal_var=False)
        ci = result.confidence_interval(CONFIDENCE)
    out.update(
        t=float(result.statistic),
        df=float(result.df),
        p_value=float(result.pvalue),
        effect_ci95=[float(ci.low), float(ci.high)],
    )
    return out


def bootstrap_p_best(
    arms: list[dict[str, Any]], *, minimize: bool, rounds: int, seed: int
) -> tuple[list[float | None], str]:
    """P(arm has the best mean) for each arm, by resampling seeds (see the module docstring)."""
    values = [np.asarray(a["values"], dtype=float) for a in arms]
    present = [i for i, v in enumerate(values) if len(v)]
    out: list[float | None] = [None] * len(arms)
    seeds = [tuple(arms[i]["seeds"]) for i in present]
    joint = len(present) > 1 and all(set(s) == set(seeds[0]) and len(s) == len(seeds[0])
                                     for s in seeds)
    if not present:
        return out, "joint"
    rng = np.random.default_rng(seed)
    if joint:  # one draw of seeds for every arm: rows aligned on the first arm's seed order
        order = list(seeds[0])
        matrix = np.stack([_align(values[i], arms[i]["seeds"], order) for i in present])
        idx = rng.integers(0, len(order), size=(rounds, len(order)))
        means = matrix[:, idx].mean(axis=2)  # (arms, rounds)
    else:
        means = np.stack(
            [values[i][rng.integers(0, len(values[i]), size=(rounds, len(values[i])))]
             .mean(axis=1) for i in present]
        )
    best = means.argmin(axis=0) if minimize else means.argmax(axis=0)
    counts = np.bincount(best, minlength=len(present))
    for slot, i in enumerate(present):
        out[i] = float(counts[slot] / rounds)
    return out, "joint" if joint else "independent"


def winners_curse(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean optimism and Spearman's rank correlation of search values vs confirmed means."""
    both = [a for a in candidates if a["search_value"] is not None and a["mean"] is not None]
    out: dict[str, Any] = {
        "n": len(both),
        "mean_optimism": float(np.mean([a["optimism"] for a in both])) if both else None,
        "spearman": None,
        "spearman_p": None,
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
    result = sps.spearmanr(search, confirmed)
    out.update(spearman=float(result.statistic), spearman_p=float(result.pvalue))
    return out



# ---- helpers ------------------------------------------------------------------------------
def _arms(runs: pd.DataFrame) -> list[dict[str, Any]]:
    arms = []
    for label, group in runs.groupby("arm", sort=False):
        first = group.iloc[0]
        finite = group[np.isfinite(group["value"].astype(float))]
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
    a = pd.Series(arm["values"], index=arm["seeds"], dtype=float)
    b = pd.Series(against["values"], index=against["seeds"], dtype=float)
    return {
        "arm": arm["arm"],
        "against": against["arm"],
        "against_role": role,
        **compare_runs(a, b, minimize=minimize),
        "p_holm": None,
        "verdict": "not tested",
    }


def _holm(comparisons: list[dict[str, Any]], alpha: float, minimize: bool) -> None:
    from statsmodels.stats.multitest import multipletests  # lazy: statsmodels is slow to import

    tested = [c for c in comparisons if c["p_value"] is not None]
    if not tested:
        return
    reject, adjusted, _, _ = multipletests([c["p_value"] for c in tested], alpha=alpha,
                                           method="holm")
    for c, r, p in zip(tested, reject, adjusted):
        c["p_holm"] = float(p)
        if not r:
            c["verdict"] = "within noise"
        else:
            wins = c["effect"] < 0 if minimize else c["effect"] > 0
            c["verdict"] = "better" if wins else "worse"


def _align(values: np.ndarray, seeds: list, order: list) -> np.ndarray:
    position = {s: i for i, s in enumerate(seeds)}
    return np.asarray([values[position[s]] for s in order], dtype=float)


def _finite_series(s: pd.Series) -> pd.Series:
    s = s.astype(float)
    return s[np.isfinite(s.to_numpy())]


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
