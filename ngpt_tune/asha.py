"""ASHA's rungs: the one place that says at which budgets Ray's ASHA compares trials.

Ray's ``AsyncHyperBandScheduler`` builds one ``_Bracket`` per bracket ``s`` with
``int(log(max_t / grace) / log(rf) - s + 1)`` rungs at ``grace * rf**(k + s)``
(``ray/tune/schedulers/async_hyperband.py``, ``_Bracket.__init__``). :func:`bracket_rungs`
is that arithmetic, without importing Ray; ``tests/test_asha.py`` checks it against Ray's own
brackets. The spec records the result in ``campaign.json`` (``scheduler.rungs``), and
the analysis (importance, the rung table, the report page) reads it from there through
:func:`recorded_rungs`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_REDUCTION_FACTOR = 2.0  # SchedulerSpec's default (benchmarks/search_efficiency.py)


def bracket_rungs(grace: float, max_t: float, reduction_factor: float,
                  brackets: int = 1) -> list[list[float]]:
    """Each bracket's rung budgets, lowest first, as Ray's ASHA computes them."""
    if grace <= 0 or max_t < grace or reduction_factor <= 1:
        return [[]] * brackets
    out = []
    for s in range(brackets):
        count = int(np.log(max_t / grace) / np.log(reduction_factor) - s + 1)  # Ray's, to the bit
        out.append([float(grace * reduction_factor ** (k + s)) for k in range(max(count, 0))])
    return out


def rung_budgets(grace: float, max_t: float, reduction_factor: float,
                 brackets: int = 1) -> list[float]:
    """Every budget at which some bracket compares trials, lowest first."""
    union = {b for rungs in bracket_rungs(grace, max_t, reduction_factor, brackets) for b in rungs}
    return sorted(union)


def scheduler_record(name: str, *, time_attr: str, grace: float | None, max_t: float | None,
                     reduction_factor: float, brackets: int) -> dict[str, Any]:
    """``campaign.json``'s ``scheduler`` entry: the settings ASHA ran with and its rungs."""
    record: dict[str, Any] = {"name": name, "time_attr": time_attr}
    if name == "asha" and grace is not None and max_t is not None:
        record.update(grace_period=grace, max_t=max_t, reduction_factor=reduction_factor,
                      brackets=brackets,
                      rungs=rung_budgets(grace, max_t, reduction_factor, brackets))
    return record


def recorded_rungs(campaign: dict[str, Any]) -> list[float] | None:
    """The rung budgets a campaign ran with, from its ``campaign.json``: ``scheduler.rungs``,
    or, for records written before that entry existed, the same arithmetic over the recorded
    ``asha_budgets`` and the spec's scheduler settings. None: the campaign did not use ASHA."""
    scheduler = campaign.get("scheduler")
    if isinstance(scheduler, dict) and "name" in scheduler:
        rungs = scheduler.get("rungs")
        return [float(r) for r in rungs] if rungs is not None else None
    budgets = campaign.get("asha_budgets")
    if not budgets or len(budgets) != 2:
        return None
    settings = (campaign.get("spec") or {}).get("scheduler") or {}
    try:
        rf = float(settings.get("reduction_factor") or DEFAULT_REDUCTION_FACTOR)
        brackets = int(settings.get("brackets") or 1)
        grace, max_t = float(budgets[0]), float(budgets[1])
    except (TypeError, ValueError):
        return None
    return rung_budgets(grace, max_t, rf, brackets)
