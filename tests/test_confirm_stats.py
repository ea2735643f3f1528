"""analysis.confirm_stats: the confirmation statistics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.confirm_stats import compare_runs, confirm_stats
from analysis.report import format_confirm

T975 = {2: 4.302652729911275}  # Student's t, 97.5% quantile, from a printed table


def runs(arms: dict[str, tuple[list[int], list[float]]], *, search: dict | None = None,
         baseline: str | None = None) -> pd.DataFrame:
    """One row per run: arm -> (seeds, values); search: arm -> (rank, search value)."""
    rows = []
    for arm, (seeds, values) in arms.items():
        rank, value = (search or {}).get(arm, (None, None))
        for s, v in zip(seeds, values):
            rows.append({"arm": arm, "role": "baseline" if arm == baseline else "candidate",
                         "seed": s, "value": v, "search_value": value, "search_rank": rank})
    return pd.DataFrame(rows)


def paired_by_hand(a: list[float], b: list[float]) -> tuple[float, float, list[float]]:
    d = np.subtract(a, b)
    n, mean, sd = len(d), d.mean(), math.sqrt(((d - d.mean()) ** 2).sum() / (len(d) - 1))
    se = sd / math.sqrt(n)
    t = mean / se
    p = 2 * sps.t.sf(abs(t), n - 1)
    half = sps.t.ppf(0.975, n - 1) * se
    return t, p, [mean - half, mean + half]


def test_paired_t_by_hand():
    a, b = [1.0, 1.2, 1.1], [1.5, 1.6, 1.7]
    out = compare_runs(pd.Series(a, index=[10, 11, 12]), pd.Series(b, index=[12, 11, 10]))
    # seeds matched by value, not position: b for seeds 10, 11, 12 is 1.7, 1.6, 1.5
    d = np.array([1.0 - 1.7, 1.2 - 1.6, 1.1 - 1.5])  # -0.7, -0.4, -0.4: mean -0.5
    sd = math.sqrt(((d + 0.5) ** 2).sum() / 2)  # sqrt((0.04 + 0.01 + 0.01) / 2)
    t = -0.5 / (sd / math.sqrt(3))
    assert out["test"] == "paired_t" and out["n"] == [3, 3]
    assert out["effect"] == pytest.approx(-0.5)
    assert out["t"] == pytest.approx(t) and out["df"] == 2
    assert out["p_value"] == pytest.approx(2 * sps.t.sf(abs(t), 2))
    half = T975[2] * sd / math.sqrt(3)
    assert out["effect_ci95"] == pytest.approx([-0.5 - half, -0.5 + half])


def test_welch_when_seeds_differ_by_hand():
    a, c = [1.0, 1.2, 1.1], [1.3, 1.5, 1.4, 1.9]
    out = compare_runs(pd.Series(a, index=[0, 1, 2]), pd.Series(c, index=[5, 6, 7, 8]))
    va, vc = np.var(a, ddof=1) / 3, np.var(c, ddof=1) / 4  # 0.01 / 3 and 0.0692 / 4
    diff = np.mean(a) - np.mean(c)  # 1.1 - 1.525
    t = diff / math.sqrt(va + vc)
    df = (va + vc) ** 2 / (va**2 / 2 + vc**2 / 3)
    half = sps.t.ppf(0.975, df) * math.sqrt(va + vc)
    assert out["test"] == "welch_t"
    assert out["effect"] == pytest.approx(-0.425)
    assert out["t"] == pytest.approx(t) and out["df"] == pytest.approx(df)
    assert out["p_value"] == pytest.approx(2 * sps.t.sf(abs(t), df))
    assert out["effect_ci95"] == pytest.approx([diff - half, diff + half])


def test_too_few_runs_or_no_spread_are_not_tested():
    one = compare_runs(pd.Series([1.0], index=[0]), pd.Series([2.0, 2.1], index=[0, 1]))
    assert one["p_value"] is None and "needs 2 or more" in one["reason"]
    flat = compare_runs(pd.Series([1.0, 2.0], index=[0, 1]), pd.Series([2.0, 3.0], index=[0, 1]))
    assert flat["p_value"] is None and "no spread" in flat["reason"]  # every difference is -1


SEEDS = [100, 101, 102]
ARMS = {  # three candidates and a baseline, the same three fresh seeds each (paired)
    "a": (SEEDS, [1.00, 1.20, 1.10]),  # confirmed mean 1.10: the leader
    "b": (SEEDS, [1.50, 1.60, 1.70]),  # 1.60
    "c": (SEEDS, [1.12, 1.31, 1.07]),  # 1.1667, close to a
    "base": (SEEDS, [1.55, 1.80, 1.60]),  # 1.65
}
SEARCH = {"a": (1, 0.90), "b": (2, 1.00), "c": (3, 1.05)}


@pytest.fixture
def section():
    return confirm_stats(runs(ARMS, search=SEARCH, baseline="base"), mode="min")


def test_per_arm_mean_std_ci(section):
    arms = {a["arm"]: a for a in section["arms"]}
    assert [a["arm"] for a in section["arms"]] == ["a", "c", "b", "base"]  # confirmed order
    assert [a["confirmed_rank"] for a in section["arms"]] == [1, 2, 3, None]
    b = arms["b"]
    assert (b["n"], b["mean"], b["std"]) == (3, pytest.approx(1.6), pytest.approx(0.1))
    assert b["ci95"] == pytest.approx([1.6 - T975[2] * 0.1 / math.sqrt(3),
                                       1.6 + T975[2] * 0.1 / math.sqrt(3)])
    assert section["leader"] == "a"


def test_comparisons_holm_and_verdicts_by_hand(section):
    comps = {(c["arm"], c["against_role"]): c for c in section["comparisons"]}
    assert set(comps) == {("a", "baseline"), ("b", "baseline"), ("c", "baseline"),
                          ("b", "leader"), ("c", "leader")}
    raw = {k: paired_by_hand(ARMS[k[0]][1], ARMS["base" if k[1] == "baseline" else "a"][1])[1]
           for k in comps}
    for k, c in comps.items():
        assert c["test"] == "paired_t"
        assert c["p_value"] == pytest.approx(raw[k])
    # the family also holds b vs c (all pairs of candidates: the leader was picked from the
    # same runs), tested but not shown: 6 tests
    raw[("b", "other")] = paired_by_hand(ARMS["b"][1], ARMS["c"][1])[1]
    assert section["family_size"] == 6
    # Holm by hand: sort ascending, multiply the i-th smallest (from 0) by m - i, running max
    keys = sorted(raw, key=raw.get)
    m, running, holm = len(keys), 0.0, {}
    for i, k in enumerate(keys):
        running = max(running, min(1.0, (m - i) * raw[k]))
        holm[k] = running
    for k, c in comps.items():
        assert c["p_holm"] == pytest.approx(holm[k])
        assert c["effect_ci95"] is not None  # the effect's interval beside every verdict
        expected = "within noise" if holm[k] >= 0.05 else ("better" if c["effect"] < 0 else "worse")
        assert c["verdict"] == expected
    # the numbers this design gives: a beats the baseline, b is worse than a, c within noise
    assert comps[("a", "baseline")]["effect"] == pytest.approx(1.10 - 1.65)
    assert comps[("b", "leader")]["effect"] == pytest.approx(0.5)
    assert comps[("c", "leader")]["verdict"] == "within noise"
    arms = {a["arm"]: a for a in section["arms"]}
    assert arms["c"]["vs_leader"] == "within noise" and arms["a"]["vs_leader"] is None


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    from analysis.best_arm import holm

    raw = [0.01, None, 0.04, 0.03, 0.5, 0.012]
    reject, adjusted, _, _ = multipletests([p for p in raw if p is not None], method="holm")
    got = [r for r in holm(raw, 0.05) if r is not None]
    assert [p for p, _ in got] == pytest.approx(adjusted.tolist())
    assert [r for _, r in got] == reject.tolist() and holm(raw, 0.05)[1] is None


def test_winners_curse_optimism_and_rank_correlation(section):
    arms = {a["arm"]: a for a in section["arms"]}
    # search - confirmed; for a loss the search was optimistic by confirmed - search
    assert arms["a"]["search_minus_confirmed"] == pytest.approx(0.90 - 1.10)
    assert arms["a"]["optimism"] == pytest.approx(0.20)
    assert arms["b"]["optimism"] == pytest.approx(0.60)
    assert arms["c"]["optimism"] == pytest.approx((1.12 + 1.31 + 1.07) / 3 - 1.05)
    curse = section["winners_curse"]
    assert curse["mean_optimism"] == pytest.approx(np.mean([0.2, 0.6, 3.5 / 3 - 1.05]))
    # search ranks a, b, c = 1, 2, 3; confirmed ranks a, c, b = 1, 2, 3 -> b: 3, c: 2
    # rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * (0 + 1 + 1) / 24 = 0.5
    assert curse["spearman"] == pytest.approx(0.5)
    assert curse["search_order"] == ["a", "b", "c"] and curse["confirmed_order"] == ["a", "c", "b"]


def test_probability_of_being_best_splits_ties_evenly():
    # three paired seeds, equal means: a = (1, 3, 2), b = (2, 2, 2). The old bootstrap gave a
    # tied resample to the first arm (P(a best) = 0.75 on two seeds); the posterior is
    # symmetric in two arms with equal means, so the tie is split: 0.5 each
    data = runs({"a": ([0, 1, 2], [1.0, 3.0, 2.0]), "b": ([0, 1, 2], [2.0, 2.0, 2.0])},
                search={"a": (1, 1.0), "b": (2, 1.5)})
    section = confirm_stats(data, mode="min")
    p = {a["arm"]: a["p_best"] for a in section["arms"]}
    assert section["p_best"]["method"].startswith("paired posterior")
    assert p["a"] == pytest.approx(0.5, abs=0.02) and p["a"] + p["b"] == pytest.approx(1.0)
    assert confirm_stats(data, mode="min")["arms"][0]["p_best"] == p["a"]  # fixed seed
    exact = runs({"a": ([0, 1, 2], [1.0, 1.0, 1.0]), "b": ([0, 1, 2], [1.0, 1.0, 1.0])})
    assert [a["p_best"] for a in confirm_stats(exact)["arms"]] == [0.5, 0.5]  # no spread at all
    clear = confirm_stats(runs({"a": ([0, 1, 2], [1.0, 1.1, 1.2]),
                                "b": ([5, 6, 7], [3.0, 3.1, 3.0])}), mode="min")
    assert clear["p_best"]["method"] == "independent t posteriors"
    assert clear["arms"][0]["p_best"] > 0.99  # t posteriors on 2 df have heavy tails
    # two seeds are too few: no P(best) rather than a 3-point bootstrap
    few = confirm_stats(runs({"a": ([0, 1], [1.0, 1.1]), "b": ([0, 1], [3.0, 3.1])}))
    assert [a["p_best"] for a in few["arms"]] == [None, None]
    assert "needs 3 seeds" in few["p_best"]["note"]
    # one missing seed no longer breaks the pairing: the common seeds are used
    gap = confirm_stats(runs({"a": ([0, 1, 2, 3], [1.0, 1.2, 1.1, 1.3]),
                              "b": ([0, 1, 2], [1.5, 1.7, 1.6])}))
    assert gap["p_best"]["method"].startswith("paired") and gap["p_best"]["seeds"] == 3
    assert gap["arms"][0]["p_best"] > 0.99


def test_mode_max_flips_verdicts_and_optimism():
    data = runs({"a": (SEEDS, [0.60, 0.70, 0.65]), "b": (SEEDS, [0.30, 0.35, 0.32])},
                search={"a": (1, 0.80), "b": (2, 0.50)})
    section = confirm_stats(data, mode="max", metric="accuracy")
    assert section["leader"] == "a"
    [comp] = section["comparisons"]
    assert comp["arm"] == "b" and comp["verdict"] == "worse"
    assert section["arms"][0]["optimism"] == pytest.approx(0.80 - 0.65)


def test_diverged_runs_are_counted_not_averaged():
    data = runs({"a": (SEEDS, [1.0, math.inf, 1.2]), "b": (SEEDS, [1.5, 1.6, 1.7])})
    arm = next(a for a in confirm_stats(data)["arms"] if a["arm"] == "a")
    assert (arm["n"], arm["n_failed"], arm["mean"]) == (2, 1, pytest.approx(1.1))


def test_printed_table(section):
    section["winner"] = {"arm": "a", "mean": 1.1, "n": 3, "ci95": [0.85, 1.35], "note": None,
                         "command": "python -m ngpt_tune train /x/best_config.yaml"}
    text = "\n".join(format_confirm(section, "val_loss"))
    assert "optimism" in text and "P(best)" in text and "vs baseline" in text
    assert "b vs leader a: +0.5000" in text
    assert "confirmed winner: a: 1.1000" in text
    assert "re-run it alone: python -m ngpt_tune train /x/best_config.yaml" in text


def test_one_arm_or_one_without_divergences_is_best_and_says_why():
    one = confirm_stats(runs({"a": ([1, 2], [6.7, 6.8])}))
    assert one["arms"][0]["p_best"] == 1.0 and one["p_best"]["method"] == "the only arm"
    lines = format_confirm({**one, "winner": None}, "val_loss")
    assert "P(best): the only arm" in lines and not any("over 0 seeds" in x for x in lines)
    diverged = confirm_stats(runs({"a": (SEEDS, [1.0, 1.1, 1.2]),
                                   "b": (SEEDS, [0.5, math.inf, 0.6])}))
    assert diverged["p_best"]["method"] == "the only arm with the fewest diverged runs"
    assert [a["p_best"] for a in diverged["arms"]] == [1.0, 0.0]
