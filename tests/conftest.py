"""Shared fixtures: tiny configurations that train in seconds on one CPU core."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ngpt_tune.config import Config, nest_dotted
from ngpt_tune.presets import preset

# the canonical experiments, each built once per test run: tests/experiments.py
pytest_plugins = ["experiments"]

# Subprocesses (the CLI, Ray workers) import this checkout, whatever else is installed.
REPO_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p)

TINY = nest_dotted(preset("tiny", {
    "optim.lr": 1e-2, "data.val_tokens": 1024,
    "train.steps": 20, "train.eval_every": 5, "train.device": "cpu", "train.threads": 1}))


def tiny_config(**overrides) -> Config:
    """The tiny config with dotted-key overrides: ``tiny_config(**{"model.arch": "gpt"})``."""
    return Config.from_dict(TINY).override(overrides)


@pytest.fixture
def tiny():
    return tiny_config


@pytest.fixture(scope="session")
def ray_session():
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
