"""Warm starts: the finished and pruned trials of earlier experiments, as trials of a new
Optuna study (``searcher: {warm_start: [EXPERIMENT, ...]}``, or ``run --warm-start EXPERIMENT``).

An earlier experiment's study is its Optuna journal (:data:`ngpt_tune.experiment.JOURNAL_FILE`,
kept by ``searcher: optuna``). Its COMPLETE and PRUNED trials, with their intermediate values,
are copied with :func:`optuna.trial.create_trial` onto this campaign's distributions, where the
searched keys and ranges agree: the same keys, the same kind of distribution, and the earlier
range inside this one (its choices among this one's). Anything else is one ConfigError line,
raised by :func:`warm_trials` before Ray starts. No Ray here.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from ngpt_tune.errors import ConfigError, NgptTuneError
from ngpt_tune.experiment import JOURNAL_FILE, read_campaign
from ngpt_tune.files import is_remote, local_path
from ngpt_tune.space import Param
from ngpt_tune.spec import CampaignSpec

KEY = "searcher.warm_start"
CARRIED = (TrialState.COMPLETE, TrialState.PRUNED)


def distribution(p: Param) -> BaseDistribution:
    """The Optuna distribution ``OptunaSpace`` suggests ``p`` from."""
    if p.dist in ("choice", "grid"):
        return CategoricalDistribution(list(p.args))
    if p.dist == "randint":
        return optuna.distributions.IntDistribution(p.args[0], p.args[1])
    step = p.args[2] if p.dist == "quniform" else None
    return optuna.distributions.FloatDistribution(p.args[0], p.args[1],
                                                  log=p.dist == "loguniform", step=step)


def describe(d: BaseDistribution) -> str:
    if isinstance(d, CategoricalDistribution):
        return f"choice {list(d.choices)}"
    kind = "log-uniform" if getattr(d, "log", False) else "uniform"
    step = f" step {d.step:g}" if getattr(d, "step", None) else ""
    return f"{kind} [{d.low:g}, {d.high:g}]{step}"


def agrees(old: BaseDistribution, new: BaseDistribution) -> bool:
    """Whether every value of ``old`` is a value of ``new`` of the same kind."""
    if type(old) is not type(new):
        return False
    if isinstance(new, CategoricalDistribution):
        return set(old.choices) <= set(new.choices)
    return (old.log == new.log and old.step == new.step
            and new.low <= old.low and old.high <= new.high)


def load_study(source: str) -> optuna.Study:
    """The Optuna study in ``source``'s journal, read as it is (nothing written)."""
    if is_remote(source):
        raise ConfigError(f"{source}: a remote experiment keeps no Optuna journal; copy it to a "
                          "local folder", key=KEY)
    path = local_path(source) / JOURNAL_FILE
    if not path.is_file():
        raise ConfigError(f"{source} holds no Optuna study ({JOURNAL_FILE} is missing: only a "
                          "searcher: optuna experiment keeps one)", key=KEY)
    storage = JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    names = optuna.get_all_study_names(storage)
    if len(names) != 1:
        raise ConfigError(f"{path} holds {len(names)} studies, expected one", key=KEY)
    return optuna.load_study(study_name=names[0], storage=storage)


def source_trials(spec: CampaignSpec, source: str) -> list[FrozenTrial]:
    """``source``'s finished and pruned trials on ``spec``'s distributions (ConfigError where
    the experiment cannot warm-start this one)."""
    try:
        record = read_campaign(source)
    except NgptTuneError as err:
        raise ConfigError(str(err), key=KEY) from None
    for key in ("metric", "mode"):
        if record.get(key, getattr(spec, key)) != getattr(spec, key):
            raise ConfigError(f"{source} ran with {key} {record[key]!r}, this campaign with "
                              f"{getattr(spec, key)!r}", key=KEY)
    new = {p.key: distribution(p) for p in spec.params}
    keys = record.get("search_keys")
    if keys is not None and sorted(keys) != sorted(new):
        raise ConfigError(f"{source} searched {', '.join(sorted(keys))}; this campaign "
                          f"searches {', '.join(sorted(new))}", key=KEY)
    carried = []
    for trial in load_study(source).get_trials(deepcopy=False, states=CARRIED):
        for name, old in trial.distributions.items():
            if name not in new:
                raise ConfigError(f"{source} searched {name}, which this campaign does not",
                                  key=KEY)
            if not agrees(old, new[name]):
                raise ConfigError(f"{source} searched {name} over {describe(old)}, not within "
                                  f"this campaign's {describe(new[name])}", key=KEY)
        state, value = told(trial, spec.searcher.stopped_trials)
        if value is not None and not math.isfinite(value):
            continue
        carried.append(optuna.trial.create_trial(
            state=state, value=value, params=trial.params,
            distributions={name: new[name] for name in trial.params},
            intermediate_values={step: v for step, v in trial.intermediate_values.items()
                                 if math.isfinite(v)},
            user_attrs={**trial.user_attrs, "warm_start": source,
                        "warm_start_number": trial.number}))
    return carried


