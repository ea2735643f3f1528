"""Where the quickstart's optimum lies: a grid of lr x alpha at quickstart.yaml's own settings
(its base config, full budget), over a few seeds, so that its search ranges can be chosen to
hold the optimum inside (RESULTS.md, section 7).

    python benchmarks/quickstart_ranges.py                      # 4 lr x 3 alpha x 2 seeds
    python benchmarks/quickstart_ranges.py --lr 0.08,0.16 --alpha 0.05 --seeds 0
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ngpt_tune.provenance import git_commit

SPEC = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"


def final_val_loss(point: tuple[float, float, int, int | None]) -> dict:
    """One training run of the quickstart's base with ``lr``, ``alpha`` and ``seed``."""
    import torch

    from ngpt_tune.request import build_spec
    from ngpt_tune.train import fit

    lr, alpha, seed, steps = point
    torch.set_num_threads(1)
    spec = build_spec(str(SPEC))
    values = {"optim.lr": lr, "model.alpha": alpha, "train.seed": seed}
    if steps is not None:
        values.update({"train.steps": steps, "train.eval_every": steps})
    reports: list[dict] = []
    fit(spec.resolve(values), report=lambda metrics, *args, **kwargs: reports.append(metrics))
    return {"lr": lr, "alpha": alpha, "seed": seed, "val_loss": reports[-1]["val_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lr", default="0.04,0.08,0.16,0.32")
    parser.add_argument("--alpha", default="0.01,0.03,0.1")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="2 runs of 6 steps (tests)")
    args = parser.parse_args()
    if args.smoke:
        args.lr, args.alpha, args.seeds = "0.08,0.16", "0.05", "0"
    grid = list(itertools.product([float(v) for v in args.lr.split(",")],
                                  [float(v) for v in args.alpha.split(",")],
                                  [int(v) for v in args.seeds.split(",")],
                                  [6 if args.smoke else None]))
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(final_val_loss, grid))
    for row in rows:
        print(f"lr {row['lr']:<6g} alpha {row['alpha']:<6g} seed {row['seed']}: "
              f"val_loss {row['val_loss']:.4f}")
    best = min(rows, key=lambda r: r["val_loss"])
    print(json.dumps({"benchmark": "quickstart_ranges", "commit": git_commit(),
                      "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                      "runs": rows, "best": best}))


if __name__ == "__main__":
    main()
