"""The confirmation stage's plan: is the search's winner real?

A search keeps the luckiest of many noisy trials, so its best value is optimistic (the prior
campaign's best gated run scored 6.597 and re-ran at 6.775). After the search, this stage
re-runs its ``top_k`` configurations (ranked on the mean over seeds) with ``seeds`` fresh seeds
each (seeds no search trial used, the same for every arm, so that comparisons are paired), at
their full budget (FIFO: no early stopping), beside an optional baseline arm. It is a second
Ray Tune experiment, a grid over (arm, seed), in a folder inside the search's
(``confirm/``; ``confirm-2/``... for later ones with other settings), recorded as a stage in
the campaign's ``campaign.json`` with its plan.

``analysis.confirm`` turns it into ``summary.json``'s ``confirm`` section and
``best_config.yaml`` (the confirmed winner). ``ngpt_tune.stages`` runs it as a stage of kind
``confirmation``; this module plans it (no Ray until :meth:`ConfirmPlan.tune_parts`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from analysis.candidates import fresh_seeds, select_candidates
from analysis.load import load_experiment
from ngpt_tune.errors import ConfigError, NgptTuneError
from ngpt_tune.experiment import CONFIRM_ARM_KEY, CONFIRM_DIR, SEED_KEY, VARIANT_KEY
from ngpt_tune.smoke import smoke_confirm
from ngpt_tune.spec import CampaignSpec, ConfirmSpec, confirm_baseline


@dataclass(frozen=True)
class ConfirmPlan:
    """What the stage runs: every arm (label, role, searched values) x the same fresh seeds."""

    path: str  # the stage's folder, relative to the search's experiment folder
    top_k: int
    seeds: tuple[int, ...]
    arms: tuple[dict[str, Any], ...]  # {"arm", "role", "values", "search_rank", "search_mean"}
    baseline: dict[str, Any] | None = None  # as asked: {variant: NAME} and/or overrides

    @property
    def keys(self) -> list[str]:
        """Every config key some arm sets, in first-seen order."""
        return list(dict.fromkeys(k for arm in self.arms for k in arm["values"]))

    def trial_count(self) -> int:
        return len(self.arms) * len(self.seeds)

    def tune_parts(self, spec: CampaignSpec) -> dict[str, Any]:
        """Tune's param_space, search_alg, scheduler and num_samples for the stage: a grid over
        (arm, seed) in the variant generator, each arm's values looked up by its label, FIFO."""
        from ray import tune  # Ray only once the stage starts: `confirm`'s checks come first
        from ray.tune.schedulers import FIFOScheduler  # Ray: as above
        from ray.tune.search import BasicVariantGenerator  # Ray: as above

        values = {arm["arm"]: arm["values"] for arm in self.arms}
        space: dict[str, Any] = {
            CONFIRM_ARM_KEY: tune.grid_search(list(values)),
            SEED_KEY: tune.grid_search(list(self.seeds)),
        }
        for key in self.keys:
            space[key] = tune.sample_from(ArmValue(values, key))
        # Tune ignores TuneConfig.max_concurrent_trials for a generator passed in: set it here
        return dict(param_space=space, scheduler=FIFOScheduler(), num_samples=1,
                    search_alg=BasicVariantGenerator(max_concurrent=spec.max_concurrent_trials))

    def to_record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "seeds": list(self.seeds), "arms": list(self.arms)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ConfirmPlan:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in record.items() if k in names}
        return cls(**{**kwargs, "seeds": tuple(kwargs["seeds"]), "arms": tuple(kwargs["arms"])})

    def describe(self) -> str:
        candidates = sum(arm["role"] == "candidate" for arm in self.arms)
        base = " + the baseline" if len(self.arms) > candidates else ""
        return (f"top {candidates} configuration(s){base} x {len(self.seeds)} fresh seeds "
                f"({', '.join(map(str, self.seeds))}): {self.trial_count()} trials")


class ArmValue:
    """``tune.sample_from`` body: the value of ``key`` in the trial's arm (None: not set)."""

    def __init__(self, values: dict[str, dict[str, Any]], key: str):
        self.values, self.key = values, key

    def __call__(self, config: dict[str, Any]) -> Any:
        return self.values[config[CONFIRM_ARM_KEY]].get(self.key)


# ---- planning (no Ray) -------------------------------------------------------------------------
def confirm_settings(spec: CampaignSpec, *, top_k: int | None = None, seeds: int | None = None,
                     baseline: str | None = None) -> ConfirmSpec:
    """The stage's settings: the spec's ``confirm:`` (or the defaults, shrunk under ``--smoke``)
    with the command line's ``--top``, ``--seeds`` and ``--baseline VARIANT`` on top."""
    settings = spec.confirm or (smoke_confirm(ConfirmSpec()) if spec.smoke else ConfirmSpec())
    changes: dict[str, Any] = {name: value for name, value in (("top_k", top_k), ("seeds", seeds))
                               if value is not None}
    if baseline is not None:
        confirm_baseline(spec, {VARIANT_KEY: baseline}, key="--baseline")
        changes["baseline"] = {VARIANT_KEY: baseline}
    try:
        return dataclasses.replace(settings, **changes)
    except ConfigError as err:
        flag = {"top_k": "--top", "seeds": "--seeds"}.get(err.key or "", err.key)
        raise ConfigError(err.detail, key=flag) from None


def plan_confirmation(experiment: str, spec: CampaignSpec, settings: ConfirmSpec,
                      *, path: str = CONFIRM_DIR) -> ConfirmPlan:
    """The arms and fresh seeds for ``experiment``'s finished search (``analysis.confirm``
    picks the configurations and the seeds)."""
    search = load_experiment(experiment)
    live = search.trials[search.trials["status"].isin(["unfinished", "pending"])]
    if len(live):
        raise NgptTuneError(f"{experiment}: the search is not finished ({len(live)} trial(s) "
                            f"unfinished): `python -m ngpt_tune resume {experiment}` first")
    candidates = select_candidates(search, settings.top_k)
    if not candidates:
        raise NgptTuneError(f"{experiment}: no completed configuration to confirm")
    arms = [{"arm": str(c["group"]), "role": "candidate", "values": _values(c["params"]),
             "search_rank": int(c["rank"]), "search_mean": _plain(c["mean"])}
            for c in candidates]
    if settings.baseline is not None:
        values = confirm_baseline(spec, settings.baseline)
        label = "baseline (" + ", ".join(f"{k}={v}" for k, v in values.items()) + ")"
        arms.append({"arm": label, "role": "baseline", "values": values,
                     "search_rank": None, "search_mean": None})
    return ConfirmPlan(path=path, top_k=settings.top_k,
                       seeds=tuple(fresh_seeds(search, settings.seeds)), arms=tuple(arms),
                       baseline=settings.baseline)


def _values(params: dict[str, Any]) -> dict[str, Any]:
    """A configuration's searched values, plain Python, inactive ones (None, NaN) left out."""
    out = {}
    for key, value in params.items():
        value = _plain(value)
        if value is not None:
            out[key] = value
    return out


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value




def free_folder(taken: set[str], base: str = CONFIRM_DIR) -> str:
    """``base``, or ``base-2``, ``base-3``... the first not in ``taken``."""
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def same_settings(plan: dict[str, Any], settings: ConfirmSpec) -> bool:
    """Whether a recorded plan was made with ``settings`` (then ``confirm`` continues it)."""
    return (plan.get("top_k"), len(plan.get("seeds") or ()), plan.get("baseline")) == (
        settings.top_k, settings.seeds, settings.baseline)
