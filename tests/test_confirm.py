"""The confirmation stage: a search's top configurations re-run with fresh seeds, after `run`,
by `confirm` on a finished experiment, and through `resume` after a kill (the one kill of this
stage kind, with ``campaign_helpers.kill_and_resume``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from campaign_helpers import kill_and_resume, reports, results, trial_dirs, write_spec

import analysis.confirm
from analysis.load import load_experiment
from ngpt_tune.__main__ import main
from ngpt_tune.campaign import confirm_campaign
from ngpt_tune.confirm_stage import confirm_settings
from ngpt_tune.errors import ConfigError
from ngpt_tune.experiment import CONFIRM_DIR
from ngpt_tune.request import build_spec
from ngpt_tune.runner import RunOptions
from ngpt_tune.smoke import smoke_version
from ngpt_tune.spec import CONFIRM_ARM_KEY, load_spec

SPEC = """
name: confirm-test
search:
  optim.lr: {loguniform: [1.0e-3, 2.0e-2]}
variants: {plain: {}, warm: {optim.warmup_steps: 4}}
searcher: {name: random, seed: 0}
scheduler: fifo
num_samples: 3
max_concurrent_trials: 2
CONFIRM
"""


def _spec(tmp_path: Path, confirm: str, **kw) -> Path:
    return write_spec(tmp_path, SPEC.replace("CONFIRM", confirm), **kw)


def _confirm_trials(experiment: Path, folder: str = CONFIRM_DIR) -> list[dict]:
    out = []
    for trial in trial_dirs(experiment / folder):
        params = json.loads((trial / "params.json").read_text())
        out.append({"trial": trial.name, "arm": params[CONFIRM_ARM_KEY],
                    "seed": params["train.seed"], "reports": results(trial)})
    return out


def _check_section(experiment: Path, *, arms: int, seeds: int) -> dict:
    """summary.json's confirm section is complete, best_config.yaml is its winner, and the
    stage's seeds are fresh."""
    summary = json.loads((experiment / "summary.json").read_text())
    section = summary["confirm"]
    assert len(section["arms"]) == arms
    assert all(a["n"] == seeds and a["n_failed"] == 0 for a in section["arms"])
    assert section["not_counted"] == []
    winner = section["winner"]
    assert winner["arm"] == section["leader"] == section["arms"][0]["arm"]
    best = yaml.safe_load((experiment / "best_config.yaml").read_text())
    assert best["optim"]["lr"] == pytest.approx(winner["params"]["optim.lr"])
    assert best["train"]["seed"] in section["arms"][0]["seeds"]
    assert (experiment / "search_best_config.yaml").is_file()
    search_seeds = set(load_experiment(experiment).trials["seed"])
    confirm_seeds = {s for a in section["arms"] for s in a["seeds"]}
    assert len(confirm_seeds) == seeds and not confirm_seeds & search_seeds
    assert all(sorted(a["seeds"]) == sorted(confirm_seeds) for a in section["arms"])  # paired
    return section


# ---- the spec's section ------------------------------------------------------------------------
@pytest.mark.parametrize("confirm, key", [
    ("confirm: {top_k: 0}", "confirm.top_k"),
    ("confirm: {seeds: 1}", "confirm.seeds"),
    ("confirm: {top_k: three}", "confirm.top_k"),
    ("confirm: {baseline: {variant: nope}}", "confirm.baseline.variant"),
    ("confirm: {baseline: {optim.lrr: 1.0e-3}}", "confirm.baseline.optim.lrr"),
    ("confirm: {baseline: plain}", "confirm.baseline"),
    ("confirm: {seed: 3}", "confirm.seed"),
])
def test_a_bad_confirm_section_is_rejected_in_one_line(tmp_path, capsys, confirm, key):
    spec = _spec(tmp_path, confirm)
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{spec}: key '{key}'" in err


def test_the_section_validates_and_smoke_shrinks_it(tmp_path, capsys):
    path = _spec(tmp_path, "confirm: {top_k: 4, seeds: 5, baseline: {variant: plain}}")
    assert main(["validate", str(path)]) == 0
    assert "confirm top 4 + baseline variant=plain x 5 fresh seeds: up to 25 trials" in (
        capsys.readouterr().out)
    spec = load_spec(path)
    small = smoke_version(spec).confirm
    assert (small.top_k, small.seeds, small.baseline) == (2, 2, {"variant": "plain"})
    assert analysis.confirm.CONFIRM_ARM_KEY == CONFIRM_ARM_KEY  # the label the analysis reads
    # a trial's arm label is not a config key
    assert spec.resolve({CONFIRM_ARM_KEY: "x", "optim.lr": 2e-3}).optim.lr == 2e-3


def test_command_line_settings_override_the_spec_or_the_defaults(tmp_path):
    plain = build_spec(_spec(tmp_path, ""))
    assert confirm_settings(plain) == confirm_settings(plain, top_k=3, seeds=3)  # defaults
    assert confirm_settings(build_spec(_spec(tmp_path, ""), smoke=True)).top_k == 2
    spec = build_spec(_spec(tmp_path, "confirm: {top_k: 4, seeds: 5}"))
    got = confirm_settings(spec, seeds=2, baseline="warm")
    assert (got.top_k, got.seeds, got.baseline) == (4, 2, {"variant": "warm"})
    with pytest.raises(ConfigError, match="key '--top'"):
        confirm_settings(spec, top_k=0)
    with pytest.raises(ConfigError, match="key '--baseline'.*unknown variant 'nope'"):
        confirm_settings(spec, baseline="nope")


