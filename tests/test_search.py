"""The searchers: the Optuna study persisted in the experiment folder (journal file), read back
with Optuna's own API, continued on resume with no trial told twice; repeats' learning curves
passed on to Optuna. The kill-and-resume of an Optuna campaign: tests/test_resume.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from campaign_helpers import results, trial_dirs, write_spec
from experiments import ASHA_TRIALS
from optuna.trial import TrialState

from ngpt_tune.errors import ConfigError, NgptTuneError
from ngpt_tune.request import build_spec
from ngpt_tune.search import (
    JOURNAL_FILE,
    PruneAwareOptunaSearch,
    SeedRepeater,
    _optuna,
    fail_stale_trials,
    study_storage,
    tpe_sampler,
)

SPACE = """
name: journal-test
search:
  model.alpha: {loguniform: [0.03, 0.5]}
  optim.lr: {loguniform: [1.0e-3, 3.0e-2]}
searcher: {name: optuna, seed: 0, n_startup_trials: 2}
scheduler: {name: asha, time_attr: step, grace_period: 6, reduction_factor: 2}
num_samples: 6
"""


def _searcher(tmp_path: Path, body: str = SPACE) -> PruneAwareOptunaSearch:
    spec = build_spec(str(write_spec(tmp_path, body)))
    return _optuna(spec, experiment=str(tmp_path / "exp"))


def _load(experiment: Path) -> optuna.Study:
    return optuna.load_study(study_name=None, storage=study_storage(str(experiment)))


@pytest.mark.slow
def test_study_in_the_experiment_matches_its_trials(asha_campaign):
    experiment = asha_campaign  # Optuna + ASHA, built once (tests/experiments.py)
    assert (experiment / JOURNAL_FILE).is_file()
    study = _load(experiment)  # what a notebook or optuna-dashboard opens
    assert study.study_name == "asha-test"  # the campaign's name
    by_params = {tuple(sorted(t.params.items())): t for t in study.trials}
    trials = trial_dirs(experiment)
    assert len(study.trials) == len(trials) == ASHA_TRIALS
    states, stopped = set(), 0
    for trial in trials:
        params = json.loads((trial / "params.json").read_text())
        ot = by_params[tuple(sorted(params.items()))]
        rows = results(trial)
        if rows[-1]["finished"]:
            assert ot.state == TrialState.COMPLETE
            assert ot.value == pytest.approx(rows[-1]["val_loss"])
        else:  # stopped by ASHA: COMPLETE at its rung value, marked, with the curve it had
            assert ot.state == TrialState.COMPLETE and ot.user_attrs["stopped_early"]
            assert ot.value == pytest.approx(rows[-1]["val_loss"])
            assert ot.user_attrs["stopped_at_step"] == rows[-1]["step"]
            stopped += 1
        assert len(ot.intermediate_values) == len(rows)
        assert ot.intermediate_values[max(ot.intermediate_values)] == pytest.approx(
            rows[-1]["val_loss"])
        states.add(ot.state)
    assert states == {TrialState.COMPLETE} and 0 < stopped < len(trials)
    importances = optuna.importance.get_param_importances(study)
    assert set(importances) == {"model.alpha", "optim.lr"}


def test_restored_searcher_tells_no_trial_twice(tmp_path):
    """Ray restores the searcher from its pickle, older than the journal: what the journal
    holds already is not told again, and trials asked after the pickle are told FAIL."""
    searcher = _searcher(tmp_path)
    for trial_id in ("a", "b"):
        searcher.suggest(trial_id)
        searcher.on_trial_result(trial_id, {"val_loss": 5.0, "training_iteration": 1})
    state = tmp_path / "searcher.pkl"
    searcher.save(str(state))  # Ray's checkpoint of the experiment
    searcher.on_trial_result("a", {"val_loss": 4.0, "training_iteration": 2})
    searcher.on_trial_complete("a", {"val_loss": 4.0, "finished": True})
    searcher.suggest("c")  # asked after the checkpoint, then the driver is killed

    restored = _searcher(tmp_path)
    restored.restore(str(state))
    # Tune reruns "a" and "b" from their checkpoints at step 1
    for trial_id in ("a", "b"):
        restored.on_trial_result(trial_id, {"val_loss": 9.0, "training_iteration": 1})
        restored.on_trial_result(trial_id, {"val_loss": 3.5, "training_iteration": 2})
    restored.on_trial_complete("a", {"val_loss": 3.5, "finished": True})
    restored.on_trial_complete("b", {"val_loss": 3.0, "finished": False, "step": 12})

    trials = _load(tmp_path / "exp").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert trials[0].value == 4.0 and trials[0].intermediate_values == {1: 5.0, 2: 4.0}
    assert trials[1].intermediate_values == {1: 5.0, 2: 3.5} and trials[1].value == 3.0
    assert trials[1].user_attrs == {"stopped_at_step": 12, "diverged": False,
                                    "stopped_early": True}


def test_remote_experiment_keeps_the_study_in_memory(capsys):
    assert study_storage("s3://bucket/campaigns/exp") is None
    assert "stays in memory" in capsys.readouterr().out


def test_repeats_pass_their_mean_curve_to_optuna(tmp_path):
    repeater = _searcher(tmp_path, SPACE + "repeats: 2\n")
    assert isinstance(repeater, SeedRepeater)
    first, second = repeater.suggest("t0"), repeater.suggest("t1")
    assert first["model.alpha"] == second["model.alpha"]  # one configuration, two seeds
    repeater.on_trial_result("t0", {"val_loss": 6.0, "training_iteration": 1})
    repeater.on_trial_result("t0", {"val_loss": 5.0, "training_iteration": 2})
    repeater.on_trial_result("t1", {"val_loss": 4.0, "training_iteration": 1})
    repeater.on_trial_result("t1", {"val_loss": math.nan, "training_iteration": 2})
    repeater.on_trial_complete("t0", {"val_loss": 5.0, "finished": False, "step": 12})
    repeater.on_trial_complete("t1", {"val_loss": 4.5, "finished": True})
    (trial,) = _load(tmp_path / "exp").trials
    assert trial.intermediate_values == {1: 5.0}  # step 2: one seed diverged, not reported
    # a seed was stopped early: the configuration is told stopped, at the mean of its seeds
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["stopped_early"]
    assert trial.value == pytest.approx(4.75)


def test_optuna_dashboard_opens_the_journal(tmp_path):
    """`optuna-dashboard EXPERIMENT/optuna_journal.log` reads the study as ngpt-tune told it."""
    storage_url = pytest.importorskip("optuna_dashboard._storage_url")
    searcher = _searcher(tmp_path)
    searcher.suggest("a")
    searcher.on_trial_result("a", {"val_loss": 5.0, "training_iteration": 1})
    searcher.on_trial_complete("a", {"val_loss": 4.0, "training_iteration": 2, "finished": False,
                                     "step": 12})
    storage = storage_url.guess_storage_from_url(str(tmp_path / "exp" / JOURNAL_FILE))
    (trial,) = optuna.load_study(study_name="journal-test", storage=storage).trials
    assert trial.state == TrialState.COMPLETE and trial.intermediate_values == {1: 5.0, 2: 4.0}
    assert trial.user_attrs["stopped_early"] and trial.user_attrs["stopped_at_step"] == 12


@pytest.mark.parametrize("told", ["pruned", "complete"])
def test_how_stopped_and_diverged_trials_are_told(tmp_path, told):
    """``searcher.stopped_trials: pruned`` tells a stopped trial PRUNED with its curve (TPE
    ranks it below every finished trial); a diverged trial is PRUNED under either setting."""
    body = SPACE.replace("n_startup_trials: 2}", f"n_startup_trials: 2, stopped_trials: {told}}}")
    searcher = _searcher(tmp_path, body)
    for trial_id, diverged in (("stopped", False), ("diverged", True)):
        searcher.suggest(trial_id)
        searcher.on_trial_result(trial_id, {"val_loss": 5.0, "training_iteration": 1})
        searcher.on_trial_complete(trial_id, {"val_loss": 4.0, "training_iteration": 2,
                                              "finished": False, "diverged": diverged,
                                              "step": 12})
    stopped, diverged = _load(tmp_path / "exp").trials
    assert stopped.state == (TrialState.PRUNED if told == "pruned" else TrialState.COMPLETE)
    assert stopped.intermediate_values == {1: 5.0, 2: 4.0}
    assert stopped.user_attrs["stopped_early"] and not diverged.user_attrs["stopped_early"]
    assert diverged.state == TrialState.PRUNED and diverged.user_attrs["diverged"]


def test_stopped_trials_needs_the_optuna_searcher(tmp_path):
    path = write_spec(tmp_path, SPACE.replace("{name: optuna, seed: 0, n_startup_trials: 2}",
                                              "{name: random, stopped_trials: pruned}"))
    with pytest.raises(ConfigError, match="stopped_trials"):
        build_spec(str(path))


def test_a_new_driver_marks_trials_left_running_fail(tmp_path, capsys):
    """A driver killed before Tune's first save leaves its asked trials RUNNING in the journal
    and nothing for Tune to restore: the stage starts afresh on the same study, and those
    trials are told FAIL (Tune's restore path: test_restored_searcher_tells_no_trial_twice)."""
    killed = _searcher(tmp_path)
    killed.suggest("a"), killed.suggest("b")
    killed.on_trial_complete("a", {"val_loss": 4.0, "finished": True})
    fresh = _searcher(tmp_path)  # what `resume` builds when Tune has nothing to restore
    assert fail_stale_trials(fresh) == 1
    assert "1 Optuna trial(s) left running by a stopped driver marked FAIL: 1" in \
        capsys.readouterr().out
    fresh.suggest("a")  # Tune's new trial ids start again
    assert fail_stale_trials(fresh) == 0  # its own running trials are left alone
    states = [t.state for t in _load(tmp_path / "exp").trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING]


def test_the_study_can_live_in_a_database(tmp_path, monkeypatch):
    """``searcher.storage``: a database URL, read from the environment where it holds ${VAR};
    the study's name is the campaign's and the experiment's."""
    monkeypatch.setenv("NGPT_TEST_DB", f"sqlite:///{tmp_path}/optuna.db")
    body = SPACE.replace("n_startup_trials: 2}", "n_startup_trials: 2, storage: '${NGPT_TEST_DB}'}")
    searcher = _searcher(tmp_path, body)
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"val_loss": 4.0, "training_iteration": 1, "finished": True})
    assert not (tmp_path / "exp" / JOURNAL_FILE).exists()
    study = optuna.load_study(study_name=f"journal-test@{tmp_path / 'exp'}",
                              storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.value for t in study.trials] == [4.0]
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's checkpoint, restored on resume
    _searcher(tmp_path, body).restore(str(tmp_path / "searcher.pkl"))
    monkeypatch.delenv("NGPT_TEST_DB")
    with pytest.raises(NgptTuneError, match="searcher.storage.*NGPT_TEST_DB.* is not set"):
        _searcher(tmp_path, body)
    for bad in ("name: optuna, storage: optuna.db", "name: random, storage: 'sqlite:///x.db'"):
        with pytest.raises(ConfigError, match="key 'searcher.storage'"):
            build_spec(str(write_spec(tmp_path, SPACE.replace(
                "searcher: {name: optuna, seed: 0, n_startup_trials: 2}", f"searcher: {{{bad}}}"))))


