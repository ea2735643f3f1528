"""A ladder's fit, from its size folders: each size's optimum of every searched continuous
parameter, how the optima move with size, and the prediction at the target size.

1. :func:`size_optimum`: per parameter, a quadratic fit of the metric against log(parameter)
   over the trials nearest the best (``near_best`` of them by metric), its vertex the
   optimum; a bootstrap over those trials gives the interval. When the fitted parabola opens
   downward, or its vertex lies outside the sampled values, the fit says nothing about where
   the optimum is: the estimate falls back to the geometric mean of the best ``FALLBACK_TOP``
   trials, and says so (``method``).
2. :func:`fit_trend`: log(optimum) = exponent * log(size) + c (``np.polyfit``), the bootstrap
   propagating each size's own bootstrap draws (a ladder has 2-5 sizes: resampling sizes
   would mostly refit the same two points); the prediction at the target with its interval.

The default size axis is the non-embedding parameter count: it is what the compute per token
scales with (Kaplan et al. 2020, arXiv 2001.08361, found the cleanest power laws in it), and
it joins width and depth into one number. :func:`fit_folders` reads the sizes' experiment
folders (``rung<i>/``, as the campaign's stage list names them), so a ladder can be analysed
from its folder alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from analysis.load import Experiment, load_experiment
from ngpt_tune.experiment import read_campaign, read_stages
from ngpt_tune.files import join
from ngpt_tune.ladder_plan import active_ladder
from ngpt_tune.request import RunRequest, build_spec
from ngpt_tune.spec_sections import LadderSpec

CONTINUOUS = ("uniform", "loguniform", "quniform")  # searched parameters with an optimum to fit
FALLBACK_TOP = 3  # the fallback estimate: geometric mean of the best 3 trials
MIN_NEAR = 5  # a parabola through fewer trials is not worth fitting


# ---- step 1: one size's optimum ------------------------------------------------------------------
def _vertex(x: np.ndarray, y: np.ndarray) -> float | None:
    """argmin of the least-squares parabola through (x, y), or None when it is not convex or
    its vertex lies outside the sampled x."""
    if len(np.unique(x)) < 3:
        return None
    a, b, _ = np.polyfit(x, y, 2)
    if not a > 0:
        return None
    vertex = -b / (2 * a)
    return float(vertex) if x.min() <= vertex <= x.max() else None


def _fallback(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(x[np.argsort(y)[:FALLBACK_TOP]]))


def size_optimum(values: Any, metrics: Any, *, mode: str = "min", near_best: float = 0.5,
                 log: bool = True, bootstrap: int = 1000, confidence: float = 0.9,
                 seed: int = 0) -> dict[str, Any]:
    """The optimum of one parameter from one rung's trials (``values`` of the parameter,
    ``metrics`` of the trials): the vertex of a quadratic fit of the metric against
    log(value) over the ``near_best`` share of the trials (at least ``MIN_NEAR``), best first;
    a bootstrap over those trials for the interval. Returns value, low, high, method
    (``quadratic`` or ``fallback: ...``), n_fit and ``draws`` (the bootstrap optima)."""
    x = np.asarray(values, dtype=float)
    y = np.asarray(metrics, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) == 0:
        raise ValueError("no finished trials with this parameter")
    if mode == "max":
        y = -y
    if log:
        x = np.log(x)
    n = min(len(x), max(MIN_NEAR, math.ceil(near_best * len(x))))
    near = np.argsort(y)[:n]
    x, y = x[near], y[near]
    vertex = _vertex(x, y)
    method = "quadratic"
    if vertex is None:
        method = ("fallback: too few distinct trials for a parabola" if len(np.unique(x)) < 3
                  else "fallback: the fit is not convex inside the sampled range")
        vertex = _fallback(x, y)
    rng = np.random.default_rng(seed)
    draws = np.empty(bootstrap)
    for b in range(bootstrap):
        pick = rng.integers(0, len(x), len(x))
        v = _vertex(x[pick], y[pick]) if method == "quadratic" else None
        draws[b] = v if v is not None else _fallback(x[pick], y[pick])
    lo, hi = np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2])
    back = np.exp if log else (lambda v: v)
    return {"value": float(back(vertex)), "low": float(back(lo)), "high": float(back(hi)),
            "method": method, "n_fit": int(n), "draws": back(draws)}


# ---- step 2: the trend ---------------------------------------------------------------------------
def fit_trend(sizes: Any, optima: Any, draws: Any, target: float, *,
              confidence: float = 0.9) -> dict[str, Any]:
    """log(optimum) = exponent * log(size) + intercept, fitted to the rungs' optima; the
    interval of the exponent and of the prediction at ``target`` from refitting each bootstrap
    draw (``draws[i]``: rung i's bootstrap optima, all of one length)."""
    logn = np.log(np.asarray(sizes, dtype=float))
    logo = np.log(np.asarray(optima, dtype=float))
    exponent, intercept = np.polyfit(logn, logo, 1)
    stacked = np.log(np.vstack([np.asarray(d, dtype=float) for d in draws]))  # (rungs, B)
    slopes, cuts = np.polyfit(logn, stacked, 1)  # one line per bootstrap draw
    preds = np.exp(cuts + slopes * math.log(target))
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    return {"exponent": float(exponent), "exponent_ci": [float(v) for v in np.quantile(slopes, q)],
            "intercept": float(intercept),
            "prediction": float(math.exp(intercept + exponent * math.log(target))),
            "prediction_ci": [float(v) for v in np.quantile(preds, q)]}


def fit_ladder(ladder: LadderSpec, trials: list[Any], params: Any, *, mode: str = "min",
               seed: int = 0) -> dict[str, Any]:
    """The ``ladder`` section of summary.json. ``trials[i]``: rung i's finished trials as
    (values by dotted key, metric) pairs; ``params``: the searched :class:`Param` objects."""
    fitted = [p for p in params if p.dist in CONTINUOUS and not p.when]
    sizes = [ladder.size_of(s) for s in ladder.sizes]
    target = ladder.size_of(ladder.target)
    rungs = []
    draws: dict[str, list[np.ndarray]] = {p.key: [] for p in fitted}
    for i, (overrides, rung_trials) in enumerate(zip(ladder.sizes, trials)):
        optima = {}
        for p in fitted:
            pairs = [(v[p.key], m) for v, m in rung_trials if v.get(p.key) is not None]
            est = size_optimum([a for a, _ in pairs], [m for _, m in pairs], mode=mode,
                               near_best=ladder.near_best, log=p.values[0] > 0,
                               bootstrap=ladder.bootstrap, confidence=ladder.confidence,
                               seed=seed + i)
            draws[p.key].append(est.pop("draws"))
            optima[p.key] = est
        rungs.append({"size": sizes[i], "overrides": overrides, "n_trials": len(rung_trials),
                      "steps_rule": ladder.tokens, "optima": optima})
    fits = {}
    for p in fitted:
        optima = [r["optima"][p.key]["value"] for r in rungs]
        fits[p.key] = fit_trend(sizes, optima, draws[p.key], target, confidence=ladder.confidence)
    return {"axis": ladder.axis, "tokens": ladder.tokens, "confidence": ladder.confidence,
            "rungs": rungs, "fits": fits, "target": {"size": target, "overrides": ladder.target}}


# ---- from the folders ----------------------------------------------------------------------------
def size_trials(exp: Experiment, keys: list[str]) -> dict[str, Any]:
    """A size's trials compared at one budget: the largest step that at least ``MIN_NEAR``
    trials reached (ASHA stops most trials early; comparing a stopped trial's last value with a
    finished one's would mix budgets). Returns {"step": ..., "trials": [(values, metric)]}."""
    ran = exp.trials[~exp.trials["status"].isin(["errored", "pending"])]
    history = exp.history.dropna(subset=[exp.metric])
    curves = []
    for _, row in ran.iterrows():
        rows = history[history["trial_id"] == row["trial_id"]]
        if rows.empty:
            continue
        values = {k: _plain(row[k]) if k in row.index else None for k in keys}
        curves.append((values, dict(zip(rows["step"].astype(int), rows[exp.metric]))))
    steps = sorted({s for _, curve in curves for s in curve}, reverse=True)
    need = min(MIN_NEAR, len(curves))
    step = next((s for s in steps if sum(s in c for _, c in curves) >= need), None)
    pairs = [(v, float(c[step])) for v, c in curves if step in c] if step is not None else []
    return {"step": None if step is None else int(step), "trials": pairs}


def fit_folders(folder: str | Path) -> dict[str, Any] | None:
    """The ``ladder`` section of a ladder campaign's folder: its sizes' folders read and
    fitted. None when the folder is not a ladder or a size has not finished."""
    record = read_campaign(folder)
    sizes = [s for s in read_stages(record) if s.kind == "ladder_size"]
    if not sizes or "request" not in record or not all(s.done for s in sizes):
        return None
    spec = build_spec(RunRequest.from_record(record["request"]), check_data=False)
    ladder = active_ladder(spec)
    keys = [p.key for p in spec.params]
    compared = [size_trials(load_experiment(join(str(folder), s.folder)), keys) for s in sizes]
    section = fit_ladder(ladder, [c["trials"] for c in compared], spec.params, mode=spec.mode,
                         seed=spec.searcher.seed)
    for entry, size in zip(section["rungs"], compared):
        entry["compared_at_step"] = size["step"]
    return section


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
