"""Named configurations, litgpt-style: the tiny model that tests, benchmarks and ``--smoke``
train, written once instead of in each of them.

A preset is dotted overrides of :class:`Config`'s defaults; :func:`preset` adds the caller's
own (steps, learning rate...), :func:`preset_config` builds the typed config, and
:func:`preset_yaml` writes the sections as a spec's or a config file's YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ngpt_tune.config import (
    BUILTIN_COMPACT_DATA,
    BUILTIN_DATA,
    COMPACT_VOCAB,
    Config,
    nest_dotted,
)
from ngpt_tune.errors import ConfigError

# the built-in corpus in its compact vocabulary: GPT-2's 50,257 logits would be nine tenths of
# a tiny model's step
_TINY_MODEL = {"model.n_layer": 1, "model.n_embd": 32, "model.n_head": 2, "model.block_size": 32,
               "model.vocab_size": COMPACT_VOCAB}

PRESETS: dict[str, dict[str, Any]] = {
    # one layer on the built-in corpus: a step takes milliseconds on one CPU core (tests, benchmarks)
    "tiny": {**_TINY_MODEL, "data.dir": BUILTIN_COMPACT_DATA, "data.batch_size": 4},
    # --smoke: forced on every trial of a shrunk campaign (ngpt_tune.smoke); two layers
    "smoke": {"data.dir": BUILTIN_COMPACT_DATA, "data.batch_size": 4, "data.micro_batch_size": 0,
              "data.val_tokens": 1024,
              "train.steps": 24, "train.eval_every": 6, "train.device": "cpu",
              "train.compile": "off", **_TINY_MODEL, "model.n_layer": 2},
}


def gpt2_vocabulary(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """A preset on the built-in corpus in GPT-2's vocabulary (``data.dir: builtin``, the
    model's default vocabulary) instead of the compact one: the problem the benchmarks'
    published figures were measured on."""
    out = {k: v for k, v in dotted.items() if k != "model.vocab_size"}
    return {**out, "data.dir": BUILTIN_DATA}


def preset(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The preset ``name`` as dotted overrides, then ``overrides`` (dotted keys) on top."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return {**PRESETS[name], **(overrides or {})}


def preset_config(name: str, overrides: Mapping[str, Any] | None = None) -> Config:
    """The typed config of :func:`preset` (validated)."""
    return Config.from_dict(preset(name, overrides))


def preset_yaml(name: str, overrides: Mapping[str, Any] | None = None, *,
                under: str | None = None) -> str:
    """:func:`preset` as YAML, one line per section (``model: {n_layer: 1, ...}``), nested
    ``under`` a key when given (``base`` in a campaign spec)."""
    nested = nest_dotted(preset(name, overrides))
    return yaml.safe_dump({under: nested} if under else nested, default_flow_style=None,
                          sort_keys=False, width=120)
