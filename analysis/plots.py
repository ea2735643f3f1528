"""PNG plots next to the summary: learning curves, the metric per parameter, importances.

Figures are built with ``matplotlib.figure.Figure`` and its Agg canvas directly, never through
``pyplot``: no global backend is switched, so calling these from a notebook changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.io import atomic_write
from analysis.load import Experiment

METRIC_COLUMN = "final_val_loss"
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
    for key in exp.search_keys:
        if key in exp.trials:
            written.append(metric_vs_param(exp, key, folder / f"metric_vs_{_safe(key)}.png"))
    importances = (summary.get("importance") or {}).get("importances")
    if importances:
        written.append(importance_bars(importances, folder / "importance.png"))
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


def metric_vs_param(exp: Experiment, key: str, path: Path) -> Path | None:
    """Final val_loss of completed trials against one searched parameter."""
    done = exp.completed()
    done = done[done[key].notna() & np.isfinite(done[METRIC_COLUMN].astype(float))]
    if done.empty:
        return None
    fig, ax = _figure()
    values, metric = done[key], done[METRIC_COLUMN].astype(float)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique() > 2:
        x = values.astype(float)
        ax.scatter(x, metric, s=22, color="tab:blue")
        if x.min() > 0 and x.max() / x.min() >= 10:
            ax.set_xscale("log")
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
    ax.set(xlabel=key, ylabel="final val_loss", title=f"{exp.name}: val_loss by {key}")
    return _save(fig, path)


def importance_bars(importances: dict[str, float], path: Path) -> Path:
    fig, ax = _figure(height=0.5 + 0.45 * len(importances))
    names = list(importances)[::-1]  # largest on top
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set(xlabel="importance (PED-ANOVA, share)", title="parameter importance")
    return _save(fig, path)


def _figure(height: float = 4.0) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, max(height, 2.0)), layout="constrained")
    return fig, fig.add_subplot()


def _save(fig: Any, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)
