"""Ladder campaigns: search the same space at several model sizes, fit how each optimum moves
with size, and predict the target size's optimum with a confidence interval.

A spec's ``ladder:`` section (:class:`LadderSpec`) lists the sizes (model overrides by dotted
key), the token rule, the ``target`` size and the size axis. The ``search:`` section is searched
at every rung (:func:`rung_spec`: the rung's size forced on every trial, the searcher seeded
``seed + rung``). Then, from the trials of each rung:

1. :func:`size_optimum`: per searched continuous parameter, a quadratic fit of the metric
   against log(parameter) over the trials nearest the best (``near_best`` of them by metric),
   its vertex the optimum; a bootstrap over those trials gives the interval. When the fitted
   parabola opens downward, or its vertex lies outside the sampled values, the fit says nothing
   about where the optimum is: the estimate falls back to the geometric mean of the best
   ``FALLBACK_TOP`` trials, and says so (``method``).
2. :func:`fit_trend`: log(optimum) = exponent * log(size) + c (``np.polyfit``), the bootstrap
   propagating each rung's own bootstrap draws (a ladder has 2-5 rungs: resampling rungs would
   mostly refit the same two points); the prediction at the target size with its interval.
3. :func:`target_spec`: a spec for the target size that searches a narrow bracket around the
   prediction, with its confirmation stage.

The default size axis is the non-embedding parameter count (:func:`non_embedding_params`): it
is what the compute per token scales with (Kaplan et al. 2020, arXiv 2001.08361, found the
cleanest power laws in it); it joins width and depth into one number, so a ladder that grows
both (4x192 -> 6x256 -> 8x384) has one axis; and the embedding count only tracks the vocabulary.
``width`` (n_embd) or ``depth`` (n_layer) fit against one dimension when the ladder varies only
that one.

Nothing here imports Ray; :func:`run_ladder` (which does) runs the rungs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ngpt_tune.config import TrainConfig, get_dotted, nest_dotted, set_dotted
from ngpt_tune.errors import ConfigError
from ngpt_tune.flops import non_embedding_params
from ngpt_tune.spec_sections import AXES, TOKEN_RULES, LadderSpec, parse_ladder, smoke_ladder

__all__ = ["AXES", "TOKEN_RULES", "LadderSpec", "fit_ladder", "fit_trend", "load_ladder",
           "non_embedding_params", "write_outputs",
           "parse_ladder", "rung_spec", "size_optimum", "smoke_ladder", "split_ladder",
           "target_spec"]

CONTINUOUS = ("uniform", "loguniform", "quniform")  # searched parameters with an optimum to fit
FALLBACK_TOP = 3  # the fallback estimate: geometric mean of the best 3 trials
MIN_NEAR = 5  # a parabola through fewer trials is not worth fitting
def split_ladder(raw: dict[str, Any]) -> tuple[dict[str, Any], LadderSpec | None]:
    """A raw spec mapping without its ``ladder:`` section, and that section parsed."""
    if not isinstance(raw, dict) or "ladder" not in raw:
        return raw, None
    rest = {k: v for k, v in raw.items() if k != "ladder"}
    return rest, parse_ladder(raw["ladder"])


def load_ladder(path: str | os.PathLike) -> tuple[Any, LadderSpec | None, dict[str, Any]]:
    """(CampaignSpec without its ladder, the ladder or None, the raw mapping as written)."""
    from ngpt_tune.config import load_yaml
    from ngpt_tune.spec import parse_spec

    raw = load_yaml(path)
    try:
        rest, ladder = split_ladder(raw)
    except ConfigError as err:
        raise err.with_source(str(path)) from None
    return parse_spec(rest, source=str(path)), ladder, raw


def rung_spec(spec: Any, ladder: LadderSpec, rung: int) -> Any:
    """The campaign of one rung: ``spec`` with the rung's size forced on every trial (after
    ``--smoke``'s shrinking), its token budget, and the searcher seeded ``seed + rung``."""
    steps = int(spec.forced.get("train.steps", _base(spec, "train.steps", TrainConfig().steps)))
    rung_steps = ladder.steps_for(rung, steps)
    forced = {**spec.forced, **ladder.rungs[rung], "train.steps": rung_steps}
    scheduler = spec.scheduler
    if rung_steps != steps and scheduler.time_attr == "step":  # budgets scale with the tokens
        scale = rung_steps / steps
        scheduler = dataclasses.replace(
            scheduler, **{k: getattr(scheduler, k) * scale for k in ("grace_period", "max_t")
                          if getattr(scheduler, k) != "auto"})
    searcher = dataclasses.replace(spec.searcher, seed=spec.searcher.seed + rung)
    return dataclasses.replace(spec, name=f"{spec.name}-rung{rung}", forced=forced,
                               scheduler=scheduler, searcher=searcher, confirm=None)


