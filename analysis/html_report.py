"""``write_report(exp, summary, path)``: the campaign's results as one self-contained HTML page.

``report.html`` opens with no network: no script, no stylesheet or font to fetch; the charts
are inline SVG written by matplotlib (text kept as text, so a browser's find works on them).
It shows, top to bottom: the best configuration, the ranking (trials, and configurations with
95% CIs), the confirmation stage (when ``summary["confirm"]`` exists), the comparison with a
baseline arm, early-stopped and failed trials, learning curves over tokens with early-stopped
trials marked at the budget they reached, each parameter's effect (a log axis where the spec's
distribution is ``loguniform``), importance, the ASHA rungs, compute and provenance.

Everything is read from the loaded :class:`~analysis.load.Experiment` and the dict
:func:`~analysis.summarize` returns; a section whose data is missing says so and the page is
still written.

Example:
    >>> exp = load_experiment("ngpt_results/quickstart-20261123-120000")  # doctest: +SKIP
    >>> write_report(exp, summarize(exp), exp.path / REPORT_FILE)  # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.io import write_text
from analysis.load import Experiment
from analysis.ranges import search_space

REPORT_FILE = "report.html"
METRIC_COLUMN = "final_val_loss"
MAX_ROWS = 50  # rows per table; the rest are in summary.json
MAX_CI_ROWS = 20  # configurations in the CI chart
BOUNDED = ("uniform", "loguniform", "quniform", "randint")  # distributions with [low, high]
COLORS = {
    "completed": "#8c8c8c",
    "best": "#1f77b4",
    "stopped": "#ff7f0e",
    "diverged": "#d62728",
    "errored": "#d62728",
    "unfinished": "#9467bd",
    "pending": "#cccccc",
}
CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
 max-width:1100px;margin:0 auto;padding:1rem 1.5rem 4rem;background:#fff}
h1{font-size:1.6rem;margin:.2rem 0 .3rem}h2{font-size:1.25rem;margin:2.2rem 0 .6rem;
 border-bottom:1px solid #ddd;padding-bottom:.2rem}h3{font-size:1.05rem;margin:1.2rem 0 .4rem}
p.lead{color:#555;margin:.2rem 0 1rem}nav{font-size:.9rem;margin:.6rem 0 1rem}
nav a{margin-right:.8rem;color:#1f5fa8;text-decoration:none}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.88rem}
th,td{padding:.22rem .6rem;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f6f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#eef5fc}.box{background:#f6f9fc;border:1px solid #d6e4f0;border-radius:6px;
 padding:.7rem 1rem;margin:.6rem 0 1rem}.muted{color:#777}.note{color:#8a5a00}
code,pre{font:.85rem ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f6f6f6;padding:.6rem;overflow-x:auto}figure{margin:.4rem 0 1rem}
figure svg{max-width:100%;height:auto}.grid{display:grid;
 grid-template-columns:repeat(auto-fill,minmax(430px,1fr));gap:.6rem 1.2rem}
.verdict-better{color:#1a7f37;font-weight:600}.verdict-worse{color:#c62828;font-weight:600}
details{margin:.4rem 0}summary{cursor:pointer}
"""


def write_report(exp: Experiment, summary: dict[str, Any], path: str | Path) -> Path:
    """Write ``report.html`` for ``exp`` and its ``summary`` (atomically); returns its path."""
    return write_text(path, render_report(exp, summary))


def render_report(exp: Experiment, summary: dict[str, Any]) -> str:
    """The page as a string: one HTML document with inline CSS and inline SVG charts."""
    sections = [
        ("best", "Best configuration", _best_section(summary)),
        ("ranking", "Ranking", _ranking_section(summary)),
        ("confirm", "Confirmation stage", _confirm_section(summary)),
        ("comparison", "Against the baseline", _comparison_section(summary)),
        ("stopped", "Stopped early and failed trials", _stopped_section(summary)),
        ("curves", "Learning curves", _curves_section(exp, summary)),
        ("parameters", "Parameters", _parameters_section(exp, summary)),
        ("importance", "Importance", _importance_section(summary)),
        ("asha", "ASHA rungs", _asha_section(exp)),
        ("compute", "Compute", _compute_section(summary)),
        ("provenance", "Provenance", _provenance_section(exp, summary)),
    ]
    sections = [s for s in sections if s[2] is not None]
    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title, _ in sections)
    body = "".join(
        f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>'
        for key, title, content in sections
    )
    name = summary.get("campaign") or exp.name
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(name)}: ngpt-tune report</title><style>{CSS}</style></head>"
        f"<body>{_header(exp, summary)}<nav>{nav}</nav>{body}"
        '<p class="muted">Written by ngpt-tune\'s analysis from the experiment folder; '
        "the numbers are those of <code>summary.json</code>.</p></body></html>\n"
    )


