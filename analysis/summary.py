"""``summarize(experiment)``: the campaign's results as one JSON-ready dict (``summary.json``).

Completed trials are ranked on the final validation loss, and configurations on their mean
over seeds (with n, std and a 95% t-interval); trials stopped early by the scheduler are listed
apart with the budget they reached and are never ranked with finished ones. Searched numeric
parameters whose best value sits in the outer 10% of their range get a ``range_warnings``
entry (``analysis.ranges``); with a confirmation stage the ``confirm`` section holds its
statistics (``analysis.confirm``) and ``best_config.yaml`` is the confirmed winner.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import shlex
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.confirm import confirm_section
from analysis.importance import asha_rungs, param_importance
from analysis.io import to_jsonable
from analysis.load import Experiment
from analysis.ranges import CONTINUOUS, range_warnings, search_space
from analysis.schema import SCHEMA_VERSION, STATUSES
from analysis.stats import describe, verdict, welch
from ngpt_tune.config import nest_dotted
from ngpt_tune.experiment import BEST_CONFIG_FILE, SEARCH_BEST_CONFIG_FILE
from ngpt_tune.provenance import git_commit, package_versions

METRIC_COLUMN = "final_val_loss"  # the default; a campaign's own is Experiment.metric_column
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
    done = _sorted(trials[trials["status"] == "completed"], minimize, column)
    configs = rank_configs(done, exp.search_keys, minimize, column=column)
    best = best_configuration(exp, configs, done)
    confirm = None if confirmation is None else confirm_section(exp, confirmation)
    if best is not None and confirm is not None and confirm.get("winner"):
        path = _output_path(exp, SEARCH_BEST_CONFIG_FILE)  # best_config.yaml: the winner's
        best.update(config_path=path, command=f"python -m ngpt_tune train {shlex.quote(path)}")
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
            rungs=asha_rungs(campaign),
            time_attr=campaign.get("time_attr") or "tokens_seen",
            metric=exp.metric,
        ),
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


def rank_configs(done: pd.DataFrame, keys: list[str], minimize: bool, *,
                 column: str = METRIC_COLUMN) -> list[dict[str, Any]]:
    """Configurations (trials equal up to the seed) ranked on the mean of the metric
    (the trials' ``column``)."""
    entries = []
    for config_id, group in done.groupby("config_id", sort=False):
        stats = describe(group[column].tolist())
        entries.append(
            {
                "group": group["group"].iloc[0],
                "config_id": config_id,
                "params": _params(group.iloc[0], keys),
                **stats,
                "seeds": [_scalar(s) for s in group["seed"]],
                "trial_ids": group["trial_id"].tolist(),
            }
        )
    entries.sort(key=lambda e: _sort_key(e["mean"], minimize))
    for rank, entry in enumerate(entries, start=1):
        entry["rank"] = rank
    return [{"rank": e.pop("rank"), **e} for e in entries]


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
            {k: _scalar(trial[k]) for k in exp.search_keys if k in trial and "." in k}
        )
        note = "no provenance.json: best_config.yaml holds the searched values only"
    config_path = _output_path(exp, BEST_CONFIG_FILE)
    best = {
        "group": top["group"],
        "config_id": top["config_id"],
        "params": top["params"],
        "n": top["n"],
        "mean": top["mean"],
        "std": top["std"],
        "ci95": top["ci95"],
        "trial_id": trial_id,
        "seed": _scalar(trial["seed"]),
        "final_val_loss": trial["final_val_loss"],
        "metric": exp.metric,
        "value": trial[exp.metric_column],  # that trial's; the configuration's is "mean"
        "config": config,
        "config_path": config_path,
        "command": f"python -m ngpt_tune train {shlex.quote(config_path)}",
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
    column: str = METRIC_COLUMN,
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
                buckets.append({"value": _scalar(value), **describe(part[column].tolist())})
        ranked = [b for b in buckets if b["mean"] is not None]
        top = min(ranked, key=lambda b: _sort_key(b["mean"], minimize)) if ranked else None
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
    from scipy.stats import spearmanr

    x, y = values.astype(float).to_numpy(), metric.astype(float).to_numpy()
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    result = spearmanr(x, y)
    return {"spearman": float(result.statistic), "p_value": float(result.pvalue), "n": len(x)}


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
    return {
        "total_tokens": int(trials["tokens_seen"].fillna(0).sum()),
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
            "seed": _scalar(row["seed"]),
            "value": row[exp.metric_column],  # the campaign's metric, last report
            "final_val_loss": row["final_val_loss"],
            "best_val_loss": row["best_val_loss"],
            "steps": _scalar(row["steps"]),
            "max_steps": _scalar(row["max_steps"]),
            "tokens_seen": _scalar(row["tokens_seen"]),
            "tokens_per_s": row["tokens_per_s"],
            "wall_time_s": row["wall_time_s"],
            "params": _params(row, exp.search_keys),
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
    rows = trials[trials["status"].isin(["diverged", "errored", "pending"])]
    return [
        {
            "trial_id": r["trial_id"],
            "status": r["status"],
            "group": r["group"],
            "seed": _scalar(r["seed"]),
            "steps": _scalar(r["steps"]),
            "error": _scalar(r["error"]),
            "failures": _scalar(r["failures"]),
            "params": _params(r, exp.search_keys),
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
            "failures": _scalar(r["failures"]),
            "last_error": _scalar(r["error"]),
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


def _sorted(frame: pd.DataFrame, minimize: bool, column: str = METRIC_COLUMN) -> pd.DataFrame:
    key = frame[column].map(lambda v: _sort_key(v, minimize))
    order = sorted(range(len(frame)), key=lambda i: (key.iloc[i], frame["trial_id"].iloc[i]))
    return frame.iloc[order]


def _sort_key(value: Any, minimize: bool) -> tuple[int, float]:
    """Finite values first, best first; non-finite and missing values last."""
    if value is None or not math.isfinite(value):
        return (1, 0.0)
    return (0, value if minimize else -value)


def _params(row: pd.Series, keys: list[str]) -> dict[str, Any]:
    return {k: _scalar(row[k]) for k in keys if k in row.index}


def _scalar(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _output_path(exp: Experiment, name: str) -> str:
    if exp.location is not None and exp.location.uri:
        return f"{exp.location.uri}/{name}"
    return str(Path(os.path.abspath(exp.path)) / name)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
