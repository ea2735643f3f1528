"""The typed config: built in one place, every bad key rejected by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ngpt_tune.config import Config
from ngpt_tune.errors import ConfigError


def test_defaults_and_round_trip():
    config = Config.from_dict({"model": {"alpha": 0.28, "logit_scale": 15}, "optim.lr": "5e-4"})
    assert config.model.alpha == 0.28
    assert config.model.logit_scale == 15.0
    assert config.optim.lr == 5e-4  # YAML 1.1 reads 5e-4 as a string: accepted as a float
    assert Config.from_dict(dataclasses.asdict(config)) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model.alpha = 0.1  # type: ignore[misc]


def test_override_with_dotted_keys():
    config = Config().override({"model.gated_residuals": True, "train.steps": 10})
    assert config.model.gated_residuals and config.train.steps == 10
    assert Config().model.gated_residuals is False


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ({"model": {"n_embd": 100, "n_head": 6}}, "model.n_embd", "divisible"),
        ({"optim": {"lr": 0}}, "optim.lr", "> 0"),
        ({"optim": {"lr": -1e-3}}, "optim.lr", "> 0"),
        ({"model": {"alpha": 0.0}}, "model.alpha", "(0, 1]"),
        ({"model": {"alpha": 1.5}}, "model.alpha", "(0, 1]"),
        ({"model": {"alhpa": 0.2}}, "model.alhpa", "did you mean 'alpha'"),
        ({"modle": {}}, "modle", "did you mean 'model'"),
        ({"model": {"gated_residuals": "yes"}}, "model.gated_residuals", "expected bool"),
        ({"model": {"n_layer": 2.5}}, "model.n_layer", "expected int"),
        ({"model": {"alpha_mode": "matrix"}}, "model.alpha_mode", "'vector' | 'scalar'"),
        ({"model": {"logit_scale": "big"}}, "model.logit_scale", "'learned'"),
        ({"model": {"arch": "gpt", "gated_residuals": True}}, "model.gated_residuals", "nGPT"),
        ({"data": {"dir": "/no/such/folder"}}, "data.dir", "download-fineweb"),
        ({"optim": {"betas": [0.9]}}, "optim.betas", "list of 2"),
        ({"train": {"steps": 0}}, "train.steps", "> 0"),
    ],
)
def test_bad_values_name_their_key(raw, key, words):
    with pytest.raises(ConfigError) as info:
        Config.from_dict(raw, source="run.yaml")
    message = str(info.value)
    assert message.startswith(f"run.yaml: key '{key}'")
    assert words in message
    assert "\n" not in message


def test_data_dir_expands_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARDS", str(tmp_path))
    assert Config.from_dict({"data": {"dir": "${SHARDS}"}}).data.dir == str(tmp_path)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {n_layer: 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML at line"):
        Config.from_yaml(bad)
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        Config.from_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("text", "expected"), [
    ("train: {compile: on}", "on"), ("train: {compile: off}", "off"),
    ("train: {compile: true}", "on"), ("train: {compile: reduce-overhead}", "reduce-overhead"),
])
def test_yaml_booleans_for_compile(text, expected):
    """YAML 1.1 reads on/off as booleans, in a spec and in `--set train.compile=on`."""
    import yaml

    assert Config.from_dict(yaml.safe_load(text)).train.compile == expected
    assert Config().override({"train.compile": yaml.safe_load(expected)}).train.compile == \
        expected
    with pytest.raises(ConfigError, match="train.dtype"):
        Config.from_dict({"train": {"dtype": True}})  # no on/off there: still an error


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    config = Config.from_yaml(path)
    assert Config.from_dict(config.to_dict()) == config