# --- sections -------------------------------------------------------------------------------


def _header(exp: Experiment, summary: dict[str, Any]) -> str:
    counts = summary.get("counts") or {}
    shown = ", ".join(f"{n} {status}" for status, n in counts.items() if status != "total" and n)
    dates = summary.get("dates") or {}
    parts = [
        f"<h1>{_e(summary.get('campaign') or exp.name)}</h1>",
        f'<p class="lead">{_e(summary.get("description") or "")}</p>',
        "<table>",
        _kv("experiment", f"<code>{_e(summary.get('experiment') or exp.display_path)}</code>"),
        _kv("trials", _e(f"{counts.get('total', 0)} ({shown or 'none'})")),
        _kv("ranked on", _e(summary.get("ranked_on") or "")),
        _kv("started", _e(dates.get("first_trial_started") or dates.get("created_at") or "-")),
        _kv("last report", _e(dates.get("last_report") or "-")),
    ]
    if summary.get("command"):
        parts.append(_kv("command", f"<code>{_e(summary['command'])}</code>"))
    parts.append("</table>")
    return "".join(parts)


def _best_section(summary: dict[str, Any]) -> str:
    best = summary.get("best")
    if not best:
        return '<p class="muted">No completed trial: nothing to rank.</p>'
    metric = best.get("metric") or summary.get("metric") or "val_loss"
    spread = "" if best.get("std") is None else f" &plusmn; {_num(best['std'])} (std)"
    rows = [
        _kv("configuration", _e(best.get("group"))),
        _kv(
            f"mean {metric}",
            f"<b>{_num(best.get('mean'))}</b>{spread} over n={_e(best.get('n'))} seed(s)"
            + ("" if not best.get("ci95") else f", 95% CI {_ci(best['ci95'])}"),
        ),
        _kv(
            "best trial",
            f'<b id="best-trial">{_e(best.get("trial_id"))}</b> (seed {_e(best.get("seed"))}): '
            f'{metric} <b id="best-value">{_num(best.get("value"))}</b>',
        ),
        _kv("re-run it alone", f"<code>{_e(best.get('command'))}</code>"),
    ]
    note = f'<p class="note">{_e(best["note"])}</p>' if best.get("note") else ""
    return f'<div class="box"><table>{"".join(rows)}</table>{note}</div>'


def _ranking_section(summary: dict[str, Any]) -> str:
    ranking = summary.get("ranking") or []
    if not ranking:
        return '<p class="muted">No completed trial to rank.</p>'
    best_id = (summary.get("best") or {}).get("trial_id")
    parts = ["<h3>Completed trials</h3>"]
    header = ["#", "trial", "configuration", "seed", "final val_loss", "best val_loss",
              "tokens", "tokens/s", "wall s"]
    rows = [
        [e.get("rank"), e.get("trial_id"), e.get("group"), e.get("seed"),
         _num(e.get("final_val_loss")), _num(e.get("best_val_loss")),
         _count(e.get("tokens_seen")), _count(e.get("tokens_per_s")),
         _num(e.get("wall_time_s"), 1)]
        for e in ranking
    ]
    marks = [e.get("trial_id") == best_id for e in ranking]
    parts.append(_table(header, rows, table_id="ranking-table", highlight=marks))
    configs = summary.get("ranking_by_config") or []
    if configs:
        parts.append("<h3>Configurations, on the mean over seeds (95% t-interval)</h3>")
        rows = [
            [c.get("rank"), c.get("group"), c.get("n"), _num(c.get("mean")), _num(c.get("std")),
             _ci(c.get("ci95")), ", ".join(str(t) for t in c.get("trial_ids") or [])]
            for c in configs
        ]
        parts.append(_table(["#", "configuration", "n", "mean", "std", "95% CI", "trials"],
                            rows, table_id="config-table", highlight=[i == 0 for i in
                                                                      range(len(rows))]))
        parts.append(_figure(_ci_chart(configs[:MAX_CI_ROWS], summary), "ranking-ci",
                             "Mean final val_loss per configuration; bars: 95% CI (n >= 2); "
                             "dots: the seeds."))
    return "".join(parts)


