"""The three benchmarks run (``--smoke``) and end with one JSON record of what they measured."""

from __future__ import annotations

import json
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
    assert record["grid_points"] == 4 and record["grid_tokens"] > 0
    (campaign,) = record["optuna_asha"]
    assert campaign["tokens_total"] > 0
