"""``report.html``: one self-contained page, checked as text and in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from analysis_fixtures import make_alpha_lr, make_compare

from analysis import load_experiment, summarize, write_outputs
from analysis.html_report import REPORT_FILE, render_report, write_report
from analysis.ranges import is_log, search_distributions

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
CHROMEDRIVER = shutil.which("chromedriver")
NO_BROWSER = (
    "no headless browser here: install Chromium and its driver "
    "(Debian: apt-get install chromium chromium-driver; .ci/run does) and selenium "
    "(the dev extra)"
)


def _has_selenium() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return True


needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None or not _has_selenium(), reason=NO_BROWSER)


@pytest.fixture(scope="module")
def alpha_lr(tmp_path_factory) -> Path:
    root = make_alpha_lr(tmp_path_factory.mktemp("report") / "alpha_lr")
    write_outputs(root)
    return root


# --- the page as text -----------------------------------------------------------------------


def test_analyze_writes_a_self_contained_page(alpha_lr):
    summary = json.loads((alpha_lr / "summary.json").read_text())
    page = (alpha_lr / REPORT_FILE).read_text()
    assert REPORT_FILE in summary["outputs"]
    # nothing to fetch: no script, no stylesheet link, no image or frame source, no @import,
    # no url() but the SVGs' references to their own clip paths (url(#id))
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|@import|url\((?!#)", page)
    assert page.count("<svg") >= 4  # CI chart, learning curves, one per parameter
    best = summary["best"]
    assert best["trial_id"] == "a0"
    assert f'<b id="best-trial">{best["trial_id"]}</b>' in page
    assert f'<b id="best-value">{best["value"]:.4f}</b>' in page  # 6.6000
    for table in ("ranking-table", "config-table", "stopped-table", "failed-table",
                  "compute-table", "provenance-table"):
        assert f'id="{table}"' in page
    assert "RuntimeError: CUDA out of memory" in page  # the errored trial's message
    assert "abc123" in page  # the campaign's git commit


def test_plots_false_writes_no_page(tmp_path):
    root = make_alpha_lr(tmp_path / "alpha_lr")
    write_outputs(root, plots=False)
    assert not (root / REPORT_FILE).exists()


def test_loguniform_parameters_get_a_log_axis(tmp_path):
    root = make_alpha_lr(tmp_path / "alpha_lr")
    campaign = json.loads((root / "campaign.json").read_text())
    campaign["spec"] = {"params": {"model.alpha": "uniform(0.05, 0.5)",
                                   "optim.lr": "loguniform(0.0001, 0.01)"}}
    (root / "campaign.json").write_text(json.dumps(campaign))
    exp = load_experiment(root)
    page = render_report(exp, summarize(exp))
    assert "optim.lr (log axis)" in page
    assert "model.alpha (log axis)" not in page and "model.alpha</text>" in page
    assert search_distributions(exp.campaign)["optim.lr"] == "loguniform(0.0001, 0.01)"
    assert is_log("loguniform(0.0001, 0.01)") and not is_log("uniform(0.05, 0.5)")


def test_confirm_section_is_rendered_when_present(alpha_lr):
    """The confirmation stage's section, as analysis.confirm computes it, with its verdicts."""
    import pandas as pd

    from analysis.confirm_stats import confirm_stats

    exp = load_experiment(alpha_lr)
    summary = summarize(exp)
    assert 'id="confirm"' not in render_report(exp, summary)
    runs = pd.DataFrame({
        "arm": ["a"] * 3 + ["b"] * 3 + ["plain"] * 3,
        "role": ["candidate"] * 6 + ["baseline"] * 3,
        "seed": [10, 11, 12] * 3,
        "value": [6.60, 6.62, 6.61, 6.75, 6.80, 6.70, 7.00, 7.02, 7.01],
        "search_value": [6.55] * 3 + [6.50] * 3 + [None] * 3,
        "search_rank": [2] * 3 + [1] * 3 + [None] * 3,
    })
    summary["confirm"] = confirm_stats(runs, rounds=200)
    summary["confirm"]["winner"] = {"arm": "a", "n": 3, "mean": 6.61, "ci95": [6.585, 6.635],
                                    "command": "python -m ngpt_tune train best_config.yaml"}
    page = render_report(exp, summary)
    assert 'id="confirm"' in page and 'id="confirm-table"' in page
    assert 'id="confirm-comparisons"' in page and 'id="confirm-chart"' in page
    verdicts = {c["verdict"] for c in summary["confirm"]["comparisons"]}
    assert "better" in verdicts  # a and b both beat the baseline by far more than the noise
    for verdict in verdicts:
        assert f">{verdict}</span>" in page or f"<td>{verdict}</td>" in page
    assert "python -m ngpt_tune train best_config.yaml" in page
    optimism = summary["confirm"]["winners_curse"]["mean_optimism"]
    assert f"{optimism:.4f}" in page
    # a section of another shape is still shown, as it comes
    summary["confirm"] = {"note": "stage not run yet", "seeds": [1, 2]}
    assert "stage not run yet" in render_report(exp, summary)


