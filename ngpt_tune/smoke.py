"""``--smoke``: any campaign shrunk to a CPU-sized run (tiny model, built-in corpus, few steps,
at most four trials), for a quick end-to-end check of a spec and of the machinery."""

from __future__ import annotations

import dataclasses

from ngpt_tune.presets import preset
from ngpt_tune.spec import CampaignSpec, ConfirmSpec

SMOKE_MAX_TRIALS = 4
SMOKE_CONFIRM_TOP_K, SMOKE_CONFIRM_SEEDS = 2, 2  # the confirmation stage: top 2 x 2 seeds
SMOKE_RUN = preset("smoke")  # forced on every trial, after base, variant and searched values
SMOKE_MODEL = {k.removeprefix("model."): v for k, v in SMOKE_RUN.items() if k.startswith("model.")}


def smoke_confirm(confirm: ConfirmSpec | None) -> ConfirmSpec | None:
    """The confirmation stage shrunk: the top ``SMOKE_CONFIRM_TOP_K`` configurations x
    ``SMOKE_CONFIRM_SEEDS`` fresh seeds (the baseline, if any, stays)."""
    if confirm is None:
        return None
    return dataclasses.replace(confirm, top_k=min(confirm.top_k, SMOKE_CONFIRM_TOP_K),
                               seeds=min(confirm.seeds, SMOKE_CONFIRM_SEEDS))


def smoke_version(spec: CampaignSpec) -> CampaignSpec:
    """``spec`` shrunk: searched size keys are dropped, budgets rescaled, at most
    ``SMOKE_MAX_TRIALS`` trials (a grid keeps two values of one axis, seeds paired)."""
    params = tuple(p for p in spec.params if p.key not in SMOKE_RUN)
    repeats = min(spec.repeats, 2)
    small = dataclasses.replace(
        spec, params=params, repeats=repeats, smoke=True, forced={**spec.forced, **SMOKE_RUN},
        scheduler=dataclasses.replace(spec.scheduler, grace_period="auto", max_t="auto",
                                      reduction_factor=2.0),
        resources=dataclasses.replace(spec.resources, cpus_per_trial=1.0, gpus_per_trial=0),
        max_concurrent_trials=2, confirm=smoke_confirm(spec.confirm))
    if small.trial_count() <= SMOKE_MAX_TRIALS:
        return small
    if spec.searcher.name != "grid":
        return dataclasses.replace(small, num_samples=max(1, SMOKE_MAX_TRIALS // repeats))
    # two values of one axis (the compared arm and its baseline, if any), the first of the others
    axis = spec.compare.by if spec.compare else params[0].key
    cut = []
    for p in params:
        keep = p.args[:1]
        if p.key == axis:
            first = (spec.compare.baseline,) if spec.compare else ()
            keep = (first + tuple(v for v in p.args if v not in first))[:2]
        cut.append(dataclasses.replace(p, args=keep))
    return dataclasses.replace(small, params=tuple(cut))