def _confirm_section(summary: dict[str, Any]) -> str | None:
    """The confirmation stage (``analysis.confirm``'s section): arms, comparisons with their
    verdicts, the winner's curse and the winner; any other shape is shown as it comes."""
    confirm = summary.get("confirm")
    if confirm is None:
        return None
    arms = confirm.get("arms") if isinstance(confirm, dict) else None
    if not isinstance(arms, list) or not all(isinstance(a, dict) for a in arms):
        return f'<div id="confirm-data">{_generic(confirm)}</div>'
    parts = ['<div id="confirm-data">']
    winner = confirm.get("winner") or {}
    if winner:
        parts.append(
            '<div class="box"><table>'
            + _kv("confirmed winner", f"<b>{_e(winner.get('arm'))}</b>")
            + _kv("mean", f"<b>{_num(winner.get('mean'))}</b> over n={_e(winner.get('n'))}, "
                  f"95% CI {_ci(winner.get('ci95'))}")
            + _kv("re-run it alone", f"<code>{_e(winner.get('command'))}</code>")
            + "</table>"
            + (f'<p class="note">{_e(winner["note"])}</p>' if winner.get("note") else "")
            + "</div>")
    rows = [
        [a.get("arm"), a.get("role"), a.get("n"), _num(a.get("mean")), _num(a.get("std")),
         _ci(a.get("ci95")), _pct(a.get("p_best")), _num(a.get("search_value")),
         _num(a.get("optimism")), _Raw(_verdict(_verdict_text(a.get("vs_leader")))),
         _Raw(_verdict(_verdict_text(a.get("vs_baseline"))))]
        for a in arms
    ]
    parts.append(_table(["arm", "role", "n", "mean", "std", "95% CI", "P(best)",
                         "search value", "optimism", "vs leader", "vs baseline"], rows,
                        table_id="confirm-table",
                        highlight=[a.get("arm") == confirm.get("leader") for a in arms]))
    parts.append(_figure(_confirm_chart(arms), "confirm-chart",
                         "Confirmed mean with its 95% CI (blue) beside the value the search "
                         "reported (orange): the gap is the winner's curse."))
    comparisons = confirm.get("comparisons") or []
    if comparisons:
        rows = [
            [c.get("arm"), f"{c.get('against')} ({c.get('against_role')})", c.get("test"),
             "/".join(str(n) for n in c.get("n") or []), _num(c.get("effect")),
             _ci(c.get("effect_ci95")), _num(c.get("p_value")), _num(c.get("p_holm")),
             _Raw(_verdict(c.get("verdict"))), c.get("reason") or ""]
            for c in comparisons
        ]
        parts.append("<h3>Comparisons (Holm-corrected)</h3>")
        parts.append(_table(["arm", "against", "test", "n", "effect", "effect 95% CI", "p",
                             "p (Holm)", "verdict", "reason"], rows,
                            table_id="confirm-comparisons"))
    curse = confirm.get("winners_curse") or {}
    if curse:
        parts.append("<h3>The winner's curse</h3>")
        parts.append(_table(["", ""], [
            ["mean optimism (> 0: the search looked better than its confirmation)",
             _num(curse.get("mean_optimism"))],
            ["Spearman's rank correlation, search vs confirmed order",
             f"{_num(curse.get('spearman'), 3)} (p {_num(curse.get('spearman_p'), 3)})"],
        ], table_id="confirm-curse"))
        if curse.get("note"):
            parts.append(f'<p class="note">{_e(curse["note"])}</p>')
    if confirm.get("not_counted"):
        parts.append('<p class="note">Confirmation trials that did not finish (the stage is '
                     "incomplete):</p>" + _generic(confirm["not_counted"]))
    parts.append("</div>")
    return "".join(parts)


def _verdict_text(value: Any) -> Any:
    """A verdict given as text, or as a comparison dict carrying one."""
    return value.get("verdict") if isinstance(value, dict) else value


def _comparison_section(summary: dict[str, Any]) -> str | None:
    comparison = summary.get("comparison")
    if not comparison:
        return None
    parts = [
        f"<p>Each arm ({_e(comparison.get('by'))}) against "
        f"<b>{_e(comparison.get('baseline'))}</b> at equal tokens "
        f"({_count(comparison.get('tokens'))}), with Welch's t-test.</p>"
    ]
    arms = comparison.get("arms") or []
    if arms:
        rows = [
            [a.get("arm") + (" (baseline)" if a.get("baseline") else ""), a.get("n"),
             _num(a.get("mean")), _ci(a.get("ci95")), _num(a.get("difference")),
             _signed_pct(a.get("improvement_pct")), _num(a.get("p_value")),
             _Raw(_verdict(a.get("verdict")))]
            for a in arms
        ]
        parts.append(_table(["arm", "n", "mean", "95% CI", "difference", "improvement",
                             "p (Welch)", "verdict"], rows, table_id="comparison-table"))
    if comparison.get("note"):
        parts.append(f'<p class="note">{_e(comparison["note"])}</p>')
    return "".join(parts)


