"""``summarize(experiment)``: the campaign's results as one JSON-ready dict (``summary.json``).

Completed trials are ranked on the final validation loss, and configurations on their mean
over seeds (with n, std and a 95% t-interval); trials stopped early by the scheduler are listed
apart with the budget they reached and are never ranked with finished ones. Searched numeric
parameters whose best value sits in the outer 10% of their range get a ``range_warnings``
entry (``analysis.ranges``); with a confirmation stage the ``confirm`` section holds its
statistics (``analysis.confirm``) and ``best_config.yaml`` is the confirmed winner. The
``asha`` section is ASHA's rung table (``analysis.rungs``); ``comparison`` the arms of a
``compare:`` campaign (``analysis.comparison``).
"""

from __future__ import annotations

import datetime as dt
import platform
import socket
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.comparison import compare_arms
from analysis.confirm import confirm_section
from analysis.importance import param_importance
from analysis.io import to_jsonable
from analysis.load import Experiment
from analysis.location import output_path, train_command
from analysis.ranges import CONTINUOUS, range_warnings, search_space
from analysis.ranking import params_of, rank_configs, scalar, sort_key, sorted_trials
from analysis.rungs import asha_section, rungs_below_max_t, time_attr
from analysis.schema import SCHEMA_VERSION, STATUSES
from analysis.stats import describe
from ngpt_tune.config import nest_dotted
from ngpt_tune.experiment import (
    BEST_CONFIG_FILE,
    DEFAULT_METRIC,
    SEARCH_BEST_CONFIG_FILE,
    final_column,
)
from ngpt_tune.provenance import git_commit, package_versions

MAX_CATEGORIES = 6  # a numeric parameter with more distinct values is binned
N_BINS = 4
FLOPS_NOTE = "6 N per token plus 12 n_layer n_embd block_size for attention (ngpt_tune.flops)"


def summarize(experiment: Experiment, *, confirmation: Experiment | None = None) -> dict[str, Any]:
    """The summary of ``experiment`` as plain JSON-ready data; ``confirmation`` is its
    confirmation stage's experiment, if any (see :func:`analysis.confirm.find_confirmation`).

    Example:
        >>> summary = summarize(load_experiment("ngpt_results/alpha_lr"))  # doctest: +SKIP
        >>> summary["ranking_by_config"][0]["mean"]  # doctest: +SKIP
    """
    exp, trials = experiment, experiment.trials
    campaign = exp.campaign
    minimize = exp.mode == "min"
    column = exp.metric_column  # final_val_loss, or final_train_loss for `metric: train_loss`
    done = sorted_trials(trials[trials["status"] == "completed"], minimize, column)
    configs = rank_configs(done, exp.search_keys, minimize, column=column,
                           diverged=trials[trials["status"] == "diverged"])
    best = best_configuration(exp, configs, done)
    confirm = None if confirmation is None else confirm_section(exp, confirmation)
    if best is not None and confirm is not None and confirm.get("winner"):
        path = output_path(exp, SEARCH_BEST_CONFIG_FILE)  # best_config.yaml: the winner's
        best.update(config_path=path, command=train_command(path))
    space = search_space(campaign)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "campaign": exp.name,
        "description": campaign.get("description"),
        "experiment": exp.display_path,
        "spec_path": campaign.get("spec_path"),
        "spec": campaign.get("spec"),
        "command": campaign.get("command"),
        "metric": exp.metric,
        "ranked_on": f"{column} (the {exp.metric} of the last report; mode {exp.mode})",
        "mode": exp.mode,
        "search_keys": exp.search_keys,
        "seed_key": exp.seed_key,
        "provenance": campaign.get("provenance"),
        "dates": _dates(campaign, trials),
        "counts": {
            "total": len(trials),
            **{s: int((trials["status"] == s).sum()) for s in STATUSES},
        },
        "ranking": [
            _trial_entry(exp, row, rank=i + 1) for i, (_, row) in enumerate(done.iterrows())
        ],
        "ranking_by_config": configs,
        "stopped_early": _stopped(exp, trials),
        "failed": _failed(exp, trials),
        "retried": _retried(trials),
        "best": best,
        "parameters": parameter_effects(done, exp.search_keys, best, minimize, space=space,
                                        column=column),
        "search_space": space,
        "range_warnings": range_warnings(space, (best or {}).get("params")),
        "importance": param_importance(
            trials,
            exp.search_keys,
            metric_column=column,
            mode=exp.mode,
            history=exp.history,
            rungs=rungs_below_max_t(campaign),
            time_attr=time_attr(campaign),
            metric=exp.metric,
        ),
        "asha": asha_section(exp),
        "confirm": confirm,
        "seed_groups": [c for c in configs if c["n"] >= 2],
        "comparison": compare_arms(exp, campaign.get("compare")),
        "compute": compute(trials),
        "analysis": {
            "analyzed_at": _now(),
            "git_commit": git_commit(),
            "packages": package_versions(),
            "host": {"hostname": socket.gethostname(), "platform": platform.platform()},
        },
    }
    return to_jsonable(summary)


