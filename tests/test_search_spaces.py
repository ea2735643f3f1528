"""Every shipped campaign spec loads, resolves and counts its trials (no Ray started)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ngpt_tune.data import write_shard
from ngpt_tune.runner import build_spec
from ngpt_tune.spec import SMOKE_MAX_TRIALS, VARIANT_KEY

REPO = Path(__file__).resolve().parent.parent
SPECS = sorted((REPO / "search_spaces").glob("*.yaml"))
TRIALS = {  # full size: configurations x seeds
    "quickstart": 8, "alpha_sweep": 12 * 3, "optimization": 6 * 2 * 2, "advanced": 40,
    "architectural": 12 * 3, "gated": 32, "final": 3 * 5,
}


@pytest.fixture
def fineweb(tmp_path, monkeypatch):
    write_shard(tmp_path / "fineweb_train_000001.bin", np.arange(20000) % 50257)
    write_shard(tmp_path / "fineweb_val_000000.bin", np.arange(20000) % 50257)
    monkeypatch.setenv("NGPT_DATA_DIR", str(tmp_path))
    return tmp_path


def test_the_library_is_complete():
    assert {p.stem for p in SPECS} == set(TRIALS)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_full_size_spec_resolves(path, fineweb):
    spec = build_spec(str(path))
    assert spec.trial_count() == TRIALS[path.stem]
    assert spec.description and spec.params
    base = spec.base_config
    if path.stem != "quickstart":
        assert base.data.dir == str(fineweb)  # FineWeb10B from NGPT_DATA_DIR
        assert base.model.block_size == 128  # the seeds' context
    for name in spec.variants:
        spec.resolve({VARIANT_KEY: name})  # every arm is a valid Config


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_smoke_version_is_cpu_sized(path, monkeypatch):
    monkeypatch.delenv("NGPT_DATA_DIR", raising=False)  # --smoke needs no data
    spec = build_spec(str(path), smoke=True)
    assert spec.trial_count() <= SMOKE_MAX_TRIALS
    base = spec.base_config
    assert base.data.dir == "builtin" and base.train.device == "cpu"
    assert base.model.n_embd <= 64 and base.train.steps <= 50
    assert not {p.key for p in spec.params} & {"model.n_layer", "model.n_embd", "data.batch_size"}


def test_architectural_has_ten_hypotheses_and_two_baselines(fineweb):
    spec = build_spec(str(REPO / "search_spaces/architectural.yaml"))
    assert {"ngpt", "gpt"} <= set(spec.variants)
    hypotheses = set(spec.variants) - {"ngpt", "gpt"}
    assert len(hypotheses) >= 10
    assert spec.variants["ngpt"] == {} and spec.resolve({VARIANT_KEY: "gpt"}).model.arch == "gpt"
    for name in hypotheses:  # each one or two switches away from the plain nGPT
        assert 1 <= len(spec.variants[name]) <= 2, name
    assert spec.compare.by == VARIANT_KEY and spec.compare.baseline == "ngpt"
    assert spec.resolve({VARIANT_KEY: "gated"}).model.gated_residuals


def test_final_compares_at_equal_tokens_with_seeds(fineweb):
    spec = build_spec(str(REPO / "search_spaces/final.yaml"))
    assert spec.repeats >= 3 and spec.scheduler.name == "fifo"
    arms = {name: spec.resolve({VARIANT_KEY: name}) for name in spec.variants}
    assert len({c.train.steps * c.tokens_per_step for c in arms.values()}) == 1  # equal tokens
    production = arms["gated_production"]
    assert (production.model.alpha, production.optim.lr, production.model.proj_every) == (
        0.15, 5e-4, 7)
    assert arms["gpt"].model.arch == "gpt"


def test_gated_gate_init_is_conditional(fineweb):
    spec = build_spec(str(REPO / "search_spaces/gated.yaml"))
    (gate,) = [p for p in spec.params if p.key == "model.gate_init"]
    assert spec.is_active(gate, {})
    ungated = build_spec(str(REPO / "search_spaces/gated.yaml"),
                         overrides={"model.gated_residuals": False})
    assert not ungated.is_active(gate, {})


def test_validate_without_data_names_the_file_and_key(monkeypatch):
    monkeypatch.delenv("NGPT_DATA_DIR", raising=False)
    path = REPO / "search_spaces/gated.yaml"
    out = subprocess.run([sys.executable, "-m", "ngpt_tune", "validate", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith(f"ngpt-tune: error: {path}: key 'base.data.dir': environment "
                                 "variable NGPT_DATA_DIR is not set")
    assert "--smoke" in out.stderr and len(out.stderr.strip().splitlines()) == 1
