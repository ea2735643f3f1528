"""Rung fidelity: how well ASHA's rungs rank configurations by their final loss, on the raw
mid-schedule loss and on cooled branches (``scheduler.cooled_rungs``), under a cosine and a
WSD schedule.

The problem is the one of ``benchmarks/search_efficiency.py`` (a 1-layer, width-32 nGPT on the
built-in corpus), at 192 steps (over 4 times its 45), so that a decaying learning rate has time
to hide late winners. A dense grid of learning rates x alphas is trained in full, in-process,
once per schedule; each run branches a cooldown (``--fraction`` of the steps so far) at every
rung, and reports its own loss beside the branch's, so one run gives both metrics (the run
itself is the same as without branches: ``tests/test_branches.py``).

At each rung of the shipped ASHA (``reduction_factor: 2``, ``grace_period: auto``: 1/4 and 1/2
of the run; 1/8, an earlier rung not shipped, for where the bias grows), per schedule and metric:

- ``spearman``: rank correlation of the rung's metric with the final loss;
- ``top3_kept``: how many of the final top 3 are in the better half at the rung (what ASHA at
  factor 2 keeps);
- ``winner_rank``: where the final winner stands at the rung (1: first);
- ``regret``: the best final loss among the kept half minus the best overall (0: the winner
  survives).

    nice -n 15 python benchmarks/rung_fidelity.py            # 7 x 3 grid, 2 workers
    python benchmarks/rung_fidelity.py --smoke                # seconds: 3 configurations, 4 steps
    python benchmarks/rung_fidelity.py --rescore OUTPUT       # no training: a record's table again
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from ngpt_tune.asha import rung_budgets
from ngpt_tune.config import Config, nest_dotted
from ngpt_tune.presets import gpt2_vocabulary, preset
from ngpt_tune.provenance import git_commit

ALPHA = (0.02, 1.0)  # search_efficiency.py's ranges
LR = (1e-3, 0.2)
SCHEDULES = ("cosine", "wsd")
BASE = gpt2_vocabulary(preset("tiny", {"data.val_tokens": 512, "train.device": "cpu",
                                       "train.threads": 1}))
REDUCTION_FACTOR = 2.0  # the shipped ASHA (SchedulerSpec's default), grace auto = max_t / rf**2


def rung_steps(steps: int) -> list[int]:
    """The shipped ASHA's rungs below the last step, and the one before them (not shipped)."""
    shipped = rung_budgets(steps / REDUCTION_FACTOR**2, steps, REDUCTION_FACTOR)
    early = shipped[0] / REDUCTION_FACTOR
    return [int(r) for r in [early, *shipped] if 1 <= r < steps]


def grid(lr_points: int, alpha_points: int) -> list[dict]:
    lrs = np.geomspace(*LR, lr_points).tolist()
    alphas = np.geomspace(*ALPHA, alpha_points).tolist() if alpha_points > 1 else [0.14]
    return [{"optim.lr": lr, "model.alpha": a} for lr, a in itertools.product(lrs, alphas)]


def train(point: dict, schedule: str, steps: int, rungs: list[int], fraction: float,
          val_tokens: int = 512) -> dict:
    """One configuration in full: the final loss and, at each rung, raw and cooled."""
    from ngpt_tune.branches import CooledRungs
    from ngpt_tune.train import fit

    eval_every = int(np.gcd.reduce(rungs))
    config = Config.from_dict(nest_dotted({**BASE, **point, "optim.schedule": schedule,
                                           "train.steps": steps, "train.eval_every": eval_every,
                                           "data.val_tokens": val_tokens}))
    reports: list[dict] = []
    fit(config, report=lambda m, save: reports.append(m),
        cooled_rungs=CooledRungs(tuple(rungs), fraction))
    at = {r["step"]: r for r in reports}
    last = reports[-1]
    print(f"{schedule} lr {point['optim.lr']:.4g} alpha {point['model.alpha']:.3g}: "
          f"{last['val_loss']:.4f} in {last['elapsed_s']:.0f} s", file=sys.stderr, flush=True)
    return {**point, "schedule": schedule, "final": last["val_loss"],
            "raw": [at[s]["val_loss_raw"] for s in rungs],
            "cooled": [at[s]["val_loss"] for s in rungs],
            "tokens": last["tokens_seen"], "branch_tokens": last["branch_tokens"]}