def _stopped_section(summary: dict[str, Any]) -> str:
    stopped = summary.get("stopped_early") or []
    failed = summary.get("failed") or []
    parts = []
    if stopped:
        parts.append("<h3>Stopped early by the scheduler (not ranked)</h3>")
        rows = [
            [e.get("trial_id"), e.get("group"), e.get("seed"),
             f"{_e(e.get('steps'))}/{_e(e.get('max_steps'))}", _pct(_frac(e)),
             _count(e.get("tokens_seen")), _num(e.get("val_loss_at_stop"))]
            for e in stopped
        ]
        parts.append(_table(["trial", "configuration", "seed", "steps", "budget", "tokens",
                             "val_loss at stop"], rows, table_id="stopped-table"))
    else:
        parts.append('<p class="muted">No trial was stopped early.</p>')
    if failed:
        parts.append("<h3>Diverged, errored and never-started trials</h3>")
        rows = [[f.get("trial_id"), f.get("status"), f.get("group"), f.get("steps"),
                 f.get("error") or "-"] for f in failed]
        parts.append(_table(["trial", "status", "configuration", "steps", "error"], rows,
                            table_id="failed-table"))
    return "".join(parts)


def _curves_section(exp: Experiment, summary: dict[str, Any]) -> str:
    svg = _curves_chart(exp, summary)
    if svg is None:
        return '<p class="muted">No finite validation loss was reported.</p>'
    return _figure(svg, "learning-curves",
                   "val_loss against tokens seen, one line per trial. Blue: the best trial; "
                   "orange with a cross: stopped early by the scheduler, at the budget it "
                   "reached; red: diverged or errored; dotted lines: ASHA rungs.")


def _parameters_section(exp: Experiment, summary: dict[str, Any]) -> str:
    keys = [k for k in exp.search_keys if k in exp.trials]
    if not keys:
        return '<p class="muted">No searched parameter.</p>'
    effects = summary.get("parameters") or {}
    distributions = search_distributions(exp.campaign)
    space = summary.get("search_space") or search_space(exp.campaign)
    parts = [f'<p class="note">{_e(w.get("message"))}</p>'
             for w in summary.get("range_warnings") or [] if isinstance(w, dict)]
    parts.append('<div class="grid">')
    for key in keys:
        svg = _param_chart(exp, key, distributions.get(key, ""), space.get(key) or {})
        dist = distributions.get(key)
        caption = f"{key}" + (f": {dist}" if dist else "")
        parts.append("<div>" + (_figure(svg, f"param-{_slug(key)}", caption) if svg else
                                f"<h3>{_e(key)}</h3><p class='muted'>no completed trial</p>"))
        effect = effects.get(key)
        if effect:
            parts.append(_effect_table(key, effect))
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def _importance_section(summary: dict[str, Any]) -> str:
    importance = summary.get("importance") or {}
    values = importance.get("importances")
    if not values:
        reason = importance.get("reason") or "not computed"
        return f'<p class="muted">No importance: {_e(reason)}.</p>'
    rows = [[k, _pct(v)] for k, v in values.items()]
    budget = importance.get("budget") or {}
    if budget.get("level") == "rung":
        basis = (f"the {_e(budget.get('n_trials'))} trials that reached the ASHA rung at "
                 f"{_e(budget.get('time_attr'))} {_e(_plain(budget.get('at')))}")
    else:
        basis = f"{_e(importance.get('n_trials'))} completed trials"
    return (
        f"<p>{_e(importance.get('evaluator'))} over {basis}.</p>" + _table(["parameter", "share"], rows, table_id="importance-table")
        + _figure(_importance_chart(values), "importance-chart", "Share of the variance.")
    )


def _asha_section(exp: Experiment) -> str:
    rungs = asha_rungs(exp.campaign)
    if not rungs:
        return '<p class="muted">This campaign has no ASHA scheduler.</p>'
    attr = exp.campaign.get("time_attr") or "tokens_seen"
    table = rung_table(exp, rungs, attr)
    spec = (exp.campaign.get("spec") or {}).get("scheduler") or {}
    intro = (f"<p>ASHA compares trials at each rung of <code>{_e(attr)}</code> "
             f"(reduction factor {_e(spec.get('reduction_factor', '-'))}): a trial continues "
             "past a rung only if it is in the top 1/reduction factor of the trials that "
             "reached it.</p>")
    rows = [[_count(r["budget"]), r["reached"], r["continued"], r["stopped_here"],
             _num(r["best"]), r["best_trial"] or "-"] for r in table]
    return intro + _table([f"rung ({attr})", "reached", "went on", "stopped here",
                           "best val_loss there", "best trial there"], rows,
                          table_id="asha-table")


