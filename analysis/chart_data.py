"""What each chart shows, computed once: the PNGs (``analysis.plots``) and the report page's
inline SVG (``analysis.html_report``) draw the same data through ``analysis.charts``.

Each function takes the loaded :class:`~analysis.load.Experiment` and/or the summary dict and
returns plain data (or ``None`` when there is nothing to draw):

- :func:`curves_data`: val_loss against tokens per trial, by status, the best trial apart,
  ASHA's rungs (when measured in tokens) and a y range that clips the first, very high reports;
- :func:`ci_data`: per configuration its mean, 95% CI and its seeds' values;
- :func:`confirm_data`: per confirmed arm its mean, 95% CI, runs and the search's value;
- :func:`param_data`: the metric against one searched parameter (continuous or categorical,
  log axis for a log distribution, the searched range, trials stopped early, a lowess trend);
- :func:`importance_data`: PED-ANOVA's shares, largest first.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from analysis.formatting import num
from analysis.load import Experiment
from analysis.ranges import is_log, search_distributions

MAX_CI_ROWS = 20  # configurations in the CI chart
MIN_TREND = 5  # completed trials needed for a lowess trend
BOUNDED = ("uniform", "loguniform", "quniform", "randint")  # distributions with [low, high]


def curves_data(exp: Experiment, summary: dict[str, Any]) -> dict[str, Any] | None:
    """``{"title", "lines": [{"trial_id", "status", "x", "y"}], "best": line | None,
    "rungs": [budget], "ylim": (low, high) | None}``."""
    history = exp.history[np.isfinite(exp.history["val_loss"].astype(float))]
    history = history[history["tokens_seen"].notna()]
    if history.empty:
        return None
    status = exp.trials.set_index("trial_id")["status"].to_dict()
    best = summary.get("best") or {}
    best_id = best.get("trial_id")
    lines, best_line = [], None
    for trial_id, rows in history.groupby("trial_id", sort=False):
        line = {"trial_id": trial_id, "status": status.get(trial_id, "completed"),
                "x": rows["tokens_seen"].astype(float).tolist(),
                "y": rows["val_loss"].astype(float).tolist()}
        if trial_id == best_id:
            best_line = line | {"label": f"best: {best_id} ({num(best.get('value'))})"}
        else:
            lines.append(line)
    asha = summary.get("asha") or {}
    rungs = [r["budget"] for r in asha.get("rungs") or []
             if asha.get("time_attr") == "tokens_seen"]
    last = history.groupby("trial_id", sort=False)["val_loss"].last().astype(float)
    values = history["val_loss"].astype(float)
    low, high = values.min(), max(values.quantile(0.98), last.max())
    ylim = None
    if high > low:
        pad = 0.04 * (high - low)
        ylim = (float(low - pad), float(high + pad))
    return {"title": f"{exp.name}: learning curves", "lines": lines, "best": best_line,
            "rungs": rungs, "ylim": ylim}


def ci_data(summary: dict[str, Any], limit: int = MAX_CI_ROWS) -> dict[str, Any] | None:
    """``{"xlabel", "rows": [{"label", "mean", "ci95", "seeds", "best"}]}``, best first."""
    configs = (summary.get("ranking_by_config") or [])[:limit]
    shown = [c for c in configs if c.get("mean") is not None]
    if not shown:
        return None
    values = {e["trial_id"]: e.get("final_val_loss") for e in summary.get("ranking") or []}
    rows = []
    for i, c in enumerate(shown):
        seeds = [values.get(t) for t in c.get("trial_ids") or []]
        rows.append({"label": c.get("group"), "mean": c["mean"], "ci95": c.get("ci95"),
                     "seeds": [v for v in seeds if v is not None], "best": i == 0})
    return {"xlabel": "final val_loss (mean, 95% CI, seeds)", "rows": rows}


def confirm_data(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """``{"metric", "arms": [{"label", "mean", "ci95", "values", "search_value"}]}``."""
    arms = (section or {}).get("arms")
    if not isinstance(arms, list):
        return None
    shown = [a for a in arms if isinstance(a, dict) and a.get("mean") is not None]
    if not shown:
        return None
    return {
        "metric": section.get("metric") or "val_loss",
        "arms": [{"label": f"{a.get('arm')}{' (baseline)' if a.get('role') == 'baseline' else ''}",
                  "mean": a["mean"], "ci95": a.get("ci95"),
                  "values": [v for v in a.get("values") or [] if v is not None],
                  "search_value": a.get("search_value")} for a in shown],
    }


def param_data(exp: Experiment, key: str, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The metric of completed (and early-stopped) trials against ``key``; see the module."""
    column = exp.metric_column
    distribution = search_distributions(exp.campaign).get(key, "")
    space = (summary.get("search_space") or {}).get(key) or {}
    trials = exp.trials[exp.trials[key].notna()]
    finite = np.isfinite(trials[column].astype(float))
    done = trials[(trials["status"] == "completed") & finite]
    stopped = trials[(trials["status"] == "stopped") & finite]
    if done.empty and stopped.empty:
        return None
    both = pd.concat([done[key], stopped[key]])
    numeric = pd.api.types.is_numeric_dtype(both) and not pd.api.types.is_bool_dtype(both)
    out: dict[str, Any] = {
        "key": key, "distribution": distribution, "title": f"{exp.name}: {exp.metric} by {key}",
        "ylabel": column.replace("_", " "), "log": False, "xlim": None, "bounds": None,
        "labels": None, "means": None, "trend": None, "best": None,
        "done_y": done[column].astype(float).tolist(),
        "stopped_y": stopped[column].astype(float).tolist(),
    }
    if numeric and (both.nunique() > 2 or is_log(distribution)):
        x_done, x_stop = done[key].astype(float), stopped[key].astype(float)
        positive = bool((both.astype(float) > 0).all())
        out["log"] = positive and (is_log(distribution) or
                                   (not distribution and both.max() / both.min() >= 10))
        bounds = space.get("args") if space.get("dist") in BOUNDED else None
        if bounds and len(bounds) >= 2 and float(bounds[1]) > float(bounds[0]):
            lo, hi = float(bounds[0]), float(bounds[1])  # the searched range: its edges show
            out["bounds"] = (lo, hi)
            pad = (hi / lo) ** 0.03 if out["log"] and lo > 0 else None
            out["xlim"] = (lo / pad, hi * pad) if pad else (lo - 0.03 * (hi - lo),
                                                            hi + 0.03 * (hi - lo))
        if len(x_done) >= MIN_TREND and x_done.nunique() >= 3:
            out["trend"] = _lowess(x_done.to_numpy(), np.asarray(out["done_y"]), log=out["log"])
        best = ((summary.get("best") or {}).get("params") or {}).get(key)
        if isinstance(best, (int, float)) and not isinstance(best, bool):
            out["best"] = float(best)
    else:
        labels = sorted(both.astype(str).unique())
        position = {label: i for i, label in enumerate(labels)}
        x_done = done[key].astype(str).map(position).astype(float)
        x_done = x_done + np.random.default_rng(0).uniform(-0.08, 0.08, len(x_done))
        x_stop = stopped[key].astype(str).map(position).astype(float)
        means = done[column].astype(float).groupby(done[key].astype(str)).mean()
        out["labels"] = labels
        out["means"] = ([float(position[k]) for k in means.index], means.tolist())
    out["done_x"], out["stopped_x"] = x_done.tolist(), x_stop.tolist()
    return out


def importance_data(summary: dict[str, Any]) -> dict[str, float] | None:
    """PED-ANOVA's share per parameter, largest first, or ``None``."""
    return (summary.get("importance") or {}).get("importances") or None


def _lowess(x: np.ndarray, y: np.ndarray, *, log: bool) -> tuple[list, list] | None:
    """A lowess trend of y on x (on log x for a log axis), or ``None`` if it is not finite."""
    from statsmodels.nonparametric.smoothers_lowess import lowess  # lazy: slow to import

    u = np.log(x) if log else x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fitted = lowess(y, u, frac=0.8, return_sorted=True)
    if not np.isfinite(fitted[:, 1]).all():
        return None
    xs = np.exp(fitted[:, 0]) if log else fitted[:, 0]
    return xs.tolist(), fitted[:, 1].tolist()
