"""``write_report(exp, summary, path)``: the campaign's results as one self-contained HTML page.

``report.html`` opens with no network: no script, no stylesheet or font to fetch; the charts
are inline SVG written by matplotlib (text kept as text, so a browser's find works on them).
It shows, top to bottom: the campaign's stages and a ladder's fit (when the summary has them),
the best configuration, the ranking (trials, and configurations with 95% CIs), the confirmation stage (when ``summary["confirm"]`` exists), the comparison with a
baseline arm, early-stopped and failed trials, learning curves over tokens with early-stopped
trials marked at the budget they reached, each parameter's effect (a log axis where the spec's
distribution is ``loguniform``), importance, the ASHA rungs, compute and provenance.

The page computes no statistics: it shows the dict :func:`~analysis.summarize` returns and
the loaded :class:`~analysis.load.Experiment`, and draws the same charts as ``plots/``
(``analysis.chart_data`` and ``analysis.charts``). Its markup and CSS are the template
``analysis/templates/report.html``; a section whose data is missing says so and the page is
still written.

Example:
    >>> exp = load_experiment("ngpt_results/quickstart-20261123-120000")  # doctest: +SKIP
    >>> write_report(exp, summarize(exp), exp.path / REPORT_FILE)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from analysis.chart_data import ci_data, confirm_data, curves_data, importance_data, param_data
from analysis.charts import draw_ci, draw_confirm, draw_curves, draw_importance, draw_param
from analysis.formatting import ci, count, g, num, pct, plain, sci, signed_pct
from analysis.html_blocks import Raw, e, figure, generic, kv, slug, svg, table, verdict
from analysis.html_stages import ladder_section, stages_section
from analysis.io import write_text
from analysis.load import Experiment
from analysis.ranges import search_distributions

REPORT_FILE = "report.html"
TEMPLATE = "templates/report.html"  # in the analysis package: the page's markup and CSS


def write_report(exp: Experiment, summary: dict[str, Any], path: str | Path) -> Path:
    """Write ``report.html`` for ``exp`` and its ``summary`` (atomically); returns its path."""
    return write_text(path, render_report(exp, summary))


def render_report(exp: Experiment, summary: dict[str, Any]) -> str:
    """The page as a string: one HTML document with inline CSS and inline SVG charts."""
    sections = [
        ("stages", "Stages", stages_section(summary)),
        ("ladder", "Ladder: the optimum's trend with size", ladder_section(summary)),
        ("best", "Best configuration", _best_section(summary)),
        ("ranking", "Ranking", _ranking_section(summary)),
        ("confirm", "Confirmation stage", _confirm_section(summary)),
        ("comparison", "Against the baseline", _comparison_section(summary)),
        ("stopped", "Stopped early and failed trials", _stopped_section(summary)),
        ("curves", "Learning curves", _curves_section(exp, summary)),
        ("parameters", "Parameters", _parameters_section(exp, summary)),
        ("importance", "Importance", _importance_section(summary)),
        ("asha", "ASHA rungs", _asha_section(summary)),
        ("compute", "Compute", _compute_section(summary)),
        ("provenance", "Provenance", _provenance_section(exp, summary)),
    ]
    sections = [s for s in sections if s[2] is not None]
    page = Template(resources.files("analysis").joinpath(TEMPLATE).read_text(encoding="utf-8"))
    counts = summary.get("counts") or {}
    shown = ", ".join(f"{n} {status}" for status, n in counts.items() if status != "total" and n)
    dates = summary.get("dates") or {}
    return page.substitute(
        title=e(summary.get("campaign") or exp.name),
        description=e(summary.get("description") or ""),
        experiment=e(summary.get("experiment") or exp.display_path),
        trials=e(f"{counts.get('total', 0)} ({shown or 'none'})"),
        ranked_on=e(summary.get("ranked_on") or ""),
        started=e(dates.get("first_trial_started") or dates.get("created_at") or "-"),
        last_report=e(dates.get("last_report") or "-"),
        command=kv("command", f"<code>{e(summary['command'])}</code>")
        if summary.get("command") else "",
        nav="".join(f'<a href="#{key}">{e(title)}</a>' for key, title, _ in sections),
        sections="".join(f'<section id="{key}"><h2>{e(title)}</h2>{content}</section>'
                         for key, title, content in sections),
    )


# --- sections -------------------------------------------------------------------------------


def _best_section(summary: dict[str, Any]) -> str:
    best = summary.get("best")
    if not best:
        return '<p class="muted">No completed trial: nothing to rank.</p>'
    metric = best.get("metric") or summary.get("metric") or "val_loss"
    spread = "" if best.get("std") is None else f" &plusmn; {num(best['std'])} (std)"
    rows = [
        kv("configuration", e(best.get("group"))),
        kv(
            f"mean {metric}",
            f"<b>{num(best.get('mean'))}</b>{spread} over n={e(best.get('n'))} seed(s)"
            + ("" if not best.get("ci95") else f", 95% CI {ci(best['ci95'])}"),
        ),
        kv(
            "best trial",
            f'<b id="best-trial">{e(best.get("trial_id"))}</b> (seed {e(best.get("seed"))}): '
            f'{metric} <b id="best-value">{num(best.get("value"))}</b>',
        ),
        kv("re-run it alone", f"<code>{e(best.get('command'))}</code>"),
    ]
    note = f'<p class="note">{e(best["note"])}</p>' if best.get("note") else ""
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
        [t.get("rank"), t.get("trial_id"), t.get("group"), t.get("seed"),
         num(t.get("final_val_loss")), num(t.get("best_val_loss")),
         count(t.get("tokens_seen")), count(t.get("tokens_per_s")),
         num(t.get("wall_time_s"), 1)]
        for t in ranking
    ]
    marks = [t.get("trial_id") == best_id for t in ranking]
    parts.append(table(header, rows, table_id="ranking-table", highlight=marks))
    configs = summary.get("ranking_by_config") or []
    if configs:
        parts.append("<h3>Configurations, on the mean over seeds (95% t-interval)</h3>")
        rows = [
            [c.get("rank"), c.get("group"), c.get("n"), num(c.get("mean")), num(c.get("std")),
             ci(c.get("ci95")), ", ".join(str(t) for t in c.get("trial_ids") or [])]
            for c in configs
        ]
        parts.append(table(["#", "configuration", "n", "mean", "std", "95% CI", "trials"],
                           rows, table_id="config-table", highlight=[i == 0 for i in
                                                                     range(len(rows))]))
        parts.append(figure(svg(draw_ci, ci_data(summary), "ci"),
                            "ranking-ci", "Mean final val_loss per configuration; bars: 95% CI "
                            "(n >= 2); dots: the seeds."))
    return "".join(parts)


def _confirm_section(summary: dict[str, Any]) -> str | None:
    """The confirmation stage (``analysis.confirm``'s section): arms, comparisons with their
    verdicts, the winner's curse and the winner; any other shape is shown as it comes."""
    confirm = summary.get("confirm")
    if confirm is None:
        return None
    arms = confirm.get("arms") if isinstance(confirm, dict) else None
    if not isinstance(arms, list) or not all(isinstance(a, dict) for a in arms):
        return f'<div id="confirm-data">{generic(confirm)}</div>'
    parts = ['<div id="confirm-data">']
    winner = confirm.get("winner") or {}
    if winner:
        parts.append(
            '<div class="box"><table>'
            + kv("confirmed winner", f"<b>{e(winner.get('arm'))}</b>")
            + kv("mean", f"<b>{num(winner.get('mean'))}</b> over n={e(winner.get('n'))}, "
                 f"95% CI {ci(winner.get('ci95'))}")
            + kv("re-run it alone", f"<code>{e(winner.get('command'))}</code>")
            + "</table>"
            + (f'<p class="note">{e(winner["note"])}</p>' if winner.get("note") else "")
            + "</div>")
    rows = [
        [a.get("arm"), a.get("role"), a.get("n"), num(a.get("mean")), num(a.get("std")),
         ci(a.get("ci95")), pct(a.get("p_best"), 1), num(a.get("search_value")),
         num(a.get("optimism")), Raw(verdict(_verdict_text(a.get("vs_leader")))),
         Raw(verdict(_verdict_text(a.get("vs_baseline"))))]
        for a in arms
    ]
    parts.append(table(["arm", "role", "n", "mean", "std", "95% CI", "P(best)",
                        "search value", "optimism", "vs leader", "vs baseline"], rows,
                       table_id="confirm-table",
                       highlight=[a.get("arm") == confirm.get("leader") for a in arms]))
    parts.append(figure(svg(draw_confirm, confirm_data(confirm), "confirm"),
                        "confirm-chart",
                        "Confirmed mean with its 95% CI (blue) beside the value the search "
                        "reported (orange): the gap is the winner's curse."))
    comparisons = confirm.get("comparisons") or []
    if comparisons:
        rows = [
            [c.get("arm"), f"{c.get('against')} ({c.get('against_role')})", c.get("test"),
             "/".join(str(n) for n in c.get("n") or []), num(c.get("effect")),
             ci(c.get("effect_ci95")), num(c.get("p_value")), num(c.get("p_holm")),
             Raw(verdict(c.get("verdict"))), c.get("reason") or ""]
            for c in comparisons
        ]
        parts.append("<h3>Comparisons (Holm-corrected)</h3>")
        parts.append(table(["arm", "against", "test", "n", "effect", "effect 95% CI", "p",
                            "p (Holm)", "verdict", "reason"], rows,
                           table_id="confirm-comparisons"))
    curse = confirm.get("winners_curse") or {}
    if curse:
        parts.append("<h3>The winner's curse</h3>")
        parts.append(table(["", ""], [
            ["mean optimism (> 0: the search looked better than its confirmation)",
             num(curse.get("mean_optimism"))],
            ["Spearman's rank correlation, search vs confirmed order",
             f"{num(curse.get('spearman'), 3)} (p {num(curse.get('spearman_p'), 3)})"],
        ], table_id="confirm-curse"))
        if curse.get("note"):
            parts.append(f'<p class="note">{e(curse["note"])}</p>')
    if confirm.get("not_counted"):
        parts.append('<p class="note">Confirmation trials that did not finish (the stage is '
                     "incomplete):</p>" + generic(confirm["not_counted"]))
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
        f"<p>Each arm ({e(comparison.get('by'))}) against "
        f"<b>{e(comparison.get('baseline'))}</b> at equal tokens "
        f"({count(comparison.get('tokens'))}), with Welch's t-test, Holm-corrected over the "
        "arms tested; an arm that is the best of several configurations is descriptive.</p>"
    ]
    arms = comparison.get("arms") or []
    if arms:
        rows = [
            [a.get("arm") + (" (baseline)" if a.get("baseline") else ""), a.get("n"),
             num(a.get("mean")), ci(a.get("ci95")), num(a.get("difference")),
             ci(a.get("difference_ci95")), signed_pct(a.get("improvement_pct")),
             num(a.get("p_value")), num(a.get("p_holm")), Raw(verdict(a.get("verdict")))]
            for a in arms
        ]
        parts.append(table(["arm", "n", "mean", "95% CI", "difference", "its 95% CI", "improvement",
                            "p (Welch)", "Holm p", "verdict"], rows, table_id="comparison-table"))
    if comparison.get("note"):
        parts.append(f'<p class="note">{e(comparison["note"])}</p>')
    return "".join(parts)