def _compute_section(summary: dict[str, Any]) -> str:
    c = summary.get("compute")
    if not c:
        return '<p class="muted">No compute figures.</p>'
    devices = ", ".join(f"{k}: {v}" for k, v in (c.get("devices") or {}).items()) or "-"
    rows = [
        ["tokens trained", _count(c.get("total_tokens"))],
        ["FLOPs", _sci(c.get("flops"))],
        [c.get("hours_label") or "hours", _num(c.get("hours"), 3)],
        ["GPU-hours / CPU-hours", f"{_num(c.get('gpu_hours'), 3)} / {_num(c.get('cpu_hours'), 3)}"],
        ["trial wall time (s, summed)", _num(c.get("wall_time_s"), 1)],
        ["trials per device", devices],
    ]
    note = f'<p class="muted">FLOPs: {_e(c["flops_note"])}.</p>' if c.get("flops_note") else ""
    return _table(["", ""], rows, table_id="compute-table") + note


def _provenance_section(exp: Experiment, summary: dict[str, Any]) -> str:
    prov = summary.get("provenance") or exp.campaign.get("provenance") or {}
    analysis = summary.get("analysis") or {}
    hardware = prov.get("hardware") or {}
    packages = prov.get("packages") or analysis.get("packages") or {}
    rows = [
        ["git commit (campaign)", prov.get("git_commit") or "-"],
        ["campaign created", prov.get("created_at") or exp.campaign.get("created_at") or "-"],
        ["spec file", summary.get("spec_path") or "-"],
        ["analysed at", analysis.get("analyzed_at") or "-"],
        ["git commit (analysis)", analysis.get("git_commit") or "-"],
    ]
    parts = [_table(["", ""], rows, table_id="provenance-table")]
    if hardware:
        parts.append("<h3>Hardware</h3>")
        parts.append(_table(["", ""], [[k, _plain(v)] for k, v in hardware.items()],
                            table_id="hardware-table"))
    if packages:
        parts.append("<h3>Packages</h3>")
        parts.append(_table(["package", "version"], [[k, v] for k, v in packages.items()],
                            table_id="packages-table"))
    spec = summary.get("spec") or exp.campaign.get("spec")
    if spec:
        text = json.dumps(spec, indent=2, default=str)
        parts.append(f"<details><summary>The resolved spec</summary><pre>{_e(text)}</pre>"
                     "</details>")
    return "".join(parts)


# --- data helpers ---------------------------------------------------------------------------


def search_distributions(campaign: dict[str, Any]) -> dict[str, str]:
    """The spec's distribution of each searched key as text, e.g. ``loguniform(0.03, 0.5)``.

    ``campaign.json`` records them as ``spec.params`` (text); a dict form
    (``{"loguniform": [lo, hi]}``, as in a spec's ``search:``) is accepted too.
    """
    spec = campaign.get("spec") or {}
    params = spec.get("params") or spec.get("search") or {}
    out = {}
    for key, dist in params.items():
        if isinstance(dist, dict):
            kind = next((k for k in dist if k != "when"), None)
            args = dist[kind] if kind else None
            args = ", ".join(map(str, args)) if isinstance(args, list) else args
            out[key] = f"{kind}({args})" if kind else json.dumps(dist)
        else:
            out[key] = str(dist)
    return out


def is_log(distribution: str) -> bool:
    return distribution.strip().lower().startswith(("loguniform", "qloguniform", "lograndint"))


def asha_rungs(campaign: dict[str, Any]) -> list[float]:
    """The rungs of Ray's ASHA (one bracket): grace * rf**k up to max_t, as Ray computes them."""
    budgets = campaign.get("asha_budgets")
    scheduler = (campaign.get("spec") or {}).get("scheduler") or {}
    if not budgets or len(budgets) != 2:
        return []
    grace, max_t = float(budgets[0]), float(budgets[1])
    try:
        rf = float(scheduler.get("reduction_factor") or 0)
    except (TypeError, ValueError):
        return []
    if grace <= 0 or max_t < grace or rf <= 1:
        return [grace] if grace > 0 else []
    n = int(math.log(max_t / grace) / math.log(rf) + 1)  # ray.tune.schedulers.async_hyperband
    return [grace * rf**k for k in range(n)]


def rung_table(exp: Experiment, rungs: list[float], attr: str) -> list[dict[str, Any]]:
    """Per rung: trials that reached it, went past it, were stopped at it, and the best value
    there (the first report at or past the rung, as ASHA records it)."""
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
                    "continued": continued if nxt != math.inf else "-",
                    "stopped_here": stopped_here, "best": best, "best_trial": best_id})
    return out


