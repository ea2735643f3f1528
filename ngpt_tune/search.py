"""Searchers and schedulers, looked up by name in one table each, and the spec's search space
in Tune's and Optuna's terms. Imports Ray: only the runner imports this module.

With ``searcher: optuna`` the study lives in the experiment folder, in Optuna's journal file
(:data:`JOURNAL_FILE`): ``optuna-dashboard EXPERIMENT/optuna_journal.log`` shows it live, and
``optuna.load_study(study_name=None, storage=study_storage(EXPERIMENT))`` opens it.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import TrialState
from ray import tune
from ray.tune.search import BasicVariantGenerator, Repeater, Searcher
from ray.tune.search.optuna import OptunaSearch

from ngpt_tune.errors import NgptTuneError, first_sentence
from ngpt_tune.experiment import ERROR_KEY, INFEASIBLE_KEY, JOURNAL_FILE
from ngpt_tune.files import is_remote, local_path
from ngpt_tune.spec import SEED_KEY, CampaignSpec, Param
from ngpt_tune.warm_start import warm_trials

MEMORY_CONSTRAINT = "memory"  # an Optuna constraint: > 0 for a trial that ran out of memory


def study_storage(experiment: str | None, url: str = "") -> BaseStorage | None:
    """Where the study of ``experiment`` lives: ``url`` (the spec's ``searcher.storage``, a
    database URL; ``${VAR}`` is read from the environment, so that a password stays out of the
    spec), else the Optuna journal in ``experiment`` (a file with a lock that is safe on NFS),
    else None (Optuna's in-memory storage) where there is no local folder to hold it."""
    if url:
        expanded = os.path.expandvars(url)
        if "$" in expanded:
            raise NgptTuneError(f"key 'searcher.storage': an environment variable in {url!r} "
                                "is not set")
        try:
            return optuna.storages.RDBStorage(expanded)
        except Exception as err:  # a missing driver (psycopg2...), a refused connection
            raise NgptTuneError(f"key 'searcher.storage': cannot open the Optuna database "
                                f"{url!r}: {first_sentence(err)}") from None
    if experiment is None:
        return None
    if is_remote(experiment):
        print(f"ngpt-tune: the Optuna study stays in memory (a journal file cannot live at "
              f"{experiment})", flush=True)
        return None
    path = local_path(experiment) / JOURNAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


class PruneAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna which trials did not finish, and how.

    A trial whose last report has ``finished: False`` was stopped by the scheduler or diverged.
    ``stopped_trials`` (the spec's ``searcher.stopped_trials``) says how a stopped one is told:
    ``complete`` (the default, as Ray's OptunaSearch does) at its last value, so that TPE ranks
    it among the finished trials by its rung value; ``pruned``, which TPE ranks below every
    finished trial (``benchmarks/RESULTS.md`` section 3c measured both). A diverged trial is
    PRUNED either way (its last value is no loss to rank by). All carry their intermediate
    values (every evaluation, the last included) and the user attributes ``stopped_early``
    (False for a diverged one), ``stopped_at_step`` and ``diverged``. A trial that ran out of
    memory (its last report flagged ``infeasible``) is PRUNED with a violated constraint, which
    TPE ranks below every feasible trial: it samples less from that region (a FAIL, Ray's way,
    is ignored by TPE).

    On ``resume`` Ray restores this searcher from its pickle, taken with the experiment's last
    state; the journal may be ahead of it. A trial the journal has finished already is not told
    again, a step it holds already is not reported again, and trials the journal shows running
    that the restored searcher never heard of (asked after the last save) are told FAIL.
    """

    def __init__(self, *args: Any, stopped_trials: str = "complete", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._stopped_trials = stopped_trials

    def _stored(self, trial_id: str) -> optuna.trial.FrozenTrial:
        ot_trial = self._ot_trials[trial_id]
        return self._ot_study._storage.get_trial(ot_trial._trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get(INFEASIBLE_KEY):
            return  # its worst-value metric is no measurement: told at completion
        if trial_id in self._ot_trials and trial_id not in self._completed_trials:
            stored = self._stored(trial_id)
            if stored.state.is_finished() or result.get("training_iteration") in \
                    stored.intermediate_values:
                return
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._ot_trials and trial_id not in self._completed_trials \
                and self._stored(trial_id).state.is_finished():
            self._completed_trials.add(trial_id)  # told before the resume
            return
        if not error and not result and trial_id in self._ot_trials \
                and trial_id not in self._completed_trials:
            # stopped while pending (a resumed trial the scheduler had stopped): its last value
            values = self._stored(trial_id).intermediate_values
            if values:
                result = {self.metric: values[max(values)], "training_iteration": max(values),
                          "finished": False}
        if result and result.get(INFEASIBLE_KEY) and trial_id not in self._completed_trials:
            self._tell_infeasible(trial_id, result)
            return
        if result and self.metric in result and "training_iteration" in result \
                and math.isfinite(result[self.metric]):
            # Tune hands a trial's last result (ASHA's stop, or the end) to this method only
            self.on_trial_result(trial_id, result)
        if error or not result or result.get("finished", True) or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result=result, error=error)
        ot_trial = self._ot_trials[trial_id]
        diverged = bool(result.get("diverged", False))
        ot_trial.set_user_attr("stopped_at_step", result.get("step"))
        ot_trial.set_user_attr("diverged", diverged)
        ot_trial.set_user_attr("stopped_early", not diverged)
        if self._stopped_trials == "complete" and not diverged:
            return super().on_trial_complete(trial_id, result=result, error=error)
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    def _setup_study(self, mode: Any) -> None:
        """Ray's study, then, only when the study is new (not on resume): the warm-start
        experiments' trials and the points to evaluate first (``searcher:`` in the spec)."""
        super()._setup_study(mode)
        spec = self._space.spec if isinstance(self._space, OptunaSpace) else None
        if spec is None or self._ot_study.get_trials(deepcopy=False):
            return
        self._ot_study.add_trials(warm_trials(spec))
        for point in spec.searcher.points_to_evaluate:
            self._ot_study.enqueue_trial(point)

    def _tell_infeasible(self, trial_id: str, result: dict) -> None:
        """A trial that ran out of memory: PRUNED with a violated constraint
        (:data:`MEMORY_CONSTRAINT` > 0), which TPE counts among its worst trials, so that it
        samples less from that region; FAIL, Ray's default, would be ignored by TPE."""
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr(INFEASIBLE_KEY, str(result.get(ERROR_KEY) or "out of memory"))
        if hasattr(ot_trial, "set_constraint"):  # Optuna >= 5; before, PRUNED alone
            ot_trial.set_constraint(MEMORY_CONSTRAINT, 1.0)
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self.fail_stale_trials()

    def fail_stale_trials(self) -> int:
        """Tell FAIL every trial the study shows RUNNING that this searcher did not ask (an
        earlier driver did, and was killed): left RUNNING, they would stay so forever, and
        TPE's constant liar would avoid their region. Returns how many."""
        known = {t._trial_id for t in self._ot_trials.values()}
        stale = [t for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                 if t._trial_id not in known]
        for trial in stale:
            self._ot_study.tell(trial.number, state=TrialState.FAIL)
        if stale:
            print(f"ngpt-tune: {len(stale)} Optuna trial(s) left running by a stopped driver "
                  f"marked FAIL: {', '.join(str(t.number) for t in stale)}", flush=True)
        return len(stale)


class SeedRepeater(Repeater):
    """Ray's Repeater (one configuration, several seeds), passing on whether every repeat
    finished so that a configuration with an early-stopped seed reaches Optuna as pruned."""

    def __init__(self, searcher: Searcher, repeat: int):
        super().__init__(searcher, repeat=repeat, set_index=True)
        self._unfinished: set[str] = set()
        self._infeasible: dict[str, dict] = {}
        self._curves: dict[str, dict[int, list[float]]] = {}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Pass a configuration's learning curve on to Optuna (Ray's Repeater drops it): the
        mean over its seeds at each evaluation every seed has reached."""
        group = self._trial_id_to_group.get(trial_id)
        metric = self.searcher.metric
        if group is None or metric not in result or "training_iteration" not in result \
                or result.get(INFEASIBLE_KEY):
            return
        step = result["training_iteration"]
        values = self._curves.setdefault(group.primary_trial_id, {}).setdefault(step, [])
        values.append(result[metric])
        if len(values) == self.repeat and all(math.isfinite(v) for v in values):
            self.searcher.on_trial_result(group.primary_trial_id,
                                          {metric: sum(values) / len(values),
                                           "training_iteration": step})

    def on_trial_complete(self, trial_id: str, result: dict | None = None, **kwargs):
        if result:  # Tune hands a trial's last result to this method only
            self.on_trial_result(trial_id, result)
        group = self._trial_id_to_group[trial_id]
        metric = self.searcher.metric
        score = result[metric] if result and metric in result else math.nan
        if result is not None and not result.get("finished", True):
            self._unfinished.add(group.primary_trial_id)
        if result and result.get(INFEASIBLE_KEY):  # one seed out of memory: the configuration
            self._infeasible[group.primary_trial_id] = result
        group.report(trial_id, score)
        if not group.finished_reporting():
            return
        scores = [s for s in group.scores() if math.isfinite(s)]
        summary = self._infeasible.get(group.primary_trial_id)
        if summary is None and scores:
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


# TPE's options as shipped; benchmarks/search_efficiency.py measures the alternatives.
# Independent TPE (a Parzen estimator per key), not Optuna 5's default multivariate TPE: on
# the benchmark's problem it reached 1% of the optimum in more campaigns (RESULTS.md, 3c).
TPE_OPTIONS: dict[str, Any] = {"multivariate": False}


def tpe_sampler(spec: CampaignSpec, **options: Any) -> optuna.samplers.TPESampler:
    """Optuna's TPE with the spec's seed and start-up trials, and :data:`TPE_OPTIONS` with
    ``options`` on top (``multivariate=None``: Optuna's own default), chosen on purpose:
    Optuna's experimental-feature warnings stay quiet."""
    kwargs = {"seed": spec.searcher.seed, **TPE_OPTIONS, **options}
    if spec.searcher.n_startup_trials:
        kwargs["n_startup_trials"] = spec.searcher.n_startup_trials
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(**kwargs)


def gp_sampler(spec: CampaignSpec) -> optuna.samplers.GPSampler:
    """Optuna's GPSampler (a Gaussian process with log expected improvement, fitted to the
    COMPLETE trials) with the spec's seed and start-up trials, like :func:`tpe_sampler`."""
    kwargs: dict[str, Any] = {"seed": spec.searcher.seed}
    if spec.searcher.n_startup_trials:
        kwargs["n_startup_trials"] = spec.searcher.n_startup_trials
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(**kwargs)


def optuna_sampler(spec: CampaignSpec, **tpe: Any) -> optuna.samplers.BaseSampler:
    """The sampler ``searcher.sampler`` names (``tpe``: with the ``tpe`` options)."""
    return gp_sampler(spec) if spec.searcher.sampler == "gp" else tpe_sampler(spec, **tpe)


def study_name(spec: CampaignSpec, experiment: str | None) -> str:
    """The study's name: the campaign's in its own journal; in a database shared by many
    experiments, the campaign's and its folder's (``gated@/shared/ngpt/gated-20261201-0900``),
    the same on ``resume``."""
    return f"{spec.name}@{experiment}" if spec.searcher.storage else spec.name


def _optuna(spec: CampaignSpec, *, experiment: str | None = None,
            tpe: dict[str, Any] | None = None) -> Searcher:
    """PruneAwareOptunaSearch on the spec's sampler, its study in ``experiment``'s journal
    (when given) or in the database of ``searcher.storage``, started from the spec's warm-start
    experiments and points."""
    searcher: Searcher = PruneAwareOptunaSearch(
        space=OptunaSpace(spec), metric=spec.metric, mode=spec.mode,
        sampler=optuna_sampler(spec, **(tpe or {})),
        storage=study_storage(experiment, spec.searcher.storage),
        study_name=study_name(spec, experiment), stopped_trials=spec.searcher.stopped_trials,
    )
    return SeedRepeater(searcher, spec.repeats) if spec.repeats > 1 else searcher


def _variants(spec: CampaignSpec, *, experiment: str | None = None) -> Searcher:
    # Tune ignores TuneConfig.max_concurrent_trials for a generator passed in: set it here
    return BasicVariantGenerator(random_state=spec.searcher.seed,
                                 max_concurrent=spec.max_concurrent_trials)


# name -> builder(spec, *, experiment=folder or URI, where the searcher may keep its state)
SEARCHERS: dict[str, Callable[..., Searcher]] = {
    "optuna": _optuna,
    "random": _variants,
    "grid": _variants,
}


def fail_stale_trials(searcher: Any) -> int:
    """:meth:`PruneAwareOptunaSearch.fail_stale_trials` for a new searcher on a study that an
    earlier driver left (killed before Tune's first save, so that Tune starts the stage
    afresh); 0 for other searchers."""
    inner = searcher.searcher if isinstance(searcher, Repeater) else searcher
    return inner.fail_stale_trials() if isinstance(inner, PruneAwareOptunaSearch) else 0


def tune_num_samples(spec: CampaignSpec) -> int:
    """Tune's num_samples: Optuna's configurations are repeated by the Repeater; for the
    variant generator the seeds are a grid axis already."""
    if spec.searcher.name == "optuna":
        return spec.num_samples * spec.repeats
    return spec.num_samples