def _stopped_section(summary: dict[str, Any]) -> str:
    stopped = summary.get("stopped_early") or []
    failed = summary.get("failed") or []
    parts = []
    if stopped:
        parts.append("<h3>Stopped early by the scheduler (not ranked)</h3>")
        rows = [
            [t.get("trial_id"), t.get("group"), t.get("seed"),
             f"{e(t.get('steps'))}/{e(t.get('max_steps'))}", pct(t.get("budget_fraction"), 1),
             count(t.get("tokens_seen")), num(t.get("val_loss_at_stop"))]
            for t in stopped
        ]
        parts.append(table(["trial", "configuration", "seed", "steps", "budget", "tokens",
                            "val_loss at stop"], rows, table_id="stopped-table"))
    else:
        parts.append('<p class="muted">No trial was stopped early.</p>')
    if failed:
        parts.append("<h3>Diverged, infeasible (out of memory), errored and never-started "
                     "trials</h3>")
        rows = [[f.get("trial_id"), f.get("status"), f.get("group"), f.get("steps"),
                 f.get("error") or "-"] for f in failed]
        parts.append(table(["trial", "status", "configuration", "steps", "error"], rows,
                           table_id="failed-table"))
    return "".join(parts)


def _curves_section(exp: Experiment, summary: dict[str, Any]) -> str:
    chart = svg(draw_curves, curves_data(exp, summary), "curves")
    if chart is None:
        return '<p class="muted">No finite validation loss was reported.</p>'
    return figure(chart, "learning-curves",
                  "val_loss against tokens seen, one line per trial. Blue: the best trial; "
                  "orange with a cross: stopped early by the scheduler, at the budget it "
                  "reached; red: diverged or errored; dotted lines: ASHA rungs.")


