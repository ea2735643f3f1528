"""Ladder campaigns: the `ladder:` section (ngpt_tune/ladder.py), what runs at each size and at
the target (ngpt_tune/ladder_plan.py), the outputs, and a smoke ladder end to end (its sizes, the
fit, the target search and its confirmation, in one command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ladder_data import RAW, SIZES, TARGET, synthetic_trials

from analysis.ladder import plot_ladder
from analysis.ladder_fit import fit_ladder
from ngpt_tune.errors import ConfigError
from ngpt_tune.ladder_plan import size_spec, target_mapping, target_ranges, target_search
from ngpt_tune.space import Param
from ngpt_tune.spec import load_spec, parse_spec
from ngpt_tune.spec_sections import parse_ladder, smoke_ladder

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("section, key", [
    ({"sizes": SIZES[:1], "target": TARGET}, "ladder.sizes"),
    ({"sizes": SIZES, "target": TARGET, "axis": "flops"}, "ladder.axis"),
    ({"sizes": SIZES, "target": TARGET, "tokens": "chinchilla"}, "ladder.tokens"),
    ({"sizes": SIZES, "target": TARGET, "sizez": 1}, "ladder.sizez"),
    ({"sizes": SIZES, "target": TARGET, "near_best": 0}, "ladder.near_best"),
    ({"sizes": SIZES, "target": TARGET, "bootstrap": 10}, "ladder.bootstrap"),
    ({"sizes": SIZES}, "ladder.target"),
    ({"sizes": [*SIZES, {"n_embd": 30, "n_head": 4}], "target": TARGET}, "ladder.sizes[3]"),
    ({"sizes": [*SIZES, {"n_wide": 30}], "target": TARGET}, "ladder.sizes[3].model.n_wide"),
    ({"sizes": [SIZES[0], SIZES[0]], "target": TARGET}, "ladder.sizes"),
    ({"sizes": SIZES, "target": TARGET, "axis": "depth"}, None),  # 2, 2, 4: fine
])
def test_bad_ladder_sections_rejected_in_one_line(section, key):
    if key is None:
        assert parse_ladder(section).axis == "depth"
        return
    with pytest.raises(ConfigError) as err:
        parse_ladder(section)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"key '{key}")


def test_bad_ladder_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**RAW, "ladder": {"sizes": SIZES, "target": TARGET,
                                                      "axis": "flops"}}))
    with pytest.raises(ConfigError, match=r"bad.yaml: key 'ladder.axis'"):
        load_spec(path)


def test_rung_spec_forces_size_tokens_and_seed():
    spec = parse_spec(RAW)
    ladder = parse_ladder({"sizes": SIZES, "target": TARGET, "tokens": "proportional"})
    rung = size_spec(spec, ladder, 1)
    config = rung.resolve({"optim.lr": 1e-3, "model.alpha": 0.1})
    assert (config.model.n_layer, config.model.n_embd) == (2, 64)
    assert config.train.steps == 400  # 4x the first rung's non-embedding parameters
    assert rung.searcher.seed == spec.searcher.seed + 1
    assert rung.name == "lad-rung1"


def test_shipped_ladder_spec_and_its_smoke_version():
    ladder = load_spec(ROOT / "search_spaces" / "ladder.yaml").ladder
    assert len(ladder.sizes) >= 3 and ladder.axis == "params"
    small = smoke_ladder(ladder)
    sizes = {small.size_of(s) for s in small.sizes}
    assert len(sizes) == 3 and max(sizes) < small.size_of(small.target)


def test_outputs_summary_plot_and_runnable_target_spec(tmp_path):
    ladder = parse_ladder({"sizes": SIZES, "target": TARGET})
    params = [Param("optim.lr", "loguniform", (1e-4, 1.0)),
              Param("model.alpha", "loguniform", (0.01, 1.0))]
    section = fit_ladder(ladder, synthetic_trials(ladder, {"optim.lr": (0.01, -0.35),
                                                     "model.alpha": (0.5, 0.4)}), params)
    ranges = target_ranges(parse_spec(RAW), ladder, section["fits"])
    generated = target_mapping(RAW, ladder, ranges)
    spec = parse_spec(generated)  # runs directly
    in_campaign = target_search(parse_spec(RAW), ladder, ranges)  # the same search, as a stage
    assert [(p.key, p.args) for p in in_campaign.params] == [(p.key, p.args) for p in spec.params]
    assert in_campaign.resolve({}).model.n_embd == 192 and in_campaign.confirm.top_k == 3
    assert spec.base_config.model.n_embd == 192 and spec.confirm.top_k == 3
    lo, hi = section["fits"]["optim.lr"]["prediction_ci"]
    lr = next(p for p in spec.params if p.key == "optim.lr")
    assert lr.args[0] < lo < hi < lr.args[1] < 1.0
    alpha = next(p for p in spec.params if p.key == "model.alpha")
    assert alpha.args[1] <= 1.0  # kept in alpha's valid range
    assert plot_ladder(section, tmp_path / "ladder.png").stat().st_size > 1000
    assert parse_spec(yaml.safe_load(yaml.safe_dump(generated))).name == "lad-target"


@pytest.mark.slow
def test_smoke_ladder_end_to_end(smoke_ladder):
    """`run search_spaces/ladder.yaml --smoke`: three tiny sizes, the fit, the target search
    around the prediction and its confirmation, in one command and one folder."""
    from campaign_helpers import trial_dirs

    experiment = smoke_ladder  # built once per test run (tests/experiments.py)
    stages = json.loads((experiment / "campaign.json").read_text())["stages"]
    assert [(s["name"], s["kind"], s["status"]) for s in stages] == [
        ("rung0", "ladder_size", "done"), ("rung1", "ladder_size", "done"),
        ("rung2", "ladder_size", "done"), ("fit", "ladder_fit", "done"),
        ("target", "target_search", "done"), ("target-confirm", "confirmation", "done")]
    rungs = [experiment / f"rung{i}" for i in range(3)]
    assert all(1 <= len(trial_dirs(r)) <= 4 and (r / "summary.json").exists() for r in rungs)
    summary = json.loads((experiment / "summary.json").read_text())
    section = summary["ladder"]
    assert [r["overrides"]["model.n_embd"] for r in section["rungs"]] == [16, 24, 32]
    for key in ("model.alpha", "optim.lr"):
        fit = section["fits"][key]
        assert fit["exponent_ci"][0] <= fit["exponent"] <= fit["exponent_ci"][1]
        assert fit["prediction_ci"][0] <= fit["prediction"] <= fit["prediction_ci"][1]
        for rung in section["rungs"]:
            est = rung["optima"][key]
            assert est["low"] <= est["value"] <= est["high"] and est["method"]
    assert (experiment / "ladder.png").stat().st_size > 1000
    generated = parse_spec(yaml.safe_load((experiment / "target_spec.yaml").read_text()))
    assert generated.base["model"]["n_embd"] == 48 and generated.confirm.seeds == 3
    # the target search ran at the target size inside the predicted ranges, then was confirmed
    target = experiment / "target"
    plan = stages[4]["plan"]["ranges"]
    for trial in trial_dirs(target):
        config = json.loads((trial / "provenance.json").read_text())["config"]
        assert config["model"]["n_embd"] == 48
        low, high = plan["optim.lr"]["loguniform"]
        assert low <= config["optim"]["lr"] <= high
    assert summary["answer_stage"] == "target" and summary["confirm"]["winner"]
    assert len(trial_dirs(target / "confirm")) == 4  # top 2 x 2 fresh seeds
    assert [s["name"] for s in summary["stages"]] == [s["name"] for s in stages]
    assert all(s["ranking"] for s in summary["stages"] if s["kind"] == "ladder_size")


@pytest.mark.slow
def test_resume_of_a_finished_ladder_refits_without_training(ray_session, smoke_ladder,
                                                             tmp_path):
    """`analyze` on the ladder's folder (a copy: the shared one stays as it is) keeps its
    ladder section and every stage's ranking; `resume` of the finished ladder trains nothing
    again."""
    import shutil

    from analysis import write_outputs
    from ngpt_tune.campaign import resume_campaign
    from ngpt_tune.runner import RunOptions

    experiment = tmp_path / "ladder"
    shutil.copytree(smoke_ladder, experiment)  # copy2: the result files keep their mtimes
    summary = json.loads((experiment / "summary.json").read_text())
    write_outputs(experiment)
    again = json.loads((experiment / "summary.json").read_text())
    assert again["ladder"]["fits"].keys() == summary["ladder"]["fits"].keys()
    assert again["counts"]["total"] == summary["counts"]["total"] > 0
    assert [s["name"] for s in again["stages"]] == [s["name"] for s in summary["stages"]]
    before = {p: p.stat().st_mtime for p in experiment.glob("**/result.json")}
    assert before
    resume_campaign(str(experiment), RunOptions())
    assert {p: p.stat().st_mtime for p in experiment.glob("**/result.json")} == before
    assert json.loads((experiment / "summary.json").read_text())["ladder"]["fits"]


@pytest.mark.slow
def test_a_ladder_killed_in_a_size_and_in_its_target_search_resumes_to_the_end(killed_ladder):
    """Two stage kinds killed (kill -9) and resumed through the CLI (tests/experiments.py):
    while its second size trains, then, resumed, while its target search trains. The finished
    size is not trained again and the interrupted stages finish; that the campaign then ends as
    an uninterrupted one does (every stage done, the fit, the target search and its
    confirmation) is test_smoke_ladder_end_to_end's, on the same folder."""
    from campaign_helpers import trial_dirs

    experiment, before, again = (killed_ladder.experiment, killed_ladder.first_size,
                                 killed_ladder.second)
    assert before  # the first size had finished when the second was killed
    stages = killed_ladder.stages_at_first_kill
    assert stages["rung0"] == "done" and stages["rung1"] in ("running", "interrupted")
    said = [line for line in again.output.splitlines() if line.startswith("ngpt-tune: rung")]
    assert said[0].startswith("ngpt-tune: rung 1 (") and said[0].endswith(": resuming"), said
    assert not any(line.startswith("ngpt-tune: rung 0") for line in said)  # done: skipped
    assert "ngpt-tune: resuming the target search" in again.resumed.stdout
    assert {p: p.read_text() for p in (experiment / "rung0").glob("*/result.json")} == before
    stages = json.loads((experiment / "campaign.json").read_text())["stages"]
    assert all(s["status"] == "done" for s in stages), stages
    for i in range(3):
        rung = experiment / f"rung{i}"
        assert 1 <= len(trial_dirs(rung)) <= 4 and (rung / "summary.json").exists()
    summary = json.loads((experiment / "summary.json").read_text())
    assert set(summary["ladder"]["fits"]) == {"model.alpha", "optim.lr"}
    assert (experiment / "target_spec.yaml").is_file()
    assert len(trial_dirs(experiment / "target")) == 4
    assert len(trial_dirs(experiment / "target" / "confirm")) == 4
    assert summary["confirm"]["winner"]
