"""Every shipped campaign spec loads, resolves and counts its trials (no Ray started)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ngpt_tune.config import BUILTIN_COMPACT_DATA, Config, flatten_dotted
from ngpt_tune.request import build_spec
from ngpt_tune.shards import write_shard
from ngpt_tune.smoke import SMOKE_MAX_TRIALS, SMOKE_MODEL
from ngpt_tune.spec import VARIANT_KEY, CampaignSpec

REPO = Path(__file__).resolve().parent.parent
SPECS = sorted((REPO / "search_spaces").glob("*.yaml"))
FULL_SIZE = [p for p in SPECS if p.stem != "quickstart"]  # the ones that read FineWeb10B
TRIALS = {  # full size: configurations x seeds
    "quickstart": 8,
    "alpha_sweep": 12 * 3,  # 12 alpha values x 3 seeds
    "optimization": 6 * 2 * 3,  # proj_every x alpha_mode x 3 seeds
    "advanced": 40,
    "architectural": 12 * 3,  # 10 hypotheses + ngpt + gpt, x 3 seeds
    "gated": 32,
    "final": 4 * 5,  # gated, ungated production, ngpt, gpt, x 5 seeds
    "ladder": 24,  # per rung (three rungs; tests/test_ladder.py)
}


@pytest.fixture
def fineweb(tmp_path, monkeypatch):
    """A stand-in for the FineWeb10B folder: two tiny shards, found through NGPT_DATA_DIR."""
    write_shard(tmp_path / "fineweb_train_000001.bin", np.arange(20000) % 50257)
    write_shard(tmp_path / "fineweb_val_000000.bin", np.arange(20000) % 50257)
    monkeypatch.setenv("NGPT_DATA_DIR", str(tmp_path))
    return tmp_path


def load(name: str) -> CampaignSpec:
    return build_spec(str(REPO / "search_spaces" / f"{name}.yaml"))


def arms(spec: CampaignSpec) -> dict[str, Config]:
    return {name: spec.resolve({VARIANT_KEY: name}) for name in spec.variants}


def differences(a: Config, b: Config) -> set[str]:
    """The dotted config keys on which ``a`` and ``b`` differ."""
    fa, fb = flatten_dotted(a.to_dict()), flatten_dotted(b.to_dict())
    return {key for key in fa if fa[key] != fb[key]}


def test_the_library_is_complete():
    assert {p.stem for p in SPECS} == set(TRIALS)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_full_size_spec_resolves(path, fineweb):
    spec = build_spec(str(path))
    assert spec.trial_count() == TRIALS[path.stem]
    if spec.searcher.name == "grid":  # a grid runs every point, each with every seed
        grid = math.prod(len(p.args) for p in spec.params)
        assert spec.trial_count() == grid * spec.repeats
    assert spec.description and spec.params
    base = spec.base_config
    if path.stem != "quickstart":
        assert base.data.dir == str(fineweb)  # FineWeb10B from NGPT_DATA_DIR
        assert base.model.block_size == 128  # the seeds' context
        assert spec.resources.gpus_per_trial == "auto"
    for config in arms(spec).values():  # every variant is a valid Config
        assert config.data.dir == base.data.dir


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_smoke_version_is_cpu_sized(path, monkeypatch):
    monkeypatch.delenv("NGPT_DATA_DIR", raising=False)  # --smoke needs no data
    spec = build_spec(str(path), smoke=True)
    assert 1 <= spec.trial_count() <= SMOKE_MAX_TRIALS
    assert spec.resources.gpus_per_trial == 0
    for config in [spec.base_config, *arms(spec).values()]:  # the variants are shrunk too
        assert config.data.dir == BUILTIN_COMPACT_DATA and config.train.device == "cpu"
        assert config.model.n_embd == SMOKE_MODEL["n_embd"]
        assert config.model.n_layer == SMOKE_MODEL["n_layer"]
        assert config.train.steps <= 50
    assert not {p.key for p in spec.params} & {"model.n_layer", "model.n_embd", "data.batch_size"}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_smoke_version_validates_and_every_searched_value_resolves(path, monkeypatch, capsys):
    """`validate SPEC --smoke` (no Ray), and every value a searched key takes (each bound of a
    range, each choice), in every variant, gives a valid smoke-sized Config. Through Ray, only
    the specs that take different paths run (tests/test_runner.py)."""
    from ngpt_tune.__main__ import main

    monkeypatch.delenv("NGPT_DATA_DIR", raising=False)
    assert main(["validate", str(path), "--smoke"]) == 0
    spec = build_spec(str(path), smoke=True)
    assert f"trials  {spec.trial_count()} " in capsys.readouterr().out
    points = [{}] + [{p.key: v} for p in spec.params for v in p.values]
    for variant in list(spec.variants) or [None]:
        for point in points:
            config = spec.resolve({**point, VARIANT_KEY: variant} if variant else point)
            assert config.train.device == "cpu" and config.data.dir == BUILTIN_COMPACT_DATA
            assert config.model.n_embd == SMOKE_MODEL["n_embd"]


@pytest.mark.parametrize("name", ["advanced", "gated"])
def test_batch_sizes_are_compared_at_equal_tokens(name, fineweb):
    spec = load(name)
    budget = spec.asha_budgets()[1]
    configs = arms(spec)
    assert len({c.data.batch_size for c in configs.values()}) == len(configs) >= 3
    for config in configs.values():
        assert config.train.steps * config.tokens_per_step == budget  # the same data
        assert config.train.eval_every * config.tokens_per_step == (  # reports at equal tokens
            spec.base_config.train.eval_every * spec.base_config.tokens_per_step)
    assert spec.scheduler.name == "asha" and spec.scheduler.time_attr == "tokens_seen"


def test_the_sweeps_cover_the_paper_and_the_seeds(fineweb):
    (alpha,) = load("alpha_sweep").params
    assert len(alpha.args) == 12 and {0.05, 0.15, 0.28} <= set(alpha.args)
    optimization = {p.key: p for p in load("optimization").params}
    assert {1, 7, 10} <= set(optimization["model.proj_every"].args)  # paper 1, seeds 10 then 7
    assert set(optimization["model.alpha_mode"].args) == {"vector", "scalar"}
    advanced = load("advanced")
    batches = arms(advanced).values()
    assert {c.data.batch_size for c in batches} == {16, 24, 32, 48, 64, 96}
    # past the prior campaign's 64 by gradient accumulation, in pieces no larger than batch48's
    assert {c.data.micro_batch_size or c.data.batch_size for c in batches} <= {16, 24, 32, 48, 64}
    assert {c.train.steps * c.tokens_per_step for c in batches} == {2457600}  # equal tokens
    scales = {p.key: p for p in advanced.params}["model.logit_scale"].args
    assert set(scales) == {"learned", 10.0, 15.0, 20.0}
    gated_batches = arms(load("gated")).values()
    assert max(c.data.batch_size for c in gated_batches) == 128
    assert max(c.data.micro_batch_size or c.data.batch_size for c in gated_batches) == 64
    gated = {p.key: p for p in load("gated").params}
    assert gated["model.alpha"].values == (0.05, 0.4)
    assert gated["model.gate_init"].values == (-2.0, 2.0)
    assert gated["optim.lr"].dist == "loguniform"


def test_architectural_has_ten_hypotheses_and_two_baselines(fineweb):
    spec = load("architectural")
    configs = arms(spec)
    assert {"ngpt", "gpt"} <= set(configs)
    hypotheses = set(configs) - {"ngpt", "gpt"}
    assert len(hypotheses) >= 10
    ngpt = configs["ngpt"]
    assert spec.variants["ngpt"] == {} and ngpt.model.arch == "ngpt"
    assert configs["gpt"].model.arch == "gpt"
    for name in hypotheses:  # each one or two switches away from the plain nGPT
        assert 1 <= len(differences(configs[name], ngpt)) <= 2, name
    assert len({str(configs[n].to_dict()) for n in hypotheses}) == len(hypotheses)  # distinct
    assert configs["gated"].model.gated_residuals
    assert len({c.train.steps * c.tokens_per_step for c in configs.values()}) == 1
    assert spec.scheduler.name == "fifo" and spec.repeats >= 3
    assert spec.compare.by == VARIANT_KEY and spec.compare.baseline == "ngpt"


def test_final_compares_at_equal_tokens_with_seeds(fineweb):
    spec = load("final")
    assert spec.repeats >= 3 and spec.scheduler.name == "fifo" and spec.searcher.name == "grid"
    assert spec.compare.by == VARIANT_KEY and spec.compare.baseline == "ngpt"
    configs = arms(spec)
    assert {"gated_production", "ngpt", "gpt"} <= set(configs)
    assert len({c.train.steps * c.tokens_per_step for c in configs.values()}) == 1
    production = configs["gated_production"]
    m, o = production.model, production.optim
    assert m.gated_residuals and (m.alpha, m.proj_every, m.logit_scale, m.gate_init) == (
        0.15, 7, 15.0, 0.0)
    assert (o.lr, o.weight_decay) == (5e-4, 0.1)
    ungated = configs["production_ungated"]  # the gates' own effect, nothing else
    assert differences(production, ungated) == {"model.gated_residuals"}
    assert configs["ngpt"].model.arch == "ngpt" and not configs["ngpt"].model.gated_residuals
    assert configs["gpt"].model.arch == "gpt"


def test_gated_gate_init_is_conditional(fineweb):
    spec = load("gated")
    (gate,) = [p for p in spec.params if p.key == "model.gate_init"]
    assert spec.is_active(gate, {})
    ungated = build_spec(str(REPO / "search_spaces/gated.yaml"),
                         overrides={"model.gated_residuals": False})
    assert not ungated.is_active(gate, {})


def _validate(path: Path, *flags: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ngpt_tune", "validate", str(path), *flags],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("path", FULL_SIZE, ids=[p.stem for p in FULL_SIZE])
def test_validate_without_data_names_the_file_and_key(path):
    env = {k: v for k, v in os.environ.items() if k != "NGPT_DATA_DIR"}
    out = _validate(path, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith(f"ngpt-tune: error: {path}: key 'base.data.dir': "
                                 "environment variable NGPT_DATA_DIR is not set")
    assert "download-fineweb" in out.stderr and "--smoke" in out.stderr


def test_validate_with_a_missing_folder_and_with_smoke(tmp_path):
    env = {**os.environ, "NGPT_DATA_DIR": str(tmp_path / "nowhere")}
    path = REPO / "search_spaces/final.yaml"
    out = _validate(path, env=env)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert f"{path}: key 'base.data.dir': folder {tmp_path / 'nowhere'} does not exist" in (
        out.stderr)
    smoke = _validate(path, "--smoke", env=env)  # --smoke never looks at the data folder
    assert smoke.returncode == 0, smoke.stderr
    assert "trials  4" in smoke.stdout


def test_paper_arms_train_every_parameter_at_one_lr(fineweb):
    """The paper uses one learning rate for all parameters; the prior campaign 0.3 x lr for
    the scales. gated.yaml no longer searches weight decay (re-projection cancels it)."""
    final, architectural = arms(load("final")), arms(load("architectural"))
    assert final["ngpt"].optim.lr_other_scale == 1.0 == architectural["ngpt"].optim.lr_other_scale
    assert final["gated_production"].optim.lr_other_scale == 0.3  # the prior campaign's
    gated = load("gated")
    assert "optim.weight_decay" not in gated.search_keys
    assert gated.base_config.optim.weight_decay == 0.1


def test_metric_and_mode_are_checked_and_kept():
    from ngpt_tune.errors import ConfigError
    from ngpt_tune.spec import parse_spec

    raw = {"name": "m", "search": {"model.alpha": {"uniform": [0.05, 0.3]}},
           "base": {"data": {"dir": BUILTIN_COMPACT_DATA}}}
    spec = parse_spec({**raw, "metric": "train_loss", "mode": "max"})
    assert (spec.metric, spec.mode) == ("train_loss", "max")
    assert (parse_spec(raw).metric, parse_spec(raw).mode) == ("val_loss", "min")  # defaults
    with pytest.raises(ConfigError, match=re.escape("key 'metric': expected 'val_loss' | 'train_loss'")):
        parse_spec({**raw, "metric": "accuracy"})
    with pytest.raises(ConfigError, match="key 'repeats': must be an integer >= 1, got 0"):
        parse_spec({**raw, "repeats": 0})
    with pytest.raises(ConfigError, match="key 'scheduler.reduction_factor': must be > 1"):
        parse_spec({**raw, "scheduler": {"reduction_factor": 1}})


def test_asha_brackets_must_fit_between_grace_period_and_max_t():
    from ngpt_tune.errors import ConfigError
    from ngpt_tune.spec import parse_spec

    raw = {"name": "b", "search": {"model.alpha": {"uniform": [0.05, 0.3]}},
           "base": {"data": {"dir": BUILTIN_COMPACT_DATA}, "train": {"steps": 90}}}
    scheduler = {"time_attr": "step", "grace_period": 10, "reduction_factor": 3}  # 10, 30, 90
    assert parse_spec({**raw, "scheduler": {**scheduler, "brackets": 3}}).scheduler.brackets == 3
    assert parse_spec(raw).scheduler.brackets == 1
    with pytest.raises(ConfigError, match=re.escape(
            "key 'scheduler.brackets': 4 brackets, but grace_period 10 to max_t 90 holds 3 "
            "rung(s): at most 3")):
        parse_spec({**raw, "scheduler": {**scheduler, "brackets": 4}})
    with pytest.raises(ConfigError, match="key 'scheduler.brackets': must be >= 1, got 0"):
        parse_spec({**raw, "scheduler": {"brackets": 0}})


def test_scheduler_record_resolves_auto_and_gives_asha_rungs():
    from ngpt_tune.spec import parse_spec

    raw = {"name": "t", "search": {"model.alpha": {"uniform": [0.05, 0.3]}},
           "base": {"train": {"steps": 80}}}
    record = parse_spec({**raw, "scheduler": {"time_attr": "step", "brackets": 2}}
                        ).scheduler_record()
    assert record == {"name": "asha", "time_attr": "step", "grace_period": 20.0, "max_t": 80.0,
                      "reduction_factor": 2.0, "brackets": 2, "rungs": [20.0, 40.0, 80.0]}
    assert parse_spec({**raw, "scheduler": "fifo"}).scheduler_record() == {
        "name": "fifo", "time_attr": "tokens_seen"}
