"""Parameter importance with Optuna's PED-ANOVA, from finished trials held in memory.

PED-ANOVA (Watanabe et al. 2023) needs no scikit-learn (fANOVA does). Each trial becomes a
``FrozenTrial`` with distributions inferred from the values seen: numbers spanning 10x or more
on a log scale, other numbers linear, anything else categorical.

How many: PED-ANOVA on a handful of trials gives about the same shares whether a parameter
matters or not (benchmarks/RESULTS.md, section 9, measures it: a parameter that does nothing
against one that sets the loss); importance is shown from ``MIN_TRIALS`` (20) trials at one
budget, and otherwise the section's ``reason`` says why it is not.

Which trials: the completed ones when there are at least ``MIN_TRIALS``; otherwise (ASHA
stopped most of them) the trials of the highest ASHA rung that ``MIN_TRIALS`` trials reached,
each valued at that rung's budget (its first report at or past the budget, as ASHA saw it);
the rungs are Ray's (``ngpt_tune.asha.recorded_rungs``) below ``max_t``, where a rung is just
"finished" (``analysis.rungs.rungs_below_max_t``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from ngpt_tune.experiment import DEFAULT_METRIC, final_column

MIN_TRIALS = 20  # below this PED-ANOVA does not separate signal from noise (RESULTS.md s. 9)
MIN_PARAMS = 2


def param_importance(
    trials: pd.DataFrame,
    keys: list[str],
    *,
    metric_column: str = final_column(DEFAULT_METRIC),
    mode: str = "min",
    history: pd.DataFrame | None = None,
    rungs: list[float] | None = None,
    time_attr: str = "tokens_seen",
    metric: str = "val_loss",
) -> dict[str, Any]:
    """``{"evaluator", "n_trials", "budget", "importances": {key: share}}``, or
    ``importances: None`` with a ``reason`` when there are too few trials or varying
    parameters. With ``history`` and the ASHA ``rungs`` (budgets in ``time_attr``), too few
    completed trials fall back to the highest rung reached by enough trials."""
    import optuna  # lazy: optuna is slow to import
    from optuna.importance import (  # optuna: only when importance is computed
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

    done, budget = importance_trials(
        trials, metric_column=metric_column, history=history, rungs=rungs,
        time_attr=time_attr, metric=metric,
    )
    metric_column = "_value"
    varying = [k for k in keys if k in done and done[k].dropna().nunique() >= 2]
    out: dict[str, Any] = {
        "evaluator": "PedAnovaImportanceEvaluator",
        "n_trials": len(done),
        "budget": budget,
        "params": varying,
        "importances": None,
        "reason": None,
    }
    if len(varying) < MIN_PARAMS:
        out["reason"] = (
            f"needs >= {MIN_PARAMS} searched parameters that vary across completed trials, "
            f"found {len(varying)}"
        )
        return out
    if len(done) < MIN_TRIALS:
        where = ("completed trials" if rungs is None
                 else "trials at one budget (completed or an ASHA rung)")
        out["reason"] = (f"needs >= {MIN_TRIALS} {where}, found {len(done)}: with fewer, "
                         "PED-ANOVA's shares do not tell a parameter that matters from one "
                         "that does not")
        return out
    distributions = {k: infer_distribution(done[k].dropna().tolist()) for k in varying}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
            for _, row in done.iterrows():
                params = {k: _plain(row[k]) for k in varying if not pd.isna(row[k])}
                study.add_trial(
                    optuna.trial.create_trial(
                        params=params,
                        distributions={k: distributions[k] for k in params},
                        value=float(row[metric_column]),
                    )
                )
            importances = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError, ZeroDivisionError) as err:
        out["reason"] = f"PED-ANOVA failed: {err}"
        return out
    finally:
        optuna.logging.set_verbosity(verbosity)
    out["importances"] = {k: float(v) for k, v in importances.items()}
    return out


def importance_trials(
    trials: pd.DataFrame,
    *,
    metric_column: str = final_column(DEFAULT_METRIC),
    history: pd.DataFrame | None = None,
    rungs: list[float] | None = None,
    time_attr: str = "tokens_seen",
    metric: str = "val_loss",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The trials importance is computed on, with their value in ``_value``, and the budget:
    ``{"level": "completed" | "rung", "time_attr", "at": budget or None, "n_trials"}``."""
    done = trials[trials["status"] == "completed"]
    done = done.assign(_value=done[metric_column].astype(float))
    done = done[np.isfinite(done["_value"])]
    budget = {"level": "completed", "time_attr": time_attr, "at": None, "n_trials": len(done)}
    if len(done) >= MIN_TRIALS or history is None or not rungs or time_attr not in history:
        return done, budget
    column = metric if metric in history else "val_loss"
    reached = history[history[time_attr].notna()].sort_values([time_attr])
    candidates = trials[trials["status"].isin(["completed", "stopped", "diverged"])]
    for rung in sorted(rungs, reverse=True):
        at = reached[reached[time_attr] >= rung].groupby("trial_id", sort=False)[column].first()
        at = at[np.isfinite(at.astype(float))]
        rows = candidates[candidates["trial_id"].isin(at.index)]
        if len(rows) >= MIN_TRIALS:
            rows = rows.assign(_value=rows["trial_id"].map(at).astype(float))
            return rows, {"level": "rung", "time_attr": time_attr, "at": float(rung),
                          "n_trials": len(rows)}
    return done, budget


def infer_distribution(values: list[Any]) -> Any:
    from optuna.distributions import (  # lazy: optuna is slow to import
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    values = [_plain(v) for v in values]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and len(set(values)) > 2:
        low, high = min(values), max(values)
        log = low > 0 and high / low >= 10
        if all(isinstance(v, int) for v in values):
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    return CategoricalDistribution(sorted(set(values), key=repr))


def _plain(value: Any) -> Any:
    """numpy / pandas scalars -> Python ones (Optuna checks types)."""
    if hasattr(value, "item"):
        return value.item()
    return value
