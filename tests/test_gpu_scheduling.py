"""One trial per GPU, or several per GPU: Ray's GPU scheduling, proven on a CPU machine.

Ray is told the machine has 2 GPUs (``ray.init(num_gpus=2)``); the trials still train on the
CPU (``train.device: cpu``), but Ray assigns each one GPU ids and sets CUDA_VISIBLE_DEVICES as
it would on a GPU node. Concurrency is read from the trials' own wall-clock intervals
(provenance's start, the last report's timestamp), not from timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from campaign_helpers import results, trial_dirs

from ngpt_tune.errors import ConfigError
from ngpt_tune.presets import preset_yaml
from ngpt_tune.spec import parse_spec

SPEC = """
name: {name}
search:
  train.seed: {{grid: [0, 1, 2, 3]}}
searcher: grid
scheduler: fifo
num_samples: 1
resources: {{cpus_per_trial: 1, gpus_per_trial: {gpus}}}
""" + preset_yaml("tiny", {"data.val_tokens": 256, "train.steps": 40, "train.eval_every": 20,
                           "train.device": "cpu", "train.threads": 1},
                  under="base").replace("{", "{{").replace("}", "}}")

# one Ray instance with 2 GPUs declared and 4 logical CPUs (4 trials at once), both campaigns
DRIVER = """
import sys, ray
from pathlib import Path
from campaign_helpers import run
ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
root = Path(sys.argv[1])
for name in sys.argv[2:]:
    run(root / f"{name}.yaml", root / "r", name)
"""
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpus")
    (root / "whole.yaml").write_text(SPEC.format(name="whole", gpus="auto").replace(
        "[0, 1, 2, 3]", "[0, 1]"))
    (root / "packed.yaml").write_text(SPEC.format(name="packed", gpus=0.5))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AIR_NEW_OUTPUT": "0"}
    env.pop("RAY_ADDRESS", None)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])  # the helpers
    out = subprocess.run([sys.executable, "-c", DRIVER, str(root), "whole", "packed"], cwd=root,
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return {name: trial_dirs(root / "r" / name) for name in ("whole", "packed")}


def placements(trials: list[Path]) -> list[dict]:
    return [json.loads((t / "provenance.json").read_text()) for t in trials]


def all_ran_at_once(trials: list[Path]) -> bool:
    """Some instant lies inside every trial's [start, last report] interval."""
    starts = [p["started_at_unix"] for p in placements(trials)]
    ends = [results(t)[-1]["timestamp"] for t in trials]  # whole seconds, rounded down
    return max(starts) < min(ends)


@pytest.mark.slow
def test_auto_gives_each_trial_its_own_gpu(campaigns):
    trials = campaigns["whole"]
    assert len(trials) == 2
    got = placements(trials)
    assert sorted(p["accelerator_ids"]["GPU"][0] for p in got) == ["0", "1"]
    for p in got:
        assert p["resources"]["GPU"] == 1.0
        assert p["cuda_visible_devices"] == p["accelerator_ids"]["GPU"][0]
        assert p["device"] == "cpu" and p["device_name"]  # what the loop actually used
    assert all(results(t)[-1]["finished"] for t in trials)
    assert all_ran_at_once(trials)


@pytest.mark.slow
def test_half_a_gpu_packs_two_trials_per_gpu(campaigns):
    trials = campaigns["packed"]
    assert len(trials) == 4
    got = placements(trials)
    ids = Counter(p["accelerator_ids"]["GPU"][0] for p in got)
    assert ids == {"0": 2, "1": 2}  # two trials share each GPU
    assert all(p["resources"]["GPU"] == 0.5 for p in got)
    assert all(results(t)[-1]["finished"] for t in trials)
    assert all_ran_at_once(trials)  # four at once on two GPUs


@pytest.mark.parametrize("share", [0.25, 0.5, 1, 2])
def test_gpu_shares_are_accepted(share):
    spec = parse_spec({"name": "x", "base": {}, "search": {"model.alpha": {"grid": [0.1]}},
                       "searcher": "grid", "resources": {"gpus_per_trial": share}})
    assert spec.resources.gpus_per_trial == share


@pytest.mark.slow
def test_a_trial_that_held_a_gpu_counts_as_gpu_time(campaigns):
    for name, share in (("whole", 1.0), ("packed", 0.5)):
        trials = campaigns[name]
        summary = json.loads((trials[0].parent / "summary.json").read_text())["compute"]
        wall = sum(results(t)[-1]["time_total_s"] for t in trials)
        assert summary["hours_label"] == "GPU-hours"
        assert summary["gpu_hours"] == pytest.approx(wall * share / 3600, rel=1e-6)
        assert summary["cpu_hours"] == 0
        assert summary["gpu_trials_on_cpu"] == len(trials)  # held a GPU, trained on the CPU


def test_compute_counts_the_gpu_share_each_trial_held():
    import pandas as pd

    from analysis.summary import compute

    trials = pd.DataFrame({
        "device": ["cuda:0", "cpu", "cpu", "cuda:0"],
        "gpus": [1.0, 0.25, None, None],  # the last: an older record without the grant
        "wall_time_s": [3600.0, 3600.0, 1800.0, 7200.0],
        "tokens_seen": [1, 1, 1, 1], "flops": [1.0, 1.0, 1.0, 1.0],
    })
    got = compute(trials)
    assert got["gpu_hours"] == pytest.approx(1 + 0.25 + 2)
    assert got["cpu_hours"] == pytest.approx(0.5)
    assert got["hours_label"] == "GPU-hours" and got["gpu_trials_on_cpu"] == 1


def test_a_gpu_share_above_one_must_be_whole():
    with pytest.raises(ConfigError, match="whole number") as err:
        parse_spec({"name": "x", "base": {}, "search": {"model.alpha": {"grid": [0.1]}},
                    "searcher": "grid", "resources": {"gpus_per_trial": 1.5}})
    assert err.value.key.endswith("gpus_per_trial")
