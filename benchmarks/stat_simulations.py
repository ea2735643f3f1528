"""Seeded simulations that hold each statistical verdict of analysis/ to a number (RESULTS.md,
section 9): false-verdict rates on null campaigns, P(best) calibration, ladder interval
coverage on quadratic and asymmetric learning-rate curves, and what PED-ANOVA can tell apart.
tests/test_stat_simulations.py runs the same functions with few replications.

    python benchmarks/stat_simulations.py              # about 3 min on 2 cores
    python benchmarks/stat_simulations.py --reps 100   # quicker, wider Monte Carlo error
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import pandas as pd

from analysis.comparison import versus_baseline
from analysis.confirm_stats import confirm_stats
from analysis.ladder_fit import fit_trend, size_optimum


def null_confirm(reps: int, *, k: int = 4, seeds: int = 5, seed: int = 0) -> dict:
    """k equal candidates and an equal baseline on shared seeds (seed effects + noise): the
    share of campaigns with any "better"/"worse" verdict (family-wise error, nominal 0.05)."""
    rng = np.random.default_rng(seed)
    false = 0
    for _ in range(reps):
        effects = rng.normal(0, 1.0, seeds)
        rows = [{"arm": f"c{a}" if a < k else "base", "role": "candidate" if a < k else
                 "baseline", "seed": s, "value": 5 + effects[s] + rng.normal(0, 0.1),
                 "search_value": 5.0, "search_rank": a + 1} for a in range(k + 1)
                for s in range(seeds)]
        section = confirm_stats(pd.DataFrame(rows), rounds=500)
        false += any(c["verdict"] in ("better", "worse") for c in section["comparisons"])
    return {"reps": reps, "arms": k, "seeds": seeds, "false_verdict_rate": false / reps}


def null_compare(reps: int, *, single: int = 3, multi: int = 2, configs: int = 5,
                 seeds: int = 3, seed: int = 0) -> dict:
    """A compare: campaign with no real difference: ``single`` one-configuration arms and
    ``multi`` arms of ``configs`` configurations each (their best taken), against a baseline."""
    rng = np.random.default_rng(seed)
    false = 0
    for _ in range(reps):
        samples = {"base": rng.normal(5, 0.1, seeds).tolist()}
        best_of = {"base": 1}
        for a in range(single):
            samples[f"s{a}"], best_of[f"s{a}"] = rng.normal(5, 0.1, seeds).tolist(), 1
        for a in range(multi):
            draws = rng.normal(5, 0.1, (configs, seeds))
            samples[f"m{a}"] = draws[draws.mean(1).argmin()].tolist()
            best_of[f"m{a}"] = configs
        arms = versus_baseline(samples, "base", minimize=True, best_of=best_of)
        false += any(a["verdict"].startswith(("better", "worse")) for a in arms[1:])
    return {"reps": reps, "false_verdict_rate": false / reps}


def p_best_calibration(reps: int, *, k: int = 4, seeds: int = 5, seed: int = 0) -> dict:
    """Arms whose true means are drawn N(0, noise / sqrt(seeds)) (differences the size of the
    noise in a mean): P(best) against how often the arm is the true best (reliability in 5
    bins, the largest gap, and the expected calibration error); and with all arms equal, the
    leader's median P(best) (the old bootstrap's: 0.60 for 3, 5 and 8 arms)."""
    rng = np.random.default_rng(seed)
    probs, hits, leaders = [], [], []
    for r in range(reps):
        for equal in (False, True):
            truth = np.zeros(k) if equal else rng.normal(0, 0.1 / math.sqrt(seeds), k)
            effects = rng.normal(0, 1.0, seeds)
            rows = [{"arm": f"a{a}", "role": "candidate", "seed": s,
                     "value": 5 + truth[a] + effects[s] + rng.normal(0, 0.1),
                     "search_value": 5.0, "search_rank": a + 1}
                    for a in range(k) for s in range(seeds)]
            arms = confirm_stats(pd.DataFrame(rows), rounds=1000, seed=r)["arms"]
            if equal:
                leaders.append(arms[0]["p_best"])
                continue
            for arm in arms:
                probs.append(arm["p_best"])
                hits.append(arm["arm"] == f"a{int(np.argmin(truth))}")
    probs, hits = np.array(probs), np.array(hits, float)
    bins = np.minimum((probs * 5).astype(int), 4)
    table = [[float(probs[bins == b].mean()), float(hits[bins == b].mean()), int((bins == b).sum())]
             for b in range(5) if (bins == b).any()]
    ece = sum(n * abs(p - h) for p, h, n in table) / len(probs)
    return {"reps": reps, "arms": k, "seeds": seeds, "reliability": table,
            "max_gap": max(abs(p - h) for p, h, n in table if n >= 20),
            "ece": float(ece), "leader_median_equal": float(np.median(leaders))}


CURVES = {
    "quadratic": lambda d: 0.2 * d ** 2,
    "2x steeper above": lambda d: np.where(d < 0, 0.2 * d ** 2, 0.4 * d ** 2),
    "exponential above": lambda d: np.where(d < 0, 0.2 * d ** 2,
                                            0.1 * (np.exp(2 * d) - 1 - 2 * d)),
}


def ladder_coverage(reps: int, *, curve: str, n: int = 24, bootstrap: int = 200,
                    confidence: float = 0.9, seed: int = 0) -> dict:
    """Per-size 90% intervals and the prediction's interval against the truth: 3 sizes whose lr
    optimum follows 0.01 * (size / 1e5)^-0.35, trials drawn log-uniform within 1.5 nats of it,
    the metric a ``curve`` of log(lr / optimum) plus noise 0.01."""
    rng = np.random.default_rng(seed)
    sizes, target, exponent = np.array([1e5, 3e5, 1e6]), 1e7, -0.35
    truth = 0.01 * (sizes / 1e5) ** exponent
    at_target = 0.01 * (target / 1e5) ** exponent
    size_hits, pred_hits, failed, error = 0, 0, [], []
    for r in range(reps):
        optima, draws = [], []
        for i, opt in enumerate(truth):
            x = rng.uniform(math.log(opt) - 1.5, math.log(opt) + 1.5, n)
            y = 3 + CURVES[curve](x - math.log(opt)) + rng.normal(0, 0.01, n)
            est = size_optimum(np.exp(x), y, bootstrap=bootstrap, confidence=confidence,
                               seed=r * 10 + i)
            size_hits += est["low"] <= opt <= est["high"]
            failed.append(est["failed_draws"])
            optima.append(est["value"])
            draws.append(est["draws"])
        fit = fit_trend(sizes, optima, draws, target, confidence=confidence)
        pred_hits += fit["prediction_ci"][0] <= at_target <= fit["prediction_ci"][1]
        error.append(fit["prediction"] / at_target - 1)
    return {"curve": curve, "reps": reps, "per_size_coverage": size_hits / (3 * reps),
            "prediction_coverage": pred_hits / reps, "failed_draws": float(np.mean(failed)),
            "prediction_bias": float(np.median(error))}


def importance_signal(reps: int, *, sizes: tuple[int, ...] = (6, 10, 20, 30), seed: int = 0
                      ) -> dict:
    """PED-ANOVA's share for lr when lr sets the loss and alpha does nothing, against its share
    when neither does: the mean of each, per number of trials."""
    import analysis.importance as importance
    from analysis.importance import param_importance

    rng = np.random.default_rng(seed)
    old, importance.MIN_TRIALS = importance.MIN_TRIALS, 2
    out = {}
    try:
        for n in sizes:
            shares = {"lr matters": [], "nothing matters": []}
            for _ in range(reps):
                lr = 10 ** rng.uniform(-4, -2, n)
                alpha = rng.uniform(0.05, 0.5, n)
                for case in shares:
                    signal = (np.log10(lr) + 3) ** 2 if case == "lr matters" else 0
                    frame = pd.DataFrame({"status": "completed", "optim.lr": lr,
                                          "model.alpha": alpha,
                                          "final_val_loss": 5 + signal + rng.normal(0, 0.1, n)})
                    got = param_importance(frame, ["optim.lr", "model.alpha"])["importances"]
                    if got:
                        shares[case].append(got["optim.lr"])
            out[n] = {case: float(np.mean(v)) for case, v in shares.items()}
    finally:
        importance.MIN_TRIALS = old
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400, help="replications per simulation")
    args = parser.parse_args(argv)
    start = time.time()
    record = {
        "null_confirm": [null_confirm(args.reps, k=k) for k in (2, 4)],
        "null_compare": null_compare(args.reps),
        "p_best": [p_best_calibration(args.reps // 2, k=k) for k in (3, 5, 8)],
        "ladder": [ladder_coverage(args.reps // 4, curve=c) for c in CURVES],
        "importance": importance_signal(max(10, args.reps // 20)),
    }
    record["seconds"] = round(time.time() - start, 1)
    print(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
