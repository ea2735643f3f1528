"""`analyze` on a real smoke experiment (quickstart --smoke through Ray Tune)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from analysis import load_experiment

pytestmark = pytest.mark.slow


def test_analyze_writes_every_output(smoke_experiment, tmp_path):
    experiment = tmp_path / "copied_elsewhere"
    shutil.copytree(smoke_experiment, experiment)
    for name in ("summary.json", "trials.parquet", "history.parquet", "best_config.yaml"):
        (experiment / name).unlink()
    out = subprocess.run([sys.executable, "-m", "ngpt_tune", "analyze", str(experiment)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert out.returncode == 0, out.stderr
    assert "campaign quickstart: 4 trials" in out.stdout
    summary = json.loads((experiment / "summary.json").read_text())
    trials = pd.read_parquet(experiment / "trials.parquet")
    history = pd.read_parquet(experiment / "history.parquet")
    assert len(trials) == 4 and set(trials["status"]) <= {"completed", "stopped"}
    assert summary["counts"]["completed"] == (trials["status"] == "completed").sum()
    ranked = [r["final_val_loss"] for r in summary["ranking"]]
    assert ranked == sorted(ranked) and len(ranked) == summary["counts"]["completed"]
    assert len(history) == sum(
        len((t / "result.json").read_text().splitlines())
        for t in experiment.glob("trial_*"))
    assert {"model.alpha", "optim.lr", "model.n_embd"} <= set(trials.columns)
    assert list((experiment / "plots").glob("*.png"))
    assert summary["compute"]["total_tokens"] == int(trials["tokens_seen"].sum())
    # the same numbers as the original folder
    original = load_experiment(smoke_experiment).trials.set_index("trial_id")
    copy = load_experiment(experiment).trials.set_index("trial_id")
    pd.testing.assert_series_equal(original["final_val_loss"], copy["final_val_loss"])


def test_real_campaign_record_gives_the_searched_distributions(smoke_experiment):
    """campaign.json as the runner writes it: the loguniform axes are read back, analysed as
    continuous on a log scale, and importance says which trials (and budget) it used."""
    from analysis import summarize
    from analysis.ranges import edge_position

    summary = summarize(load_experiment(smoke_experiment))
    assert summary["search_space"] == {
        "model.alpha": {"dist": "loguniform", "args": [0.005, 0.5]},
        "optim.lr": {"dist": "loguniform", "args": [1e-2, 1.0]},
    }
    for key in ("model.alpha", "optim.lr"):
        effect = summary["parameters"].get(key)
        if effect is not None:
            assert (effect["kind"], effect["scale"]) == ("continuous", "log")
    best = summary["best"]["params"]
    low, high = summary["search_space"]["optim.lr"]["args"]
    position = edge_position(best["optim.lr"], low, high, log=True)
    flagged = {w["key"] for w in summary["range_warnings"]}
    assert ("optim.lr" in flagged) == (position < 0.1 or position > 0.9)
    assert summary["importance"]["budget"]["level"] in ("completed", "rung")
