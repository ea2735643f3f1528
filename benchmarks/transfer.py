"""Ladder transfer: does a ladder of tiny sizes predict where the next size's optimum is?

For each ``--seeds`` searcher seed, a ladder campaign (``ladder:``, run as a user runs it:
``python -m ngpt_tune run``) searches alpha and the learning rate at three tiny widths and
predicts the optimum at the next width up with a 90% interval. Then a direct search at that
width (Optuna + ASHA, more trials, another seed) measures where its optimum is, with the same
estimator the ladder uses per size (a parabola in log space through the better half of the
trials). Printed per seed and parameter: the prediction and its interval, the measured optimum
and its interval, whether the measured value falls inside the predicted interval, and the
ratio predicted / measured. A dense sweep at the target width (every point of a log grid,
trained in full, cached in ``--out``) gives a seed-free optimum as a second reference.

The sizes are 1-layer nGPTs of widths 16, 24 and 32 (target 48) on the built-in corpus, 40
steps of 4 x 32 tokens: the CPU can afford several seeds of that, and it is far from the sizes
a GPU campaign tunes (see RESULTS.md for what it does and does not say).

    python benchmarks/transfer.py            # 16 minutes on 2 cores (beside other work)
    python benchmarks/transfer.py --smoke
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import hashlib
import itertools
import json
import math
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import yaml

from ngpt_tune.provenance import git_commit

WIDTHS = (16, 24, 32)
TARGET = 48
SEARCH = {"model.alpha": (0.01, 1.0), "optim.lr": (0.02, 2.0)}  # loguniform


def size(width: int) -> dict:
    return {"model.n_layer": 1, "model.n_embd": width, "model.n_head": 2}


def base(steps: int) -> dict:
    return {"model": {"block_size": 32},
            "data": {"dir": "builtin", "batch_size": 4, "val_tokens": 512},
            "train": {"device": "cpu", "threads": 1, "steps": steps,
                      "eval_every": max(1, steps // 4)}}


def campaign(name: str, *, steps: int, trials: int, seed: int, ladder: dict | None) -> dict:
    spec = {
        "name": name,
        "base": base(steps),
        "search": {k: {"loguniform": list(v)} for k, v in SEARCH.items()},
        "searcher": {"name": "optuna", "seed": seed, "n_startup_trials": max(2, trials // 3)},
        "scheduler": {"name": "asha", "time_attr": "step"},
        "num_samples": trials,
        "max_concurrent_trials": 2,
        "checkpoint": {"every": steps, "keep": 1},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
    }
    if ladder is not None:
        spec["ladder"] = ladder
    return spec


def ladder_section(widths: tuple[int, ...], target: int) -> dict:
    return {"sizes": [size(w) for w in widths], "target": size(target), "tokens": "equal",
            "axis": "params", "near_best": 0.5}


def run_ladder(folder: Path, seed: int, *, steps: int, trials: int, widths, target) -> dict:
    """The ladder through the CLI; its summary.json's ``ladder`` section."""
    from ngpt_tune.__main__ import main as cli

    name = f"ladder-{seed}"
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(campaign(name, steps=steps, trials=trials, seed=seed,
                                            ladder=ladder_section(widths, target))))
    cli(["run", str(path), "--storage", str(folder), "--name", name])
    return json.loads((folder / name / "summary.json").read_text())["ladder"]


def direct_optimum(folder: Path, seed: int, *, steps: int, trials: int, target: int) -> dict:
    """A direct search at the target size, its optimum per parameter by the ladder's
    estimator over the trials compared at one budget."""
    from analysis.ladder_fit import size_optimum, size_trials
    from analysis.load import load_experiment
    from ngpt_tune.experiment import write_campaign
    from ngpt_tune.provenance import provenance
    from ngpt_tune.request import build_spec, campaign_record
    from ngpt_tune.runner import build_tuner

    name = f"direct-{seed}"
    raw = campaign(name, steps=steps, trials=trials, seed=seed, ladder=None)
    for key, value in size(target).items():
        section, leaf = key.split(".")
        raw["base"][section][leaf] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = build_spec(str(path))
    write_campaign(folder / name, campaign_record(spec, request=None, command="transfer.py",
                                                  provenance=provenance()))  # for the analysis
    build_tuner(spec, storage=str(folder), name=name).fit()
    compared = size_trials(load_experiment(folder / name), spec.search_keys)
    out = {"compared_at_step": compared["step"], "n_trials": len(compared["trials"])}
    for key in SEARCH:
        est = size_optimum([v[key] for v, _ in compared["trials"]],
                           [m for _, m in compared["trials"]], seed=seed)
        est.pop("draws")
        out[key] = est
    return out