def best_configuration(exp: Experiment, configs: list[dict], done: pd.DataFrame) -> dict | None:
    """The best configuration (on the mean over seeds) and the command that re-runs it alone."""
    if not configs:
        return None
    top = configs[0]
    members = done[done["config_id"] == top["config_id"]]
    trial = members.iloc[0]  # done is sorted: the best seed of the best configuration
    trial_id = trial["trial_id"]
    config = exp.configs.get(trial_id)
    note = None
    if config is None:
        config = nest_dotted(
            {k: scalar(trial[k]) for k in exp.search_keys if k in trial and "." in k}
        )
        note = "no provenance.json: best_config.yaml holds the searched values only"
    config_path = output_path(exp, BEST_CONFIG_FILE)
    best = {
        "group": top["group"],
        "config_id": top["config_id"],
        "params": top["params"],
        "n": top["n"],
        "mean": top["mean"],
        "std": top["std"],
        "ci95": top["ci95"],
        "trial_id": trial_id,
        "seed": scalar(trial["seed"]),
        "final_val_loss": trial["final_val_loss"],
        "metric": exp.metric,
        "value": trial[exp.metric_column],  # that trial's; the configuration's is "mean"
        "config": config,
        "config_path": config_path,
        "command": train_command(config_path),
        "note": note,
    }
    leader = done.iloc[0]
    if leader["config_id"] != top["config_id"]:
        best["note"] = (
            f"the single best trial {leader['trial_id']} ({leader[exp.metric_column]:.4f}, "
            f"{leader['group']}) is not in the best configuration on the mean over seeds"
        )
    return best


def parameter_effects(
    done: pd.DataFrame,
    keys: list[str],
    best: dict | None,
    minimize: bool,
    *,
    space: dict[str, dict[str, Any]] | None = None,
    column: str = final_column(DEFAULT_METRIC),
) -> dict[str, Any]:
    """Per searched parameter: the metric of completed trials by value, or, for a continuous
    parameter (a uniform / loguniform / quniform search, else more than ``MAX_CATEGORIES``
    distinct numbers), by quantile bin with Spearman's rank correlation as the trend."""
    effects = {}
    for key in keys:
        if key not in done:
            continue
        rows = done[done[key].notna()]
        values = rows[key]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        dist = (space or {}).get(key, {}).get("dist")
        continuous = numeric and (dist in CONTINUOUS or values.nunique() > MAX_CATEGORIES)
        buckets = []
        if continuous:
            bins = pd.qcut(values.astype(float), q=N_BINS, duplicates="drop")
            for _, part in rows.groupby(bins, observed=True, sort=True):
                buckets.append(
                    {
                        "bin": [float(part[key].min()), float(part[key].max())],
                        **describe(part[column].tolist()),
                    }
                )
        else:
            for value, part in rows.groupby(key, sort=True):
                buckets.append({"value": scalar(value), **describe(part[column].tolist())})
        ranked = [b for b in buckets if b["mean"] is not None]
        top = min(ranked, key=lambda b: sort_key(b["mean"], minimize)) if ranked else None
        effects[key] = {
            "kind": "continuous" if continuous else "categorical",
            "dist": dist,
            "scale": "log" if dist == "loguniform" else "linear",
            "trend": rank_trend(values, rows[column]) if continuous else None,
            "best_value": (best or {}).get("params", {}).get(key),
            "best_by_mean": None if top is None else top.get("value", top.get("bin")),
            "by_bin" if continuous else "by_value": buckets,
        }
    return effects


def rank_trend(values: pd.Series, metric: pd.Series) -> dict[str, Any] | None:
    """Spearman's rank correlation of the metric with a continuous parameter (scale-free, so
    the same for log and linear axes): ``{"spearman", "p_value", "n"}``, ``None`` under 3."""
    x, y = values.astype(float).to_numpy(), metric.astype(float).to_numpy()
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    result = spearmanr(x, y)
    return {"spearman": float(result.statistic), "p_value": float(result.pvalue), "n": len(x)}


