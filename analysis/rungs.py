"""ASHA's rungs as the trials met them: summary.json's ``asha`` section.

The rung budgets are Ray's own (:func:`ngpt_tune.asha.recorded_rungs`, read from
``campaign.json``); Ray counts ``max_t`` itself as the top rung when the arithmetic lands on it.
Per rung the table counts the trials that reached it, went past it and were stopped at it, and
the best value there (each trial's first report at or past the rung, as ASHA records it).
"""

from __future__ import annotations

import math
from typing import Any

from analysis.load import Experiment
from ngpt_tune.asha import recorded_rungs


def asha_section(exp: Experiment) -> dict[str, Any] | None:
    """``{"time_attr", "reduction_factor", "rungs": [row]}`` (rows: :func:`rung_table`), or
    ``None`` when the campaign did not use ASHA."""
    rungs = recorded_rungs(exp.campaign)
    if not rungs:
        return None
    attr = time_attr(exp.campaign)
    scheduler = exp.campaign.get("scheduler") or {}
    spec = (exp.campaign.get("spec") or {}).get("scheduler") or {}
    factor = scheduler.get("reduction_factor", spec.get("reduction_factor"))
    return {"time_attr": attr, "reduction_factor": factor,
            "rungs": rung_table(exp, rungs, attr)}


def time_attr(campaign: dict[str, Any]) -> str:
    """The budget ASHA measured trials in (``tokens_seen`` unless the campaign says)."""
    scheduler = campaign.get("scheduler") or {}
    return campaign.get("time_attr") or scheduler.get("time_attr") or "tokens_seen"


def rungs_below_max_t(campaign: dict[str, Any]) -> list[float] | None:
    """The rungs where ASHA stopped trials: a rung at ``max_t`` is just "finished"."""
    rungs = recorded_rungs(campaign)
    if not rungs:
        return rungs
    scheduler = campaign.get("scheduler") or {}
    budgets = campaign.get("asha_budgets") or [None, None]
    max_t = scheduler.get("max_t", budgets[1] if len(budgets) == 2 else None)
    return [r for r in rungs if max_t is None or r < float(max_t)]


def rung_table(exp: Experiment, rungs: list[float], attr: str) -> list[dict[str, Any]]:
    """Per rung: trials that reached it, went past it (``None`` at the top rung), were stopped
    at it, and the best value there (the first report at or past the rung)."""
    history = exp.history
    column = attr if attr in history else None
    status = exp.trials.set_index("trial_id")["status"].to_dict()
    out = []
    for i, budget in enumerate(rungs):
        nxt = rungs[i + 1] if i + 1 < len(rungs) else math.inf
        reached, continued, stopped_here, values = 0, 0, 0, {}
        if column is not None:
            for trial_id, rows in history.groupby("trial_id", sort=False):
                t = rows[column].astype(float)
                at = rows[t >= budget]
                if at.empty:
                    continue
                reached += 1
                value = float(at["val_loss"].iloc[0])
                if math.isfinite(value):
                    values[trial_id] = value
                if float(t.max()) >= nxt:
                    continued += 1
                elif status.get(trial_id) == "stopped":
                    stopped_here += 1
        if values:
            pick = min if exp.mode == "min" else max
            best_id = pick(values, key=values.get)
            best = values[best_id]
        else:
            best_id, best = None, None
        out.append({"budget": budget, "reached": reached,
                    "continued": continued if nxt != math.inf else None,
                    "stopped_here": stopped_here, "best": best, "best_trial": best_id})
    return out
