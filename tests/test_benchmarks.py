"""The benchmarks run (``--smoke``) and end with one JSON record of what they measured."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def smoke(name: str, tmp_path: Path) -> dict:
    out = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--smoke"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["benchmark"] == name and record["date"]
    return record


def test_throughput(tmp_path):
    (size,) = smoke("throughput", tmp_path)["sizes"]
    variants = {row["variant"]: row for row in size["rows"]}
    assert set(variants) == {"gpt", "ngpt", "ngpt_k7", "ngpt_noproj", "ngpt_s15"}
    assert all(row["tokens_per_s"] > 0 for row in variants.values())
    assert size["ngpt_over_gpt"] == pytest.approx(
        variants["ngpt"]["step_ms"] / variants["gpt"]["step_ms"])


@pytest.mark.slow
def test_tune_overhead(tmp_path):
    record = smoke("tune_overhead", tmp_path)
    assert record["sequential_tune_s"] > 0 and record["concurrency_direct_s"] > 0
    assert -1 < record["concurrency_overhead"] < 1


@pytest.mark.slow
def test_search_efficiency(tmp_path):
    record = smoke("search_efficiency", tmp_path)
    table = record["table"]
    assert set(table) == {"ngpt-tune", "ray-optuna", "random", "optuna", "grid"}
    assert record["reference_points"] == 8 and record["targets"]["1%"] > record["reference_best"]
    for method, runs in record["campaigns"].items():
        assert len(runs) == 1 and runs[0]["tokens_total"] > 0, method
        assert 1 <= runs[0]["trials"] <= 3, method
    shipped, runs = table["ngpt-tune"], record["campaigns"]["ngpt-tune"]
    charged = runs[0]["tokens_to"]["1%"] or runs[0]["tokens_total"]
    assert shipped["ert_1%"] == (charged if shipped["reached_1%"] else float("inf"))


def _search_scores():
    """benchmarks/search_scores.py (search_efficiency's table), loaded from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("search_scores",
                                                  BENCHMARKS / "search_scores.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_search_efficiency_expected_running_time_charges_the_campaigns_that_missed():
    bench = _search_scores()

    def run(seed, to, total):
        return {"seed": seed, "tokens_to": {"1%": to}, "tokens_total": total, "best": 7.0,
                "trials": 18}

    campaigns = {"ngpt-tune": [run(0, 100.0, 500.0), run(1, 300.0, 400.0), run(2, None, 600.0)],
                 "other": [run(0, 200.0, 300.0), run(1, None, 700.0), run(2, None, 900.0)],
                 "never": [run(0, None, 50.0)]}
    table = bench.summarise(campaigns, {"1%": 6.9})
    # COCO's ERT: every token of every campaign until it reached the target or ended / successes
    assert table["ngpt-tune"]["ert_1%"] == (100 + 300 + 600) / 2
    assert table["other"]["ert_1%"] == (200 + 700 + 900) / 1
    assert table["other"]["ratio_1%"] == 1800 / 500
    assert table["never"]["ert_1%"] == float("inf") and table["never"]["ratio_1%"] == float("inf")
    assert table["other"]["fisher_p_1%"] == 1.0  # 1/3 against 2/3 reached: no evidence
    assert table["ngpt-tune"]["tokens_to_1%"][0] == (100 + 300 + 600) / 3


@pytest.mark.slow
def test_compile_reuse(tmp_path):
    record = smoke("compile_reuse", tmp_path)
    first, second = record["compiled"]
    assert first["overhead_s"] > 0 and second["alpha"] != first["alpha"]
    assert record["second_over_first"] == pytest.approx(
        second["overhead_s"] / first["overhead_s"])



@pytest.mark.slow
def test_transfer(tmp_path):
    record = smoke("transfer", tmp_path)
    rows = record["rows"]
    assert {(r["seed"], r["param"]) for r in rows} == {(0, "model.alpha"), (0, "optim.lr")}
    for r in rows:
        low, high = r["predicted_ci"]
        assert low <= r["predicted"] <= high
        assert r["ratio"] == pytest.approx(r["predicted"] / r["measured"])
        assert r["inside"] == (low <= r["measured"] <= high)
        assert len(r["rung_optima"]) == len(record["widths"]) == 2
    assert record["table"]["optim.lr"]["inside"] == sum(r["inside"] for r in rows
                                                      if r["param"] == "optim.lr")


def test_quickstart_ranges(tmp_path):
    record = smoke("quickstart_ranges", tmp_path)
    assert [(r["lr"], r["alpha"]) for r in record["runs"]] == [(0.08, 0.05), (0.16, 0.05)]
    assert record["best"] in record["runs"] and math.isfinite(record["best"]["val_loss"])


def test_rung_fidelity(tmp_path):
    record = smoke("rung_fidelity", tmp_path)
    assert record["rungs"] == [1, 2]  # the shipped ASHA's rungs before the end of 4 steps
    rows = {(r["schedule"], r["metric"], r["rung_step"]): r for r in record["rows"]}
    assert set(rows) == {(s, m, k) for s in ("cosine", "wsd") for m in ("raw", "cooled")
                         for k in (1, 2)}
    for row in rows.values():
        assert -1 <= row["spearman"] <= 1 and 0 <= row["top3_kept"] <= 3 and row["regret"] >= 0
        assert 1 <= row["winner_rank"] <= 3
    # every run branched at both rungs, one step each (at least one; 0.5 x 2), 128 tokens a step
    assert record["branch_tokens"] == 6 * 2 * 128 and record["tokens"] == 6 * 4 * 128
    for run in record["runs"]:
        assert run["raw"] != run["cooled"]
