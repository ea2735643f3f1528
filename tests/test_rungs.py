"""analysis.rungs: ASHA's rung table, computed once into summary.json's ``asha`` section."""

from __future__ import annotations

import json

import pytest
from analysis_fixtures import make_alpha_lr

from analysis import load_experiment, summarize
from analysis.html_report import render_report
from analysis.rungs import rung_table, rungs_below_max_t


def test_rung_table_counts_the_trials_at_each_rung(tmp_path):
    """alpha_lr reports every 100 steps to 400: c0 stops at 200, d0 diverges at 200."""
    exp = load_experiment(make_alpha_lr(tmp_path / "alpha_lr"))
    rows = rung_table(exp, [100.0, 200.0, 400.0], "step")
    assert [r["reached"] for r in rows] == [9, 9, 7]
    assert [r["stopped_here"] for r in rows] == [0, 1, 0]  # c0, stopped at step 200
    assert rows[0]["continued"] == 9 and rows[1]["continued"] == 7
    assert rows[2]["continued"] is None  # the top rung: nothing to go on to
    assert rows[2]["best"] == pytest.approx(6.55) and rows[2]["best_trial"] == "b0"
    assert rows[1]["best"] == pytest.approx(6.50)  # c0 at its stop, below every finisher


def test_the_summary_holds_the_rung_table_and_the_page_shows_it(tmp_path):
    root = make_alpha_lr(tmp_path / "alpha_lr")
    campaign = json.loads((root / "campaign.json").read_text())
    assert summarize(load_experiment(root))["asha"] is None  # no ASHA: no section
    campaign.update(time_attr="step", asha_budgets=[100, 400],
                    spec={"scheduler": {"reduction_factor": 2}})
    (root / "campaign.json").write_text(json.dumps(campaign))
    exp = load_experiment(root)
    summary = summarize(exp)
    asha = summary["asha"]
    assert asha["time_attr"] == "step" and asha["reduction_factor"] == 2
    assert [r["budget"] for r in asha["rungs"]] == [100, 200, 400]  # Ray counts max_t
    assert [r["reached"] for r in asha["rungs"]] == [9, 9, 7]
    # importance falls back to rungs where ASHA stopped trials: max_t is just "finished"
    assert rungs_below_max_t(exp.campaign) == [100, 200]
    page = render_report(exp, summary)
    table = page[page.index('id="asha-table"'):]
    assert table[:table.index("</table>")].count("<tr>") == 3 + 1  # the rows and the header
