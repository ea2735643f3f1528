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


def smoke(name: str, tmp_path: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--smoke", *args],
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
    methods = ["ngpt-tune", "ray-optuna", "random", "optuna", "grid", "warm"]
    record = smoke("search_efficiency", tmp_path, "--methods", ",".join(methods))
    table = record["table"]
    assert set(table) == set(methods)
    # warm-started from the (only) seed's ngpt-tune campaign: its trials entered the study
    (warm,) = record["campaigns"]["warm"]
    assert warm["warm_trials"] == record["campaigns"]["ngpt-tune"][0]["trials"]
    assert record["reference_points"] == 8 and record["targets"]["1%"] > record["reference_best"]
    for method, runs in record["campaigns"].items():
        assert len(runs) == 1 and runs[0]["tokens_total"] > 0, method
        assert 1 <= runs[0]["trials"] <= 2, method
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
    # the same seeds: McNemar's exact test on the discordant pairs (seed 1: only ngpt-tune)
    assert table["other"]["test_1%"] == "mcnemar" and table["other"]["p_1%"] == 1.0
    assert table["never"]["p_1%"] is None  # one campaign: no test
    low, high = table["other"]["ratio_ci_1%"]
    assert low <= 1800 / 500 <= high
    unpaired = bench.summarise({"ngpt-tune": campaigns["ngpt-tune"],
                                "other": [dict(r, seed=r["seed"] + 10)
                                          for r in campaigns["other"]]}, {"1%": 6.9})
    assert unpaired["other"]["test_1%"] == "fisher" and unpaired["other"]["p_1%"] == 1.0
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


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the run without CUDA")
def test_gpu_check_stops_in_one_line_without_cuda(tmp_path):
    out = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert line.startswith("gpu_check: CUDA is not available (torch ")
    assert not (tmp_path / "out").exists()  # nothing was run


def _gpu_check_folder(out: Path, *, oom_status: str) -> None:
    """What gpu_check.sh leaves behind, written by hand."""
    import pandas as pd

    steps = ["tests", "throughput_eager", "throughput_compiled", "compile_reuse",
             "campaign_packing", "campaign_oom"]
    (out / "steps.tsv").write_text("".join(f"{s}\t0\t30\n" for s in steps))
    row = {"variant": "ngpt", "step_ms": 50.0, "tokens_per_s": 1.3e6, "mfu": 0.41,
           "peak_mem_gib": 12.5}
    record = {"benchmark": "throughput", "device": "NVIDIA H100 80GB HBM3", "torch": "2.13.0",
              "sizes": [{"size": "11x768", "batch": "64x1024", "rows": [row]}]}
    for mode in ("eager", "compiled"):
        (out / f"throughput_{mode}.log").write_text("table\n" + json.dumps(record) + "\n")
    (out / "compile_reuse.log").write_text(json.dumps(
        {"compiled": [{"overhead_s": 40.0}, {"overhead_s": 0.5}], "second_over_first": 0.0125}))
    at = pd.Timestamp("2026-12-06 12:00", tz="UTC")
    (out / "packing").mkdir()
    pd.DataFrame({"status": ["completed"] * 4, "gpus": [0.5] * 4,
                  "tokens_per_s": [9e5, 9e5, 8e5, 8e5],
                  "started_at": [at, at, at + pd.Timedelta(10, "s"), at + pd.Timedelta(10, "s")],
                  "ended_at": [at + pd.Timedelta(9, "s")] * 2 + [at + pd.Timedelta(19, "s")] * 2,
                  }).to_parquet(out / "packing" / "trials.parquet")
    (out / "oom").mkdir()
    pd.DataFrame({"variant": ["fits", "too_big"], "status": ["completed", oom_status],
                  "failures": [0, 0],  # as trials.parquet types them: strings, NA for none
                  "error": pd.array([None, "OutOfMemoryError: CUDA out of memory."], "string"),
                  }).to_parquet(out / "oom" / "trials.parquet")


@pytest.mark.parametrize("oom_status", ["infeasible", "errored"])
def test_gpu_check_report(tmp_path, oom_status):
    _gpu_check_folder(tmp_path, oom_status=oom_status)
    out = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check_report.py"),
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    text = out.stdout
    assert text.startswith("# GPU check: NVIDIA H100 80GB HBM3")
    assert "| on | 64x1024 | ngpt | 50.0 | 1,300,000 | 41.0% | 12.5 |" in text
    assert "second trial's compile overhead: 1.2% of the first's (40.0 s)" in text
    assert "at most 2 at once; GPU per trial [0.5]" in text
    assert "PASS: two trials shared the GPU" in text
    verdict = "PASS" if oom_status == "infeasible" else "FAIL"
    assert f"{verdict}: the CUDA out-of-memory trial is infeasible, not retried" in text
    assert out.returncode == (0 if oom_status == "infeasible" else 1)


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
