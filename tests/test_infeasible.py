"""Trials that cannot fit: a refused memory allocation ends the trial as ``infeasible``, with
no retry, recorded in trials.parquet and summary.json, and told to Optuna as a violated
constraint so that TPE samples less from that region. The campaign goes on."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from campaign_helpers import results, run, trial_dirs, write_spec
from optuna.trial import TrialState

from ngpt_tune.memory import out_of_memory
from ngpt_tune.request import build_spec
from ngpt_tune.search import MEMORY_CONSTRAINT, _optuna, study_storage

# an embedding this wide (50304 x 2^24 float32: 3.4 PB) is beyond any address space: torch's
# allocator refuses it at once, on any machine, without touching memory
TOO_WIDE = 2**24


def test_a_refused_allocation_is_out_of_memory_and_a_crash_is_not():
    with pytest.raises(RuntimeError) as refused:
        torch.nn.Embedding(50304, TOO_WIDE)
    line = out_of_memory(refused.value)
    assert line.startswith("RuntimeError: DefaultCPUAllocator: can't allocate memory")
    assert "\n" not in line and len(line) <= 300
    try:  # raised from inside another error (as a compiled graph wraps it)
        try:
            raise refused.value
        except RuntimeError as inner:
            raise ValueError("backend failed") from inner
    except ValueError as wrapped:
        assert out_of_memory(wrapped) == line
    assert out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate")) \
        == "OutOfMemoryError: CUDA out of memory. Tried to allocate"
    assert out_of_memory(RuntimeError("shape mismatch")) is None
    assert out_of_memory(ValueError("can't allocate memory")) is None  # not the allocator's


SPACE = """
name: memory-test
search:
  optim.lr: {loguniform: [1.0e-4, 1.0e-1]}
  model.alpha: {loguniform: [0.03, 0.5]}
