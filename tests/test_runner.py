"""Real Ray Tune campaigns on the CPU with tiny models: Optuna + ASHA, grid, resume, smoke.

One Ray instance serves the in-process tests (``ray_session`` in conftest); the resume test runs the CLI
in subprocesses from outside the repository, as a user would, with Ray workers importing the
installed packages.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from campaign_helpers import results, run, trial_dirs, wait_for, write_spec

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def test_optuna_asha_campaign_prunes_and_records_provenance(ray_session, tmp_path):
    spec_path = write_spec(tmp_path, """
name: asha-test
search:
  optim.lr: {choice: [1.0e-5, 2.0e-2]}   # a hopeless and a good learning rate
  model.alpha: {uniform: [0.05, 0.3]}
searcher: {name: optuna, seed: 3}
scheduler: {name: asha, time_attr: step, grace_period: 6, reduction_factor: 2}
num_samples: 4
max_concurrent_trials: 1
""")
    experiment = run(spec_path, tmp_path / "results", "asha")
    trials = trial_dirs(experiment)
    assert len(trials) == 4
    stopped = [t for t in trials if not results(t)[-1]["finished"]]
    assert stopped, "ASHA stopped no trial"
    for trial in trials:
        record = json.loads((trial / "provenance.json").read_text())
        assert {"git_commit", "packages", "hardware", "config", "seed"} <= set(record)
        assert record["packages"]["torch"] and record["packages"]["ray"]
        assert record["config"]["model"]["n_embd"] == 32

    from ngpt_tune.search import PruneAwareOptunaSearch

    searcher = PruneAwareOptunaSearch()
    searcher.restore_from_dir(str(experiment))
    states = [t.state.name for t in searcher._ot_study.trials]
    assert states.count("PRUNED") == len(stopped)  # told as pruned, not as COMPLETE
    assert states.count("COMPLETE") == 4 - len(stopped)

    summary = json.loads((experiment / "summary.json").read_text())
    assert (experiment / "trials.parquet").exists() and (experiment / "history.parquet").exists()
    ranked_ids = {row["trial_id"] for row in summary["ranking"]}
    assert not ranked_ids & {t.name.removeprefix("trial_") for t in stopped}


def test_grid_runs_exactly_its_grid(ray_session, tmp_path):
    spec_path = write_spec(tmp_path, """
name: grid-test
search:
  model.proj_every: {grid: [1, 3]}
  model.alpha_mode: {grid: [vector, scalar]}
searcher: grid
scheduler: fifo
""", steps=6, eval_every=3)
    experiment = run(spec_path, tmp_path / "results", "grid")
    seen = sorted((json.loads((t / "params.json").read_text())["model.proj_every"],
                   json.loads((t / "params.json").read_text())["model.alpha_mode"])
                  for t in trial_dirs(experiment))
    assert seen == [(1, "scalar"), (1, "vector"), (3, "scalar"), (3, "vector")]
    assert all(results(t)[-1]["finished"] for t in trial_dirs(experiment))


def test_repeats_run_each_configuration_with_several_seeds(ray_session, tmp_path):
    spec_path = write_spec(tmp_path, """
name: seeds-test
search:
  model.alpha: {grid: [0.1]}
searcher: grid
scheduler: fifo
repeats: 2
""", steps=3, eval_every=3)
    experiment = run(spec_path, tmp_path / "results", "seeds")
    seeds = sorted(json.loads((t / "provenance.json").read_text())["seed"]
                   for t in trial_dirs(experiment))
    assert seeds == [0, 1]


SHIPPED = sorted(p for p in (REPO / "search_spaces").glob("*.yaml")
                 if p.stem != "ladder")  # a ladder runs rungs: tests/test_ladder.py


@pytest.mark.parametrize("spec_path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_spec_runs_with_smoke(ray_session, tmp_path, spec_path):
    experiment = run(spec_path, tmp_path / "results", "smoke", smoke=True)
    trials = trial_dirs(experiment)
    assert 1 <= len(trials) <= 4
    assert all((t / "result.json").read_text().strip() for t in trials)
    assert (experiment / "summary.json").exists()


def test_killed_campaign_resumes_without_rerunning_finished_trials(tmp_path):
    """kill -9 of `run` after its first trial finishes; `resume` finishes the campaign."""
    spec_path = write_spec(tmp_path, """
name: resume-test
search:
  model.alpha: {grid: [0.05, 0.15, 0.3]}
searcher: grid
scheduler: fifo
max_concurrent_trials: 1
""", steps=240, eval_every=20)
    storage = tmp_path / "results"
    experiment = storage / "exp"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "ngpt_tune", "run", str(spec_path), "--storage", str(storage),
           "--name", "exp"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def first_finished_and_second_started() -> bool:
        if not experiment.is_dir():
            return False
        rows = [results(t) for t in trial_dirs(experiment) if (t / "result.json").exists()]
        done = [r for r in rows if r and r[-1]["finished"]]
        running = [r for r in rows if len(r) >= 2 and not r[-1]["finished"]]
        return len(done) == 1 and len(running) == 1

    try:
        wait_for(first_finished_and_second_started, 300, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # kill -9: the driver and its local Ray
        proc.wait()
    before = {t.name: results(t) for t in trial_dirs(experiment)}
    finished_before = [name for name, rows in before.items() if rows and rows[-1]["finished"]]
    assert len(finished_before) == 1

    out = subprocess.run([sys.executable, "-m", "ngpt_tune", "resume", str(experiment)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    after = {t.name: results(t) for t in trial_dirs(experiment)}
    assert len(after) == 3
    assert all(rows[-1]["finished"] for rows in after.values())
    name = finished_before[0]
    trained_again = [r for r in after[name] if r["step"] < before[name][-1]["step"]
                     and r not in before[name]]
    assert not trained_again, "a finished trial was trained again"
    for rows in after.values():  # unfinished trials continued from their last checkpoint
        steps = [r["step"] for r in rows]
        assert steps == sorted(steps), steps
    assert (experiment / "summary.json").exists()