def stopped_early(trial: FrozenTrial) -> bool:
    """Whether the trial's scheduler stopped it (not diverged), however it was told: marked
    ``stopped_at_step`` by ngpt-tune's searcher (``stopped_early`` since 2026-12-07)."""
    attrs = trial.user_attrs
    return "stopped_at_step" in attrs and not attrs.get("diverged")


def told(trial: FrozenTrial, stopped_trials: str) -> tuple[TrialState, float | None]:
    """``trial``'s state and value in the new study: a trial its scheduler stopped (marked
    ``stopped_at_step``, not diverged) told as this campaign tells one (``stopped_trials``:
    COMPLETE at its last value, or PRUNED), whichever way its own campaign told it."""
    stopped = stopped_early(trial)
    last = trial.intermediate_values[max(trial.intermediate_values)] \
        if trial.intermediate_values else None
    if stopped and stopped_trials == "complete" and last is not None:
        return TrialState.COMPLETE, trial.value if trial.value is not None else last
    if stopped and stopped_trials == "pruned":
        return TrialState.PRUNED, None
    return trial.state, trial.value


def warm_trials(spec: CampaignSpec) -> list[FrozenTrial]:
    """The trials ``spec``'s ``searcher.warm_start`` experiments give its study, in order;
    ConfigError (naming the spec) where one cannot, or where a point to evaluate first is not
    in the search space."""
    check_points(spec)
    sources = spec.searcher.warm_start
    try:
        if sources and spec.ladder is not None:
            raise ConfigError("a ladder searches several sizes: warm-start one search (a "
                              "rung's folder is an experiment a search can start from)", key=KEY)
        return [t for source in sources for t in source_trials(spec, source)]
    except ConfigError as err:
        raise (err.with_source(spec.source) if spec.source else err) from None


def summary(trials: list[FrozenTrial]) -> dict[str, Any]:
    """How many trials a warm start gives: finished, stopped early by the scheduler (however
    told), pruned otherwise (diverged, out of memory); and by source."""
    by_source: dict[str, int] = {}
    for t in trials:
        by_source[t.user_attrs["warm_start"]] = by_source.get(t.user_attrs["warm_start"], 0) + 1
    stopped = [stopped_early(t) for t in trials]
    return {"finished": sum(t.state == TrialState.COMPLETE and not s
                            for t, s in zip(trials, stopped)),
            "stopped": sum(stopped),
            "pruned": sum(t.state == TrialState.PRUNED and not s for t, s in zip(trials, stopped)),
            "by_source": by_source}


def check_points(spec: CampaignSpec) -> None:
    """Each of ``searcher.points_to_evaluate`` sets searched keys to values of their ranges."""
    new = {p.key: distribution(p) for p in spec.params}
    for i, point in enumerate(spec.searcher.points_to_evaluate):
        for key, value in point.items():
            where = f"searcher.points_to_evaluate[{i}].{key}"
            if key not in new:
                raise ConfigError("not a searched key", key=where, source=spec.source)
            try:
                inside = new[key]._contains(new[key].to_internal_repr(value))
            except (ValueError, TypeError):
                inside = False
            if not inside:
                raise ConfigError(f"{value!r} is outside {describe(new[key])}", key=where,
                                  source=spec.source)