searcher: {name: optuna, seed: SEED, n_startup_trials: 6}
num_samples: 30
"""
WALL = 10**-1.5  # learning rates above it "run out of memory" in the simulation


def _simulated_campaign(tmp_path: Path, seed: int, *, infeasible: bool) -> float:
    """30 trials of a smooth objective whose optimum (lr 10^-1.8) lies near a region that runs
    out of memory (lr > 10^-1.5); each trial there is told as ngpt-tune tells it
    (``infeasible``) or as a crash (Ray's FAIL, what such a trial got before). Returns the
    fraction of TPE's trials (after its 6 random ones) that went into the region."""
    spec = build_spec(str(write_spec(tmp_path, SPACE.replace("SEED", str(seed)))))
    searcher = _optuna(spec)
    inside = []
    for i in range(spec.num_samples):
        config = searcher.suggest(f"t{i}")
        lr, alpha = config["optim.lr"], config["model.alpha"]
        inside.append(lr > WALL)
        if lr > WALL and infeasible:
            searcher.on_trial_complete(f"t{i}", {"val_loss": math.inf, "infeasible": True,
                                                  "error": "out of memory", "finished": False})
        elif lr > WALL:
            searcher.on_trial_complete(f"t{i}", None, error=True)
        else:
            value = (math.log10(lr) + 1.8) ** 2 + 0.3 * (math.log10(alpha) + 1) ** 2
            searcher.on_trial_complete(f"t{i}", {"val_loss": value, "finished": True,
                                                  "training_iteration": 1})
    return statistics.mean(inside[6:])


def test_tpe_steers_away_from_a_region_that_runs_out_of_memory(tmp_path):
    """Seeded simulation, 6 searcher seeds: TPE's share of trials inside the region that does
    not fit, when those trials are told infeasible versus told FAIL."""
    told = [_simulated_campaign(tmp_path, seed, infeasible=True) for seed in range(6)]
    failed = [_simulated_campaign(tmp_path, seed, infeasible=False) for seed in range(6)]
    # measured: 0.21 (0.12 to 0.29) against 0.79 (0.71 to 1.0): TPE ignores FAIL trials
    assert statistics.mean(told) < 0.3
    assert statistics.mean(failed) > 0.6
    assert all(t < f for t, f in zip(told, failed))


def test_an_infeasible_trial_reaches_optuna_as_pruned_with_a_violated_constraint(tmp_path):
    spec = build_spec(str(write_spec(tmp_path, SPACE.replace("SEED", "0") + "repeats: 2\n")))
    repeater = _optuna(spec, experiment=str(tmp_path / "exp"))
    repeater.suggest("t0"), repeater.suggest("t1")  # one configuration, two seeds
    line = "RuntimeError: DefaultCPUAllocator: can't allocate memory"
    repeater.on_trial_complete("t0", {"val_loss": math.inf, "infeasible": True, "error": line,
                                      "finished": False, "training_iteration": 1})
    repeater.on_trial_complete("t1", {"val_loss": 5.0, "finished": True,
                                      "training_iteration": 2})
    study = optuna.load_study(study_name=None, storage=study_storage(str(tmp_path / "exp")))
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    assert trial.constraints == {MEMORY_CONSTRAINT: 1.0}
    assert trial.user_attrs["infeasible"] == line
    assert trial.intermediate_values == {}  # the worst-value metric is not a measurement


TOO_WIDE_CAMPAIGN = f"""
name: too-wide
search:
  model.n_embd: {{choice: [32, {TOO_WIDE}]}}   # the second cannot be allocated anywhere
  model.alpha: {{loguniform: [0.03, 0.5]}}
searcher: {{name: optuna, seed: 1, n_startup_trials: 4}}
scheduler: {{name: asha, time_attr: step, grace_period: 4, reduction_factor: 2}}
num_samples: 4
max_failures: 2        # retries allowed: an infeasible trial must not use them
"""


@pytest.mark.slow
def test_a_trial_that_cannot_fit_is_infeasible_not_retried_and_the_campaign_goes_on(
        ray_session, tmp_path):
    spec = write_spec(tmp_path, TOO_WIDE_CAMPAIGN,
                      steps=8, eval_every=4)
    experiment = run(spec, tmp_path / "r", "too-wide")
    trials = pd.read_parquet(experiment / "trials.parquet")
    wide = trials[trials["model.n_embd"] == TOO_WIDE]
    assert len(wide) >= 1 and set(wide["status"]) == {"infeasible"}
    assert (wide["failures"] == 0).all()  # never retried
    assert wide["error"].str.contains("can't allocate memory").all()
    assert set(trials[trials["model.n_embd"] == 32]["status"]) <= {"completed", "stopped"}
    for folder in trial_dirs(experiment):
        assert not (folder / "error.txt").exists()
        last = results(folder)[-1]
        if last.get("infeasible"):
            assert last["val_loss"] == math.inf and last["step"] == 0
    history = pd.read_parquet(experiment / "history.parquet")
    assert history[history["trial_id"].isin(wide["trial_id"])].empty  # no step was measured
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["counts"]["infeasible"] == len(wide)
    assert summary["counts"]["errored"] == 0
    assert summary["counts"]["completed"] >= 1  # the campaign went on
    failed = [f for f in summary["failed"] if f["status"] == "infeasible"]
    assert [f["params"]["model.n_embd"] for f in failed] == [TOO_WIDE] * len(wide)
    assert all("can't allocate memory" in f["error"] for f in failed)
    assert all(e["trial_id"] not in set(wide["trial_id"]) for e in summary["ranking"])
    study = optuna.load_study(study_name=None, storage=study_storage(str(experiment)))
    told = [t for t in study.trials if t.params["model.n_embd"] == TOO_WIDE]
    assert told and all(t.state == TrialState.PRUNED and t.constraints == {"memory": 1.0}
                        for t in told)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_allocation_beyond_the_gpu_is_out_of_memory():
    total = torch.cuda.get_device_properties(0).total_memory
    with pytest.raises(torch.cuda.OutOfMemoryError) as refused:
        torch.empty(2 * total, dtype=torch.uint8, device="cuda")
    assert out_of_memory(refused.value).startswith("OutOfMemoryError: CUDA out of memory")
    torch.cuda.empty_cache()
    assert torch.ones(1024, device="cuda").sum().item() == 1024  # the device still works