# ---- end to end ----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_smoke_campaign_goes_on_to_its_confirmation(shipped_smoke):
    # search_spaces/gated.yaml --smoke: confirm: {top_k: 3, seeds: 3, baseline: {variant:
    # batch32}}, shrunk to the top 2 x 2 seeds, plus the baseline
    experiment = shipped_smoke("gated")
    # the top 2 of the search's completed configurations (ASHA, two trials at a time, lets one
    # or two of the four complete), plus the baseline
    summary = json.loads((experiment / "summary.json").read_text())
    top = min(2, len(summary["ranking_by_config"]))
    assert top >= 1
    section = _check_section(experiment, arms=top + 1, seeds=2)
    assert [a["role"] for a in section["arms"]].count("baseline") == 1
    record = json.loads((experiment / "campaign.json").read_text())
    assert [(s["name"], s["kind"], s["folder"], s["status"]) for s in record["stages"]] == [
        ("search", "search", ".", "done"), ("confirm", "confirmation", CONFIRM_DIR, "done")]
    assert record["stages"][1]["plan"]["seeds"] and record["stages"][1]["of"] == "search"
    stage = json.loads((experiment / CONFIRM_DIR / "campaign.json").read_text())
    assert stage["stage"] == "confirm" and stage["trial_count"] == 2 * (top + 1)
    trials = _confirm_trials(experiment)
    assert len(trials) == 2 * (top + 1) and all(t["reports"][-1]["finished"] for t in trials)
    assert all(t["reports"][-1]["step"] == 24 for t in trials)  # the full budget


@pytest.mark.slow
def test_confirm_on_an_experiment_that_had_no_confirmation(ray_session, asha_campaign,
                                                           tmp_path, capsys):
    # Optuna + ASHA one trial at a time: which trials complete does not hang on timing (in the
    # quickstart's smoke run, two at a time, one or two of its four do)
    experiment = tmp_path / "older"
    shutil.copytree(asha_campaign, experiment)
    for name in ("summary.json", "best_config.yaml", "search_best_config.yaml"):
        (experiment / name).unlink(missing_ok=True)
    shutil.rmtree(experiment / CONFIRM_DIR, ignore_errors=True)
    record = json.loads((experiment / "campaign.json").read_text())
    record.pop("confirmation", None)  # a record from before the confirmation stage existed
    record.pop("stages", None)
    record["request"]["spec_yaml"] = record["request"]["spec_yaml"].split("\nconfirm:")[0]
    (experiment / "campaign.json").write_text(json.dumps(record))

    confirm_campaign(str(experiment), RunOptions(), top_k=2, seeds=2)

    _check_section(experiment, arms=2, seeds=2)
    out = capsys.readouterr().out
    assert "confirmed winner:" in out
    assert f"python -m ngpt_tune train {experiment / 'best_config.yaml'}" in out
    stages = json.loads((experiment / "campaign.json").read_text())["stages"]
    assert [(s["kind"], s["folder"], s["status"]) for s in stages][-1] == (
        "confirmation", CONFIRM_DIR, "done")


@pytest.mark.slow
def test_resume_after_a_kill_in_the_confirmation_stage(tmp_path):
    spec = _spec(tmp_path, "confirm: {top_k: 2, seeds: 2}\nmax_failures: 0",
                 steps=60, eval_every=10)
    spec.write_text(spec.read_text().replace("max_concurrent_trials: 2",
                                             "max_concurrent_trials: 1"))

    def one_done_one_running(experiment: Path) -> bool:
        rows = reports(experiment / CONFIRM_DIR)
        return (sum(bool(r) and r[-1]["finished"] for r in rows) >= 1
                and any(r and not r[-1]["finished"] for r in rows))

    def finished_confirm_trials(experiment: Path) -> dict:
        assert not (experiment / "summary.json").exists()
        return {t["trial"]: t["reports"] for t in _confirm_trials(experiment)
                if t["reports"] and t["reports"][-1]["finished"]}

    killed = kill_and_resume(spec, tmp_path / "results" / "exp", when=one_done_one_running,
                             between=finished_confirm_trials, timeout=240)
    experiment, before = killed.experiment, killed.between
    assert before
    assert "resuming the confirmation stage" in killed.resumed.stdout

    _check_section(experiment, arms=2, seeds=2)
    trials = _confirm_trials(experiment)
    assert len(trials) == 4
    assert len({(t["arm"], t["seed"]) for t in trials}) == 4
    for t in trials:  # a trial finished before the kill did not run again
        if t["trial"] in before:
            assert t["reports"] == before[t["trial"]]
        assert t["reports"][-1]["step"] == 60
    history = load_experiment(experiment / CONFIRM_DIR).history
    assert not history.duplicated(["trial_id", "step"]).any()


@pytest.mark.parametrize("flags, key", [(["--top", "0"], "--top"), (["--seeds", "1"], "--seeds"),
                                        (["--baseline", "nope"], "--baseline")])
def test_bad_confirm_flags_are_rejected_before_ray_starts(tmp_path, capsys, flags, key):
    from ngpt_tune.request import RunRequest

    experiment = tmp_path / "exp"
    experiment.mkdir()
    request = RunRequest.from_file(_spec(tmp_path, "")).to_record()
    (experiment / "campaign.json").write_text(json.dumps({"request": request}))
    assert main(["confirm", str(experiment), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"key '{key}'" in err
