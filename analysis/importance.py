"""Parameter importance with Optuna's PED-ANOVA, from finished trials held in memory.

PED-ANOVA (Watanabe et al. 2023) needs no scikit-learn (fANOVA does). Each completed trial
becomes a ``FrozenTrial`` with distributions inferred from the values seen: numbers spanning
10x or more on a log scale, other numbers linear, anything else categorical.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

MIN_TRIALS = 4
MIN_PARAMS = 2


def param_importance(
    trials: pd.DataFrame,
    keys: list[str],
    *,
    metric_column: str = "final_val_loss",
    mode: str = "min",
) -> dict[str, Any]:
    """``{"evaluator", "n_trials", "importances": {key: share}}``, or ``importances: None``
    with a ``reason`` when there are too few completed trials or varying parameters."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    done = trials[trials["status"] == "completed"]
    done = done[np.isfinite(done[metric_column].astype(float))]
    varying = [k for k in keys if k in done and done[k].dropna().nunique() >= 2]
    out: dict[str, Any] = {
        "evaluator": "PedAnovaImportanceEvaluator",
        "n_trials": len(done),
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
        out["reason"] = f"needs >= {MIN_TRIALS} completed trials, found {len(done)}"
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


def infer_distribution(values: list[Any]) -> Any:
    from optuna.distributions import (
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
