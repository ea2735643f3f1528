"""`resume` makes the decisions an uninterrupted campaign makes: ASHA's rungs are rebuilt from
the trials' saved reports, and a trial restored from its final checkpoint adds no second row.

End to end, the search stage killed with kill -9 and resumed through the CLI
(``campaign_helpers.kill_and_resume``): the confirmation stage's kill is in tests/test_confirm.py,
SIGTERM in tests/test_node_loss.py, Ctrl-C in tests/test_reliability.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from campaign_helpers import kill_and_resume, results, run, trial_dirs, write_spec
from campaign_helpers import reports as folder_reports
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from ngpt_tune.experiment import RESULT_FILE, trial_dirname
from ngpt_tune.schedulers import ResumableASHA
from ngpt_tune.search import study_storage

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


def test_a_trial_stopped_just_before_the_kill_is_not_resumed(tmp_path):
    """The driver stopped "c" at its rung, then died before Tune saved that (it saves every
    2 s): Tune restores "c" as pending; the resumed ASHA stops it before it trains again."""
    reports = {**BEFORE_THE_KILL, "c": [(40, 9.90), (80, 9.650)]}  # stopped at step 80
    for trial_id, rows in reports.items():
        folder = tmp_path / trial_dirname(trial_id)
        folder.mkdir()
        (folder / RESULT_FILE).write_text("".join(json.dumps(
            {"step": s, "val_loss": v, "trial_id": trial_id, "finished": False}) + "\n"
            for s, v in rows))
    resumed = ResumableASHA(experiment=str(tmp_path), **ASHA)
    trials = {t: SimpleNamespace(trial_id=t, status="TERMINATED" if t != "c" else "PENDING")
              for t in reports}
    trials["d"] = SimpleNamespace(trial_id="d", status="PENDING")  # not started before
    for trial in trials.values():
        resumed.on_trial_add(None, trial)
    stopped = []
    controller = SimpleNamespace(get_trials=lambda: list(trials.values()),
                                 stop_trial=lambda t: (stopped.append(t.trial_id),
                                                       setattr(t, "status", "TERMINATED")))
    assert resumed.choose_trial_to_run(controller) is trials["d"]
    assert stopped == ["c"]  # "a" and "b" went through the rung at step 80: not stopped
    assert resumed.choose_trial_to_run(controller) is trials["d"] and stopped == ["c"]


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
# three learning rates, one at a time, in grid order; the hopeless one comes last, so ASHA
# stops it at the rung at step 120 by comparing it with the two before it
KILLED_SPEC = """
name: resume-asha
search:
  optim.lr: {grid: [2.0e-2, 1.0e-2, 1.0e-5]}
searcher: grid
scheduler: {name: asha, time_attr: step, grace_period: 120, reduction_factor: 2}
max_concurrent_trials: 1
"""


def _outcome(experiment: Path) -> dict[float, tuple[str, int]]:
    trials = pd.read_parquet(experiment / "trials.parquet")
    history = pd.read_parquet(experiment / "history.parquet")
    last_step = history.groupby("trial_id")["step"].max()
    return {row["optim.lr"]: (row["status"], int(last_step[row["trial_id"]]))
            for _, row in trials.iterrows()}


@pytest.mark.slow
def test_a_campaign_killed_mid_trial_resumes_to_the_uninterrupted_outcome(ray_session, tmp_path):
    spec_path = write_spec(tmp_path, KILLED_SPEC, steps=240, eval_every=20)  # one rung, at 120
    reference = _outcome(run(spec_path, tmp_path / "reference", "exp"))
    assert reference[1.0e-5] == ("stopped", 120)  # what makes this test discriminate

    def third_trial_before_its_rung(experiment: Path) -> bool:
        # two trials ended at or past the rung at step 120; the third has reported twice
        rows = folder_reports(experiment)
        return len(rows) == 3 and all(rows) and sorted(len(r) >= 2 and r[-1]["step"] < 120
                                                       for r in rows) == [False, False, True]

    killed = kill_and_resume(spec_path, tmp_path / "killed" / "exp",
                             when=third_trial_before_its_rung, between=folder_reports)
    assert sum(not r or r[-1]["step"] < 120 for r in killed.between) == 1, (
        "the kill came after the rung: the scenario did not happen")
    experiment = killed.experiment
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
    experiment = kill_and_resume(
        spec_path, tmp_path / "results" / "exp",
        when=lambda e: any(r and r[-1]["finished"] for r in folder_reports(e))).experiment

    history = pd.read_parquet(experiment / "history.parquet")
    assert not history.duplicated(["trial_id", "step"]).any()
    assert sorted(history.groupby("trial_id")["step"].apply(list).tolist()) == [[20, 40, 60]] * 2
    summary = json.loads((experiment / "summary.json").read_text())
    ranked = [e["trial_id"] for e in summary["ranking"]]
    assert len(ranked) == len(set(ranked)) == 2


# Optuna's TPE (after 2 random trials), one trial at a time, every trial to its end
OPTUNA_SPEC = """
name: journal-test
search:
  model.alpha: {loguniform: [0.03, 0.5]}
  optim.lr: {loguniform: [1.0e-3, 3.0e-2]}
