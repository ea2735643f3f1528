"""Warm starts: an earlier experiment's finished and pruned trials, with their curves, start a
new Optuna study once (not again on resume); a source whose searched keys, ranges, metric or
study do not agree is one line naming the key, before anything starts. Also the first points
to evaluate (a ladder's predicted optimum) and Optuna's GPSampler."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from campaign_helpers import write_spec
from optuna.trial import TrialState

from ngpt_tune.errors import ConfigError
from ngpt_tune.experiment import JOURNAL_FILE, write_campaign
from ngpt_tune.request import build_spec
from ngpt_tune.search import _optuna, study_storage
from ngpt_tune.warm_start import warm_trials

SPACE = """
name: warm-test
search:
  model.alpha: {loguniform: [0.03, 0.5]}
  optim.lr: {choice: [1.0e-3, 1.0e-2]}
searcher: {name: optuna, seed: 0, n_startup_trials: 2}
scheduler: {name: asha, time_attr: step, grace_period: 6, reduction_factor: 2}
num_samples: 6
"""


def _spec(folder: Path, body: str = SPACE):
    folder.mkdir(parents=True, exist_ok=True)
    return build_spec(str(write_spec(folder, body)))


def _study(experiment: Path) -> optuna.Study:
    return optuna.load_study(study_name=None, storage=study_storage(str(experiment)))


@pytest.fixture
def source(tmp_path) -> Path:
    """An experiment as a search leaves it: its campaign record, and a study of a finished, a
    stopped (told PRUNED, as before ``searcher.stopped_trials``) and a failed trial."""
    spec = _spec(tmp_path / "src", SPACE.replace("seed: 0,", "seed: 0, stopped_trials: pruned,"))
    experiment = tmp_path / "src" / "exp"
    write_campaign(experiment, {"metric": "val_loss", "mode": "min",
                                "search_keys": spec.search_keys})
    searcher = _optuna(spec, experiment=str(experiment))
    for trial_id in ("a", "b", "c"):
        searcher.suggest(trial_id)
        searcher.on_trial_result(trial_id, {"val_loss": 6.0, "training_iteration": 6})
    searcher.on_trial_complete("a", {"val_loss": 4.0, "training_iteration": 12,
                                     "finished": True})
    searcher.on_trial_complete("b", {"val_loss": 5.0, "training_iteration": 12,
                                     "finished": False, "step": 12})
    searcher.on_trial_complete("c", error=True)
    return experiment


@pytest.mark.parametrize("told", ["complete", "pruned"])
def test_finished_and_stopped_trials_start_the_new_study_once(tmp_path, source, told):
    """The stopped trial enters as the new campaign tells one (``searcher.stopped_trials``)."""
    spec = _spec(tmp_path / "new", SPACE.replace(
        "seed: 0,", f"seed: 0, warm_start: [{source}], stopped_trials: {told},"))
    experiment = tmp_path / "new" / "exp"
    searcher = _optuna(spec, experiment=str(experiment))
    old = _study(source).trials
    warm = _study(experiment).trials
    assert old[1].state == TrialState.PRUNED  # as its own campaign told it
    stopped = TrialState.COMPLETE if told == "complete" else TrialState.PRUNED
    assert [t.state for t in warm] == [TrialState.COMPLETE, stopped]  # not the failed
    assert warm[1].value == (5.0 if told == "complete" else None)  # its last value
    assert warm[1].user_attrs["stopped_early"]
    for new, before in zip(warm, old):
        assert new.params == before.params
        assert new.intermediate_values == before.intermediate_values
        assert new.user_attrs["warm_start"] == str(source)
    assert warm[0].value == 4.0 and warm[0].intermediate_values == {6: 6.0, 12: 4.0}
    assert warm[1].intermediate_values == {6: 6.0, 12: 5.0}  # the pruned trial's curve
    searcher.suggest("first")  # the campaign's own first trial comes after them
    assert len(_study(experiment).trials) == 3
    _optuna(spec, experiment=str(experiment))  # resume builds the searcher again
    assert len(_study(experiment).trials) == 3  # nothing added twice


def _bad(tmp_path: Path, source: Path, body: str) -> str:
    spec = _spec(tmp_path / "new", body.replace("seed: 0,", f"seed: 0, warm_start: [{source}],"))
    with pytest.raises(ConfigError) as err:
        warm_trials(spec)
    message = str(err.value)
    assert "\n" not in message and "key 'searcher.warm_start'" in message
    return message


@pytest.mark.parametrize(("body", "needle"), [
    (SPACE.replace("[0.03, 0.5]", "[0.05, 0.5]"),
     "searched model.alpha over log-uniform [0.03, 0.5], not within this campaign's "
     "log-uniform [0.05, 0.5]"),
    (SPACE.replace("loguniform: [0.03, 0.5]", "uniform: [0.03, 0.5]"),
     "not within this campaign's uniform [0.03, 0.5]"),
    (SPACE.replace("[1.0e-3, 1.0e-2]", "[1.0e-3, 3.0e-3]"), "searched optim.lr over choice"),
    (SPACE.replace("  optim.lr:", "  optim.weight_decay: {uniform: [0, 0.1]}\n  optim.lr:"),
     "searched model.alpha, optim.lr; this campaign searches model.alpha, optim.lr, "
     "optim.weight_decay"),
    (SPACE + "metric: train_loss\n", "ran with metric 'val_loss', this campaign with "
     "'train_loss'"),
])
def test_a_source_that_does_not_agree_is_one_line(tmp_path, source, body, needle):
    assert needle in _bad(tmp_path, source, body)


def test_a_wider_range_here_takes_the_trials(tmp_path, source):
    spec = _spec(tmp_path / "new", SPACE.replace("seed: 0,", f"seed: 0, warm_start: [{source}],")
                 .replace("[0.03, 0.5]", "[0.01, 0.9]").replace("1.0e-2]", "1.0e-2, 0.1]"))
    assert len(warm_trials(spec)) == 2


def test_a_folder_that_is_no_optuna_experiment_is_one_line(tmp_path, source):
    (source / JOURNAL_FILE).unlink()
    assert "holds no Optuna study (optuna_journal.log is missing" in _bad(tmp_path, source,
                                                                          SPACE)
    assert "not an ngpt-tune experiment folder" in _bad(tmp_path, tmp_path, SPACE)


@pytest.fixture
def no_ray(monkeypatch):
    import ngpt_tune.campaign as campaign

    started = []
    monkeypatch.setattr(campaign, "init_ray", lambda options: started.append("ray"))
    return started


def test_cli_bad_warm_start_is_one_line_and_starts_nothing(tmp_path, source, no_ray, capsys):
    from ngpt_tune.__main__ import main

    path = write_spec(tmp_path, SPACE.replace("[0.03, 0.5]", "[0.05, 0.5]"))
    run = ["run", str(path), "--storage", str(tmp_path / "r"), "--name", "e",
           "--warm-start", str(source)]
    assert main(run) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"ngpt-tune: error: {path}: key 'searcher.warm_start': {source} "
                           "searched model.alpha over")
    assert no_ray == [] and not (tmp_path / "r").exists()  # nothing started, nothing written
    assert main(["validate", str(path), "--warm-start", str(tmp_path / "nowhere")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "nowhere: not an ngpt-tune experiment folder" in line


def test_cli_validate_counts_the_warm_start(tmp_path, source, capsys):
    from ngpt_tune.__main__ import main

    path = write_spec(tmp_path, SPACE)
    assert main(["validate", str(path), "--warm-start", str(source)]) == 0
    out = capsys.readouterr().out
    assert f"warm start 1 finished + 1 stopped early + 0 pruned trials from {source} (2)" in out
    assert "search  (optuna, tpe, seed 0)" in out


def test_points_to_evaluate_come_first_and_are_checked(tmp_path):
    point = "points_to_evaluate: [{model.alpha: 0.2, optim.lr: 1.0e-3}]"
    spec = _spec(tmp_path, SPACE.replace("seed: 0,", f"seed: 0, {point},"))
    searcher = _optuna(spec, experiment=str(tmp_path / "exp"))
    assert searcher.suggest("a") == {"model.alpha": 0.2, "optim.lr": 1.0e-3}
    outside = _spec(tmp_path / "o", SPACE.replace("seed: 0,", f"seed: 0, {point},")
                    .replace("0.2,", "0.7,"))
    with pytest.raises(ConfigError, match=r"key 'searcher.points_to_evaluate\[0\].model.alpha'"
                                          r": 0.7 is outside log-uniform \[0.03, 0.5\]"):
        warm_trials(outside)


def test_gp_sampler_is_seeded_and_learns_from_finished_and_pruned_trials(tmp_path):
    """``sampler: gp``: Optuna's GPSampler with the spec's seed; ASHA's stops still reach the
    study (COMPLETE at their last value, marked) with their curves; two campaigns with one
    seed ask the same trials."""
    body = SPACE.replace("n_startup_trials: 2}", "n_startup_trials: 2, sampler: gp}")
    asked = []
    for run in ("one", "two"):
        spec = _spec(tmp_path / run, body)
        searcher = _optuna(spec, experiment=str(tmp_path / run / "exp"))
        assert isinstance(searcher._ot_study.sampler, optuna.samplers.GPSampler)
        for i, trial_id in enumerate("abcd"):
            asked.append(searcher.suggest(trial_id))
            searcher.on_trial_result(trial_id, {"val_loss": 6.0 - i, "training_iteration": 6})
            searcher.on_trial_complete(trial_id, {"val_loss": 5.0 - i, "training_iteration": 12,
                                                  "finished": i != 1, "step": 12})
        trials = _study(tmp_path / run / "exp").trials
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
        assert [bool(t.user_attrs.get("stopped_early")) for t in trials] == [0, 1, 0, 0]
        assert trials[1].intermediate_values == {6: 5.0, 12: 4.0}
    assert asked[:4] == asked[4:]  # the GP's suggestions (trials 3 and 4) too
    assert json.dumps(asked)  # plain values Tune can log


@pytest.mark.slow
def test_a_real_campaign_warm_starts_the_next(tmp_path, asha_campaign):
    """The Optuna + ASHA fixture campaign (tests/experiments.py) as the source: every trial it
    finished or ASHA stopped enters the new study, with its curve."""
    from experiments import ASHA_CAMPAIGN

    spec = _spec(tmp_path, ASHA_CAMPAIGN.replace("seed: 0,", f"seed: 0, warm_start: "
                                                 f"[{asha_campaign}],"))
    _optuna(spec, experiment=str(tmp_path / "exp"))
    old = [t for t in _study(asha_campaign).trials if t.state in (TrialState.COMPLETE,
                                                                 TrialState.PRUNED)]
    warm = _study(tmp_path / "exp").trials
    assert any(t.user_attrs.get("stopped_early") for t in old)  # ASHA stopped one
    assert [(t.state, t.params, t.value, t.intermediate_values) for t in warm] == [
        (t.state, t.params, t.value, t.intermediate_values) for t in old]


@pytest.mark.slow
def test_ladder_target_search_asks_the_predicted_optimum_first(smoke_ladder):
    stages = json.loads((smoke_ladder / "campaign.json").read_text())["stages"]
    plan = next(s["plan"] for s in stages if s["kind"] == "target_search")
    first = min(_study(smoke_ladder / "target").trials, key=lambda t: t.number)
    for key, value in plan["prediction"].items():
        lo, hi = plan["ranges"][key]["loguniform"]
        assert first.params[key] == pytest.approx(min(max(value, lo), hi))
