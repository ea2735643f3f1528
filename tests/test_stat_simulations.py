"""Every verdict analysis/ prints, held to a number on seeded simulations (few replications:
benchmarks/stat_simulations.py runs the same functions with many, RESULTS.md section 9), the
two divergence cases of issue 22, and range proposals inside the config's domain for every
shipped spec."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.confirm_stats import confirm_stats
from analysis.ranges import edge_position, range_warnings, valid_value
from ngpt_tune.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def _simulations():
    spec = importlib.util.spec_from_file_location("stat_simulations",
                                                  ROOT / "benchmarks" / "stat_simulations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SIM = _simulations()


def mc_bound(rate: float, reps: int) -> float:
    """The nominal rate plus two Monte Carlo standard errors."""
    return rate + 2 * math.sqrt(rate * (1 - rate) / reps)


def runs(arms: dict[str, list[float]], seeds=None) -> pd.DataFrame:
    rows = []
    for rank, (arm, values) in enumerate(arms.items(), start=1):
        for s, v in zip(seeds or range(len(values)), values):
            rows.append({"arm": arm, "role": "candidate", "seed": s, "value": v,
                         "search_value": 1.0, "search_rank": rank})
    return pd.DataFrame(rows)


# ---- diverged runs count against their arm -----------------------------------------------
def test_an_arm_that_diverged_on_two_of_three_seeds_does_not_win():
    section = confirm_stats(runs({"a": [1.00, math.inf, math.inf], "b": [1.05, 1.06, 1.04]}))
    arms = {a["arm"]: a for a in section["arms"]}
    assert section["leader"] == "b"
    assert arms["b"]["p_best"] == 1.0 and arms["a"]["p_best"] == 0.0
    [comp] = section["comparisons"]  # a vs the leader b: b won both seeds a diverged on
    assert comp["test"] == "sign_test" and comp["wins"] == [1, 2]


def test_an_arm_that_diverged_on_the_hardest_seed_does_not_lead_the_one_it_never_beat():
    a = [1.00, 1.10, 1.20, 1.30]
    b = [v + 0.02 for v in a[:3]] + [math.inf]  # mean of its easier seeds 1.12 < 1.15
    section = confirm_stats(runs({"a": a, "b": b}))
    assert section["leader"] == "a"
    [comp] = section["comparisons"]
    assert comp["arm"] == "b" and comp["wins"] == [0, 4]  # a beats b on every seed
    assert comp["effect"] == pytest.approx(0.02)


def test_when_every_arm_diverged_the_leader_is_flagged():
    section = confirm_stats(runs({"a": [1.0, math.inf, 1.1], "b": [1.2, 1.3, math.inf]}))
    assert section["leader"] == "a"
    assert any("diverged on 1 of 3 seeds" in n for n in section["notes"])


def test_a_baseline_whose_mean_beats_the_leader_is_noted():
    data = runs({"a": [1.0, 1.3, 1.1], "base": [0.9, 1.35, 1.05]})
    data.loc[data["arm"] == "base", "role"] = "baseline"
    notes = confirm_stats(data)["notes"]
    assert any("baseline's mean" in n and "within noise" in n for n in notes)


# ---- null campaigns: false verdicts at most the nominal rate -----------------------------
def test_null_confirmation_false_verdicts_within_nominal():
    result = SIM.null_confirm(40, k=4)
    assert result["false_verdict_rate"] <= mc_bound(0.05, 40)


def test_null_compare_arms_false_verdicts_within_nominal():
    result = SIM.null_compare(300)
    assert result["false_verdict_rate"] <= mc_bound(0.05, 300)


def test_p_best_is_calibrated_and_not_overconfident_on_equal_arms():
    result = SIM.p_best_calibration(30, k=4)
    assert result["ece"] <= 0.12
    assert result["leader_median_equal"] <= 0.45  # fair: 1/4; the old bootstrap: 0.60


def test_spearman_p_is_exact_with_three_candidates():
    section = confirm_stats(pd.DataFrame([
        {"arm": a, "role": "candidate", "seed": s, "value": v + 0.01 * s,
         "search_value": sv, "search_rank": r}
        for a, v, sv, r in (("a", 1.0, 0.9, 1), ("b", 1.1, 0.95, 2), ("c", 1.2, 0.97, 3))
        for s in range(3)]))
    curse = section["winners_curse"]
    assert curse["spearman"] == pytest.approx(1.0)
    assert curse["spearman_p"] == pytest.approx(1 / 3)  # 2 of the 6 pairings are as extreme
    assert curse["spearman_method"] == "exact permutation"


# ---- the ladder's intervals on quadratic and asymmetric truths -------------------------
@pytest.mark.parametrize("curve", ["quadratic", "2x steeper above"])
def test_ladder_intervals_cover(curve):
    result = SIM.ladder_coverage(12, curve=curve)
    assert result["per_size_coverage"] >= 0.8
    assert result["prediction_coverage"] >= 0.75
    assert result["failed_draws"] < 0.25


# ---- range proposals stay inside the config's domain -----------------------------------
@pytest.mark.parametrize("path", sorted((ROOT / "search_spaces").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_range_proposals_inside_the_domain_for_every_shipped_spec(path):
    spec = load_spec(path)
    space = {p.key: {"dist": p.dist, "args": list(p.values)} for p in spec.params
             if p.dist in ("uniform", "loguniform", "quniform", "randint")}
    for key, dist in space.items():
        low, high = dist["args"]
        for value in (low, high):
            [warning] = range_warnings({key: dist}, {key: value})
            for bound in warning["proposed"]:
                assert valid_value(key, bound) is not False, (path.name, key, warning)


def test_proposals_clipped_on_the_quickstart_alpha_and_a_zero_weight_decay():
    up = range_warnings({"model.alpha": {"dist": "loguniform", "args": [0.005, 0.5]}},
                        {"model.alpha": 0.49})
    assert up[0]["proposed"] == [0.005, 1.0]  # not 5.0: alpha must be in (0, 1]
    zero = range_warnings({"optim.weight_decay": {"dist": "uniform", "args": [0.0, 0.1]}},
                          {"optim.weight_decay": 0.001})
    assert zero[0]["proposed"] == [0.0, 0.1]
    assert "already the edge of the values the config accepts" in zero[0]["message"]
    assert edge_position(0.001, 0.0, 0.1, log=False) == pytest.approx(0.01)
