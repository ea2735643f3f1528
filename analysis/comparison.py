"""A campaign's ``compare:`` arms, each against the baseline arm at equal tokens (Welch's t).

summary.json's ``comparison`` section: arms are the completed trials sharing a value of
``compare["by"]``, compared on their val_loss at the fewest tokens any completed trial saw.
The arms' p-values are Holm-corrected together (``analysis.best_arm.holm``), and each
verdict has the difference's 95% Welch interval beside it. An arm that holds several
configurations is represented by its best one, picked on these same values: its difference is
shown as descriptive (``verdict`` says so), with no p-value, since a test of a maximum over k
configurations against one baseline would be optimistic (``tests/test_stat_simulations.py``
measures the rates).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.best_arm import holm
from analysis.load import Experiment
from analysis.stats import SIGNIFICANCE, describe, verdict, welch


def compare_arms(exp: Experiment, compare: dict | None) -> dict[str, Any] | None:
    """Each arm against the baseline arm at equal tokens, with Welch's t-test (Holm-corrected).

    An arm is the completed trials sharing a value of ``compare["by"]``; where an arm holds
    several configurations (other searched keys vary), its best one on the mean is shown,
    labelled descriptive, without a test.
    """
    if not compare:
        return None
    by, baseline = compare.get("by"), compare.get("baseline")
    out: dict[str, Any] = {"by": by, "baseline": baseline, "tokens": None, "arms": [], "note": None}
    done = exp.completed()
    if by not in done or done.empty:
        out["note"] = f"no completed trials with a '{by}' value"
        return out
    if done["tokens_seen"].isna().any():
        out["note"] = "completed trials without tokens_seen: cannot compare at equal tokens"
        return out
    tokens = int(done["tokens_seen"].min())
    out["tokens"] = tokens
    at_tokens = {t: value_at_tokens(exp.history, t, tokens) for t in done["trial_id"]}
    done = done.assign(_at=done["trial_id"].map(at_tokens))
    minimize = exp.mode == "min"
    chosen, best_of, notes = {}, {}, []
    for arm, rows in done.groupby(done[by].astype(str), sort=True):
        per_config = rows.groupby("config_id")["_at"].mean()
        best_of[arm] = len(per_config)
        if len(per_config) > 1:
            pick = per_config.idxmin() if minimize else per_config.idxmax()
            notes.append(f"arm {arm}: best of {len(per_config)} configurations (descriptive)")
            rows = rows[rows["config_id"] == pick]
        chosen[arm] = rows
    if str(baseline) not in chosen:
        out["note"] = f"baseline {by}={baseline} has no completed trial"
        return out
    entries = versus_baseline({a: r["_at"].tolist() for a, r in chosen.items()}, str(baseline),
                              minimize=minimize, best_of=best_of)
    for entry in entries:
        entry["group"] = chosen[entry["arm"]]["group"].iloc[0]
    out["arms"] = entries
    out["note"] = "; ".join(notes) or None
    return out


def versus_baseline(samples: dict[str, list[float]], baseline: str, *, minimize: bool,
                    best_of: dict[str, int] | None = None, alpha: float = SIGNIFICANCE
                    ) -> list[dict[str, Any]]:
    """The ``comparison`` section's arms from each arm's values: the baseline first, then each
    other arm with its difference, Welch's interval, the raw and Holm-adjusted p-values (over
    the arms tested) and a verdict; an arm that is the best of several configurations
    (``best_of[arm] > 1``) gets no test."""
    base = samples[baseline]
    base_stats = describe(base)
    entries = [{"arm": baseline, **base_stats, "baseline": True}]
    for arm in (a for a in samples if a != baseline):
        values, k = samples[arm], (best_of or {}).get(arm, 1)
        stats = describe(values)
        diff = None
        if stats["mean"] is not None and base_stats["mean"] is not None:
            diff = stats["mean"] - base_stats["mean"]
        gain = None if diff is None else (-diff if minimize else diff)
        test = welch(values, base) if k == 1 else {"test": None, "p_value": None}
        entries.append({
            "arm": arm, **stats, "baseline": False, "best_of": k, "difference": diff,
            "difference_ci95": test.get("ci95"), "improvement": gain,
            "improvement_pct": None if gain is None or not base_stats["mean"]
            else 100 * gain / abs(base_stats["mean"]),
            "test": test["test"], "p_value": test["p_value"], "p_holm": None,
            "verdict": f"descriptive: the best of {k} configurations, picked on these values "
                       "(no test)" if k > 1 else None,
        })
    tested = [e for e in entries[1:] if e["p_value"] is not None]
    for e, result in zip(tested, holm([e["p_value"] for e in tested], alpha)):
        e["p_holm"] = result[0]
    for e in entries[1:]:
        if e["verdict"] is None:
            e["verdict"] = verdict(e["difference"], e["p_holm"], n=(e["n"], base_stats["n"]),
                                   better="lower" if minimize else "higher", alpha=alpha)
            if e["p_holm"] is not None and len(tested) > 1:
                e["verdict"] = e["verdict"].replace(
                    f"p={e['p_holm']:.2g})",
                    f"p={e['p_value']:.2g}, Holm p={e['p_holm']:.2g} over {len(tested)} arms)")
            elif e["p_holm"] is not None:
                e["verdict"] = e["verdict"].replace(f"p={e['p_holm']:.2g}",
                                                    f"p={e['p_value']:.2g}")
    return entries


def value_at_tokens(history: pd.DataFrame, trial_id: str, tokens: int) -> float:
    """val_loss of ``trial_id`` at ``tokens`` (linear between reports, exact on a report)."""
    rows = history[(history["trial_id"] == trial_id) & history["tokens_seen"].notna()]
    rows = rows.sort_values("tokens_seen")
    x = rows["tokens_seen"].to_numpy(dtype=float)
    y = rows["val_loss"].to_numpy(dtype=float)
    if len(x) == 0 or tokens > x[-1]:
        return math.nan
    return float(np.interp(tokens, x, y))
