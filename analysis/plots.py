"""PNG plots next to the summary: learning curves, each configuration's mean and 95% CI, the
metric per parameter, importances and, after a confirmation stage, the confirmed means beside
the search's values.

The same figures as the report page's (``analysis.charts`` draws what ``analysis.chart_data``
computed), saved as PNG through matplotlib's Agg canvas, never through ``pyplot``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from analysis.chart_data import ci_data, confirm_data, curves_data, importance_data, param_data
from analysis.charts import draw_ci, draw_confirm, draw_curves, draw_importance, draw_param
from analysis.io import atomic_write
from analysis.load import Experiment

DPI = 110


def write_plots(exp: Experiment, summary: dict[str, Any], folder: Path) -> list[Path]:
    """Write every plot the data allows into ``folder``; returns the files written."""
    written = [
        _save(draw_curves, curves_data(exp, summary),
              folder / "learning_curves.png"),
        _save(draw_ci, ci_data(summary), folder / "configurations.png"),
    ]
    for key in exp.search_keys:
        if key in exp.trials:
            written.append(_save(draw_param, param_data(exp, key, summary),
                                 folder / f"metric_vs_{_safe(key)}.png"))
    written.append(_save(draw_importance, importance_data(summary),
                         folder / "importance.png"))
    if summary.get("confirm"):
        written.append(_save(draw_confirm, confirm_data(summary["confirm"]),
                             folder / "confirmation.png"))
    return [p for p in written if p is not None]


def save_png(fig: Any, path: Path) -> Path:
    """``fig`` written as a PNG at ``path``, atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def _save(draw: Any, data: Any, path: Path) -> Path | None:
    """``draw(data)`` saved as a PNG at ``path``; nothing when there is no data."""
    return save_png(draw(data), path) if data else None


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)
