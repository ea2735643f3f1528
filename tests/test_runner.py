"""Real Ray Tune campaigns on the CPU with tiny models: Optuna + ASHA, grid with repeats, the
shipped specs that take different paths.

The campaigns are the canonical experiments of tests/experiments.py, each built once per test
run (in this process, on the one Ray instance of ``ray_session``); the kill-and-resume tests are
in tests/test_resume.py.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from campaign_helpers import results, trial_dirs
from experiments import ASHA_TRIALS

pytestmark = pytest.mark.slow


def test_optuna_asha_campaign_prunes_and_records_provenance(asha_campaign):
    experiment = asha_campaign
    trials = trial_dirs(experiment)
    assert len(trials) == ASHA_TRIALS
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
    trials = searcher._ot_study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * ASHA_TRIALS  # at their last value
    assert sum(bool(t.user_attrs.get("stopped_early")) for t in trials) == len(stopped)

    summary = json.loads((experiment / "summary.json").read_text())
    assert (experiment / "trials.parquet").exists() and (experiment / "history.parquet").exists()
    ranked_ids = {row["trial_id"] for row in summary["ranking"]}
    assert not ranked_ids & {t.name.removeprefix("trial_") for t in stopped}


GRID = [(1, "scalar"), (1, "vector"), (3, "scalar"), (3, "vector")]


def test_grid_runs_exactly_its_grid(grid_campaign):
    seen = sorted((json.loads((t / "params.json").read_text())["model.proj_every"],
                   json.loads((t / "params.json").read_text())["model.alpha_mode"])
                  for t in trial_dirs(grid_campaign))
    assert seen == sorted(GRID * 2)  # every point of the grid, once per seed (repeats: 2)
    assert all(results(t)[-1]["finished"] for t in trial_dirs(grid_campaign))


def test_repeats_run_each_configuration_with_several_seeds(grid_campaign):
    seeds = defaultdict(list)
    for t in trial_dirs(grid_campaign):
        params = json.loads((t / "params.json").read_text())
        point = (params["model.proj_every"], params["model.alpha_mode"])
        seeds[point].append(json.loads((t / "provenance.json").read_text())["seed"])
    assert sorted(seeds) == GRID
    assert all(sorted(s) == [0, 1] for s in seeds.values()), dict(seeds)


# Every shipped spec is validated and its smoke version resolved without Ray in
# tests/test_search_spaces.py. Through Ray, one spec per path the runner takes: quickstart
# (Optuna + ASHA on steps, then its confirmation: the canonical smoke_experiment), alpha_sweep
# (a grid with repeats, confirmed against a baseline given as parameters), gated (Optuna + ASHA
# on tokens over variants, a conditional parameter, confirmed against a baseline variant),
# final (a grid of variants compared with a baseline variant). The others take one of these
# paths: optimization is a grid with repeats (alpha_sweep's, without confirm:), advanced is
# Optuna + ASHA on tokens over variants with a baseline variant (gated's), architectural a grid
# of variants compared with a baseline (final's). ladder.yaml: tests/test_ladder.py.
THROUGH_RAY = ["alpha_sweep", "gated", "final"]


def _check_smoke_run(experiment: Path) -> None:
    trials = trial_dirs(experiment)
    assert 1 <= len(trials) <= 4
    assert all((t / "result.json").read_text().strip() for t in trials)
    assert (experiment / "summary.json").exists()


def test_quickstart_runs_with_smoke(smoke_experiment):
    _check_smoke_run(smoke_experiment)


@pytest.mark.parametrize("name", THROUGH_RAY)
def test_shipped_spec_runs_with_smoke(shipped_smoke, name):
    _check_smoke_run(shipped_smoke(name))  # gated's is also tests/test_confirm.py's
