"""The confirmation stage: is the search's winner real?

A search keeps the luckiest of many noisy trials, so its best value is optimistic (the prior
campaign's best gated run scored 6.597 and re-ran at 6.775). After the search, this stage
re-runs its ``top_k`` configurations (ranked on the mean over seeds) with ``seeds`` fresh seeds
each (seeds no search trial used, the same for every arm, so that comparisons are paired), at
their full budget (FIFO: no early stopping), beside an optional baseline arm. It is a second
Ray Tune experiment, a grid over (arm, seed), in the search's folder::

    EXPERIMENT/campaign.json     "confirmation": {"path": "confirm", "status", the plan}
    EXPERIMENT/confirm/          the stage's own experiment folder (campaign.json, trial_*/)

``analysis.confirm`` turns it into ``summary.json``'s ``confirm`` section and
``best_config.yaml`` (the confirmed winner). The runner calls :func:`run_confirmation` after
the search, :func:`resume_confirmation` from ``resume``, and :func:`confirm_plan` then one of
them for ``python -m ngpt_tune confirm``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ngpt_tune.errors import ConfigError, NgptTuneError
from ngpt_tune.experiment import (
    SEED_KEY,
    VARIANT_KEY,
    campaign_record,
    read_campaign,
    write_campaign,
)
from ngpt_tune.files import join
from ngpt_tune.provenance import provenance
from ngpt_tune.smoke import smoke_confirm
from ngpt_tune.spec import (
    CONFIRM_ARM_KEY,
    CampaignSpec,
    ConfirmSpec,
    SchedulerSpec,
    confirm_baseline,
)

CONFIRM_DIR = "confirm"  # the stage's folder in the search's experiment folder
RECORD_KEY = "confirmation"  # the search's campaign.json entry that links the stage


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
        from ray import tune
        from ray.tune.schedulers import FIFOScheduler
        from ray.tune.search import BasicVariantGenerator

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
    from analysis.candidates import fresh_seeds, select_candidates
    from analysis.load import load_experiment

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


# ---- running -----------------------------------------------------------------------------------
def run_confirmation(experiment: str, spec: CampaignSpec, plan: ConfirmPlan, *,
                     request: dict[str, Any], command: str) -> Any:
    """Start the stage of ``plan`` in ``experiment`` (Ray is running); returns Tune's results.
    ``campaign.json`` links it before the first trial, so that ``resume`` finds it."""
    from ngpt_tune.runner import build_tuner

    folder = join(experiment, plan.path)
    stage = dataclasses.replace(spec, name=f"{spec.name}-confirm",
                                scheduler=SchedulerSpec(name="fifo"))
    record = campaign_record(stage, request=request, command=command, provenance=provenance())
    record.update(stage="confirm", search_experiment="..", search_keys=plan.keys,
                  trial_count=plan.trial_count(), asha_budgets=None, plan=plan.to_record())
    write_campaign(folder, record)
    _link(experiment, plan, status="running")
    print(f"ngpt-tune: confirmation stage: {plan.describe()}, results in {folder}", flush=True)
    results = build_tuner(spec, storage=experiment, name=plan.path, stage=plan).fit()
    _link(experiment, plan, status="interrupted" if interrupted(results) else "done")
    return results


def resume_confirmation(experiment: str, spec: CampaignSpec, record: dict[str, Any], *,
                        command: str) -> Any:
    """Continue the stage ``campaign.json`` links (Ray is running): restore its Tuner, or start
    it again where Tune had saved nothing yet."""
    from ray import tune

    from ngpt_tune.runner import build_tuner

    plan = ConfirmPlan.from_record(record[RECORD_KEY])
    folder = join(experiment, plan.path)
    if not tune.Tuner.can_restore(folder):
        return run_confirmation(experiment, spec, plan, request=record["request"],
                                command=command)
    print(f"ngpt-tune: resuming the confirmation stage in {folder}", flush=True)
    _link(experiment, plan, status="running")
    results = build_tuner(spec, storage=experiment, name=plan.path, restore=True,
                          stage=plan).fit()
    _link(experiment, plan, status="interrupted" if interrupted(results) else "done")
    return results


def confirm_plan(experiment: str, spec: CampaignSpec, record: dict[str, Any],
                 settings: ConfirmSpec) -> tuple[ConfirmPlan, bool]:
    """``python -m ngpt_tune confirm``, before Ray starts: the plan, and whether it is the stage
    already linked (with the same settings: continue it, or leave it as it is when complete).
    Other settings get a new folder (``confirm-2``...), linked instead once it starts."""
    linked = record.get(RECORD_KEY)
    if linked:
        plan = ConfirmPlan.from_record(linked)
        if (plan.top_k, len(plan.seeds), plan.baseline) == (
                settings.top_k, settings.seeds, settings.baseline):
            return plan, True
    return plan_confirmation(experiment, spec, settings, path=_free_path(experiment)), False


def interrupted(results: Any) -> bool:
    """Whether a Tune run ended with trials left to run (Ctrl-C, SIGTERM)."""
    return bool(results) and any(not r.metrics.get("done", True) for r in results)


def _link(experiment: str, plan: ConfirmPlan, *, status: str) -> None:
    record = read_campaign(experiment)
    record[RECORD_KEY] = {**plan.to_record(), "status": status}
    write_campaign(experiment, record)


def _free_path(experiment: str) -> str:
    from ngpt_tune.files import list_folders

    taken = set(list_folders(experiment))
    if CONFIRM_DIR not in taken:
        return CONFIRM_DIR
    n = 2
    while f"{CONFIRM_DIR}-{n}" in taken:
        n += 1
    return f"{CONFIRM_DIR}-{n}"
