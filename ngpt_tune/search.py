"""Searchers and schedulers, looked up by name in one table each, and the spec's search space
in Tune's and Optuna's terms. Imports Ray: only the runner imports this module."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, Repeater, Searcher
from ray.tune.search.optuna import OptunaSearch

from ngpt_tune.spec import SEED_KEY, CampaignSpec, Param


class PruneAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about trials that did not finish.

    Ray's OptunaSearch tells a trial that the scheduler stopped early as COMPLETE with its
    truncated loss, so TPE would learn from partial budgets as if they were final. Here a trial
    whose last report has ``finished: False`` (stopped by ASHA, or diverged) is told as PRUNED;
    its intermediate values (reported at every evaluation) stay, which is how TPE ranks pruned
    trials below finished ones.
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if error or not result or result.get("finished", True) or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result=result, error=error)
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("stopped_at_step", result.get("step"))
        ot_trial.set_user_attr("diverged", bool(result.get("diverged", False)))
        self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        self._completed_trials.add(trial_id)


class SeedRepeater(Repeater):
    """Ray's Repeater (one configuration, several seeds), passing on whether every repeat
    finished so that a configuration with an early-stopped seed reaches Optuna as pruned."""

    def __init__(self, searcher: Searcher, repeat: int):
        super().__init__(searcher, repeat=repeat, set_index=True)
        self._unfinished: set[str] = set()

    def on_trial_complete(self, trial_id: str, result: dict | None = None, **kwargs):
        group = self._trial_id_to_group[trial_id]
        metric = self.searcher.metric
        score = result[metric] if result and metric in result else math.nan
        if result is not None and not result.get("finished", True):
            self._unfinished.add(group.primary_trial_id)
        group.report(trial_id, score)
        if not group.finished_reporting():
            return
        scores = [s for s in group.scores() if math.isfinite(s)]
        summary = None
        if scores:
            finished = group.primary_trial_id not in self._unfinished
            summary = {metric: sum(scores) / len(scores), "finished": finished}
        self.searcher.on_trial_complete(group.primary_trial_id, result=summary, **kwargs)


class OptunaSpace:
    """Define-by-run search space: a conditional parameter is suggested only when active."""

    def __init__(self, spec: CampaignSpec):
        self.spec = spec

    def __call__(self, trial: optuna.Trial) -> None:
        values: dict[str, Any] = {}
        for p in self.spec.params:
            if self.spec.is_active(p, values):
                values[p.key] = _suggest(trial, p)


def _suggest(trial: optuna.Trial, p: Param) -> Any:
    if p.dist in ("choice", "grid"):
        return trial.suggest_categorical(p.key, list(p.args))
    if p.dist == "randint":
        return trial.suggest_int(p.key, p.args[0], p.args[1])
    if p.dist == "quniform":
        return trial.suggest_float(p.key, p.args[0], p.args[1], step=p.args[2])
    return trial.suggest_float(p.key, p.args[0], p.args[1], log=p.dist == "loguniform")


def _domain(p: Param) -> Any:
    if p.dist == "grid":
        return tune.grid_search(list(p.args))
    if p.dist == "choice":
        return tune.choice(list(p.args))
    if p.dist == "uniform":
        return tune.uniform(*p.args)
    if p.dist == "loguniform":
        return tune.loguniform(*p.args)
    if p.dist == "quniform":
        return tune.quniform(*p.args)
    return tune.randint(p.args[0], p.args[1] + 1)  # Tune's upper bound is exclusive


class ConditionalSample:
    """``tune.sample_from`` body: sample ``param`` only where its ``when`` holds, else None."""

    def __init__(self, spec: CampaignSpec, param: Param):
        self.spec, self.param = spec, param

    def __call__(self, resolved: Any) -> Any:
        values = {k: v for k, v in resolved.config.items() if not callable(v)}
        if not self.spec.is_active(self.param, values):
            return None
        return _domain(self.param).sample()


def param_space(spec: CampaignSpec) -> dict[str, Any]:
    """Tune's param_space for the variant-generator searchers (grid, random)."""
    space: dict[str, Any] = {}
    if spec.searcher.name == "optuna":
        return space
    for p in spec.params:
        space[p.key] = tune.sample_from(ConditionalSample(spec, p)) if p.when else _domain(p)
    if spec.repeats > 1 and SEED_KEY not in space:
        first = spec.base_config.train.seed
        space[SEED_KEY] = tune.grid_search([first + i for i in range(spec.repeats)])
    return space


def _optuna(spec: CampaignSpec) -> Searcher:
    kwargs = {"seed": spec.searcher.seed}
    if spec.searcher.n_startup_trials:
        kwargs["n_startup_trials"] = spec.searcher.n_startup_trials
    searcher: Searcher = PruneAwareOptunaSearch(
        space=OptunaSpace(spec), metric=spec.metric, mode=spec.mode,
        sampler=optuna.samplers.TPESampler(**kwargs),
    )
    return SeedRepeater(searcher, spec.repeats) if spec.repeats > 1 else searcher


def _variants(spec: CampaignSpec) -> Searcher:
    # Tune ignores TuneConfig.max_concurrent_trials for a generator passed in: set it here
    return BasicVariantGenerator(random_state=spec.searcher.seed,
                                 max_concurrent=spec.max_concurrent_trials)


SEARCHERS: dict[str, Callable[[CampaignSpec], Searcher]] = {
    "optuna": _optuna,
    "random": _variants,
    "grid": _variants,
}


def _asha(spec: CampaignSpec) -> TrialScheduler:
    grace, max_t = spec.asha_budgets()
    return ASHAScheduler(time_attr=spec.scheduler.time_attr, max_t=max_t,
                         grace_period=grace, reduction_factor=spec.scheduler.reduction_factor)


SCHEDULERS: dict[str, Callable[[CampaignSpec], TrialScheduler]] = {
    "asha": _asha,
    "fifo": lambda spec: FIFOScheduler(),
}


def tune_num_samples(spec: CampaignSpec) -> int:
    """Tune's num_samples: Optuna's configurations are repeated by the Repeater; for the
    variant generator the seeds are a grid axis already."""
    if spec.searcher.name == "optuna":
        return spec.num_samples * spec.repeats
    return spec.num_samples
