"""One bad trial never sinks a campaign; Ctrl-C saves state; checkpoints are bounded."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from campaign_helpers import kill_and_resume, results, run, trial_dirs, write_spec

from ngpt_tune.errors import CampaignFailed
from ngpt_tune.request import RunRequest, build_spec
from ngpt_tune.runner import RunOptions, ray_init_kwargs
from ngpt_tune.shards import write_shard

pytestmark = pytest.mark.slow


def test_diverging_and_crashing_trials_do_not_stop_the_campaign(ray_session, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "fineweb_train_000001.bin", np.arange(4000) % 50000)
    write_shard(shards / "fineweb_val_000000.bin", np.arange(2000) % 50000)
    spec_path = write_spec(tmp_path, f"""
name: faults
variants:
  ok: {{}}
  diverges: {{model.arch: gpt, optim.lr: 1.0e+30, optim.grad_clip: 0.0}}
  crashes: {{data.dir: {shards}}}
search:
  variant: {{grid: [ok, diverges, crashes]}}
searcher: grid
scheduler: fifo
max_failures: 1
""", steps=12, eval_every=4)
    request = RunRequest.from_file(spec_path)
    spec = build_spec(request)  # validated while the shards are fine...
    train = shards / "fineweb_train_000001.bin"
    train.write_bytes(train.read_bytes()[:-10])  # ...then one is truncated under the campaign
    experiment = run(spec_path, tmp_path / "r", "faults", spec=spec)
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["counts"]["completed"] == 1
    assert summary["counts"]["diverged"] == 1
    assert summary["counts"]["errored"] == 1
    failed = {f["status"]: f for f in summary["failed"]}
    assert "fineweb_train_000001.bin" in failed["errored"]["error"]
    crashed = next(t for t in trial_dirs(experiment) if (t / "error.txt").exists())
    assert (crashed / "error.txt").read_text().count("Failure #") == 2  # retried once
    diverged = next(t for t in trial_dirs(experiment) if results(t) and results(t)[-1]["diverged"])
    assert results(diverged)[-1]["step"] == 4  # stopped at its first evaluation
    assert [r["trial_id"] for r in summary["ranking"]] != []


def test_a_campaign_whose_every_trial_errors_fails(ray_session, tmp_path):
    """Not one trial trained: the run says so in one line with the first error, and exits
    non-zero (CampaignFailed: 1), its folder analysed and kept."""
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "fineweb_train_000001.bin", np.arange(4000) % 50000)
    write_shard(shards / "fineweb_val_000000.bin", np.arange(2000) % 50000)
    spec_path = write_spec(tmp_path, f"""
name: all-fail
variants:
  crashes: {{data.dir: {shards}}}
search:
  variant: {{grid: [crashes]}}
  optim.lr: {{grid: [1.0e-3, 2.0e-3]}}
searcher: grid
scheduler: fifo
max_failures: 0
""", steps=12, eval_every=4)
    spec = build_spec(RunRequest.from_file(spec_path))
    train = shards / "fineweb_train_000001.bin"
    train.write_bytes(train.read_bytes()[:-10])
    with pytest.raises(CampaignFailed, match=r"every trial failed \(2 errored\); the first: "
                                              r"trial \w+: .*fineweb_train_000001.bin") as err:
        run(spec_path, tmp_path / "r", "all-fail", spec=spec)
    assert err.value.exit_code == 1
    summary = json.loads((tmp_path / "r" / "all-fail" / "summary.json").read_text())
    assert summary["counts"]["errored"] == summary["counts"]["total"] == 2


def test_checkpoints_are_kept_to_the_configured_number(grid_campaign):
    # the canonical grid (tests/experiments.py): checkpoint: {every: 2, keep: 2}, 12 steps with
    # an evaluation every 2
    for trial in trial_dirs(grid_campaign):
        assert len(results(trial)) == 6  # six checkpointed reports...
        assert len(list(trial.glob("checkpoint_*"))) == 2  # ...two kept on disk


def test_dashboard_binds_to_localhost_unless_told_otherwise():
    assert ray_init_kwargs(RunOptions(dashboard=True))["dashboard_host"] == "127.0.0.1"
    assert ray_init_kwargs(RunOptions(dashboard=True, dashboard_host="0.0.0.0"))[
        "dashboard_host"] == "0.0.0.0"
    assert ray_init_kwargs(RunOptions())["include_dashboard"] is False


def test_ctrl_c_saves_state_and_prints_the_resume_command(tmp_path):
    spec_path = write_spec(tmp_path, """
name: interrupt
search:
  model.alpha: {grid: [0.05, 0.3]}
searcher: grid
scheduler: fifo
max_concurrent_trials: 1
""", steps=2000, eval_every=10)

    def reported_twice(experiment: Path) -> bool:
        # checkpoint_000001 or a later one (older ones are deleted); the run prints little (one
        # status line every 15 s): watch its folder instead
        names = [p.name.removeprefix("checkpoint_")
                 for p in experiment.glob("trial_*/checkpoint_*")]
        return any(n.isdigit() and int(n) >= 1 for n in names)

    stopped = kill_and_resume(spec_path, tmp_path / "r" / "exp", when=reported_twice,
                              sig=signal.SIGINT, resume=False)
    experiment = stopped.experiment
    assert f"resume with `python -m ngpt_tune resume {experiment}`" in stopped.output
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["counts"]["unfinished"] >= 1 and summary["counts"]["completed"] == 0
