"""analysis.chart_data / charts: each chart computed once and drawn once, saved as PNG in
``plots/`` and as inline SVG in ``report.html``."""

from __future__ import annotations

import json

from analysis_fixtures import make_alpha_lr

from analysis import write_outputs
from analysis.html_report import REPORT_FILE


def test_the_png_and_the_page_show_the_same_figures(tmp_path):
    root = make_alpha_lr(tmp_path / "alpha_lr")
    summary = json.loads(write_outputs(root).read_text())
    page = (root / REPORT_FILE).read_text()
    for png, text in (("learning_curves.png", "alpha_lr: learning curves"),
                      ("configurations.png", "final val_loss (mean, 95% CI, seeds)"),
                      ("metric_vs_optim.lr.png", "alpha_lr: val_loss by optim.lr")):
        assert f"plots/{png}" in summary["outputs"]
        assert (root / "plots" / png).read_bytes()[:4] == b"\x89PNG"
        assert f"{text}</text>" in page  # the same drawing, its text kept as SVG text
    # alpha_lr's few completed trials: too few for importance (analysis.importance.MIN_TRIALS), and the
    # page says so instead of drawing shares that noise alone would give
    assert "plots/importance.png" not in summary["outputs"]
    assert "No importance: needs &gt;= 20 completed trials" in page
