"""What a confirmation stage re-runs: the search's best configurations and seeds it never used.

``ngpt_tune.confirm_stage`` plans the stage with these two functions; ``analysis.confirm``
reads the stage's results back.
"""

from __future__ import annotations

from typing import Any

from analysis.load import Experiment
from analysis.ranking import rank_configs


def select_candidates(search: Experiment, top_k: int) -> list[dict[str, Any]]:
    """The search's ``top_k`` configurations ranked on the mean over seeds (completed trials),
    each ``{"rank", "group", "config_id", "params", "mean", "n", "config"}``; ``config`` is
    the resolved nested config of one of its trials (seed included: replace it), or ``None``
    when the trials have no ``provenance.json``."""
    trials = search.trials
    configs = rank_configs(search.completed(), search.search_keys, search.mode == "min",
                           column=search.metric_column,
                           diverged=trials[trials["status"] == "diverged"])
    out = []
    for entry in configs[:top_k]:
        if entry["mean"] is None:
            continue
        trial_id = entry["trial_ids"][0]
        out.append({k: entry[k] for k in ("rank", "group", "config_id", "params", "mean", "n")}
                   | {"config": search.configs.get(trial_id)})
    return out


def fresh_seeds(search: Experiment, n: int) -> list[int]:
    """``n`` seeds that no trial of ``search`` used: the smallest above its largest seed.
    Give every arm the same ones, so that comparisons are paired."""
    used = [int(s) for s in search.trials["seed"].dropna()]
    start = max(used, default=-1) + 1
    return list(range(start, start + n))