def compute(trials: pd.DataFrame) -> dict[str, Any]:
    """Tokens, FLOPs and hardware-hours over all trials (stopped and failed ones included)."""
    on_gpu = trials["device"].fillna("").str.startswith("cuda")
    wall = trials["wall_time_s"].fillna(0.0)
    # a trial counts the GPUs (or share of one) Ray granted it, even if it trained on the CPU;
    # a record without the grant (before provenance had it): one GPU if it trained on CUDA
    gpus = trials["gpus"].astype("float64").fillna(0.0) if "gpus" in trials else 0.0 * wall
    gpus = gpus.where(gpus > 0, on_gpu.astype("float64"))
    held = gpus > 0
    gpu_hours = float((wall * gpus).sum()) / 3600
    cpu_hours = float(wall[~held].sum()) / 3600
    branch = trials["branch_tokens"].fillna(0) if "branch_tokens" in trials else 0 * wall
    return {
        # every token trained: the trials' own and their cooled-rung branches'
        "total_tokens": int((trials["tokens_seen"].fillna(0) + branch).sum()),
        "branch_tokens": int(branch.sum()),
        "flops": float(trials["flops"].fillna(0.0).sum()),
        "flops_note": FLOPS_NOTE,
        "gpu_hours": gpu_hours,
        "cpu_hours": cpu_hours,
        "hours": gpu_hours + cpu_hours,
        "hours_label": "GPU-hours" if bool(held.any()) else "CPU-hours",
        "gpu_trials_on_cpu": int((held & ~on_gpu).sum()),  # held a GPU, trained on the CPU
        "wall_time_s": float(wall.sum()),
        "devices": {
            str(k): int(v) for k, v in trials["device"].fillna("unknown").value_counts().items()
        },
    }


def _trial_entry(exp: Experiment, row: pd.Series, *, rank: int | None = None) -> dict[str, Any]:
    entry = {"rank": rank} if rank is not None else {}
    entry.update(
        {
            "trial_id": row["trial_id"],
            "group": row["group"],
            "seed": scalar(row["seed"]),
            "value": row[exp.metric_column],  # the campaign's metric, last report
            "final_val_loss": row["final_val_loss"],
            "best_val_loss": row["best_val_loss"],
            "steps": scalar(row["steps"]),
            "max_steps": scalar(row["max_steps"]),
            "tokens_seen": scalar(row["tokens_seen"]),
            "tokens_per_s": row["tokens_per_s"],
            "wall_time_s": row["wall_time_s"],
            "params": params_of(row, exp.search_keys),
        }
    )
    return entry


def _stopped(exp: Experiment, trials: pd.DataFrame) -> list[dict[str, Any]]:
    """Trials stopped by the scheduler, by budget reached, then loss at that budget."""
    rows = trials[trials["status"] == "stopped"]
    rows = rows.sort_values(
        ["budget_fraction", "final_val_loss"],
        ascending=[False, exp.mode == "min"],
        na_position="last",
    )
    return [
        {
            **_trial_entry(exp, row),
            "budget_fraction": row["budget_fraction"],
            "val_loss_at_stop": row["final_val_loss"],
        }
        for _, row in rows.iterrows()
    ]


def _failed(exp: Experiment, trials: pd.DataFrame) -> list[dict[str, Any]]:
    rows = trials[trials["status"].isin(["diverged", "infeasible", "errored", "pending"])]
    return [
        {
            "trial_id": r["trial_id"],
            "status": r["status"],
            "group": r["group"],
            "seed": scalar(r["seed"]),
            "steps": scalar(r["steps"]),
            "error": scalar(r["error"]),
            "failures": scalar(r["failures"]),
            "params": params_of(r, exp.search_keys),
        }
        for _, r in rows.iterrows()
    ]


def _retried(trials: pd.DataFrame) -> list[dict[str, Any]]:
    """Trials that crashed, were retried by Tune and then ended otherwise (completed, stopped,
    diverged...): their status is their last run's; the failures are kept here."""
    rows = trials[(trials["failures"].fillna(0) > 0) & (trials["status"] != "errored")]
    return [
        {
            "trial_id": r["trial_id"],
            "status": r["status"],
            "failures": scalar(r["failures"]),
            "last_error": scalar(r["error"]),
        }
        for _, r in rows.iterrows()
    ]


def _dates(campaign: dict[str, Any], trials: pd.DataFrame) -> dict[str, Any]:
    started, ended = trials["started_at"].dropna(), trials["ended_at"].dropna()
    return {
        "created_at": campaign.get("created_at"),
        "first_trial_started": started.min().isoformat() if len(started) else None,
        "last_report": ended.max().isoformat() if len(ended) else None,
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