def _base(spec: Any, key: str, default: Any) -> Any:
    node: Any = spec.base
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


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


# ---- step 3: the target spec ---------------------------------------------------------------------
def target_spec(raw: dict[str, Any], ladder: LadderSpec, section: dict[str, Any], *,
                steps: int | None = None) -> dict[str, Any]:
    """A spec (a mapping, for YAML) for the target size: the original spec without its ladder,
    the target size in ``base``, each fitted parameter searched over the prediction interval
    widened ``ladder.bracket`` times each way (log-uniform), and a confirmation stage."""
    from ngpt_tune.spec import parse_spec

    out = copy.deepcopy({k: v for k, v in raw.items() if k != "ladder"})
    out["name"] = f"{raw['name']}-target"
    out["description"] = (f"Generated by the ladder '{raw['name']}': the target size, searched "
                          f"around the predicted optimum ({ladder.confidence:.0%} interval "
                          f"widened x{ladder.bracket:g} each way), then confirmed.")
    base = nest_dotted(dict(out.get("base") or {})) if out.get("base") else {}
    for key, value in ladder.target.items():
        set_dotted(base, key, value)
    if steps is not None:
        set_dotted(base, "train.steps", steps)
    out["base"] = base
    search = dict(out.get("search") or {})
    original = {k: dict(v) for k, v in search.items() if isinstance(v, dict)}
    for key, fit in section["fits"].items():
        lo, hi = fit["prediction_ci"]
        search[key] = {"loguniform": [float(f"{lo / ladder.bracket:.4g}"),
                                      float(f"{hi * ladder.bracket:.4g}")]}
    out["search"] = search
    out["confirm"] = {"top_k": 3, "seeds": 3}
    try:
        parse_spec(out)
    except ConfigError:  # a bracket past a key's valid range (alpha <= 1): keep inside the old
        for key in section["fits"]:
            lo, hi = search[key]["loguniform"]
            bounds = next(iter(v for d, v in original.get(key, {}).items() if d != "when"),
                          [lo, hi])
            search[key] = {"loguniform": [max(lo, min(bounds)), min(hi, max(bounds))]}
        parse_spec(out)
    return out


def write_outputs(experiment: str | os.PathLike, section: dict[str, Any],
                  generated: dict[str, Any]) -> dict[str, Path]:
    """The ``ladder`` section merged into summary.json, the plot, and the target spec."""
    import yaml

    from analysis.ladder import plot_ladder

    folder = Path(experiment)
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary["ladder"] = section
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    spec_path = folder / "target_spec.yaml"
    spec_path.write_text(yaml.safe_dump(generated, sort_keys=False))
    plot_path = plot_ladder(section, folder / "ladder.png")
    return {"summary": summary_path, "spec": spec_path, "plot": plot_path}


# ---- running the rungs (Ray) ---------------------------------------------------------------------
RUNGS_KEY = "ladder_rungs_done"  # campaign.json: the rungs whose search has ended


def run_ladder(spec: Any, options: Any, *, request: Any, command: str) -> str:
    """``run`` of a spec with a ``ladder:`` section: one Ray Tune experiment per rung, stored
    in the campaign folder as ``rung0``, ``rung1``...; then the fit and its outputs."""
    import datetime as dt

    from ngpt_tune import runner
    from ngpt_tune.experiment import campaign_record, write_campaign
    from ngpt_tune.provenance import provenance

    runner.check_devices(spec, options)
    runner._tune_environment()
    storage = runner.resolve_storage(options.storage)
    name = options.name or f"{spec.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    experiment = runner._join(storage, name)
    ladder = active_ladder(spec)
    print(f"ngpt-tune: ladder '{spec.name}', {len(ladder.sizes)} rungs x {spec.trial_count()} "
          f"trials, results in {experiment}", flush=True)
    runner.init_ray(options)
    write_campaign(experiment, {**campaign_record(spec, request=request.to_record(),
                                                  command=command, provenance=provenance()),
                                RUNGS_KEY: []})
    return _run_rungs(experiment, spec)


def resume_ladder(experiment: str, spec: Any, options: Any) -> str:
    """``resume``: the interrupted rung continues where Tune saved it, later rungs start."""
    from ngpt_tune import runner

    runner.check_devices(spec, options)
    runner._tune_environment()
    runner.init_ray(options)
    print(f"ngpt-tune: resuming the ladder '{spec.name}' from {experiment}", flush=True)
    return _run_rungs(experiment, spec)


