"""The drawing of each chart, one function per chart, in one palette: the PNGs in ``plots/``
(``analysis.plots``) and the report page's inline SVG (``analysis.html_report``) are the same
figures. Each ``draw_*`` takes the data ``analysis.chart_data`` computed and returns a
``matplotlib.figure.Figure``, built without ``pyplot``: no global backend is switched, so
drawing from a notebook changes nothing.
"""

from __future__ import annotations

from typing import Any

from analysis.formatting import short

PALETTE = {
    "completed": "#8c8c8c",
    "best": "#1f77b4",
    "stopped": "#ff7f0e",
    "diverged": "#d62728",
    "errored": "#d62728",
    "infeasible": "#d62728",
    "unfinished": "#9467bd",
    "pending": "#cccccc",
    "trend": "#222222",
    "marker": "#2ca02c",  # the best configuration's value on a parameter's axis
    "seeds": "0.6",
    "other": "0.35",
    "grid": "0.6",
}


def draw_curves(data: dict[str, Any]) -> Any:
    """val_loss against tokens, one line per trial; the best trial highlighted, trials stopped
    early marked with a cross at the budget they reached, ASHA's rungs dotted."""
    fig, ax = figure(9.0, 4.6)
    labelled: set[str] = set()
    for line in data["lines"]:
        st = line["status"]
        color = PALETTE.get(st, PALETTE["completed"])
        label = None
        if st not in labelled:
            label = {"stopped": "stopped early (x: budget reached)"}.get(st, st)
            labelled.add(st)
        ax.plot(line["x"], line["y"], color=color, lw=0.9, alpha=0.75, label=label,
                marker="o" if len(line["x"]) < 3 else None, ms=3)
        if st == "stopped":
            ax.plot(line["x"][-1], line["y"][-1], marker="x", ms=8, mew=2, color=color)
    best = data.get("best")
    if best is not None:
        ax.plot(best["x"], best["y"], color=PALETTE["best"], lw=2.4, label=best["label"])
    for rung in data.get("rungs") or []:
        ax.axvline(rung, color=PALETTE["grid"], ls=":", lw=1)
    if data.get("ylim"):
        ax.set_ylim(*data["ylim"])
    ax.set(xlabel="tokens seen", ylabel="val_loss", title=data["title"])
    ax.grid(alpha=0.25)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def draw_ci(data: dict[str, Any]) -> Any:
    """Each configuration's mean (diamond), 95% CI (bar) and seeds (dots), the best on top."""
    rows = data["rows"]
    fig, ax = figure(9.0, 0.9 + 0.36 * len(rows))
    for y, row in top_down(rows):  # the best on top
        color = PALETTE["best"] if row["best"] else PALETTE["other"]
        interval_row(ax, y, row.get("ci95"), row["seeds"], row["mean"], color=color,
                     point_size=14, mean_size=42)
    label_rows(ax, rows)
    ax.set_xlabel(data["xlabel"])
    ax.grid(axis="x", alpha=0.25)
    return fig


def draw_confirm(data: dict[str, Any]) -> Any:
    """Each confirmed arm's mean with its 95% CI and runs, beside the search's value."""
    arms = data["arms"]
    fig, ax = figure(9.0, 0.9 + 0.42 * len(arms))
    for y, arm in top_down(arms):  # the confirmed leader on top
        first = y == len(arms) - 1
        interval_row(ax, y, arm.get("ci95"), arm["values"], arm["mean"],
                     color=PALETTE["best"], point_size=12, mean_size=40,
                     label="confirmed mean, 95% CI" if first else None)
        if arm.get("search_value") is not None:
            ax.scatter([arm["search_value"]], [y], marker="o", s=40, color=PALETTE["stopped"],
                       zorder=3, label="search value" if first else None)
    label_rows(ax, arms)
    metric = data["metric"]
    ax.set(xlabel=metric, title=f"confirmation: {metric} with fresh seeds vs the search")
    ax.grid(axis="x", alpha=0.25)
    ax.legend(fontsize=7, loc="best")
    return fig


def draw_param(data: dict[str, Any]) -> Any:
    """The metric against one searched parameter (see ``analysis.chart_data.param_data``)."""
    fig, ax = figure(5.2, 3.4)
    if data["labels"] is None:  # a continuous axis
        if data["log"]:
            ax.set_xscale("log")
            log_axis(ax.xaxis)  # after set_xscale, which resets the ticks
        if data["xlim"]:
            ax.set_xlim(*data["xlim"])
        for bound in data["bounds"] or ():
            ax.axvline(bound, color=PALETTE["grid"], ls=":", lw=1)
        if data["trend"]:
            ax.plot(*data["trend"], color=PALETTE["trend"], lw=1.2, label="trend (lowess)")
        if data["best"] is not None:
            ax.axvline(data["best"], color=PALETTE["marker"], lw=1,
                       label=f"best configuration: {data['best']:.4g}")
    else:
        if data["means"] and data["means"][0]:
            ax.scatter(*data["means"], marker="_", s=500, color="black", label="mean", zorder=3)
        ax.set_xticks(range(len(data["labels"])), data["labels"])
    if data["stopped_x"]:
        ax.scatter(data["stopped_x"], data["stopped_y"], s=30, marker="x",
                   color=PALETTE["stopped"], label="stopped early (val_loss at stop)")
    if data["done_x"]:
        ax.scatter(data["done_x"], data["done_y"], s=24, color=PALETTE["best"],
                   label="completed", zorder=2)
    ax.set(xlabel=data["key"] + (" (log axis)" if data["log"] else ""), ylabel=data["ylabel"],
           title=data["title"])
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7)
    return fig


def draw_importance(importances: dict[str, float]) -> Any:
    """PED-ANOVA's share per parameter as horizontal bars, the largest on top."""
    fig, ax = figure(7.0, 0.8 + 0.4 * len(importances))
    names = list(importances)[::-1]  # the largest on top
    ax.barh(names, [importances[n] for n in names], color=PALETTE["best"])
    ax.set(xlabel="importance (PED-ANOVA, share)", title="parameter importance")
    return fig


def top_down(rows: list[dict]) -> list[tuple[int, dict]]:
    """Each row with its height on the y axis, the first row on top."""
    return [(len(rows) - 1 - i, row) for i, row in enumerate(rows)]


def label_rows(ax: Any, rows: list[dict]) -> None:
    """The y axis's labels: each row's ``label``, the first row on top (see :func:`top_down`)."""
    ax.set_yticks(range(len(rows)), [short(r["label"], 48) for r in rows][::-1], fontsize=8)


def interval_row(ax: Any, y: float, ci95: Any, points: list[float], mean: float, *,
                 color: str, point_size: float, mean_size: float,
                 label: str | None = None) -> None:
    """One row at height ``y``: the 95% CI (bar, if any), the points (dots), the mean
    (diamond)."""
    if ci95:
        ax.plot(list(ci95[:2]), [y, y], color=color, lw=2)
    ax.scatter(points, [y] * len(points), s=point_size, color=PALETTE["seeds"], zorder=2)
    ax.scatter([mean], [y], marker="D", s=mean_size, color=color, zorder=3, label=label)


def figure(width: float, height: float) -> tuple[Any, Any]:
    """A constrained-layout figure and its one axes, at least 2 inches high."""
    from matplotlib.figure import Figure  # lazy: matplotlib is slow to import

    fig = Figure(figsize=(width, max(height, 2.0)), layout="constrained")
    return fig, fig.add_subplot()


def log_axis(axis: Any) -> None:
    """Log ticks at 1, 2 and 5 per decade, written as plain numbers, no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # lazy: slow

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
