"""The ladder tests' shared data (tests/test_ladder.py, tests/test_ladder_fit.py): three small
sizes, a target, a spec without its ladder, and synthetic trials with known optima per size."""

from __future__ import annotations

import numpy as np

SIZES = [{"n_layer": 2, "n_embd": 32, "n_head": 2}, {"n_layer": 2, "n_embd": 64, "n_head": 2},
         {"n_layer": 4, "n_embd": 96, "n_head": 2}]
TARGET = {"n_layer": 6, "n_embd": 192, "n_head": 3}
RAW = {"name": "lad", "base": {"model": {"block_size": 32}, "train": {"steps": 100}},
       "search": {"optim.lr": {"loguniform": [1.0e-4, 1.0]},
                  "model.alpha": {"loguniform": [0.01, 1.0]}}}


def synthetic_trials(ladder, exponents, *, n=24, noise=0.01, seed=1):
    """Trials whose metric is a parabola in log(value) around C * size**exponent, plus noise."""
    rng = np.random.default_rng(seed)
    trials = []
    for size in ladder.sizes:
        n_params = ladder.size_of(size)
        rung = []
        for _ in range(n):
            values, metric = {}, 3.0
            for key, (scale, exponent) in exponents.items():
                opt = scale * (n_params / 1e5) ** exponent
                x = float(np.exp(rng.uniform(np.log(opt) - 1.5, np.log(opt) + 1.5)))
                values[key] = x
                metric += 0.2 * (np.log(x) - np.log(opt)) ** 2
            rung.append((values, metric + rng.normal(0, noise)))
        trials.append(rung)
    return trials
