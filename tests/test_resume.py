"""`resume` makes the decisions an uninterrupted campaign makes: ASHA's rungs are rebuilt from
the trials' saved reports, and a trial restored from its final checkpoint adds no second row."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from campaign_helpers import results, run, trial_dirs, write_spec
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from ngpt_tune.experiment import RESULT_FILE, trial_dirname
from ngpt_tune.search import ResumableASHA

ASHA = {"time_attr": "step", "metric": "val_loss", "mode": "min", "max_t": 200,
        "grace_period": 40, "reduction_factor": 2}  # rungs at steps 40, 80 and 160
# the reports of the scenario: two trials through the rung at step 80 (9.110 and
# 8.335), a third one killed after its report at step 40, then at 9.650 at step 80
BEFORE_THE_KILL = {
    "a": [(40, 9.80), (80, 9.110), (120, 8.90)],
    "b": [(40, 9.20), (80, 8.335), (120, 7.90)],
    "c": [(40, 9.90)],
}
AFTER_THE_KILL = ("c", 80, 9.650)


def _trial(trial_id: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id)


def _feed(scheduler: TrialScheduler, trial_id: str, step: int, loss: float) -> str:
    return scheduler.on_trial_result(None, _trial(trial_id), {"step": step, "val_loss": loss})


def test_a_resumed_asha_stops_the_trial_the_uninterrupted_one_stops(tmp_path):
    uninterrupted = ASHAScheduler(**ASHA)
    for trial_id, reports in BEFORE_THE_KILL.items():
        uninterrupted.on_trial_add(None, _trial(trial_id))
        for step, loss in reports:
            _feed(uninterrupted, trial_id, step, loss)
    # the experiment folder as the killed driver left it
    for trial_id, reports in BEFORE_THE_KILL.items():
        folder = tmp_path / trial_dirname(trial_id)
        folder.mkdir()
        (folder / RESULT_FILE).write_text("".join(
            json.dumps({"step": s, "val_loss": v, "trial_id": trial_id}) + "\n"
            for s, v in reports))

    resumed = ResumableASHA(experiment=str(tmp_path), **ASHA)
    for trial_id in BEFORE_THE_KILL:  # Tune adds every trial of the restored experiment
        resumed.on_trial_add(None, _trial(trial_id))
    forgetful = ASHAScheduler(**ASHA)  # Ray's ASHA restored by Tune: empty rungs
    forgetful.on_trial_add(None, _trial("c"))

    assert _feed(uninterrupted, *AFTER_THE_KILL) == TrialScheduler.STOP
    assert _feed(resumed, *AFTER_THE_KILL) == TrialScheduler.STOP
    assert _feed(forgetful, *AFTER_THE_KILL) == TrialScheduler.CONTINUE  # the old defect
    rungs = [sorted(recorded.items()) for _, recorded in resumed._brackets[0]._rungs]
    assert rungs == [sorted(recorded.items()) for _, recorded in uninterrupted._brackets[0]._rungs]


def test_with_several_brackets_every_trial_is_replayed_into_its_own_bracket(tmp_path):
    options = {**ASHA, "brackets": 3}  # rungs 40/80/160, 80/160 and 160
    reports = {f"t{i:02d}": [(40, 9.0 + i / 10), (80, 8.5 + i / 20), (160, 8.0 + i / 30)]
               for i in range(12)}
    uninterrupted = ResumableASHA(**options)
    for trial_id, rows in reports.items():
        uninterrupted.on_trial_add(None, _trial(trial_id))
        for step, loss in rows:
            _feed(uninterrupted, trial_id, step, loss)
        (tmp_path / trial_dirname(trial_id)).mkdir()
        (tmp_path / trial_dirname(trial_id) / RESULT_FILE).write_text("".join(
            json.dumps({"step": s, "val_loss": v, "trial_id": trial_id}) + "\n" for s, v in rows))
    resumed = ResumableASHA(experiment=str(tmp_path), **options)
    resumed.on_trial_add(None, _trial("t00"))

    used = {uninterrupted._brackets.index(uninterrupted._trial_info[t]) for t in reports}
    assert len(used) >= 2  # the ids spread over the brackets
    for before, after in zip(uninterrupted._brackets, resumed._brackets):
        assert [r for _, r in before._rungs] == [r for _, r in after._rungs]
    assert resumed._brackets.index(resumed._trial_info["t00"]) == \
        uninterrupted._brackets.index(uninterrupted._trial_info["t00"])


def test_a_new_experiment_replays_nothing(tmp_path):
    scheduler = ResumableASHA(experiment=str(tmp_path / "not-yet"), **ASHA)
    scheduler.on_trial_add(None, _trial("a"))
    assert all(not recorded for _, recorded in scheduler._brackets[0]._rungs)
    assert _feed(scheduler, "a", 40, 9.0) == TrialScheduler.CONTINUE


# ---- end to end: the CLI killed with kill -9, then `resume` ------------------------------
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
# three learning rates, one at a time, in grid order; the hopeless one comes last, so ASHA
# stops it at the rung at step 60 by comparing it with the two before it
KILLED_SPEC = """
name: resume-asha
search:
  optim.lr: {grid: [2.0e-2, 1.0e-2, 1.0e-5]}
