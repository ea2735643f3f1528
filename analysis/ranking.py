"""Ranking: trials and configurations (trials equal up to the seed) ordered on the metric.

Finite values come first, best first; non-finite and missing values last. A configuration is
ranked on the mean over its seeds (with n, std and a 95% t-interval, ``analysis.stats``), after
its number of diverged seeds: the confirmation's rule (``analysis.best_arm``), so that a
configuration that diverged on a seed never ranks above one that finished every seed, however
good the mean of its easier seeds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.stats import describe
from ngpt_tune.experiment import DEFAULT_METRIC, final_column


def rank_configs(done: pd.DataFrame, keys: list[str], minimize: bool, *,
                 column: str = final_column(DEFAULT_METRIC),
                 diverged: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Configurations (trials equal up to the seed) with a completed trial, ranked on their
    number of diverged seeds (trials in ``diverged`` with the same ``config_id``), then on the
    mean of the metric (the completed trials' ``column``)."""
    failed = (diverged["config_id"].value_counts() if diverged is not None and len(diverged)
              else pd.Series(dtype=int))
    entries = []
    for config_id, group in done.groupby("config_id", sort=False):
        stats = describe(group[column].tolist())
        entries.append(
            {
                "group": group["group"].iloc[0],
                "config_id": config_id,
                "params": params_of(group.iloc[0], keys),
                **stats,
                "n_diverged": int(failed.get(config_id, 0)),
                "seeds": [scalar(s) for s in group["seed"]],
                "trial_ids": group["trial_id"].tolist(),
            }
        )
    entries.sort(key=lambda e: config_key(e, minimize))
    for rank, entry in enumerate(entries, start=1):
        entry["rank"] = rank
    return [{"rank": e.pop("rank"), **e} for e in entries]


def config_key(entry: dict[str, Any], minimize: bool) -> tuple[int, int, float]:
    """A finite mean first, then fewer diverged seeds, then the better mean."""
    finite, value = sort_key(entry["mean"], minimize)
    return (finite, entry.get("n_diverged", 0), value)


def sorted_trials(frame: pd.DataFrame, minimize: bool,
                  column: str = final_column(DEFAULT_METRIC)) -> pd.DataFrame:
    """``frame``'s trials best first on ``column`` (ties by trial id)."""
    key = frame[column].map(lambda v: sort_key(v, minimize))
    order = sorted(range(len(frame)), key=lambda i: (key.iloc[i], frame["trial_id"].iloc[i]))
    return frame.iloc[order]


def sort_key(value: Any, minimize: bool) -> tuple[int, float]:
    """Finite values first, best first; non-finite and missing values last."""
    if value is None or not math.isfinite(value):
        return (1, 0.0)
    return (0, value if minimize else -value)


def params_of(row: pd.Series, keys: list[str]) -> dict[str, Any]:
    """A trial's searched values, as plain Python scalars."""
    return {k: scalar(row[k]) for k in keys if k in row.index}


def scalar(value: Any) -> Any:
    """numpy / pandas scalars -> Python ones; missing (None, NA, NaN) -> None."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
