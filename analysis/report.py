"""The terminal report: ``format_ranking(summary)`` (the ranking as plain-text tables) and
``format_confirm(section)`` (a confirmation stage's table, comparisons and winner)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from analysis.formatting import count, num, pct, text_table, titled_table
from analysis.ladder_fit import MAX_FAILED

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
        lines += titled_table(
            "completed trials",
            ["#", "trial", "configuration", "seed", metric, second_name, "tokens", "tok/s",
             "wall s"],
            [[e["rank"], e["trial_id"], e["group"], e["seed"],
              num(e.get("value", e["final_val_loss"])), num(e[second]),
              count(e["tokens_seen"]), count(e["tokens_per_s"]), num(e["wall_time_s"], 1)]
             for e in ranking],
            limit)
    else:
        lines += ["no completed trial to rank", ""]
    configs = summary.get("ranking_by_config") or []
    if any(c["n"] >= 2 or c.get("n_diverged") for c in configs):
        lines += titled_table(
            "configurations, on diverged seeds (fewer first), then the mean over seeds",
            ["#", "configuration", "n", "diverged", "mean", "std", "95% CI"],
            [[c["rank"], c["group"], c["n"], c.get("n_diverged", 0), num(c["mean"]),
              num(c["std"]),
              "-" if c["ci95"] is None else f"[{c['ci95'][0]:.4f}, {c['ci95'][1]:.4f}]"]
             for c in configs],
            limit, more=False)
    stopped = summary.get("stopped_early") or []
    if stopped:
        lines += titled_table(
            "stopped early by the scheduler (not ranked)",
            ["trial", "configuration", "seed", "steps", "budget", "tokens", "val_loss then"],
            [[e["trial_id"], e["group"], e["seed"], f"{e['steps']}/{e['max_steps']}",
              pct(e["budget_fraction"]), count(e["tokens_seen"]), num(e["val_loss_at_stop"])]
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
            f"at {count(comparison['tokens'])} tokens"
        )
        for arm in comparison["arms"]:
            if arm.get("baseline"):
                continue
            diff, percent = arm.get("difference"), arm.get("improvement_pct")
            change = "-" if diff is None else f"{diff:+.4f} {summary.get('metric')}"
            if percent is not None:
                change += (f" ({percent:.2f}% better)" if percent >= 0
                           else f" ({-percent:.2f}% worse)")
            if arm.get("difference_ci95"):
                low, high = arm["difference_ci95"]
                change += f" [{low:+.4f}, {high:+.4f}]"
            n_base = next((a["n"] for a in comparison["arms"] if a.get("baseline")), 0)
            lines.append(f"  {arm['arm']}: {change}, n={arm['n']} vs {n_base}: {arm['verdict']}")
        lines.append("")
    importance = summary.get("importance") or {}
    if importance.get("importances"):
        budget = importance.get("budget") or {}
        where = (f"{importance['n_trials']} trials at the ASHA rung "
                 f"{budget['time_attr']} = {count(budget['at'])}" if budget.get("level") == "rung"
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
        lines.append(f"{which}: {best['group']}: {num(best['mean'])}{spread} (n={best['n']})")
        if best.get("note"):
            lines.append(f"  note: {best['note']}")
        lines.append(f"  re-run it alone: {best['command']}")
    if confirm:
        lines += ["", *format_confirm(confirm, summary.get("metric"))]
    lines += _stage_lines(summary)
    return "\n".join(lines).rstrip() + "\n"


def _stage_lines(summary: dict[str, Any]) -> list[str]:
    """A ladder's trends and predictions, and the stages, when the campaign has several."""
    lines = []
    ladder = summary.get("ladder") or {}
    for key, fit in (ladder.get("fits") or {}).items():
        low, high = fit["exponent_ci"]
        lo, hi = fit["prediction_ci"]
        lines.append(f"ladder: {key} ~ size^{fit['exponent']:.3f} [{low:.3f}, {high:.3f}]; at "
                     f"the target: {fit['prediction']:.4g} [{lo:.4g}, {hi:.4g}]")
    if ladder.get("fits"):
        lines.append(f"  ({next(iter(ladder['fits'].values())).get('covers', '')})")
    fallbacks = [f"{key} at size {r['size']:,.0f}" for r in ladder.get("rungs") or []
                 for key, est in (r.get("optima") or {}).items()
                 if not str(est.get("method", "")).startswith("quadratic")]
    if fallbacks:
        lines.append("ladder: WARNING no convex fit, best-3 fallback used (and counted in the "
                     "trend) for " + "; ".join(fallbacks))
    shaky = [f"{key} at size {r['size']:,.0f} ({est['failed_draws']:.0%})"
             for r in ladder.get("rungs") or [] for key, est in (r.get("optima") or {}).items()
             if (est.get("failed_draws") or 0) > MAX_FAILED]
    if shaky:
        lines.append("ladder: bootstrap fits that failed (left out of the interval): "
                     + "; ".join(shaky))
    if ladder.get("budget_warning"):
        lines.append(f"ladder: WARNING {ladder['budget_warning']}")
    stages = summary.get("stages") or []
    if len(stages) > 1:
        lines += ["", "stages: " + ", ".join(f"{s['name']} ({s['kind']}) {s['status']}"
                                             for s in stages)]
    return ["", *lines] if lines else []


