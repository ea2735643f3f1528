"""Shared fixtures: tiny configurations that train in seconds on one CPU core."""

from __future__ import annotations

import pytest

from ngpt_tune.config import Config

TINY = {
    "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 32},
    "optim": {"lr": 1e-2},
    "data": {"dir": "builtin", "batch_size": 4, "val_tokens": 1024},
    "train": {"steps": 20, "eval_every": 5, "device": "cpu", "threads": 1},
}


def tiny_config(**overrides) -> Config:
    """The tiny config with dotted-key overrides: ``tiny_config(**{"model.arch": "gpt"})``."""
    return Config.from_dict(TINY).override(overrides)


@pytest.fixture
def tiny():
    return tiny_config
