"""The report page's campaign-level sections: the stage list (summary.json's ``stages``) and
a ladder's fit (``ladder``). Like the rest of the page, they show the summary and compute
nothing."""

from __future__ import annotations

from typing import Any

from analysis.formatting import count, num
from analysis.formatting import g as _g
from analysis.html_blocks import e, table


def stages_section(summary: dict[str, Any]) -> str | None:
    """One row per stage: its kind, folder, status, trials and best configuration."""
    stages = summary.get("stages") or []
    if not stages:
        return None
    rows = []
    for stage in stages:
        counts = stage.get("counts") or {}
        best = stage.get("best") or {}
        winner = stage.get("confirmed_winner") or {}
        rows.append([stage.get("name"), stage.get("kind"), stage.get("folder"),
                     stage.get("status"), counts.get("total"),
                     best.get("group") or "-", num(best.get("mean")),
                     winner.get("arm") or "-"])
    return table(["stage", "kind", "folder", "status", "trials", "best configuration", "mean",
                  "confirmed winner"], rows, table_id="stages-table")


def ladder_section(summary: dict[str, Any]) -> str | None:
    """Each size's optimum per fitted parameter, then each trend and the prediction."""
    ladder = summary.get("ladder")
    if not ladder:
        return None
    confidence = f"{ladder.get('confidence', 0.9):.0%}"
    keys = list(ladder.get("fits") or {})
    rows = []
    for rung in ladder.get("rungs") or []:
        row = [count(rung.get("size")), rung.get("n_trials"), rung.get("compared_at_step")]
        for key in keys:
            est = (rung.get("optima") or {}).get(key) or {}
            flag = "" if str(est.get("method", "")).startswith("quadratic") else " (fallback)"
            row.append(f"{g(est.get('value'))} [{g(est.get('low'))}, "
                       f"{g(est.get('high'))}]{flag}")
        rows.append(row)
    parts = [f"<p>Axis: {e(ladder.get('axis'))}; tokens: {e(ladder.get('tokens'))}; "
             f"intervals: {confidence} bootstrap.</p>",
             table(["size", "trials", "compared at step", *keys], rows, table_id="ladder-sizes")]
    fits = [[key, num(fit.get("exponent")),
             f"[{num(fit['exponent_ci'][0])}, {num(fit['exponent_ci'][1])}]",
             g(fit.get("prediction")),
             f"[{g(fit['prediction_ci'][0])}, {g(fit['prediction_ci'][1])}]"]
            for key, fit in (ladder.get("fits") or {}).items()]
    target = (ladder.get("target") or {}).get("size")
    parts.append(f"<h3>Trend and prediction at the target size ({count(target)})</h3>")
    parts.append(table(["parameter", "exponent", f"{confidence} CI", "prediction",
                        f"{confidence} CI"], fits, table_id="ladder-fits"))
    return "".join(parts)


def g(value: Any) -> str:
    return "-" if value is None else _g(float(value))