def test_the_shipped_tpe_is_independent_and_seeded(tmp_path):
    """Independent TPE (``multivariate=False``, RESULTS.md section 3c), not Optuna 5's default
    multivariate TPE; the spec's seed and start-up trials; other options on top of it."""
    spec = build_spec(str(write_spec(tmp_path, SPACE)))
    sampler = _optuna(spec, experiment=str(tmp_path / "exp"))._ot_study.sampler
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._multivariate is False and sampler._n_startup_trials == 2
    assert tpe_sampler(spec, constant_liar=True)._multivariate is False
    assert tpe_sampler(spec, multivariate=None)._multivariate is None  # Optuna's own default


def test_a_trial_stopped_while_pending_is_told_at_its_last_value(tmp_path):
    """Tune's ``stop_trial`` on a pending trial (a resumed trial ASHA had stopped) completes it
    with no result: the study has its curve, and tells it stopped at its last value."""
    searcher = _searcher(tmp_path)
    searcher.suggest("a")
    searcher.on_trial_result("a", {"val_loss": 5.0, "training_iteration": 1})
    searcher.on_trial_result("a", {"val_loss": 4.5, "training_iteration": 2})
    searcher.on_trial_complete("a")
    (trial,) = _load(tmp_path / "exp").trials
    assert trial.state == TrialState.COMPLETE and trial.value == 4.5
    assert trial.user_attrs["stopped_early"]
