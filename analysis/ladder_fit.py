"""A ladder's fit, from its size folders: each size's optimum of every searched continuous
parameter, how the optima move with size, and the prediction at the target size.

1. :func:`size_optimum`: per parameter, a two-sided quadratic fit of the metric against
   log(parameter) (a curvature on each side of the vertex: learning-rate curves are steeper
   above their optimum than below, and one parabola then misplaces the vertex: RESULTS.md,
   section 9) over the trials nearest the best (``near_best`` of them by metric), its vertex
   the optimum; a bootstrap over those trials gives the interval, from the draws whose fit
   succeeded (the share that failed is reported, never filled by another estimator). When the
   fit is not convex, or its vertex sits at the end of the sampled values, the fit says
   nothing about where the optimum is: the estimate falls back to the geometric mean of the
   best ``FALLBACK_TOP`` trials, says so (``method``), and is flagged in the printout, the plot
   and target_spec.yaml.
2. :func:`fit_trend`: log(optimum) = exponent * log(size) + c (``np.polyfit``), the bootstrap
   propagating each size's own bootstrap draws (a ladder has 2-5 sizes: resampling sizes
   would mostly refit the same two points); the prediction at the target with its interval.
   The sizes must be compared at the same fraction of their budget (``compared_at_fraction``);
   ``fit_folders`` warns (``budget_warning``) when they are not.

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
import pandas as pd

from analysis.load import Experiment, load_experiment
from ngpt_tune.experiment import read_campaign, read_stages
from ngpt_tune.files import join
from ngpt_tune.ladder_plan import active_ladder
from ngpt_tune.request import RunRequest, build_spec
from ngpt_tune.spec_sections import LadderSpec

CONTINUOUS = ("uniform", "loguniform", "quniform")  # searched parameters with an optimum to fit
FALLBACK_TOP = 3  # the fallback estimate: geometric mean of the best 3 trials
MIN_NEAR = 5  # a parabola through fewer trials is not worth fitting
GRID = 48  # vertex candidates profiled across the sampled span (then refined)
MAX_FAILED = 0.1  # a larger share of failed bootstrap fits is flagged in the printout


# ---- step 1: one size's optimum ------------------------------------------------------------------
def _vertex(x: np.ndarray, y: np.ndarray) -> float | None:
    """argmin of the least-squares two-sided parabola through (x, y): ``y = c + a_low (x - v)^2``
    below the vertex v and ``c + a_high (x - v)^2`` above it, both curvatures positive (real
    learning-rate curves are steeper above the optimum than below); v is profiled over a grid
    of the sampled span (refined by a parabola through the 3 best RSS), with 2 or more trials on
    each side. None when no convex fit exists or the best vertex sits at the end of the span."""
    if len(np.unique(x)) < 4:
        return None
    grid = np.linspace(x.min(), x.max(), GRID)
    d = x[None, :] - grid[:, None]  # (grid, trials)
    below = d < 0
    design = np.stack([np.ones_like(d), np.where(below, d * d, 0.0), np.where(below, 0.0, d * d)],
                      axis=2)  # (grid, trials, 3)
    usable = (below.sum(1) >= 2) & ((~below).sum(1) >= 2)
    if not usable.any():
        return None
    xtx = np.einsum("gni,gnj->gij", design[usable], design[usable])
    xty = np.einsum("gni,n->gi", design[usable], y)
    with np.errstate(all="ignore"):
        coef = np.linalg.solve(xtx + 1e-12 * np.eye(3), xty[..., None])[..., 0]
    rss = ((np.einsum("gni,gi->gn", design[usable], coef) - y) ** 2).sum(1)
    rss = np.where((coef[:, 1] > 0) & (coef[:, 2] > 0) & np.isfinite(rss), rss, np.inf)
    g = int(np.argmin(rss))
    if not np.isfinite(rss[g]) or g in (0, len(rss) - 1):
        return None
    where = grid[usable]
    r0, r1, r2 = rss[g - 1], rss[g], rss[g + 1]
    curve = r0 - 2 * r1 + r2
    step = where[g + 1] - where[g]
    shift = 0.5 * (r0 - r2) / curve if np.isfinite(curve) and curve > 0 else 0.0
    return float(where[g] + np.clip(shift, -1, 1) * step)


def _fallback(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(x[np.argsort(y)[:FALLBACK_TOP]]))


def size_optimum(values: Any, metrics: Any, *, mode: str = "min", near_best: float = 0.5,
                 log: bool = True, bootstrap: int = 1000, confidence: float = 0.9,
                 seed: int = 0) -> dict[str, Any]:
    """The optimum of one parameter from one rung's trials (``values`` of the parameter,
    ``metrics`` of the trials): the vertex of a two-sided quadratic fit (:func:`_vertex`) of the
    metric against log(value) over the ``near_best`` share of the trials (at least
    ``MIN_NEAR``), best first; a bootstrap over those trials for the interval, from the draws
    whose fit succeeded only (``failed_draws``: the share that did not; never replaced by the
    fallback). Returns value, low, high, method (``quadratic`` or ``fallback: ...``), n_fit,
    failed_draws, covers (what the interval is an interval of) and ``draws`` (the bootstrap
    optima, ``bootstrap`` of them: the successful ones resampled)."""
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
    estimate = _vertex
    if vertex is None:
        method = ("fallback: too few distinct trials for a parabola" if len(np.unique(x)) < 4
                  else "fallback: the fit is not convex inside the sampled range")
        vertex, estimate = _fallback(x, y), _fallback
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        pick = rng.integers(0, len(x), len(x))
        v = estimate(x[pick], y[pick])
        if v is not None:
            draws.append(v)
    failed = 1 - len(draws) / bootstrap if bootstrap else 0.0
    draws_arr = np.asarray(draws if draws else [vertex], dtype=float)
    lo, hi = np.quantile(draws_arr, [(1 - confidence) / 2, (1 + confidence) / 2])
    back = np.exp if log else (lambda v: v)
    full = draws_arr[rng.integers(0, len(draws_arr), bootstrap)] if bootstrap else draws_arr
    return {"value": float(back(vertex)), "low": float(back(lo)), "high": float(back(hi)),
            "method": method, "n_fit": int(n), "failed_draws": float(failed),
            "covers": f"{confidence:.0%} percentile bootstrap over the size's trials: where "
                      f"this size's optimum lies, at its compared budget ({method})",
            "draws": back(full)}


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
            "prediction_ci": [float(v) for v in np.quantile(preds, q)],
            "covers": f"{confidence:.0%} percentile intervals from refitting the line to each "
                      "bootstrap draw of the sizes' optima: the exponent, and where the "
                      "target's optimum lies if the power law holds (trial noise only, not the "
                      "law's own error)"}


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
        fits[p.key]["fallback_sizes"] = [
            r["size"] for r in rungs if r["optima"][p.key]["method"] != "quadratic"]
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
    budget = exp.trials["max_steps"].dropna().max() if "max_steps" in exp.trials else None
    fraction = (None if step is None or budget is None or pd.isna(budget) or not budget
                else float(step / budget))
    return {"step": None if step is None else int(step), "fraction": fraction, "trials": pairs}


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
        entry["compared_at_fraction"] = size["fraction"]
    section["budget_warning"] = budget_warning([c["fraction"] for c in compared])
    return section


def budget_warning(fractions: list[float | None]) -> str | None:
    """A sentence when the sizes were compared at different fractions of their budgets (a
    size whose trials were mostly stopped early is then read at a partial budget, where the
    optimum of the learning rate is not the full run's); None when they agree (within 1%)."""
    known = [f for f in fractions if f is not None]
    if len(known) < len(fractions):
        return "some sizes' budgets are unknown: cannot check they are compared alike"
    if known and max(known) - min(known) > 0.01:
        shown = ", ".join(f"{f:.0%}" for f in fractions)
        return (f"the sizes are compared at different fractions of their budget ({shown}): "
                "the trend mixes partial and full runs; read it with care")
    return None


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