# --- charts ---------------------------------------------------------------------------------


def _curves_chart(exp: Experiment, summary: dict[str, Any]) -> str | None:
    history = exp.history[np.isfinite(exp.history["val_loss"].astype(float))]
    history = history[history["tokens_seen"].notna()]
    if history.empty:
        return None
    fig, ax = _fig(9.0, 4.6)
    status = exp.trials.set_index("trial_id")["status"].to_dict()
    best_id = (summary.get("best") or {}).get("trial_id")
    labelled: set[str] = set()
    for trial_id, rows in history.groupby("trial_id", sort=False):
        if trial_id == best_id:
            continue
        st = status.get(trial_id, "completed")
        color = COLORS.get(st, COLORS["completed"])
        label = None
        if st not in labelled:
            label = {"stopped": "stopped early (x: budget reached)"}.get(st, st)
            labelled.add(st)
        x, y = rows["tokens_seen"].astype(float), rows["val_loss"].astype(float)
        ax.plot(x, y, color=color, lw=0.9, alpha=0.75, label=label,
                marker="o" if len(rows) < 3 else None, ms=3)
        if st == "stopped":
            ax.plot(x.iloc[-1], y.iloc[-1], marker="x", ms=8, mew=2, color=color)
    if best_id is not None:
        rows = history[history["trial_id"] == best_id]
        best = summary["best"]
        ax.plot(rows["tokens_seen"].astype(float), rows["val_loss"].astype(float),
                color=COLORS["best"], lw=2.4,
                label=f"best: {best_id} ({_num(best.get('value'))})")
    if (exp.campaign.get("time_attr") or "") == "tokens_seen":
        for rung in asha_rungs(exp.campaign):
            ax.axvline(rung, color="0.6", ls=":", lw=1)
    last = history.groupby("trial_id", sort=False)["val_loss"].last().astype(float)
    values = history["val_loss"].astype(float)
    low, high = values.min(), max(values.quantile(0.98), last.max())
    if high > low:
        pad = 0.04 * (high - low)
        ax.set_ylim(low - pad, high + pad)
    ax.set(xlabel="tokens seen", ylabel="val_loss")
    ax.grid(alpha=0.25)
    ax.legend(loc="upper right", fontsize=8)
    return _svg(fig, "curves")


def _ci_chart(configs: list[dict[str, Any]], summary: dict[str, Any]) -> str | None:
    shown = [c for c in configs if c.get("mean") is not None]
    if not shown:
        return None
    values = {e["trial_id"]: e.get("final_val_loss") for e in summary.get("ranking") or []}
    fig, ax = _fig(9.0, 0.9 + 0.36 * len(shown))
    for i, c in enumerate(shown):
        y = len(shown) - 1 - i  # the best on top
        color = COLORS["best"] if i == 0 else "0.35"
        if c.get("ci95"):
            lo, hi = c["ci95"]
            ax.plot([lo, hi], [y, y], color=color, lw=2)
        seeds = [values.get(t) for t in c.get("trial_ids") or []]
        seeds = [v for v in seeds if v is not None]
        ax.scatter(seeds, [y] * len(seeds), s=14, color="0.6", zorder=2)
        ax.scatter([c["mean"]], [y], s=42, color=color, zorder=3, marker="D")
    ax.set_yticks(range(len(shown)), [_short(c.get("group"), 48) for c in shown][::-1],
                  fontsize=8)
    ax.set_xlabel("final val_loss (mean, 95% CI, seeds)")
    ax.grid(axis="x", alpha=0.25)
    return _svg(fig, "ci")


def _confirm_chart(arms: list[dict[str, Any]]) -> str | None:
    shown = [a for a in arms if a.get("mean") is not None]
    if not shown:
        return None
    fig, ax = _fig(9.0, 0.9 + 0.42 * len(shown))
    for i, arm in enumerate(shown):
        y = len(shown) - 1 - i
        if arm.get("ci95"):
            ax.plot(arm["ci95"], [y, y], color=COLORS["best"], lw=2)
        values = [v for v in arm.get("values") or [] if v is not None]
        ax.scatter(values, [y] * len(values), s=12, color="0.6", zorder=2)
        ax.scatter([arm["mean"]], [y], marker="D", s=40, color=COLORS["best"], zorder=3,
                   label="confirmed mean, 95% CI" if i == 0 else None)
        if arm.get("search_value") is not None:
            ax.scatter([arm["search_value"]], [y], marker="o", s=40, color=COLORS["stopped"],
                       zorder=3, label="search value" if i == 0 else None)
    ax.set_yticks(range(len(shown)), [_short(a.get("arm"), 48) for a in shown][::-1],
                  fontsize=8)
    ax.grid(axis="x", alpha=0.25)
    ax.legend(fontsize=7, loc="best")
    return _svg(fig, "confirm")