def _parameters_section(exp: Experiment, summary: dict[str, Any]) -> str:
    keys = [k for k in exp.search_keys if k in exp.trials]
    if not keys:
        return '<p class="muted">No searched parameter.</p>'
    effects = summary.get("parameters") or {}
    distributions = search_distributions(exp.campaign)
    parts = [f'<p class="note">{e(w.get("message"))}</p>'
             for w in summary.get("range_warnings") or [] if isinstance(w, dict)]
    parts.append('<div class="grid">')
    for key in keys:
        chart = svg(draw_param, param_data(exp, key, summary),
                    f"param-{slug(key)}")
        dist = distributions.get(key)
        caption = f"{key}" + (f": {dist}" if dist else "")
        parts.append("<div>" + (figure(chart, f"param-{slug(key)}", caption) if chart else
                                f"<h3>{e(key)}</h3><p class='muted'>no completed trial</p>"))
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
        return f'<p class="muted">No importance: {e(reason)}.</p>'
    rows = [[k, pct(v, 1)] for k, v in values.items()]
    budget = importance.get("budget") or {}
    if budget.get("level") == "rung":
        basis = (f"the {e(budget.get('n_trials'))} trials that reached the ASHA rung at "
                 f"{e(budget.get('time_attr'))} {e(plain(budget.get('at')))}")
    else:
        basis = f"{e(importance.get('n_trials'))} completed trials"
    return (
        f"<p>{e(importance.get('evaluator'))} over {basis}.</p>"
        + table(["parameter", "share"], rows, table_id="importance-table")
        + figure(svg(draw_importance, importance_data(summary), "importance"),
                 "importance-chart", "Share of the variance.")
    )