def fidelity(runs: list[dict], metric: str, k: int) -> dict:
    """Spearman, final top 3 kept in the better half, the winner's rank, and regret at rung
    ``k``."""
    final = np.array([r["final"] for r in runs], dtype=float)
    at_rung = np.array([r[metric][k] for r in runs], dtype=float)
    final = np.where(np.isfinite(final), final, np.inf)
    at_rung = np.where(np.isfinite(at_rung), at_rung, np.inf)
    keep = max(1, int(np.ceil(len(runs) / REDUCTION_FACTOR)))
    order = np.argsort(at_rung, kind="stable").tolist()
    kept = set(order[:keep])
    top3 = set(np.argsort(final, kind="stable")[:3].tolist())
    return {"spearman": float(spearmanr(at_rung, final).statistic),
            "top3_kept": len(top3 & kept),
            "winner_rank": order.index(int(np.argmin(final))) + 1,
            "regret": float(min(final[i] for i in kept) - final.min())}


def table(runs: list[dict], rungs: list[int], steps: int) -> list[dict]:
    rows = []
    for schedule in SCHEDULES:
        mine = [r for r in runs if r["schedule"] == schedule]
        for metric in ("raw", "cooled"):
            for k, step in enumerate(rungs):
                rows.append({"schedule": schedule, "metric": metric, "rung_step": step,
                             "rung": f"{step}/{steps}", **fidelity(mine, metric, k)})
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=192, help="steps of a full run")
    parser.add_argument("--lr-points", type=int, default=7)
    parser.add_argument("--alpha-points", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.1,
                        help="a branch's length, as a fraction of the steps so far")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (processes)")
    parser.add_argument("--val-tokens", type=int, default=512, help="the fixed validation set")
    parser.add_argument("--smoke", action="store_true", help="3 configurations of 4 steps")
    parser.add_argument("--rescore", type=Path, metavar="OUTPUT",
                        help="no training: score the runs of an earlier output's last line")
    args = parser.parse_args(argv)
    if args.rescore:
        old = json.loads(args.rescore.read_text().strip().splitlines()[-1])
        print_table(table(old["runs"], old["rungs"], old["steps"]), old["runs"])
        return old
    if args.smoke:
        args.steps, args.lr_points, args.alpha_points, args.workers = 4, 3, 1, 1
        args.fraction, args.val_tokens = 0.5, 128
    rungs = rung_steps(args.steps)
    jobs = [(p, s) for s in SCHEDULES for p in grid(args.lr_points, args.alpha_points)]
    start = time.perf_counter()
    if args.workers > 1:
        with cf.ProcessPoolExecutor(args.workers) as pool:
            runs = list(pool.map(train, *zip(*jobs), itertools.repeat(args.steps),
                                 itertools.repeat(rungs), itertools.repeat(args.fraction),
                                 itertools.repeat(args.val_tokens)))
    else:
        runs = [train(p, s, args.steps, rungs, args.fraction, args.val_tokens) for p, s in jobs]
    rows = table(runs, rungs, args.steps)
    print_table(rows, runs)
    trained = sum(r["tokens"] for r in runs)
    branched = sum(r["branch_tokens"] for r in runs)
    record = {
        "benchmark": "rung_fidelity", "date": dt.datetime.now(dt.timezone.utc).isoformat(),
        "machine": f"{platform.machine()} {platform.node()}", "commit": git_commit(),
        "steps": args.steps, "fraction": args.fraction, "rungs": rungs,
        "configurations": len(jobs) // len(SCHEDULES), "wall_s": time.perf_counter() - start,
        "tokens": trained, "branch_tokens": branched, "rows": rows, "runs": runs,
    }
    print(json.dumps(record))
    return record


def print_table(rows: list[dict], runs: list[dict]) -> None:
    print(f"{'schedule':8} {'metric':7} {'rung':>8} {'spearman':>9} {'top3 kept':>9} "
          f"{'winner':>6} {'regret':>8}")
    for r in rows:
        print(f"{r['schedule']:8} {r['metric']:7} {r['rung']:>8} {r['spearman']:9.3f} "
              f"{r['top3_kept']:>9} {r['winner_rank']:>6} {r['regret']:8.4f}")
    for schedule in SCHEDULES:
        best = min((r for r in runs if r["schedule"] == schedule), key=lambda r: r["final"])
        print(f"best final under {schedule}: {best['final']:.4f} at lr {best['optim.lr']:.4g}, "
              f"alpha {best['model.alpha']:.3g}")


if __name__ == "__main__":
    main()
