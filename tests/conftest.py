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
# canonical experiment of tests/experiments.py, a module's Ray cluster or campaign) run on the
# same worker: they get that fixture's xdist group (marked as each test is collected, before
# xdist reads the marks). A test that uses several gets the first in COSTLY's order.
COSTLY = ("killed_ladder", "grid_campaign", "asha_campaign", "shipped_smoke", "quickstart_cli")
SAME_EXPERIMENT = {"smoke_experiment": "quickstart_cli",  # built from the other one
                   "smoke_ladder": "killed_ladder"}


def costly_group(item: pytest.Item) -> str | None:
    """The group of the costliest shared fixture ``item`` uses: a session fixture above, or
    a module-scoped one (named with its module); None for none."""
    names = {SAME_EXPERIMENT.get(name, name) for name in item.fixturenames}
    for name in COSTLY:
        if name in names:
            return name
    info = getattr(item, "_fixtureinfo", None)
    for name, defs in sorted(info.name2fixturedefs.items()) if info else ():
        if defs and defs[-1].scope == "module":
            return f"{item.module.__name__}::{name}"
    return None


def pytest_itemcollected(item):
    group = costly_group(item)
    if group:
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """xdist's ``--dist loadgroup`` reads a test's group from a ``@group`` suffix of its node id,
    which its worker adds by setting ``item._nodeid``; pytest 9.2 keeps the id in ``item._id``,
    so that the suffix is lost and the groups are ignored. Add it where it is missing. The
    slow tests go first."""
    if not getattr(config.option, "loadgroup", False):  # set by xdist when it distributes
        return
    # the slow tests (Ray, CLI runs) first, so that the last minutes are not one worker's long
    # test while the other waits; the same order on every worker (xdist requires it)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        names = sorted({str(m.args[0]) for m in item.iter_markers("xdist_group")})
        if not names or "@" in item.nodeid:
            continue
        nodeid = f"{item.nodeid}@{'_'.join(names)}"
        if hasattr(item, "_id"):
            from _pytest.nodeid import coerce_node_id  # pytest >= 9.2

            item._id = coerce_node_id(nodeid)
        else:
            item._nodeid = nodeid