def format_confirm(section: dict[str, Any], metric: str | None = None) -> list[str]:
    """The confirmed table, the comparisons and the winner's re-run command, as lines."""
    metric = metric or section.get("metric")
    arms = section.get("arms") or []
    lines = [
        f"confirmation: {len(arms)} arm(s) re-run with fresh seeds "
        f"({metric}, {'lower' if section.get('mode') == 'min' else 'higher'} is better)"
    ]
    rows = []
    for a in arms:
        rows.append([
            a.get("confirmed_rank") or "base",
            a["arm"],
            f"{a['n']}" + (f" ({a['n_failed']} failed)" if a.get("n_failed") else ""),
            num(a["mean"]),
            "-" if a["ci95"] is None else f"[{a['ci95'][0]:.4f}, {a['ci95'][1]:.4f}]",
            num(a.get("search_value")),
            "-" if a.get("optimism") is None else f"{a['optimism']:+.4f}",
            "-" if a.get("p_best") is None else f"{100 * a['p_best']:.0f}%",
            a.get("vs_leader") or ("leader" if a["arm"] == section.get("leader") else "-"),
            a.get("vs_baseline") or "-",
        ])
    lines += text_table(
        ["#", "configuration", "n", "mean", "95% CI", "search", "optimism", "P(best)",
         "vs leader", "vs baseline"],
        rows,
    )
    for c in section.get("comparisons") or []:
        effect = "-" if c["effect"] is None else f"{c['effect']:+.4f}"
        ci = "" if c["effect_ci95"] is None else (
            f" [{c['effect_ci95'][0]:+.4f}, {c['effect_ci95'][1]:+.4f}]")
        p = "" if c["p_holm"] is None else f", p={c['p_value']:.4g}, Holm p={c['p_holm']:.4g}"
        if c.get("wins"):
            p = f", {c['wins'][0]} seeds won, {c['wins'][1]} lost" + p
        why = f" ({c['reason']})" if c.get("reason") else ""
        lines.append(
            f"  {c['arm']} vs {c['against_role']} {c['against']}: {effect}{ci} "
            f"({c['test']}, n={c['n'][0]} vs {c['n'][1]}{p}): {c['verdict']}{why}"
        )
    if section.get("family_size"):
        lines.append(f"  Holm's correction over {section['family_size']} tests (every pair of "
                     "candidates and each against the baseline)")
    how = section.get("p_best") or {}
    if how.get("method"):
        over = f" over {how['seeds']} seeds" if how.get("seeds") else ""
        lines.append(f"P(best): {how['method']}{over}")
    if how.get("note"):
        lines.append(f"P(best): {how['note']}")
    lines += [f"note: {n}" for n in section.get("notes") or []]
    curse = section.get("winners_curse") or {}
    if curse.get("mean_optimism") is not None:
        rho = curse.get("spearman")
        lines.append(
            f"winner's curse: the search was {curse['mean_optimism']:+.4f} {metric} optimistic "
            "on average (search value vs confirmed mean)"
            + ("" if rho is None else f"; rank correlation search vs confirmed: {rho:+.2f}"
               f" (p={curse['spearman_p']:.4g}, {curse.get('spearman_method') or 'scipy'})")
        )
    missing = section.get("not_counted") or []
    if missing:
        lines.append(f"not counted: {len(missing)} confirmation trial(s) did not finish ("
                     + ", ".join(f"{m['trial_id']} {m['status']}" for m in missing[:5])
                     + (", ..." if len(missing) > 5 else "") + ")")
    winner = section.get("winner")
    if winner:
        lines.append(
            f"confirmed winner: {winner['arm']}: {num(winner['mean'])} "
            f"(n={winner['n']}, 95% CI "
            + ("-" if winner["ci95"] is None
               else f"[{winner['ci95'][0]:.4f}, {winner['ci95'][1]:.4f}]") + ")"
        )
        if winner.get("note"):
            lines.append(f"  note: {winner['note']}")
        lines.append(f"  re-run it alone: {winner['command']}")
    return lines