def active_ladder(spec: Any) -> LadderSpec:
    """The spec's ladder, shrunk under ``--smoke``."""
    return smoke_ladder(spec.ladder) if spec.smoke else spec.ladder


def _run_rungs(experiment: str, spec: Any) -> str:
    from ray import tune

    from ngpt_tune import runner
    from ngpt_tune.experiment import campaign_record, read_campaign, write_campaign

    ladder = active_ladder(spec)
    trials = []
    for i in range(len(ladder.sizes)):
        rung, name = rung_spec(spec, ladder, i), f"rung{i}"
        folder = runner._join(experiment, name)
        done = i in read_campaign(experiment).get(RUNGS_KEY, [])
        restore = done or tune.Tuner.can_restore(folder)
        print(f"ngpt-tune: rung {i} ({_describe(ladder.sizes[i])}): "
              f"{'done' if done else 'resuming' if restore else 'searching'}", flush=True)
        if not restore:  # the rung's own record, for its analysis (resume the ladder's folder)
            top = read_campaign(experiment)
            record = campaign_record(rung, request=top["request"], command=top["command"],
                                     provenance=top["provenance"])
            write_campaign(folder, {k: v for k, v in record.items() if k != "request"})
        tuner = runner.build_tuner(rung, storage=experiment, name=name, restore=restore)
        results = tuner.get_results() if done else tuner.fit()
        if not done:
            runner._finish(folder, results)
            if any(not r.metrics.get("done", True) for r in results):
                print(f"interrupted at rung {i}: resume with `python -m ngpt_tune resume "
                      f"{experiment}`")
                return experiment
            record = read_campaign(experiment)
            write_campaign(experiment, {**record, RUNGS_KEY: [*record.get(RUNGS_KEY, []), i]})
        trials.append(rung_trials(results, rung))
    return _fit_and_write(experiment, spec, ladder, trials)


def _describe(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k.removeprefix('model.')}={v}" for k, v in overrides.items())


def rung_trials(results: Any, spec: Any) -> dict[str, Any]:
    """A rung's trials compared at one budget: the largest step that at least ``MIN_NEAR``
    trials reached (ASHA stops most trials early; comparing a stopped trial's last value with a
    finished one's would mix budgets). Returns {"step": ..., "trials": [(values, metric)]}."""
    keys = [p.key for p in spec.params]
    curves = []
    for result in results:
        frame = result.metrics_dataframe
        if result.error or frame is None or spec.metric not in frame or "step" not in frame:
            continue
        frame = frame[["step", spec.metric]].dropna()
        values = {k: get_dotted(result.config, k) for k in keys}
        curves.append((values, dict(zip(frame["step"], frame[spec.metric]))))
    steps = sorted({s for _, curve in curves for s in curve}, reverse=True)
    need = min(MIN_NEAR, len(curves))
    step = next((s for s in steps if sum(s in c for _, c in curves) >= need), None)
    pairs = [(v, float(c[step])) for v, c in curves if step in c] if step is not None else []
    return {"step": step, "trials": pairs}


def _fit_and_write(experiment: str, spec: Any, ladder: LadderSpec, rungs: list[Any]) -> str:
    import yaml

    section = fit_ladder(ladder, [r["trials"] for r in rungs], spec.params, mode=spec.mode,
                         seed=spec.searcher.seed)
    for entry, rung in zip(section["rungs"], rungs):
        entry["compared_at_step"] = rung["step"]
    raw = yaml.safe_load(Path(spec.source).read_text()) if spec.source else {"name": spec.name}
    first_steps = int(spec.forced.get("train.steps", _base(spec, "train.steps",
                                                           TrainConfig().steps)))
    steps = ladder.steps_for(len(ladder.sizes), first_steps) if ladder.tokens != "equal" else None
    generated = target_spec(raw, ladder, section, steps=steps)
    paths = write_outputs(experiment, section, generated)
    for key, fit in section["fits"].items():
        lo, hi = fit["prediction_ci"]
        print(f"ladder: {key} ~ size^{fit['exponent']:.3f} "
              f"[{fit['exponent_ci'][0]:.3f}, {fit['exponent_ci'][1]:.3f}]; at the target: "
              f"{fit['prediction']:.4g} [{lo:.4g}, {hi:.4g}]")
    print(f"ladder summary: {paths['summary']}\nladder plot: {paths['plot']}\n"
          f"target spec: {paths['spec']} (run it with `python -m ngpt_tune run {paths['spec']}`)")
    print(f"results: {experiment}")
    return experiment
