"""summary.json's ``confirm`` section: a search's confirmation stage, matched arm by arm.

Entry points:

- :func:`confirm_section` ``(search, confirmation)``: two loaded :class:`~analysis.load.Experiment`
  objects (the search, and the confirmation stage's own experiment folder) -> the section
  (its schema and statistics: ``analysis.confirm_stats``).
  Each confirmation trial is matched to a search configuration by the search's searched values
  (floats to 12 significant digits); trials that match none form the baseline arm. A trial
  whose config carries a ``confirm_arm`` column (``CONFIRM_ARM_KEY``) names its arm explicitly
  instead.
- :func:`confirmation_runs`: those matched trials, one row per run, as ``confirm_stats`` reads
  them.
- :func:`find_confirmation` ``(search)``: the confirmation experiment stored with a search
  (``campaign.json``'s ``confirmation.path``, else the ``confirm/`` sub-folder), or ``None``.

Choosing what the stage re-runs is ``analysis.candidates``; printing the section is
``analysis.report.format_confirm``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.confirm_stats import confirm_stats
from analysis.load import Experiment, load_experiment
from analysis.location import output_path, train_command
from analysis.ranking import rank_configs, scalar
from analysis.stages import campaign_view
from ngpt_tune.config import nest_dotted
from ngpt_tune.experiment import BEST_CONFIG_FILE, CONFIRM_ARM_KEY


def confirm_section(search: Experiment, confirmation: Experiment) -> dict[str, Any]:
    """The ``confirm`` section for a search and its confirmation stage (two Experiments).

    Example:
        >>> section = confirm_section(load_experiment("ngpt_results/quickstart-x"),
        ...                           load_experiment("ngpt_results/quickstart-x/confirm"))
        ... # doctest: +SKIP
    """
    minimize = search.mode == "min"
    done = search.completed()
    configs = rank_configs(done, search.search_keys, minimize, column=search.metric_column,
                           diverged=search.trials[search.trials["status"] == "diverged"])
    runs = confirmation_runs(search, confirmation, configs)
    section = confirm_stats(runs, mode=search.mode, metric=search.metric)
    section["search_experiment"] = search.display_path
    section["experiment"] = confirmation.display_path
    other = confirmation.trials[~confirmation.trials["status"].isin(["completed", "diverged"])]
    section["not_counted"] = [  # errored, unfinished...: the stage is incomplete
        {"trial_id": t["trial_id"], "status": t["status"], "group": t["group"]}
        for _, t in other.iterrows()
    ]
    leader = next((a for a in section["arms"] if a["arm"] == section["leader"]), None)
    section["winner"] = None
    if leader is not None:
        members = runs[(runs["arm"] == leader["arm"]) & np.isfinite(runs["value"])]
        best = members.sort_values("value", ascending=minimize).iloc[0]
        config = confirmation.configs.get(best["trial_id"])
        note = None
        if config is None:
            config = nest_dotted({k: v for k, v in leader["params"].items() if "." in k})
            note = "no provenance.json: best_config.yaml holds the searched values only"
        if leader.get("vs_baseline") == "worse":
            note = "the baseline arm is better than the confirmed winner (Holm-adjusted)"
        if leader["n_failed"]:  # only when every candidate diverged somewhere
            note = (f"diverged on {leader['n_failed']} of {leader['n'] + leader['n_failed']} "
                    "seeds; every candidate diverged on at least as many")
        path = output_path(search, BEST_CONFIG_FILE)
        section["winner"] = {
            "arm": leader["arm"],
            "config_id": leader["config_id"],
            "params": leader["params"],
            "n": leader["n"],
            "mean": leader["mean"],
            "ci95": leader["ci95"],
            "trial_id": best["trial_id"],
            "config": config,
            "config_path": path,
            "command": train_command(path),
            "note": note,
        }
    return section


def confirmation_runs(search: Experiment, confirmation: Experiment,
                      configs: list[dict]) -> pd.DataFrame:
    """One row per finished confirmation trial: arm, role, seed, value, search_value..."""
    by_key = {_key(c["params"], search.search_keys): c for c in configs}
    trials = confirmation.trials
    trials = trials[trials["status"].isin(["completed", "diverged"])]
    column = search.metric_column  # the search's metric, as the confirmation reports it
    rows = []
    for _, t in trials.iterrows():
        explicit = t.get(CONFIRM_ARM_KEY) if CONFIRM_ARM_KEY in trials else None
        params = {k: scalar(t[k]) for k in search.search_keys if k in trials}
        match = by_key.get(_key(params, search.search_keys))
        if explicit is not None and not pd.isna(explicit):
            match = next((c for c in configs if c["group"] == explicit), None)
        value = t[column]  # inf for a diverged run: left out, counted in n_failed
        rows.append(
            {
                "arm": match["group"] if match else str(explicit or t["group"]),
                "role": "candidate" if match else "baseline",
                "config_id": t["config_id"],
                "params": match["params"] if match else params,
                "seed": scalar(t["seed"]),
                "value": float(value) if value is not None and not pd.isna(value) else math.nan,
                "search_value": match["mean"] if match else None,
                "search_rank": match["rank"] if match else None,
                "trial_id": t["trial_id"],
            }
        )
    columns = ["arm", "role", "config_id", "params", "seed", "value", "search_value",
               "search_rank", "trial_id"]
    return pd.DataFrame(rows, columns=columns)


def find_confirmation(search: Experiment) -> Experiment | None:
    """The latest confirmation of ``search`` that its campaign's stage list records (with
    trials), loaded; ``None`` when it has none."""
    view = campaign_view(search.path)
    folder = view.confirmation_of(view.here)
    return None if folder is None else load_experiment(folder)


def _key(params: dict[str, Any], keys: list[str]) -> tuple:
    return tuple(_norm(params.get(k)) for k in keys)


def _norm(value: Any) -> Any:
    value = scalar(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float):
        return float(f"{value:.12g}")
    return value