def _param_chart(exp: Experiment, key: str, distribution: str,
                 space: dict[str, Any]) -> str | None:
    column = getattr(exp, "metric_column", METRIC_COLUMN)
    trials = exp.trials[exp.trials[key].notna()]
    done = trials[(trials["status"] == "completed")
                  & np.isfinite(trials[column].astype(float))]
    stopped = trials[(trials["status"] == "stopped")
                     & np.isfinite(trials[column].astype(float))]
    if done.empty and stopped.empty:
        return None
    fig, ax = _fig(5.2, 3.4)
    both = pd.concat([done[key], stopped[key]])
    numeric = pd.api.types.is_numeric_dtype(both) and not pd.api.types.is_bool_dtype(both)
    if numeric and (both.nunique() > 2 or is_log(distribution)):
        x_done, x_stop = done[key].astype(float), stopped[key].astype(float)
        positive = bool((both.astype(float) > 0).all())
        if positive and (is_log(distribution) or
                         (not distribution and both.max() / both.min() >= 10)):
            ax.set_xscale("log")
            _log_axis(ax.xaxis)  # after set_xscale, which resets the ticks
        bounds = space.get("args") if space.get("dist") in BOUNDED else None
        if bounds and len(bounds) >= 2 and float(bounds[1]) > float(bounds[0]):
            lo, hi = float(bounds[0]), float(bounds[1])  # the searched range: its edges show
            pad = (hi / lo) ** 0.03 if ax.get_xscale() == "log" and lo > 0 else None
            ax.set_xlim(lo / pad, hi * pad) if pad else ax.set_xlim(lo - 0.03 * (hi - lo),
                                                                    hi + 0.03 * (hi - lo))
    else:
        labels = sorted(both.astype(str).unique())
        position = {label: i for i, label in enumerate(labels)}
        rng = np.random.default_rng(0)
        x_done = done[key].astype(str).map(position).astype(float)
        x_done = x_done + rng.uniform(-0.08, 0.08, len(x_done))
        x_stop = stopped[key].astype(str).map(position).astype(float)
        means = done[column].astype(float).groupby(done[key].astype(str)).mean()
        if len(means):
            ax.scatter([position[k] for k in means.index], means.values, marker="_", s=500,
                       color="black", label="mean", zorder=3)
        ax.set_xticks(range(len(labels)), labels)
    if not stopped.empty:
        ax.scatter(x_stop, stopped[column].astype(float), s=30, marker="x",
                   color=COLORS["stopped"], label="stopped early (val_loss at stop)")
    if not done.empty:
        ax.scatter(x_done, done[column].astype(float), s=24, color=COLORS["best"],
                   label="completed", zorder=2)
    ax.set(xlabel=key + (" (log axis)" if ax.get_xscale() == "log" else ""),
           ylabel=column.replace("_", " "))
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7)
    return _svg(fig, f"param-{_slug(key)}")


def _log_axis(axis: Any) -> None:
    """Log ticks at 1, 2 and 5 per decade, written as plain numbers, no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _importance_chart(importances: dict[str, float]) -> str:
    fig, ax = _fig(7.0, 0.8 + 0.4 * len(importances))
    names = list(importances)[::-1]  # the largest on top
    ax.barh(names, [importances[n] for n in names], color=COLORS["best"])
    ax.set_xlabel("importance (PED-ANOVA, share)")
    return _svg(fig, "importance")


def _fig(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, max(height, 2.0)), layout="constrained")
    return fig, fig.add_subplot()


def _svg(fig: Any, salt: str) -> str:
    """The figure as an inline ``<svg>`` element: text as text, ids unique to the figure."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML declaration and DOCTYPE


# --- HTML helpers ---------------------------------------------------------------------------


class _Raw(str):
    """A table cell that is already HTML."""