searcher: grid
scheduler: {name: asha, time_attr: step, grace_period: 60, reduction_factor: 2}
max_concurrent_trials: 1
"""


def _start(spec_path: Path, storage: Path, cwd: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ngpt_tune", "run", str(spec_path), "--storage", str(storage),
           "--name", "exp"]
    return subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _kill_when(proc: subprocess.Popen, experiment: Path, ready, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError("the run ended before the kill:\n" + proc.stdout.read()[-3000:])
            if experiment.is_dir() and ready(_reports(experiment)):
                return
            time.sleep(0.05)
        raise AssertionError("timed out waiting for the moment to kill")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # kill -9: the driver and its local Ray
        proc.wait()


def _reports(experiment: Path) -> list[list[dict]]:
    return [results(t) for t in trial_dirs(experiment) if (t / RESULT_FILE).exists()]


def _resume(experiment: Path, cwd: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "ngpt_tune", "resume", str(experiment)],
                         cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def _outcome(experiment: Path) -> dict[float, tuple[str, int]]:
    trials = pd.read_parquet(experiment / "trials.parquet")
    history = pd.read_parquet(experiment / "history.parquet")
    last_step = history.groupby("trial_id")["step"].max()
    return {row["optim.lr"]: (row["status"], int(last_step[row["trial_id"]]))
            for _, row in trials.iterrows()}


@pytest.mark.slow
def test_a_campaign_killed_mid_trial_resumes_to_the_uninterrupted_outcome(ray_session, tmp_path):
    spec_path = write_spec(tmp_path, KILLED_SPEC, steps=180, eval_every=10)
    reference = _outcome(run(spec_path, tmp_path / "reference", "exp"))
    assert reference[1.0e-5] == ("stopped", 60)  # what makes this test discriminate

    experiment = tmp_path / "killed" / "exp"
    proc = _start(spec_path, experiment.parent, tmp_path)

    def third_trial_before_its_rung(rows: list[list[dict]]) -> bool:
        # two trials ended at or past the rung at step 60; the third has reported twice
        return len(rows) == 3 and all(rows) and sorted(len(r) >= 2 and r[-1]["step"] < 60
                                                       for r in rows) == [False, False, True]

    _kill_when(proc, experiment, third_trial_before_its_rung)
    assert sum(r[-1]["step"] < 60 for r in _reports(experiment)) == 1, (
        "the kill came after the rung: the scenario did not happen")

    _resume(experiment, tmp_path)
    assert _outcome(experiment) == reference
    summary = json.loads((experiment / "summary.json").read_text())
    reference_summary = json.loads((tmp_path / "reference" / "exp" / "summary.json").read_text())
    assert [e["params"] for e in summary["ranking"]] == [
        e["params"] for e in reference_summary["ranking"]]


@pytest.mark.slow
def test_a_trial_killed_right_after_its_last_report_is_ranked_once(tmp_path):
    spec_path = write_spec(tmp_path, """
name: resume-window
search:
  model.alpha: {grid: [0.05, 0.3]}
searcher: grid
scheduler: fifo
max_concurrent_trials: 1
""", steps=60, eval_every=20)
    experiment = tmp_path / "results" / "exp"
    proc = _start(spec_path, experiment.parent, tmp_path)
    _kill_when(proc, experiment, lambda rows: any(r and r[-1]["finished"] for r in rows))
    _resume(experiment, tmp_path)

    history = pd.read_parquet(experiment / "history.parquet")
    assert not history.duplicated(["trial_id", "step"]).any()
    assert sorted(history.groupby("trial_id")["step"].apply(list).tolist()) == [[20, 40, 60]] * 2
    summary = json.loads((experiment / "summary.json").read_text())
    ranked = [e["trial_id"] for e in summary["ranking"]]
    assert len(ranked) == len(set(ranked)) == 2
