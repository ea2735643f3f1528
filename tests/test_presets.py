"""ngpt_tune.presets: each named configuration builds, and reads back from its YAML."""

from __future__ import annotations

import pytest
import yaml

from ngpt_tune.config import Config
from ngpt_tune.errors import ConfigError
from ngpt_tune.presets import PRESETS, preset, preset_config, preset_yaml


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_is_a_valid_config_and_its_yaml_reads_back(name):
    config = preset_config(name)
    assert config.data.dir == "builtin-compact" and config.model.vocab_size == 4096
    assert config.model.n_embd == 32
    assert Config.from_dict(yaml.safe_load(preset_yaml(name))) == config
    assert Config.from_dict(yaml.safe_load(preset_yaml(name, under="base"))["base"]) == config


def test_overrides_go_on_top_and_an_unknown_name_is_one_line():
    assert preset("tiny", {"model.n_layer": 3})["model.n_layer"] == 3
    assert preset_config("tiny", {"train.steps": 7}).train.steps == 7
    assert PRESETS["tiny"]["model.n_layer"] == 1  # the table is not changed
    with pytest.raises(ConfigError, match="^unknown preset 'tiyn'; known: tiny, smoke$"):
        preset("tiyn")
