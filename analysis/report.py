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
    the comparison with the baseline arm and the command that re-runs the best configuration.

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
    if ranking:
        lines.append("completed trials")
        rows = [
            [
                e["rank"],
                e["trial_id"],
                e["group"],
                e["seed"],
                _num(e["final_val_loss"]),
                _num(e["best_val_loss"]),
                _count(e["tokens_seen"]),
                _count(e["tokens_per_s"]),
                _num(e["wall_time_s"], 1),
            ]
            for e in ranking[:limit]
        ]
        lines += _table(
            [
                "#",
                "trial",
                "configuration",
                "seed",
                "val_loss",
                "best",
                "tokens",
                "tok/s",
                "wall s",
            ],
            rows,
        )
        if len(ranking) > limit:
            lines.append(f"... {len(ranking) - limit} more in summary.json")
        lines.append("")
    else:
        lines += ["no completed trial to rank", ""]
    configs = summary.get("ranking_by_config") or []
    if any(c["n"] >= 2 for c in configs):
        lines.append("configurations, on the mean over seeds")
        rows = [
            [
                c["rank"],
                c["group"],
                c["n"],
                _num(c["mean"]),
                _num(c["std"]),
                "-" if c["ci95"] is None else f"[{c['ci95'][0]:.4f}, {c['ci95'][1]:.4f}]",
            ]
            for c in configs[:limit]
        ]
        lines += _table(["#", "configuration", "n", "mean", "std", "95% CI"], rows)
        lines.append("")
    stopped = summary.get("stopped_early") or []
    if stopped:
        lines.append("stopped early by the scheduler (not ranked)")
        rows = [
            [
                e["trial_id"],
                e["group"],
                e["seed"],
                f"{e['steps']}/{e['max_steps']}",
                _pct(e["budget_fraction"]),
                _count(e["tokens_seen"]),
                _num(e["val_loss_at_stop"]),
            ]
            for e in stopped[:limit]
        ]
        lines += _table(
            ["trial", "configuration", "seed", "steps", "budget", "tokens", "val_loss then"], rows
        )
        if len(stopped) > limit:
            lines.append(f"... {len(stopped) - limit} more in summary.json")
        lines.append("")
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
    best = summary.get("best")
    if best:
        spread = f" +/- {best['std']:.4f}" if best.get("std") is not None else ""
        lines.append(
            f"best configuration: {best['group']}: {_num(best['mean'])}{spread} (n={best['n']})"
        )
        if best.get("note"):
            lines.append(f"  note: {best['note']}")
        lines.append(f"  re-run it alone: {best['command']}")
    return "\n".join(lines).rstrip() + "\n"


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
