"""analysis.ranking: the search's ranking of configurations counts diverged seeds against them,
the confirmation's rule (analysis.best_arm)."""

from __future__ import annotations

import math

import pandas as pd

from analysis.ranking import rank_configs

A = [1.00, 1.10, 1.20, 1.30]  # one value per seed, the last seed the hardest


def _trials(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"trial_id": f"{name}{seed}", "config_id": name, "group": f"lr={name}", "lr": name,
             "seed": seed, "final_val_loss": v,
             "status": "completed" if math.isfinite(v) else "diverged"}
            for name, vals in values.items() for seed, v in enumerate(vals)]
    return pd.DataFrame(rows)


def _rank(trials: pd.DataFrame, *, with_diverged: bool = True) -> list[tuple[str, int, int]]:
    done = trials[trials["status"] == "completed"]
    diverged = trials[trials["status"] == "diverged"] if with_diverged else None
    return [(c["config_id"], c["n"], c["n_diverged"])
            for c in rank_configs(done, ["lr"], True, diverged=diverged)]


def test_a_configuration_that_diverged_on_its_hardest_seed_does_not_lead():
    # b is a + 0.02 on every seed, and diverged on the hardest: the mean of its easier seeds
    # (1.12) beats a's (1.15), which led b before the rule
    trials = _trials({"a": A, "b": [v + 0.02 for v in A[:3]] + [math.inf]})
    assert _rank(trials, with_diverged=False)[0][0] == "b"  # the old ranking, for contrast
    assert _rank(trials) == [("a", 4, 0), ("b", 3, 1)]


def test_one_good_seed_and_two_divergences_rank_below_three_worse_finished_seeds():
    trials = _trials({"a": [1.00, math.inf, math.inf], "b": [1.05, 1.06, 1.04]})
    assert _rank(trials) == [("b", 3, 0), ("a", 1, 2)]


def test_without_divergences_the_order_is_the_mean():
    trials = _trials({"a": [1.2, 1.3], "b": [1.0, 1.1], "c": [1.1, 1.15]})
    assert [c for c, _, _ in _rank(trials)] == ["b", "c", "a"]
