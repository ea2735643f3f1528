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


# ---- two workers (pytest-xdist, `-n 2` in pyproject.toml) without building anything twice ----
# Each worker builds the session fixtures it needs, so tests that share a costly fixture (a
# canonical experiment of tests/experiments.py, a module's Ray cluster or campaign) must run on
# the same worker: they get one xdist group, the union of every costly fixture they share.
COSTLY = {"quickstart_cli", "smoke_experiment", "asha_campaign", "grid_campaign",
          "shipped_smoke", "smoke_ladder"}
SAME_EXPERIMENT = {"smoke_experiment": "quickstart_cli"}  # built from the other one


def _costly_fixtures(item: pytest.Item) -> set[str]:
    """The session fixtures above and every module-scoped fixture ``item`` uses (by name,
    qualified by module)."""
    out = {SAME_EXPERIMENT.get(name, name) for name in item.fixturenames if name in COSTLY}
    info = getattr(item, "_fixtureinfo", None)
    for name, defs in (info.name2fixturedefs.items() if info else ()):
        if defs and defs[-1].scope == "module":
            out.add(f"{item.module.__name__}::{name}")
    return out


def pytest_collection_modifyitems(config, items):
    if not getattr(config.option, "dist", "no") or config.option.dist == "no":
        return
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    used = {item.nodeid: _costly_fixtures(item) for item in items}
    for keys in used.values():
        first, *rest = sorted(keys) or [None]
        for key in rest:
            parent[find(key)] = find(first)
    for item in items:
        if used[item.nodeid]:
            item.add_marker(pytest.mark.xdist_group(find(sorted(used[item.nodeid])[0])))
