"""What a ladder campaign runs at each size and at the target (no Ray, no fitting).

A spec's ``ladder:`` section lists model sizes, a token rule and a ``target`` size. The
``search:`` section is searched at every size (:func:`size_spec`: the size forced on every
trial, the searcher seeded ``seed + index``); ``analysis.ladder_fit`` fits how each optimum
moves with size; then :func:`target_search` is the spec of the search at the target size,
around the prediction (:func:`target_mapping` is the same as a YAML mapping, written to
``target_spec.yaml`` for a user who wants to run it by hand).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from ngpt_tune.config import TrainConfig, get_dotted, nest_dotted, set_dotted
from ngpt_tune.errors import ConfigError
from ngpt_tune.smoke import smoke_confirm
from ngpt_tune.space import parse_search
from ngpt_tune.spec import CampaignSpec, ConfirmSpec, parse_spec
from ngpt_tune.spec_sections import LadderSpec, smoke_ladder

TARGET_CONFIRM = ConfirmSpec(top_k=3, seeds=3)  # the target search's confirmation stage


def active_ladder(spec: CampaignSpec) -> LadderSpec:
    """The spec's ladder, shrunk under ``--smoke``."""
    return smoke_ladder(spec.ladder) if spec.smoke else spec.ladder


def first_steps(spec: CampaignSpec) -> int:
    """train.steps of the first size (what ``--smoke`` forced, else the base's)."""
    return int(spec.forced.get("train.steps",
                               get_dotted(spec.base, "train.steps", TrainConfig().steps)))


def size_spec(spec: CampaignSpec, ladder: LadderSpec, index: int) -> CampaignSpec:
    """The campaign at size ``index`` (``len(ladder.sizes)``: the target): ``spec`` with that
    size forced on every trial (after ``--smoke``'s shrinking), its token budget, and the
    searcher seeded ``seed + index``."""
    steps = first_steps(spec)
    size_steps = ladder.steps_for(index, steps)
    forced = {**spec.forced, **ladder.rungs[index], "train.steps": size_steps}
    scheduler = spec.scheduler
    if size_steps != steps and scheduler.time_attr == "step":  # budgets scale with the tokens
        scale = size_steps / steps
        scheduler = dataclasses.replace(
            scheduler, **{k: getattr(scheduler, k) * scale for k in ("grace_period", "max_t")
                          if getattr(scheduler, k) != "auto"})
    searcher = dataclasses.replace(spec.searcher, seed=spec.searcher.seed + index)
    return dataclasses.replace(spec, name=f"{spec.name}-rung{index}", forced=forced,
                               scheduler=scheduler, searcher=searcher, confirm=None, ladder=None)


def target_ranges(spec: CampaignSpec, ladder: LadderSpec,
                  fits: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Each fitted parameter searched over its prediction interval widened ``ladder.bracket``
    times each way (log-uniform), kept inside the key's valid range (the original search's
    bounds where the widened bracket would leave it, e.g. alpha <= 1)."""
    original = {p.key: p for p in spec.params}
    ranges = {}
    for key, fit in fits.items():
        lo, hi = fit["prediction_ci"]
        low, high = float(f"{lo / ladder.bracket:.4g}"), float(f"{hi * ladder.bracket:.4g}")
        ranges[key] = {"loguniform": [low, high]}
    try:
        parse_search({k: dict(v) for k, v in ranges.items()}, spec.variants)
        _check_ranges(spec, ranges)
    except ConfigError:
        for key, bounds in ranges.items():
            lo, hi = bounds["loguniform"]
            param = original.get(key)
            if param is not None:
                lo, hi = max(lo, min(param.values)), min(hi, max(param.values))
            bounds["loguniform"] = [lo, hi]
    return ranges


def _check_ranges(spec: CampaignSpec, ranges: dict[str, dict[str, list[float]]]) -> None:
    """Both ends of every range resolve to a valid config (ConfigError otherwise)."""
    for key, bounds in ranges.items():
        for value in bounds["loguniform"]:
            spec.resolve({key: value})


def first_point(searcher: str, ranges: dict[str, dict[str, list[float]]],
                prediction: dict[str, float] | None) -> dict[str, float] | None:
    """The predicted optimum (kept inside ``ranges``): the target search's first trial, where
    its searcher (``optuna``) takes points to evaluate first."""
    if searcher != "optuna" or not prediction:
        return None
    point = {}
    for key, bounds in ranges.items():
        if key in prediction:
            lo, hi = bounds["loguniform"]
            point[key] = min(max(float(prediction[key]), lo), hi)
    return point or None


def target_search(spec: CampaignSpec, ladder: LadderSpec,
                  ranges: dict[str, dict[str, list[float]]],
                  prediction: dict[str, float] | None = None) -> CampaignSpec:
    """The search at the target size around the prediction (``ranges``), the predicted
    optimum its first trial, with its confirmation stage (shrunk under ``--smoke``)."""
    at_target = size_spec(spec, ladder, len(ladder.sizes))
    narrowed = {p.key: p for p in parse_search(ranges, spec.variants)}
    params = tuple(narrowed.get(p.key, p) for p in spec.params)
    confirm = smoke_confirm(TARGET_CONFIRM) if spec.smoke else TARGET_CONFIRM
    searcher = at_target.searcher
    point = first_point(searcher.name, ranges, prediction)
    if point is not None:
        searcher = dataclasses.replace(searcher, points_to_evaluate=(point,))
    return dataclasses.replace(at_target, name=f"{spec.name}-target", params=params,
                               confirm=confirm, searcher=searcher)


def target_mapping(raw: dict[str, Any], ladder: LadderSpec,
                   ranges: dict[str, dict[str, list[float]]], *,
                   steps: int | None = None,
                   prediction: dict[str, float] | None = None) -> dict[str, Any]:
    """The target search as a spec mapping (for ``target_spec.yaml``): the original spec
    without its ladder, the target size in ``base``, the narrowed ``ranges``, the predicted
    optimum as the first point to evaluate, and a confirmation stage."""
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
    out["search"] = {**dict(out.get("search") or {}), **ranges}
    out["confirm"] = {"top_k": TARGET_CONFIRM.top_k, "seeds": TARGET_CONFIRM.seeds}
    searcher = out.get("searcher") or {}
    searcher = {"name": searcher} if isinstance(searcher, str) else dict(searcher)
    point = first_point(searcher.get("name", "optuna"), ranges, prediction)
    if point is not None:
        out["searcher"] = {**searcher, "points_to_evaluate": [point]}
    parse_spec(out)
    return out
