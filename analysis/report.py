"""``format_ranking(summary)``: the ranking as a plain-text table for the terminal."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_LIMIT = 20


def format_ranking(
    summary: dict[str, Any] | str | os.PathLike, *, limit: int = DEFAULT_LIMIT
) -> str:
    """Counts, the ranking of completed trials and of configurations, early-stopped trials,
    the comparison with the baseline arm, range warnings, the command that re-runs the best
    configuration and, after a confirmation stage, the confirmed table and its winner.

    ``summary`` is the dict :func:`analysis.summarize` returns or the path of ``summary.json``.
    """
    if not isinstance(summary, dict):
        summary = json.loads(Path(summary).read_text())
    counts = summary.get("counts") or {}
    shown = ", ".join(f"{n} {status}" for status, n in counts.items() if status != "total" and n)
    lines = [
        f"campaign {summary.get('campaign')}: {counts.get('total', 0)} trials ({shown or 'none'})",
        f"ranked on {summary.get('ranked_on')}",
        "",
    ]
    ranking = summary.get("ranking") or []
    metric = summary.get("metric") or "val_loss"
    # the ranked metric, then the best val_loss (or, ranked on another metric, the final one)
    second, second_name = ("best_val_loss", "best") if metric == "val_loss" else (
        "final_val_loss", "val_loss")
    if ranking:
        lines += _titled_table(
            "completed trials",
            ["#", "trial", "configuration", "seed", metric, second_name, "tokens", "tok/s",
             "wall s"],
            [[e["rank"], e["trial_id"], e["group"], e["seed"],
              _num(e.get("value", e["final_val_loss"])), _num(e[second]),
              _count(e["tokens_seen"]), _count(e["tokens_per_s"]), _num(e["wall_time_s"], 1)]
             for e in ranking],
            limit)
    else:
        lines += ["no completed trial to rank", ""]
    configs = summary.get("ranking_by_config") or []
    if any(c["n"] >= 2 for c in configs):
        lines += _titled_table(
            "configurations, on the mean over seeds",
            ["#", "configuration", "n", "mean", "std", "95% CI"],
            [[c["rank"], c["group"], c["n"], _num(c["mean"]), _num(c["std"]),
              "-" if c["ci95"] is None else f"[{c['ci95'][0]:.4f}, {c['ci95'][1]:.4f}]"]
             for c in configs],
            limit, more=False)
    stopped = summary.get("stopped_early") or []
    if stopped:
        lines += _titled_table(
            "stopped early by the scheduler (not ranked)",
            ["trial", "configuration", "seed", "steps", "budget", "tokens", "val_loss then"],
            [[e["trial_id"], e["group"], e["seed"], f"{e['steps']}/{e['max_steps']}",
              _pct(e["budget_fraction"]), _count(e["tokens_seen"]), _num(e["val_loss_at_stop"])]
             for e in stopped],
            limit)
    for failed in summary.get("failed") or []:
        reason = f": {failed['error']}" if failed.get("error") else ""
        lines.append(f"{failed['status']}: {failed['trial_id']} ({failed['group']}){reason}")
    if summary.get("failed"):
        lines.append("")
    comparison = summary.get("comparison")
    if comparison and comparison.get("arms"):
        lines.append(
            f"against the baseline {comparison['by']}={comparison['baseline']} "
            f"at {_count(comparison['tokens'])} tokens"
        )
        for arm in comparison["arms"]:
            if arm.get("baseline"):
                continue
            diff, pct = arm.get("difference"), arm.get("improvement_pct")
            change = "-" if diff is None else f"{diff:+.4f} {summary.get('metric')}"
            if pct is not None:
                change += f" ({pct:.2f}% better)" if pct >= 0 else f" ({-pct:.2f}% worse)"
            n_base = next((a["n"] for a in comparison["arms"] if a.get("baseline")), 0)
            lines.append(f"  {arm['arm']}: {change}, n={arm['n']} vs {n_base}: {arm['verdict']}")
        lines.append("")
    importance = summary.get("importance") or {}
    if importance.get("importances"):
        budget = importance.get("budget") or {}
        where = (f"{importance['n_trials']} trials at the ASHA rung "
                 f"{budget['time_attr']} = {_count(budget['at'])}" if budget.get("level") == "rung"
                 else f"{importance['n_trials']} completed trials")
        shares = ", ".join(f"{k} {v:.2f}" for k, v in importance["importances"].items())
        lines += [f"importance (PED-ANOVA, {where}): {shares}", ""]
    elif importance.get("reason"):
        lines += [f"importance: not computed ({importance['reason']})", ""]
    for warning in summary.get("range_warnings") or []:
        lines.append(f"range warning: {warning['message']}")
    if summary.get("range_warnings"):
        lines.append("")
    best = summary.get("best")
    confirm = summary.get("confirm")
    if best:
        spread = f" +/- {best['std']:.4f}" if best.get("std") is not None else ""
        which = "the search's best configuration" if confirm else "best configuration"
        lines.append(f"{which}: {best['group']}: {_num(best['mean'])}{spread} (n={best['n']})")
        if best.get("note"):
            lines.append(f"  note: {best['note']}")
        lines.append(f"  re-run it alone: {best['command']}")
    if confirm:
        from analysis.confirm import format_confirm

        lines += ["", *format_confirm(confirm, summary.get("metric"))]
    return "\n".join(lines).rstrip() + "\n"


def _titled_table(title: str, header: list[str], rows: list[list[Any]], limit: int, *,
                  more: bool = True) -> list[str]:
    """A title, the first ``limit`` rows as a table, a line for the rest, a blank line."""
    lines = [title, *_table(header, rows[:limit])]
    if more and len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in summary.json")
    return [*lines, ""]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)
        ).rstrip()

    return [line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]]


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%").replace(",", ""))
    except ValueError:
        return text == "-"
    return True


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"
