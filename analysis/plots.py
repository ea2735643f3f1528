"""PNG plots next to the summary: learning curves, the metric per parameter, importances and,
after a confirmation stage, the confirmed means beside the search's values.

Figures are built with ``matplotlib.figure.Figure`` and its Agg canvas directly, never through
``pyplot``: no global backend is switched, so calling these from a notebook changes nothing.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.io import atomic_write
from analysis.load import Experiment

METRIC_COLUMN = "final_val_loss"
MIN_TREND = 5  # completed trials needed for a lowess trend
STATUS_COLORS = {
    "completed": "0.55",
    "stopped": "tab:orange",
    "diverged": "tab:red",
    "errored": "tab:red",
    "pending": "0.8",
}


def write_plots(exp: Experiment, summary: dict[str, Any], folder: Path) -> list[Path]:
    """Write every plot the data allows into ``folder``; returns the files written."""
    written = [learning_curves(exp, summary, folder / "learning_curves.png")]
    space = summary.get("search_space") or {}
    best = (summary.get("best") or {}).get("params") or {}
    for key in exp.search_keys:
        if key in exp.trials:
            written.append(metric_vs_param(exp, key, folder / f"metric_vs_{_safe(key)}.png",
                                           space=space.get(key), best=best.get(key)))
    importances = (summary.get("importance") or {}).get("importances")
    if importances:
        written.append(importance_bars(importances, folder / "importance.png"))
    if summary.get("confirm"):
        written.append(confirmation_plot(summary["confirm"], folder / "confirmation.png"))
    return [p for p in written if p is not None]


def learning_curves(exp: Experiment, summary: dict[str, Any], path: Path) -> Path | None:
    """val_loss against tokens, one line per trial; the best trial highlighted."""
    history = exp.history[np.isfinite(exp.history["val_loss"].astype(float))]
    if history.empty:
        return None
    fig, ax = _figure()
    status = exp.trials.set_index("trial_id")["status"]
    best_id = (summary.get("best") or {}).get("trial_id")
    for trial_id, rows in history.groupby("trial_id", sort=False):
        if trial_id == best_id:
            continue
        color = STATUS_COLORS.get(status.get(trial_id), "0.55")
        marker = "o" if len(rows) < 3 else None  # a trial stopped at its first report is a dot
        ax.plot(
            rows["tokens_seen"],
            rows["val_loss"],
            color=color,
            lw=0.8,
            alpha=0.6,
            marker=marker,
            ms=3,
        )
    if best_id is not None:
        rows = history[history["trial_id"] == best_id]
        label = f"best: {summary['best']['group']} (seed {summary['best']['seed']})"
        ax.plot(rows["tokens_seen"], rows["val_loss"], color="tab:blue", lw=2.2, label=label)
        ax.legend(loc="upper right", fontsize=8)
    # clip the first, very high reports, but keep every trial's last point in view
    last = history.groupby("trial_id", sort=False)["val_loss"].last()
    low = history["val_loss"].min()
    high = max(history["val_loss"].quantile(0.98), last.max())
    if high > low:
        pad = 0.03 * (high - low)
        ax.set_ylim(low - pad, high + pad)
    ax.set(
        xlabel="tokens seen",
        ylabel="val_loss",
        title=f"{exp.name}: learning curves (orange: stopped early)",
    )
    return _save(fig, path)


def metric_vs_param(
    exp: Experiment,
    key: str,
    path: Path,
    *,
    space: dict[str, Any] | None = None,
    best: Any = None,
) -> Path | None:
    """Final val_loss of completed trials against one searched parameter.

    ``space`` is the parameter's searched distribution (``analysis.ranges.search_space``). A
    continuous parameter is drawn on a continuous axis (log for ``loguniform``), with the
    trials ASHA stopped at the value they had when stopped (another marker), a lowess trend
    of the completed trials (statsmodels, in log space for ``loguniform``), the searched
    bounds and the best configuration's value.
    """
    done = exp.completed()
    column = exp.metric_column  # the campaign's metric, last report (final_val_loss by default)
    done = done[done[key].notna() & np.isfinite(done[column].astype(float))]
    if done.empty:
        return None
    fig, ax = _figure()
    values, metric = done[key], done[column].astype(float)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    dist = (space or {}).get("dist")
    continuous = numeric and (dist in ("uniform", "loguniform", "quniform", "randint")
                              or (dist is None and values.nunique() > 2))
    if continuous:
        x = values.astype(float)
        log = dist == "loguniform" or (dist is None and x.min() > 0 and x.max() / x.min() >= 10)
        ax.scatter(x, metric, s=22, color="tab:blue", label="completed", zorder=3)
        stopped = exp.trials[(exp.trials["status"] == "stopped") & exp.trials[key].notna()]
        stopped = stopped[np.isfinite(stopped[column].astype(float))]
        if len(stopped):
            ax.scatter(stopped[key].astype(float), stopped[column].astype(float),
                       marker="x", s=26, color=STATUS_COLORS["stopped"],
                       label="stopped early (value at the budget reached)", zorder=2)
        if len(x) >= MIN_TREND and x.nunique() >= 3:
            _lowess(ax, x.to_numpy(), metric.to_numpy(), log=log)
        if space and len(space.get("args") or []) >= 2:
            for bound in space["args"][:2]:
                ax.axvline(float(bound), color="0.6", ls=":", lw=1)
        if isinstance(best, (int, float)) and not isinstance(best, bool):
            ax.axvline(float(best), color="tab:green", lw=1,
                       label=f"best configuration: {best:.4g}")
        if log:
            ax.set_xscale("log")
        ax.legend(fontsize=7)
    else:
        labels = sorted(values.astype(str).unique())
        position = {label: i for i, label in enumerate(labels)}
        x = values.astype(str).map(position).astype(float)
        jitter = np.random.default_rng(0).uniform(-0.08, 0.08, len(x))
        ax.scatter(x + jitter, metric, s=22, color="tab:blue", alpha=0.8)
        means = metric.groupby(values.astype(str)).mean()
        ax.scatter(
            [position[k] for k in means.index],
            means.values,
            marker="_",
            s=400,
            color="black",
            label="mean",
        )
        ax.set_xticks(range(len(labels)), labels)
        ax.legend(fontsize=8)
    ax.set(xlabel=key, ylabel=f"final {exp.metric}", title=f"{exp.name}: {exp.metric} by {key}")
    return _save(fig, path)


def confirmation_plot(section: dict[str, Any], path: Path) -> Path | None:
    """Each confirmed arm's mean with its 95% CI, beside the value the search gave it."""
    arms = [a for a in section.get("arms") or [] if a.get("mean") is not None]
    if not arms:
        return None
    fig, ax = _figure(height=1.0 + 0.5 * len(arms))
    y = np.arange(len(arms))[::-1]  # the confirmed leader on top
    means = np.array([a["mean"] for a in arms])
    low = np.array([a["mean"] - (a["ci95"] or [a["mean"]])[0] for a in arms])
    high = np.array([(a["ci95"] or [0, a["mean"]])[1] - a["mean"] for a in arms])
    ax.errorbar(means, y, xerr=[low, high], fmt="o", color="tab:blue", capsize=3,
                label="confirmed mean, 95% CI")
    searched = [(yy, a["search_value"]) for yy, a in zip(y, arms)
                if a.get("search_value") is not None]
    if searched:
        ax.scatter([v for _, v in searched], [yy + 0.2 for yy, _ in searched], marker="D",
                   color="tab:orange", s=24, label="search phase")
    labels = [f"{a['arm']}{' (baseline)' if a['role'] == 'baseline' else ''}" for a in arms]
    ax.set_yticks(y, labels, fontsize=7)
    metric = section.get("metric", "val_loss")
    ax.set(xlabel=metric, title=f"confirmation: {metric} with fresh seeds vs the search")
    ax.legend(fontsize=7)
    return _save(fig, path)


def importance_bars(importances: dict[str, float], path: Path) -> Path:
    fig, ax = _figure(height=0.5 + 0.45 * len(importances))
    names = list(importances)[::-1]  # largest on top
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set(xlabel="importance (PED-ANOVA, share)", title="parameter importance")
    return _save(fig, path)


def _lowess(ax: Any, x: np.ndarray, y: np.ndarray, *, log: bool) -> None:
    from statsmodels.nonparametric.smoothers_lowess import lowess

    u = np.log(x) if log else x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fitted = lowess(y, u, frac=0.8, return_sorted=True)
    if np.isfinite(fitted[:, 1]).all():
        xs = np.exp(fitted[:, 0]) if log else fitted[:, 0]
        ax.plot(xs, fitted[:, 1], color="black", lw=1.2, label="trend (lowess)")


def _figure(height: float = 4.0) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, max(height, 2.0)), layout="constrained")
    return fig, fig.add_subplot()


def _save(fig: Any, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)
