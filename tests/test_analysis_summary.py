"""analysis.summary / outputs / report on hand-made experiments with known numbers."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import yaml
from analysis_fixtures import (
    A_FINALS,
    B_FINALS,
    N_PARAMS,
    SECONDS_PER_STEP,
    STOPPED_LOSS,
    TOKENS_PER_STEP,
    A,
    B,
    compare_finals,
    curve,
    make_alpha_lr,
    make_compare,
    make_random_search,
    write_campaign,
    write_trial,
)
from scipy import stats as sps

from analysis import format_ranking, load_experiment, summarize, write_outputs
from analysis.comparison import value_at_tokens
from ngpt_tune.config import Config, ModelConfig
from ngpt_tune.flops import flops_per_token

VOLATILE = ("analysis", "outputs")  # when and where the analysis ran


@pytest.fixture
def alpha_lr(tmp_path):
    return make_alpha_lr(tmp_path / "alpha_lr")


@pytest.fixture
def alpha_lr_summary(alpha_lr):
    return summarize(load_experiment(alpha_lr))


def test_ranking_order(alpha_lr_summary):
    ranking = alpha_lr_summary["ranking"]
    assert [e["trial_id"] for e in ranking] == ["b0", "a0", "a2", "a1", "f0", "b2", "b1"]
    assert [e["rank"] for e in ranking] == list(range(1, 8))
    assert ranking[0]["params"] == {"model.alpha": 0.28, "optim.lr": 1e-3}


def test_stopped_trials_are_listed_with_their_budget_never_ranked(alpha_lr_summary):
    s = alpha_lr_summary
    ranked = {e["trial_id"] for e in s["ranking"]}
    ranked |= {t for c in s["ranking_by_config"] for t in c["trial_ids"]}
    assert "c0" not in ranked  # its loss (6.50 at half budget) beats every finished trial
    [stopped] = s["stopped_early"]
    assert stopped["trial_id"] == "c0"
    assert (stopped["steps"], stopped["max_steps"], stopped["budget_fraction"]) == (200, 400, 0.5)
    assert stopped["tokens_seen"] == 200 * TOKENS_PER_STEP
    assert stopped["val_loss_at_stop"] == STOPPED_LOSS
    failed = {f["trial_id"]: f for f in s["failed"]}
    assert failed["d0"]["status"] == "diverged"
    assert failed["e0e0e_00009"]["error"] == "RuntimeError: CUDA out of memory"
    assert s["counts"] == {
        "total": 10,
        "completed": 7,
        "stopped": 1,
        "diverged": 1,
        "infeasible": 0,
        "errored": 1,
        "unfinished": 0,
        "pending": 0,
    }


def test_configurations_ranked_on_the_mean_over_seeds(alpha_lr_summary):
    configs = alpha_lr_summary["ranking_by_config"]
    assert [c["group"] for c in configs] == [
        "model.alpha=0.15, optim.lr=0.0005",
        "model.alpha=0.28, optim.lr=0.001",
        "model.alpha=0.2, optim.lr=0.0007",
    ]
    a, b = configs[0], configs[1]
    # computed independently: numpy mean/std and scipy's t quantile
    for entry, finals in ((a, A_FINALS), (b, B_FINALS)):
        x = np.array(finals)
        half = sps.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
        assert entry["n"] == 3 and sorted(entry["seeds"]) == [0, 1, 2]
        assert entry["mean"] == pytest.approx(x.mean())
        assert entry["std"] == pytest.approx(x.std(ddof=1))
        assert entry["ci95"] == pytest.approx([x.mean() - half, x.mean() + half])
    assert a["mean"] == pytest.approx(6.693333333)
    assert a["ci95"] == pytest.approx([6.469301, 6.917365], abs=1e-6)  # worked by hand
    assert [g["group"] for g in alpha_lr_summary["seed_groups"]] == [a["group"], b["group"]]
    assert configs[2]["n"] == 1 and configs[2]["std"] is None


def test_best_configuration_and_its_command(alpha_lr):
    summary = json.loads(write_outputs(alpha_lr, plots=False).read_text())
    best = summary["best"]
    assert best["group"] == "model.alpha=0.15, optim.lr=0.0005"
    assert best["trial_id"] == "a0" and best["final_val_loss"] == 6.60
    assert "b0" in best["note"]  # the lucky single trial is named, not chosen
    path = alpha_lr.resolve() / "best_config.yaml"
    assert best["config_path"] == str(path)
    assert best["command"] == f"python -m ngpt_tune train {path}"
    config = Config.from_yaml(path)
    assert (config.model.alpha, config.optim.lr, config.train.seed) == (0.15, 5e-4, 0)
    assert yaml.safe_load(path.read_text()) == best["config"]


def test_category_wise_analysis(alpha_lr_summary):
    alpha = alpha_lr_summary["parameters"]["model.alpha"]
    assert alpha["kind"] == "categorical"  # 3 distinct values among completed trials
    assert alpha["best_value"] == 0.15 and alpha["best_by_mean"] == 0.15
    by_value = {b["value"]: b for b in alpha["by_value"]}
    assert set(by_value) == {0.15, 0.2, 0.28}  # stopped / failed trials are not in it
    assert by_value[0.28]["mean"] == pytest.approx(np.mean(B_FINALS))


def test_continuous_parameters_are_binned_and_importance_computed(tmp_path):
    summary = summarize(load_experiment(make_random_search(tmp_path / "random", n=24)))
    lr = summary["parameters"]["optim.lr"]
    assert lr["kind"] == "continuous"
    assert len(lr["by_bin"]) == 4 and sum(b["n"] for b in lr["by_bin"]) == 24
    assert lr["by_bin"][0]["bin"][0] < lr["by_bin"][-1]["bin"][0]
    assert lr["best_by_mean"][0] <= lr["best_value"] <= lr["by_bin"][-1]["bin"][1]
    importance = summary["importance"]
    assert importance["evaluator"] == "PedAnovaImportanceEvaluator"
    assert set(importance["importances"]) == {"model.alpha", "optim.lr"}
    assert importance["importances"]["optim.lr"] > importance["importances"]["model.alpha"]


def test_importance_needs_two_varying_parameters(alpha_lr_summary, tmp_path):
    summary = summarize(load_experiment(make_compare(tmp_path / "cmp")))
    assert summary["importance"]["importances"] is None
    assert "2 searched parameters" in summary["importance"]["reason"]


def test_comparison_with_the_baseline_arm_seeded(tmp_path):
    summary = summarize(load_experiment(make_compare(tmp_path / "cmp", gap=0.5)))
    finals = compare_finals(gap=0.5)
    cmp = summary["comparison"]
    assert (cmp["by"], cmp["baseline"], cmp["tokens"]) == ("variant", "ngpt", 400 * TOKENS_PER_STEP)
    arms = {a["arm"]: a for a in cmp["arms"]}
    assert cmp["arms"][0]["arm"] == "ngpt" and arms["ngpt"]["baseline"]
    gated, base = np.array(finals["gated"]), np.array(finals["ngpt"])
    expected = sps.ttest_ind(gated, base, equal_var=False)
    assert arms["gated"]["p_value"] == pytest.approx(expected.pvalue)
    assert arms["gated"]["p_value"] < 0.05
    assert arms["gated"]["improvement"] == pytest.approx(base.mean() - gated.mean())
    assert arms["gated"]["improvement_pct"] == pytest.approx(100 * (1 - gated.mean() / base.mean()))
    assert arms["gated"]["verdict"].startswith("better than the baseline (p=")
    assert arms["gpt"]["p_value"] is None  # one seed: never a headline
    assert arms["gpt"]["verdict"].startswith("cannot be told from noise: 1 vs 3 seed(s)")


def test_small_difference_is_stated_as_noise(tmp_path):
    summary = summarize(load_experiment(make_compare(tmp_path / "cmp", gap=0.1)))
    gated = next(a for a in summary["comparison"]["arms"] if a["arm"] == "gated")
    expected = sps.ttest_ind(
        compare_finals(0.1)["gated"], compare_finals(0.1)["ngpt"], equal_var=False
    )
    assert expected.pvalue >= 0.05
    assert gated["verdict"] == f"within noise (p={expected.pvalue:.2g})"


def test_comparison_is_at_equal_tokens(tmp_path):
    """An arm with twice the batch sees twice the tokens: compare where both arms have been."""
    root = make_compare(tmp_path / "cmp")
    write_trial(
        root,
        "train_big_0",
        trial_id="big0",
        params={"variant": "big", "train.seed": 0},
        variant="big",
        batch_size=64,
        val_losses=[8.0, 7.0, 6.0, 5.0],
    )
    exp = load_experiment(root)
    assert value_at_tokens(exp.history, "big0", 400 * TOKENS_PER_STEP) == 7.0  # its step 200
    assert value_at_tokens(exp.history, "big0", 300 * TOKENS_PER_STEP) == pytest.approx(7.5)
    arms = {a["arm"]: a for a in summarize(exp)["comparison"]["arms"]}
    assert summarize(exp)["comparison"]["tokens"] == 400 * TOKENS_PER_STEP
    assert arms["big"]["mean"] == 7.0


def test_compute_totals(alpha_lr_summary, tmp_path):
    compute = alpha_lr_summary["compute"]
    steps = 7 * 400 + 200 + 200  # finished, stopped and diverged trials all count
    assert compute["total_tokens"] == steps * TOKENS_PER_STEP
    assert compute["flops"] == pytest.approx(
        steps * TOKENS_PER_STEP * flops_per_token(ModelConfig(), N_PARAMS)
    )
    assert compute["cpu_hours"] == pytest.approx(steps * SECONDS_PER_STEP / 3600)
    assert compute["hours_label"] == "CPU-hours" and compute["gpu_hours"] == 0
    gpu = summarize(load_experiment(make_compare(tmp_path / "gpu", device="cuda:0")))["compute"]
    assert gpu["hours_label"] == "GPU-hours" and gpu["gpu_hours"] == pytest.approx(7 * 40 / 3600)


def test_summary_header_and_provenance(alpha_lr_summary):
    s = alpha_lr_summary
    assert (s["campaign"], s["metric"], s["mode"]) == ("alpha_lr", "val_loss", "min")
    assert s["search_keys"] == ["model.alpha", "optim.lr"]
    assert s["provenance"]["git_commit"] == "abc123"
    assert s["dates"]["created_at"] == "2026-01-02T03:04:05+00:00"
    assert s["dates"]["first_trial_started"].startswith("2026-01-02T03:05:00")
    assert set(s["analysis"]) >= {"analyzed_at", "git_commit", "packages"}
    assert s["spec"] == {"name": "alpha_lr"}


def test_write_outputs_files_and_strict_json(alpha_lr):
    summary_path = write_outputs(alpha_lr)
    assert summary_path == alpha_lr.resolve() / "summary.json"
    text = summary_path.read_text()
    summary = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    for name in (
        "trials.parquet",
        "history.parquet",
        "best_config.yaml",
        "plots/learning_curves.png",
        "plots/metric_vs_model.alpha.png",
        "plots/metric_vs_optim.lr.png",
        "summary.json",
    ):
        assert name in summary["outputs"]
        assert (alpha_lr / name).is_file()
        if name.endswith(".png"):
            assert (alpha_lr / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leftovers = [p.name for p in alpha_lr.rglob(".*.tmp")]
    assert leftovers == []
    assert (
        next(f for f in summary["failed"] if f["trial_id"] == "d0")["params"]["model.alpha"] == 0.5
    )


def test_importance_plot_when_importance_exists(tmp_path):
    root = make_random_search(tmp_path / "random", n=20)
    write_outputs(root)
    assert (root / "plots" / "importance.png").is_file()


def test_analysis_of_a_copied_folder_is_the_same(alpha_lr, tmp_path):
    first = json.loads(write_outputs(alpha_lr, plots=False).read_text())
    elsewhere = tmp_path / "moved" / "copy"
    shutil.copytree(alpha_lr, elsewhere)
    shutil.rmtree(alpha_lr)  # nothing may point back at the original
    second = json.loads(write_outputs(elsewhere, plots=False).read_text())
    assert second["experiment"] == str(elsewhere.resolve())
    assert second["best"]["config_path"] == str(elsewhere.resolve() / "best_config.yaml")
    for summary in (first, second):
        for key in (*VOLATILE, "experiment"):
            summary.pop(key)
        summary["best"].pop("config_path")
        summary["best"].pop("command")
    assert first == second


def test_format_ranking(alpha_lr):
    summary_path = write_outputs(alpha_lr, plots=False)
    text = format_ranking(summary_path)
    assert text == format_ranking(json.loads(summary_path.read_text()))
    assert text.startswith(
        "campaign alpha_lr: 10 trials (7 completed, 1 stopped, 1 diverged, 1 errored)"
    )
    ranked, _, rest = text.partition("stopped early by the scheduler (not ranked)")
    rows = [
        line.split()
        for line in ranked.splitlines()
        if line[:1].isdigit() or line[:2].strip().isdigit()
    ]
    assert [r[1] for r in rows[:7]] == ["b0", "a0", "a2", "a1", "f0", "b2", "b1"]
    assert "c0" not in ranked and "c0" in rest and "200/400" in rest and "50%" in rest
    assert "re-run it alone: python -m ngpt_tune train " in text
    assert "errored: e0e0e_00009" in text
    cmp_text = format_ranking(summarize(load_experiment(make_compare(alpha_lr.parent / "cmp"))))
    assert "gpt: " in cmp_text and "cannot be told from noise" in cmp_text


# ---- range warnings, importance at an ASHA rung, the confirmation stage -------------------
def test_range_warnings_name_the_edge_and_propose_wider_bounds(tmp_path):
    root = make_alpha_lr(tmp_path / "alpha_lr")
    campaign = json.loads((root / "campaign.json").read_text())
    campaign["spec"] = {"params": {  # as the runner writes them (Param.describe)
        "model.alpha": "uniform(0.1, 1.0)",  # best 0.15: 5.6% from the low end
        "optim.lr": "loguniform(0.0001, 0.00052)",  # best 5e-4: ln 5 / ln 5.2 = 97.6%
    }}
    (root / "campaign.json").write_text(json.dumps(campaign))
    summary = summarize(load_experiment(root))
    warnings = {w["key"]: w for w in summary["range_warnings"]}
    lr, alpha = warnings["optim.lr"], warnings["model.alpha"]
    assert lr["edge"] == "high" and lr["position"] == pytest.approx(math.log(5) / math.log(5.2))
    # widened by half the range in log space: 5.2e-4 * sqrt(5.2) = 1.186e-3, rounded up
    assert lr["proposed"] == pytest.approx([1e-4, 1.2e-3])
    # half the range (0.45) below 0.1 is negative: a positive bound is halved instead
    assert alpha["edge"] == "low" and alpha["proposed"] == pytest.approx([0.05, 1.0])
    assert summary["parameters"]["optim.lr"]["scale"] == "log"
    assert summary["parameters"]["optim.lr"]["kind"] == "continuous"
    text = format_ranking(summary)
    assert ("range warning: optim.lr = 0.0005 is 2% from the upper bound of its loguniform "
            "range [0.0001, 0.00052] (in log space): the optimum may lie beyond it; "
            "try [0.0001, 0.0012]") in text
    centred = {"model.alpha": "uniform(0.0, 0.3)", "optim.lr": "loguniform(0.0001, 0.0025)"}
    campaign["spec"] = {"params": centred}
    (root / "campaign.json").write_text(json.dumps(campaign))
    assert summarize(load_experiment(root))["range_warnings"] == []


def test_importance_falls_back_to_the_highest_asha_rung_with_enough_trials(tmp_path,
                                                                          monkeypatch):
    """3 completed trials are too few; 3 more were stopped at step 200, 2 at step 100:
    the rung at 200 steps holds 6 trials, valued at step 200. (The rule is tested with a
    threshold of 4 trials; the shipped 20 says why no importance is shown.)"""
    import analysis.importance

    root = tmp_path / "asha"
    write_campaign(root, name="asha", search_keys=["model.alpha", "optim.lr", "train.seed"])
    campaign = json.loads((root / "campaign.json").read_text())
    campaign.update(time_attr="step", asha_budgets=[100, 400],
                    spec={"scheduler": {"reduction_factor": 2}})
    (root / "campaign.json").write_text(json.dumps(campaign))
    rng = np.random.default_rng(3)
    at_200 = {}
    for i, reports in enumerate([4, 4, 4, 2, 2, 2, 1, 1]):
        lr = float(10 ** rng.uniform(-4, -2))
        losses = [8.0 - 0.1 * r + (math.log10(lr) + 3) ** 2 for r in range(reports)]
        write_trial(root, f"t{i}", params={"model.alpha": float(rng.uniform(0.05, 0.5)),
                                           "optim.lr": lr, "train.seed": 0},
                    val_losses=losses)
        if reports >= 2:
            at_200[f"t{i}"] = losses[1]
    exp = load_experiment(root)
    too_few = summarize(exp)["importance"]
    assert too_few["importances"] is None and "needs >= 20 trials at one budget" in too_few[
        "reason"]
    assert "importance: not computed (needs >= 20" in format_ranking(summarize(exp))
    monkeypatch.setattr(analysis.importance, "MIN_TRIALS", 4)
    importance = summarize(exp)["importance"]
    assert importance["budget"] == {"level": "rung", "time_attr": "step", "at": 200.0,
                                    "n_trials": 6}
    assert importance["importances"] is not None and importance["reason"] is None
    assert "importance (PED-ANOVA, 6 trials at the ASHA rung step = 200): " in format_ranking(
        summarize(exp))
    from analysis.importance import importance_trials

    rows, _ = importance_trials(exp.trials, history=exp.history, rungs=[100.0, 200.0],
                                time_attr="step")
    assert dict(zip(rows["trial_id"], rows["_value"])) == pytest.approx(at_200)




def make_confirmation(search_root, finals: dict[str, list[float]], seeds=(10, 11, 12)):
    """A confirmation stage in ``search_root/confirm``: configurations A and B of alpha_lr
    and a baseline (alpha 0.05, lr 1e-3), re-run with fresh seeds."""
    root = search_root / "confirm"
    write_campaign(root, name="alpha_lr-confirm",
                   search_keys=["model.alpha", "optim.lr", "train.seed"])
    configs = {"A": A, "B": B, "base": {"model.alpha": 0.05, "optim.lr": 1e-3}}
    for arm, values in finals.items():
        for seed, final in zip(seeds, values):
            write_trial(root, f"trial_{arm}_{seed}", trial_id=f"{arm}{seed}",
                        params={**configs[arm], "train.seed": seed},
                        val_losses=curve(final, 4))
    return root


def test_confirmation_stage_end_to_end(alpha_lr):
    finals = {"A": [6.70, 6.76, 6.73], "B": [6.90, 6.99, 6.93], "base": [6.80, 6.86, 6.85]}
    make_confirmation(alpha_lr, finals)
    summary_path = write_outputs(alpha_lr)
    summary = json.loads(summary_path.read_text())
    confirm = summary["confirm"]
    arms = {a["arm"]: a for a in confirm["arms"]}
    group_a, group_b = "model.alpha=0.15, optim.lr=0.0005", "model.alpha=0.28, optim.lr=0.001"
    assert [a["arm"] for a in confirm["arms"]][:2] == [group_a, group_b]
    assert arms[group_a]["role"] == "candidate" and arms[group_a]["search_rank"] == 1
    assert arms[group_a]["mean"] == pytest.approx(np.mean(finals["A"]))
    assert arms[group_a]["search_value"] == pytest.approx(np.mean(A_FINALS))
    assert arms[group_b]["optimism"] == pytest.approx(np.mean(finals["B"]) - np.mean(B_FINALS))
    [base] = [a for a in confirm["arms"] if a["role"] == "baseline"]
    assert base["seeds"] == [10, 11, 12]
    tests = {(c["arm"], c["against_role"]): c for c in confirm["comparisons"]}
    assert tests[(group_a, "baseline")]["test"] == "paired_t"
    assert tests[(group_a, "baseline")]["verdict"] == "better"
    assert tests[(group_b, "leader")]["verdict"] == "worse"
    # best_config.yaml: the confirmed winner; the search's own best stays in the summary
    winner = confirm["winner"]
    assert winner["arm"] == group_a and winner["trial_id"] == "A10"
    assert yaml.safe_load((alpha_lr / "best_config.yaml").read_text()) == winner["config"]
    assert winner["config"]["train"]["seed"] == 10
    search_best = yaml.safe_load((alpha_lr / "search_best_config.yaml").read_text())
    assert search_best == summary["best"]["config"] and search_best["train"]["seed"] == 0
    assert summary["best"]["config_path"].endswith("search_best_config.yaml")
    assert (alpha_lr / "plots" / "confirmation.png").read_bytes()[:4] == b"\x89PNG"
    text = format_ranking(summary_path)
    assert "the search's best configuration: " in text
    assert f"confirmed winner: {group_a}: {np.mean(finals['A']):.4f}" in text
    assert f"re-run it alone: python -m ngpt_tune train {alpha_lr.resolve()}/best_config.yaml" \
        in text


def test_without_confirmation_best_config_is_the_searchs(alpha_lr):
    summary = json.loads(write_outputs(alpha_lr, plots=False).read_text())
    assert summary["confirm"] is None
    assert not (alpha_lr / "search_best_config.yaml").exists()
    assert yaml.safe_load((alpha_lr / "best_config.yaml").read_text()) == summary["best"]["config"]


def test_candidates_and_fresh_seeds_for_a_confirmation_stage(alpha_lr):
    from analysis.candidates import fresh_seeds, select_candidates

    exp = load_experiment(alpha_lr)
    top = select_candidates(exp, 2)
    assert [c["params"] for c in top] == [A, B]  # ranked on the mean: 6.693, then 6.80
    assert top[0]["mean"] == pytest.approx(np.mean(A_FINALS)) and top[0]["n"] == 3
    assert top[0]["config"]["optim"]["lr"] == A["optim.lr"]
    assert fresh_seeds(exp, 3) == [3, 4, 5]  # the search used seeds 0, 1 and 2
