"""A campaign's ``compare:`` arms, each against the baseline arm at equal tokens (Welch's t).

summary.json's ``comparison`` section: arms are the completed trials sharing a value of
``compare["by"]``, compared on their val_loss at the fewest tokens any completed trial saw.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import Experiment
from analysis.stats import describe, verdict, welch


def compare_arms(exp: Experiment, compare: dict | None) -> dict[str, Any] | None:
    """Each arm against the baseline arm at equal tokens, with Welch's t-test.

    An arm is the completed trials sharing a value of ``compare["by"]``; where an arm holds
    several configurations (other searched keys vary), its best one on the mean is used.
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
    chosen, notes = {}, []
    for arm, rows in done.groupby(done[by].astype(str), sort=True):
        per_config = rows.groupby("config_id")["_at"].mean()
        if len(per_config) > 1:
            pick = per_config.idxmin() if minimize else per_config.idxmax()
            notes.append(f"arm {arm}: best of {len(per_config)} configurations (optimistic)")
            rows = rows[rows["config_id"] == pick]
        chosen[arm] = rows
    if str(baseline) not in chosen:
        out["note"] = f"baseline {by}={baseline} has no completed trial"
        return out
    base = chosen[str(baseline)]["_at"].tolist()
    base_stats = describe(base)
    arms = [str(baseline), *(a for a in chosen if a != str(baseline))]
    for arm in arms:
        rows = chosen[arm]
        values = rows["_at"].tolist()
        stats = describe(values)
        entry = {
            "arm": arm,
            "group": rows["group"].iloc[0],
            **stats,
            "baseline": arm == str(baseline),
        }
        if arm != str(baseline):
            diff = None
            if stats["mean"] is not None and base_stats["mean"] is not None:
                diff = stats["mean"] - base_stats["mean"]
            gain = None if diff is None else (-diff if minimize else diff)
            test = welch(values, base)
            entry.update(
                difference=diff,
                improvement=gain,
                improvement_pct=None
                if gain is None or not base_stats["mean"]
                else 100 * gain / abs(base_stats["mean"]),
                test=test["test"],
                p_value=test["p_value"],
                verdict=verdict(
                    diff,
                    test["p_value"],
                    n=(stats["n"], base_stats["n"]),
                    better="lower" if minimize else "higher",
                ),
            )
        out["arms"].append(entry)
    out["note"] = "; ".join(notes) or None
    return out


def value_at_tokens(history: pd.DataFrame, trial_id: str, tokens: int) -> float:
    """val_loss of ``trial_id`` at ``tokens`` (linear between reports, exact on a report)."""
    rows = history[(history["trial_id"] == trial_id) & history["tokens_seen"].notna()]
    rows = rows.sort_values("tokens_seen")
    x = rows["tokens_seen"].to_numpy(dtype=float)
    y = rows["val_loss"].to_numpy(dtype=float)
    if len(x) == 0 or tokens > x[-1]:
        return math.nan
    return float(np.interp(tokens, x, y))