def _fit_point(point: dict, steps: int, target: int) -> float:
    from ngpt_tune.config import Config
    from ngpt_tune.train import fit

    config = Config.from_dict(base(steps)).override({**size(target), **point})
    return float(fit(config).metrics["val_loss"])


def dense(out: Path, *, n: int, steps: int, target: int, workers: int) -> dict:
    """Every point of an n x n log grid at the target size, trained in full, once (cached);
    its optimum per parameter by the ladder's estimator, and the grid's best point."""
    from analysis.ladder_fit import size_optimum

    problem = {"search": SEARCH, "base": base(steps), "target": size(target), "n": n}
    key = hashlib.sha256(json.dumps(problem, sort_keys=True).encode()).hexdigest()[:12]
    path = out / f"dense-{key}.json"
    if path.is_file():
        points = json.loads(path.read_text())["points"]
    else:
        axes = [np.geomspace(*SEARCH[k], n).tolist() for k in SEARCH]
        grid = [dict(zip(SEARCH, values)) for values in itertools.product(*axes)]
        with cf.ProcessPoolExecutor(workers) as pool:
            losses = list(pool.map(_fit_point, grid, itertools.repeat(steps),
                                   itertools.repeat(target)))
        points = [{**p, "val_loss": v} for p, v in zip(grid, losses)]
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"problem": problem, "points": points}))
    finite = [p for p in points if math.isfinite(p["val_loss"])]
    result = {"points": len(points), "best": min(finite, key=lambda p: p["val_loss"])}
    for key in SEARCH:
        est = size_optimum([p[key] for p in finite], [p["val_loss"] for p in finite])
        est.pop("draws")
        result[key] = est
    return result


def compare(seed: int, ladder: dict, measured: dict, reference: dict | None) -> list[dict]:
    rows = []
    for key, fit in ladder["fits"].items():
        low, high = fit["prediction_ci"]
        got = measured[key]["value"]
        row = {"seed": seed, "param": key, "exponent": fit["exponent"],
               "exponent_ci": fit["exponent_ci"], "predicted": fit["prediction"],
               "predicted_ci": [low, high], "measured": got,
               "measured_ci": [measured[key]["low"], measured[key]["high"]],
               "measured_method": measured[key]["method"],
               "inside": bool(low <= got <= high), "ratio": fit["prediction"] / got,
               "rung_optima": [r["optima"][key]["value"] for r in ladder["rungs"]]}
        if reference is not None:
            dense_value = reference[key]["value"]
            row.update(dense=dense_value, dense_inside=bool(low <= dense_value <= high),
                       dense_ratio=fit["prediction"] / dense_value)
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    table = {}
    for key in SEARCH:
        mine = [r for r in rows if r["param"] == key]
        ratios = np.array([r["ratio"] for r in mine])
        entry = {"seeds": len(mine), "inside": sum(r["inside"] for r in mine),
                 "ratio_geomean": float(np.exp(np.mean(np.log(ratios)))),
                 "ratio_range": [float(ratios.min()), float(ratios.max())],
                 "interval_width": float(np.exp(np.mean(
                     [math.log(r["predicted_ci"][1] / r["predicted_ci"][0]) for r in mine])))}
        if mine and "dense" in mine[0]:
            entry["dense_inside"] = sum(r["dense_inside"] for r in mine)
            entry["dense_ratio_geomean"] = float(np.exp(np.mean(
                np.log([r["dense_ratio"] for r in mine]))))
        table[key] = entry
    return table


