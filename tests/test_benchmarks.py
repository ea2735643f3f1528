"""The benchmarks run (``--smoke``) and end with one JSON record of what they measured."""

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
    table = record["table"]
    assert set(table) == {"ngpt-tune", "ray-optuna", "random", "optuna", "grid"}
    assert record["reference_points"] == 8 and record["targets"]["1%"] > record["reference_best"]
    for method, runs in record["campaigns"].items():
        assert len(runs) == 1 and runs[0]["tokens_total"] > 0, method
        assert 1 <= runs[0]["trials"] <= 3, method
    assert table["ngpt-tune"]["ratio_1%"] == 1.0


@pytest.mark.slow
def test_compile_reuse(tmp_path):
    record = smoke("compile_reuse", tmp_path)
    first, second = record["compiled"]
    assert first["overhead_s"] > 0 and second["alpha"] != first["alpha"]
    assert record["second_over_first"] == pytest.approx(
        second["overhead_s"] / first["overhead_s"])

