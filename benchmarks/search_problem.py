"""The search-efficiency problem: the searched space, the training it searches over (a tiny
nGPT on the built-in corpus, on GPT-2's vocabulary or the compact one), its dense reference
sweep (cached) and the campaign spec every Ray method runs. ``search_efficiency.py`` runs the
methods on it; ``search_scores.py`` scores them.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import yaml

from ngpt_tune.config import nest_dotted
from ngpt_tune.presets import gpt2_vocabulary, preset

ALPHA = (0.02, 1.0)  # loguniform
LR = (1e-3, 0.2)  # loguniform
SCHEDULES = ["cosine", "constant"]
TINY = preset("tiny", {"data.val_tokens": 512, "train.device": "cpu", "train.threads": 1})
BASES = {"gpt2": nest_dotted(gpt2_vocabulary(TINY)),  # the problem of RESULTS.md section 3
         "compact": nest_dotted(TINY)}  # the built-in corpus in 4,096 ids: 8x faster steps
STARTUP = 6  # TPE's random start-up trials, the same for every TPE method


def dense_points(n: int) -> list[dict]:
    alphas = np.geomspace(*ALPHA, n).tolist()
    lrs = np.geomspace(*LR, n).tolist()
    return [{"model.alpha": a, "optim.lr": lr, "optim.schedule": s}
            for s, a, lr in itertools.product(SCHEDULES, alphas, lrs)]


def grid_points(n: int) -> list[dict]:
    """The user's grid: every other dense point, away from the range's edges (n = 7: 3 x 3)."""
    alphas = np.geomspace(*ALPHA, n).tolist()[1::2]
    lrs = np.geomspace(*LR, n).tolist()[1::2]
    return [{"model.alpha": a, "optim.lr": lr, "optim.schedule": s}
            for s, a, lr in itertools.product(SCHEDULES, alphas, lrs)]


def base(steps: int, vocab: str = "gpt2") -> dict:
    config = BASES[vocab]
    return {**config, "train": {**config["train"], "steps": steps,
                                "eval_every": max(1, steps // 9)}}


def _fit_point(point: dict, steps: int, vocab: str) -> tuple[float, int]:
    from ngpt_tune.config import Config
    from ngpt_tune.train import fit

    result = fit(Config.from_dict(base(steps, vocab)).override(point))
    return float(result.metrics["val_loss"]), int(result.metrics["tokens_seen"])


def reference(out: Path, *, n: int, steps: int, workers: int, vocab: str = "gpt2") -> dict:
    """The dense sweep, trained once per problem and cached in ``out``."""
    problem = {"alpha": ALPHA, "lr": LR, "schedules": SCHEDULES, "base": base(steps, vocab),
               "n": n}
    key = hashlib.sha256(json.dumps(problem, sort_keys=True).encode()).hexdigest()[:12]
    path = out / f"reference-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    points = dense_points(n)
    with cf.ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_fit_point, points, itertools.repeat(steps),
                                itertools.repeat(vocab)))
    record = {"problem": problem, "points": [{**p, "val_loss": v, "tokens": t}
                                             for p, (v, t) in zip(points, results)]}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def write_spec(folder: Path, name: str, *, steps: int, cap: int, searcher: str, seed: int,
               concurrency: int, scheduler: dict | None = None,
               searcher_keys: dict | None = None, vocab: str = "gpt2") -> Path:
    spec = {
        "name": name,
        "base": base(steps, vocab),
        "search": {"model.alpha": {"loguniform": list(ALPHA)},
                   "optim.lr": {"loguniform": list(LR)},
                   "optim.schedule": {"choice": SCHEDULES}},
        "searcher": {"name": searcher, "seed": seed, **(
            {"n_startup_trials": STARTUP} if searcher == "optuna" else {}), **(searcher_keys or {})},
        "scheduler": {"name": "asha", "time_attr": "tokens_seen", **(scheduler or {})},
        "num_samples": cap,
        "max_concurrent_trials": concurrency,
        "checkpoint": {"every": steps, "keep": 1},  # at the end only: Tune's overhead, not tokens
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