def test_comparison_with_a_baseline_is_in_the_page(tmp_path):
    exp = load_experiment(make_compare(tmp_path / "compare"))
    summary = summarize(exp)
    page = render_report(exp, summary)
    assert 'id="comparison-table"' in page
    for arm in summary["comparison"]["arms"]:
        if not arm.get("baseline"):
            assert arm["verdict"] in page


def test_a_page_with_no_completed_trial_is_still_written(tmp_path):
    root = make_alpha_lr(tmp_path / "alpha_lr")
    for folder in root.glob("train_*"):
        if folder.name not in ("train_0_c", "train_0_d"):
            shutil.rmtree(folder)
    exp = load_experiment(root)
    path = write_report(exp, summarize(exp), root / REPORT_FILE)
    page = path.read_text()
    assert "No completed trial" in page and 'id="stopped-table"' in page


# --- in a real browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1200,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def _errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _check_in_browser(driver, experiment: Path) -> None:
    from selenium.webdriver.common.by import By

    summary = json.loads((experiment / "summary.json").read_text())
    driver.get((experiment / REPORT_FILE).resolve().as_uri())
    assert _errors(driver) == []
    # nothing was fetched: every chart and style is in the page itself
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    best = summary["best"]
    assert driver.find_element(By.ID, "best-trial").text == best["trial_id"]
    assert driver.find_element(By.ID, "best-value").text == f"{best['value']:.4f}"
    ranking = driver.find_element(By.ID, "ranking-table")
    rows = ranking.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == len(summary["ranking"])
    first = rows[0].find_elements(By.TAG_NAME, "td")
    assert first[1].text == summary["ranking"][0]["trial_id"]
    assert first[4].text == f"{summary['ranking'][0]['final_val_loss']:.4f}"
    tables = {t.get_attribute("id") for t in driver.find_elements(By.TAG_NAME, "table")}
    expected = {"ranking-table", "config-table", "compute-table", "provenance-table"}
    if summary["stopped_early"]:
        expected.add("stopped-table")
    if summary["failed"]:
        expected.add("failed-table")
    assert expected <= tables
    charts = driver.find_elements(By.CSS_SELECTOR, "figure svg")
    assert charts and all(c.size["width"] > 100 and c.size["height"] > 100 for c in charts)


@needs_browser
def test_page_loads_in_chromium_without_console_errors(browser, alpha_lr):
    _check_in_browser(browser, alpha_lr)
    # the console check is not vacuous: a page that throws is caught
    browser.get("data:text/html,<script>throw new Error('boom')</script>")
    assert any("boom" in e["message"] for e in _errors(browser))


@pytest.mark.slow
@needs_browser
def test_smoke_experiment_page_in_chromium(browser, smoke_experiment):
    """The page of a real quickstart --smoke run (ASHA rungs, log axes, provenance)."""
    from selenium.webdriver.common.by import By

    assert (smoke_experiment / REPORT_FILE).is_file()  # written by the run itself
    _check_in_browser(browser, smoke_experiment)
    asha = browser.find_element(By.ID, "asha-table")
    assert len(asha.find_elements(By.CSS_SELECTOR, "tbody tr")) == 3  # steps 6, 12, 24
    page = browser.page_source
    assert "model.alpha (log axis)" in page and "optim.lr (log axis)" in page