def _asha_section(summary: dict[str, Any]) -> str:
    asha = summary.get("asha") or {}
    if not asha.get("rungs"):
        return '<p class="muted">This campaign has no ASHA scheduler.</p>'
    attr = asha.get("time_attr") or "tokens_seen"
    factor = asha.get("reduction_factor")
    intro = (f"<p>ASHA compares trials at each rung of <code>{e(attr)}</code> "
             f"(reduction factor {e('-' if factor is None else factor)}): a trial continues "
             "past a rung only if it is in the top 1/reduction factor of the trials that "
             "reached it.</p>")
    rows = [[count(r["budget"]), r["reached"], r["continued"], r["stopped_here"],
             num(r["best"]), r["best_trial"] or "-"] for r in asha["rungs"]]
    return intro + table([f"rung ({attr})", "reached", "went on", "stopped here",
                          "best val_loss there", "best trial there"], rows,
                         table_id="asha-table")


def _compute_section(summary: dict[str, Any]) -> str:
    c = summary.get("compute")
    if not c:
        return '<p class="muted">No compute figures.</p>'
    devices = ", ".join(f"{k}: {v}" for k, v in (c.get("devices") or {}).items()) or "-"
    rows = [
        ["tokens trained", count(c.get("total_tokens"))],
        ["FLOPs", sci(c.get("flops"))],
        [c.get("hours_label") or "hours", num(c.get("hours"), 3)],
        ["GPU-hours / CPU-hours", f"{num(c.get('gpu_hours'), 3)} / {num(c.get('cpu_hours'), 3)}"],
        ["trial wall time (s, summed)", num(c.get("wall_time_s"), 1)],
        ["trials per device", devices],
    ]
    note = f'<p class="muted">FLOPs: {e(c["flops_note"])}.</p>' if c.get("flops_note") else ""
    return table(["", ""], rows, table_id="compute-table") + note


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
    parts = [table(["", ""], rows, table_id="provenance-table")]
    if hardware:
        parts.append("<h3>Hardware</h3>")
        parts.append(table(["", ""], [[k, plain(v)] for k, v in hardware.items()],
                           table_id="hardware-table"))
    if packages:
        parts.append("<h3>Packages</h3>")
        parts.append(table(["package", "version"], [[k, v] for k, v in packages.items()],
                           table_id="packages-table"))
    spec = summary.get("spec") or exp.campaign.get("spec")
    if spec:
        text = json.dumps(spec, indent=2, default=str)
        parts.append(f"<details><summary>The resolved spec</summary><pre>{e(text)}</pre>"
                     "</details>")
    return "".join(parts)


def _effect_table(key: str, effect: dict[str, Any]) -> str:
    buckets = effect.get("by_value") or effect.get("by_bin") or []
    rows = []
    for b in buckets:
        label = b.get("value") if "value" in b else "[" + ", ".join(g(v) for v in b["bin"]) + "]"
        rows.append([plain(label), b.get("n"), num(b.get("mean")), ci(b.get("ci95"))])
    head = "value" if effect.get("by_value") is not None else "bin (quartiles)"
    html_table = table([head, "n", "mean", "95% CI"], rows, table_id=f"effect-{slug(key)}")
    best = effect.get("best_value")
    by_mean = effect.get("best_by_mean")
    return (html_table + f'<p class="muted">best configuration: {e(plain(best))}; '
            f"best on the mean: {e(plain(by_mean))}</p>")