def print_rows(rows: list[dict], widths: tuple[int, ...]) -> None:
    has_dense = bool(rows) and "dense" in rows[0]
    print("| seed | parameter | rung optima (widths " + ", ".join(map(str, widths)) +
          ") | exponent [90%] | predicted [90%] | measured (direct search) [90%] | inside | "
          "predicted / measured |" + (" dense sweep | inside |" if has_dense else ""))
    print("|---" * (8 + 2 * has_dense) + "|")
    for r in rows:
        lo, hi = r["predicted_ci"]
        mlo, mhi = r["measured_ci"]
        line = (f"| {r['seed']} | {r['param']} | "
                f"{', '.join(f'{v:.3g}' for v in r['rung_optima'])} | "
                f"{r['exponent']:+.2f} [{r['exponent_ci'][0]:+.2f}, {r['exponent_ci'][1]:+.2f}] | "
                f"{r['predicted']:.3g} [{lo:.3g}, {hi:.3g}] | "
                f"{r['measured']:.3g} [{mlo:.3g}, {mhi:.3g}] | {'yes' if r['inside'] else 'no'} | "
                f"{r['ratio']:.2f} |")
        if has_dense:
            line += f" {r['dense']:.3g} | {'yes' if r['dense_inside'] else 'no'} |"
        print(line)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="searcher seeds")
    parser.add_argument("--steps", type=int, default=40, help="steps of a full trial")
    parser.add_argument("--trials", type=int, default=16, help="trials per ladder size")
    parser.add_argument("--direct-trials", type=int, default=24,
                        help="trials of the direct search at the target size")
    parser.add_argument("--dense", type=int, default=7,
                        help="points per log axis of the dense sweep at the target (0: none)")
    parser.add_argument("--out", type=Path, default=None,
                        help="cache of the dense sweep (default ~/.cache/ngpt-tune/transfer)")
    parser.add_argument("--smoke", action="store_true",
                        help="1 seed, widths 8 and 16 toward 24, 4 trials of 4 steps (3 at 24)")
    args = parser.parse_args(argv)
    widths, target = WIDTHS, TARGET
    if args.smoke:
        args.seeds, args.steps, args.trials, args.direct_trials, args.dense = 1, 4, 4, 3, 0
        widths, target = (8, 16), 24
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        out = args.out or (Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
                           / "ngpt-tune" / "transfer")
        reference = dense(out, n=args.dense, steps=args.steps, target=target, workers=2) \
            if args.dense else None
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        rows = []
        try:
            for seed in range(args.seeds):
                ladder = run_ladder(root, seed, steps=args.steps, trials=args.trials,
                                    widths=widths, target=target)
                measured = direct_optimum(root, 1000 + seed, steps=args.steps,
                                          trials=args.direct_trials, target=target)
                rows += compare(seed, ladder, measured, reference)
        finally:
            ray.shutdown()
    table = summarise(rows)
    print(f"\ntransfer: widths {', '.join(map(str, widths))} (1 layer) -> {target}; "
          f"{args.steps} steps; {args.trials} trials per size, {args.direct_trials} in the "
          f"direct search; {args.seeds} seeds; axis: non-embedding parameters")
    print_rows(rows, widths)
    for key, entry in table.items():
        print(f"{key}: measured inside the predicted 90% interval in {entry['inside']} of "
              f"{entry['seeds']} seeds; predicted / measured: geometric mean "
              f"{entry['ratio_geomean']:.2f} (range {entry['ratio_range'][0]:.2f} to "
              f"{entry['ratio_range'][1]:.2f}); the interval spans x{entry['interval_width']:.1f}"
              + (f"; the dense sweep's optimum inside in {entry['dense_inside']} of "
                 f"{entry['seeds']}" if "dense_inside" in entry else ""))
    record = {"benchmark": "transfer", "device": platform.processor() or "cpu",
              "date": dt.date.today().isoformat(), "commit": git_commit(), "widths": list(widths),
              "target": target, "steps": args.steps, "trials": args.trials,
              "direct_trials": args.direct_trials, "seeds": args.seeds, "search": SEARCH,
              "dense": reference, "rows": rows, "table": table}
    print(json.dumps(record))
    return record



if __name__ == "__main__":
    main()