def _table(header: list[str], rows: list[list[Any]], *, table_id: str,
           highlight: list[bool] | None = None) -> str:
    shown = rows[:MAX_ROWS]
    head = "".join(f"<th>{_e(h)}</th>" for h in header) if any(header) else ""
    body = []
    for i, row in enumerate(shown):
        cls = ' class="best"' if highlight and i < len(highlight) and highlight[i] else ""
        cells = "".join(_cell(v) for v in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    more = ""
    if len(rows) > MAX_ROWS:
        more = f'<p class="muted">{len(rows) - MAX_ROWS} more rows in summary.json.</p>'
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f'<table id="{table_id}">{thead}<tbody>{"".join(body)}</tbody></table>{more}'


def _cell(value: Any) -> str:
    if isinstance(value, _Raw):
        return f"<td>{value}</td>"
    text = "-" if value is None else str(value)
    numeric = bool(re.fullmatch(r"[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?", text))
    return f'<td class="num">{_e(text)}</td>' if numeric else f"<td>{_e(text)}</td>"


def _kv(key: str, value_html: str) -> str:
    return f"<tr><th>{_e(key)}</th><td>{value_html}</td></tr>"


def _figure(svg: str | None, fig_id: str, caption: str) -> str:
    if svg is None:
        return ""
    return f'<figure id="{fig_id}">{svg}<figcaption class="muted">{_e(caption)}</figcaption>' \
           "</figure>"


def _effect_table(key: str, effect: dict[str, Any]) -> str:
    buckets = effect.get("by_value") or effect.get("by_bin") or []
    rows = []
    for b in buckets:
        label = b.get("value") if "value" in b else "[" + ", ".join(_g(v) for v in b["bin"]) + "]"
        rows.append([_plain(label), b.get("n"), _num(b.get("mean")), _ci(b.get("ci95"))])
    head = "value" if effect.get("by_value") is not None else "bin (quartiles)"
    table = _table([head, "n", "mean", "95% CI"], rows, table_id=f"effect-{_slug(key)}")
    best = effect.get("best_value")
    by_mean = effect.get("best_by_mean")
    return (table + f'<p class="muted">best configuration: {_e(_plain(best))}; '
            f"best on the mean: {_e(_plain(by_mean))}</p>")


def _generic(obj: Any, depth: int = 0) -> str:
    """Any JSON value as HTML: dicts as tables or sub-sections, lists of dicts as tables."""
    if isinstance(obj, dict):
        scalars = {k: v for k, v in obj.items() if not isinstance(v, (dict, list))}
        nested = {k: v for k, v in obj.items() if isinstance(v, (dict, list))}
        parts = []
        if scalars:
            rows = "".join(_kv(k, _value_html(k, v)) for k, v in scalars.items())
            parts.append(f"<table>{rows}</table>")
        level = min(3 + depth, 6)
        for key, value in nested.items():
            parts.append(f"<h{level}>{_e(key.replace('_', ' '))}</h{level}>"
                         f"{_generic(value, depth + 1)}")
        return "".join(parts)
    if isinstance(obj, list):
        if not obj:
            return '<p class="muted">(none)</p>'
        if all(isinstance(x, dict) for x in obj):
            columns: list[str] = []
            for x in obj:
                columns += [k for k in x if k not in columns]
            body = "".join(
                "<tr>" + "".join(f"<td>{_value_html(c, x.get(c))}</td>" for c in columns)
                + "</tr>" for x in obj)
            head = "".join(f"<th>{_e(c)}</th>" for c in columns)
            return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return f"<p>{_e(', '.join(_plain(x) for x in obj))}</p>"
    return f"<p>{_e(_plain(obj))}</p>"


def _value_html(key: str, value: Any) -> str:
    if isinstance(value, (dict, list)):
        if isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return _e(_ci(value))  # an interval
        return f"<code>{_e(json.dumps(value, default=str))}</code>"
    if "verdict" in str(key).lower() and isinstance(value, str):
        return _verdict(value)
    return _e(_plain(value))


def _verdict(text: Any) -> str:
    if text is None:
        return "-"
    low = str(text).lower()
    cls = ""
    if "better" in low and "not" not in low:
        cls = "verdict-better"
    elif "worse" in low and "not" not in low:
        cls = "verdict-worse"
    return f'<span class="{cls}">{_e(text)}</span>' if cls else _e(text)


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return _g(value)
    return str(value)


def _g(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.6g}"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, bool):
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else str(number)


def _count(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):,.0f}"


def _sci(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3e}"


def _pct(fraction: Any) -> str:
    return "-" if fraction is None else f"{100 * float(fraction):.1f}%"


def _signed_pct(percent: Any) -> str:
    return "-" if percent is None else f"{float(percent):+.2f}%"


def _frac(entry: dict[str, Any]) -> Any:
    return entry.get("budget_fraction")


def _ci(ci: Iterable[float] | None) -> str:
    if not ci:
        return "-"
    lo, hi = list(ci)[:2]
    return f"[{_num(lo)}, {_num(hi)}]"


def _short(text: Any, width: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", key)