searcher: {name: optuna, seed: 0, n_startup_trials: 2}
scheduler: fifo
num_samples: 4
max_concurrent_trials: 1
"""


@pytest.mark.slow
def test_killed_optuna_campaign_resumes_its_trials_and_the_same_study(tmp_path):
    """kill -9 of `run` once its first trial has finished and the second is half done;
    `resume` finishes the campaign: the finished trial is not trained again, the unfinished
    one continues from its last checkpoint, and the Optuna study is the same one: one Optuna
    trial per Ray trial (plus any asked just before the kill, told FAIL), none told twice,
    finished ones COMPLETE with their final val_loss."""
    spec_path = write_spec(tmp_path, OPTUNA_SPEC, steps=120, eval_every=20)

    def first_finished_and_second_half_done(experiment: Path) -> bool:
        rows = folder_reports(experiment)
        done = [r for r in rows if r and r[-1]["finished"]]
        running = [r for r in rows if len(r) >= 3 and not r[-1]["finished"]]
        return len(done) == 1 and len(running) == 1

    killed = kill_and_resume(
        spec_path, tmp_path / "results" / "exp", when=first_finished_and_second_half_done,
        between=lambda e: {t.name: results(t) for t in trial_dirs(e)})
    experiment, before = killed.experiment, killed.between
    finished_before = [name for name, rows in before.items() if rows and rows[-1]["finished"]]
    assert len(finished_before) == 1

    after = {t.name: results(t) for t in trial_dirs(experiment)}
    assert len(after) == 4
    assert all(rows[-1]["finished"] for rows in after.values())
    name = finished_before[0]
    trained_again = [r for r in after[name] if r["step"] < before[name][-1]["step"]
                     and r not in before[name]]
    assert not trained_again, "a finished trial was trained again"
    for rows in after.values():  # unfinished trials continued from their last checkpoint
        steps = [r["step"] for r in rows]
        assert steps == sorted(steps), steps
    assert (experiment / "summary.json").exists()

    study = optuna.load_study(study_name=None, storage=study_storage(str(experiment)))
    told = [t for t in study.trials if t.state != TrialState.FAIL]
    trials = trial_dirs(experiment)
    assert len(trials) == len(told) == 4
    by_params = {tuple(sorted(t.params.items())): t for t in told}
    for trial in trials:
        params = json.loads((trial / "params.json").read_text())
        rows = results(trial)
        ot = by_params[tuple(sorted(params.items()))]
        assert rows[-1]["finished"] and ot.state == TrialState.COMPLETE
        assert ot.value == pytest.approx(rows[-1]["val_loss"])
        assert sorted(ot.intermediate_values) == list(range(1, 7))
