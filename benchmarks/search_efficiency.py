"""Optuna + ASHA vs the full grid on the same space: tokens spent to get within 1% of the
grid's best validation loss.

The space is a grid of alpha x learning rate for a tiny nGPT on the built-in corpus. The grid
campaign runs every point to the end (FIFO). The Optuna + ASHA campaign samples the same
points (as categorical choices) with the same cap on trials and stops weak ones early. Both go
through the project's own runner (the specs are written to a temporary folder).

For the grid, the cost is every token it trained: its best is only known at the end. For
Optuna + ASHA, the cost is every token trained by all trials, up to the moment the first
trial within 1% of the grid's best (final val_loss) finishes.

    python benchmarks/search_efficiency.py               # 4 x 4 grid, 90 steps, 4 TPE seeds
    python benchmarks/search_efficiency.py --smoke
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
from pathlib import Path

import yaml

ALPHAS = [0.05, 0.1, 0.2, 0.4]
LRS = [3e-4, 1e-3, 3e-3, 1e-2]
BASE = {
    "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 32},
    "data": {"dir": "builtin", "batch_size": 4, "val_tokens": 1024},
    "train": {"device": "cpu"},
}


def write_spec(folder: Path, name: str, *, steps: int, optuna: bool, alphas, lrs,
               seed: int) -> Path:
    dist = "choice" if optuna else "grid"
    spec = {
        "name": name,
        "base": {**BASE, "train": {**BASE["train"], "steps": steps,
                                   "eval_every": max(1, steps // 9)}},
        "search": {"model.alpha": {dist: alphas}, "optim.lr": {dist: lrs}},
        "searcher": {"name": "optuna", "seed": seed, "n_startup_trials": 4} if optuna
        else "grid",
        "scheduler": {"name": "asha", "time_attr": "step", "grace_period": steps // 9,
                      "reduction_factor": 3} if optuna else "fifo",
        "num_samples": len(alphas) * len(lrs) if optuna else 1,
        "max_concurrent_trials": 2,
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def reports(experiment: Path) -> list[dict]:
    """Every report of every trial, with the trial's folder name."""
    out = []
    for trial in experiment.glob("trial_*"):
        for line in (trial / "result.json").read_text().splitlines():
            if line.strip():
                out.append({**json.loads(line), "trial": trial.name})
    return out


def run(spec_path: Path, storage: Path) -> Path:
    from ngpt_tune.runner import build_spec, build_tuner

    spec = build_spec(str(spec_path))
    build_tuner(spec, storage=str(storage), name=spec.name).fit()
    return storage / spec.name


def tokens_until(rows: list[dict], target: float) -> tuple[float | None, float]:
    """Tokens trained by all trials when the first finished trial <= target ended, and the
    campaign's total; timestamps order the reports across trials."""
    rows = sorted(rows, key=lambda r: r["timestamp"])
    seen: dict[str, int] = {}
    for r in rows:
        seen[r["trial"]] = r["tokens_seen"]
        if r["finished"] and r["val_loss"] <= target:
            return float(sum(seen.values())), float(sum(_last(rows).values()))
    return None, float(sum(_last(rows).values()))


def _last(rows: list[dict]) -> dict[str, int]:
    last: dict[str, int] = {}
    for r in rows:
        last[r["trial"]] = max(last.get(r["trial"], 0), r["tokens_seen"])
    return last


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=90, help="steps of a full trial")
    parser.add_argument("--seeds", type=int, default=4, help="Optuna campaigns (TPE seeds)")
    parser.add_argument("--smoke", action="store_true", help="a 2 x 2 grid, 18 steps")
    args = parser.parse_args(argv)
    alphas, lrs = ALPHAS, LRS
    if args.smoke:
        alphas, lrs, args.steps, args.seeds = ALPHAS[:2], LRS[2:], 18, 1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        grid_rows = reports(run(write_spec(root, "grid", steps=args.steps, optuna=False,
                                           alphas=alphas, lrs=lrs, seed=0), root))
        best = min(r["val_loss"] for r in grid_rows if r["finished"])
        target = best * 1.01
        _, grid_tokens = tokens_until(grid_rows, -1.0)
        campaigns = []
        for seed in range(args.seeds):
            rows = reports(run(write_spec(root, f"optuna{seed}", steps=args.steps, optuna=True,
                                          alphas=alphas, lrs=lrs, seed=seed), root))
            spent, total = tokens_until(rows, target)
            campaigns.append({"seed": seed, "tokens_to_target": spent, "tokens_total": total,
                              "best": min(r["val_loss"] for r in rows if r["finished"])})
    ray.shutdown()
    print(f"search_efficiency: {len(alphas)} x {len(lrs)} grid of alpha x lr, {args.steps} "
          f"steps per trial; grid best val_loss {best:.4f}, target (1%) {target:.4f}")
    print(f"grid: {grid_tokens:,.0f} tokens")
    for c in campaigns:
        share = c["tokens_to_target"] / grid_tokens if c["tokens_to_target"] else None
        reached = f"{c['tokens_to_target']:,.0f} tokens = {share:.0%} of the grid's" if share \
            else "target not reached"
        print(f"optuna+asha seed {c['seed']}: best {c['best']:.4f}; {reached}; whole campaign "
              f"{c['tokens_total'] / grid_tokens:.0%} of the grid's tokens")
        c["share_of_grid"] = share
    shares = [c["share_of_grid"] for c in campaigns if c["share_of_grid"] is not None]
    if shares:
        print(f"mean over {len(campaigns)} TPE seeds: {sum(shares) / len(shares):.0%} of the "
              f"grid's tokens ({len(shares)} of {len(campaigns)} reached the target)")
    record = {"benchmark": "search_efficiency", "device": platform.processor() or "cpu",
              "date": dt.date.today().isoformat(), "grid_points": len(alphas) * len(lrs),
              "steps": args.steps, "grid_best": best, "grid_tokens": grid_tokens,
              "optuna_asha": campaigns,
              "mean_share_of_grid": sum(shares) / len(shares) if shares else None}
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
