"""The ``searcher:`` section of a campaign spec: a frozen dataclass that checks itself.

``name`` picks the searcher (:data:`ngpt_tune.search.SEARCHERS`); with ``optuna``, ``sampler``
picks Optuna's sampler, ``stopped_trials`` how a trial the scheduler stopped is told to it
(COMPLETE at its last value, or PRUNED), ``warm_start`` lists earlier experiments whose finished and pruned trials
enter the study before its first trial (:mod:`ngpt_tune.warm_start`), and
``points_to_evaluate`` lists configurations the study asks first (a ladder's predicted optimum),
and ``storage`` is a database URL for the study (default: a journal in the experiment folder).
Nothing here imports Ray or Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ngpt_tune.config import flatten_dotted
from ngpt_tune.errors import ConfigError
from ngpt_tune.files import is_remote, local_path


@dataclass(frozen=True)
class SearcherSpec:
    name: Literal["optuna", "random", "grid"] = "optuna"
    seed: int = 0
    n_startup_trials: int = 0  # Optuna's random start-up trials (TPE, GP); 0: Optuna's default
    sampler: Literal["tpe", "gp"] = "tpe"  # Optuna's TPESampler, or its GPSampler
    # how a trial the scheduler stopped is told to Optuna: COMPLETE at its last value, or PRUNED
    stopped_trials: Literal["complete", "pruned"] = "complete"
    warm_start: Any = ()  # experiment folders (or URIs): their trials start the Optuna study
    points_to_evaluate: Any = ()  # configurations ({dotted.key: value}) the study asks first
    storage: str = ""  # the Optuna study's database URL; "": a journal in the experiment folder

    def __post_init__(self) -> None:
        sources = (self.warm_start,) if isinstance(self.warm_start, str) else self.warm_start
        if not isinstance(sources, (list, tuple)) or not all(
                isinstance(s, str) and s.strip() for s in sources):
            raise ConfigError(f"expected a list of experiment folders, got {self.warm_start!r}",
                              key="warm_start")
        object.__setattr__(self, "warm_start", tuple(dict.fromkeys(
            s if is_remote(s) else str(local_path(s)) for s in sources)))
        points = self.points_to_evaluate
        if not isinstance(points, (list, tuple)) or not all(
                isinstance(p, dict) and p for p in points):
            raise ConfigError(f"expected a list of {{dotted.key: value}} mappings, got "
                              f"{points!r}", key="points_to_evaluate")
        object.__setattr__(self, "points_to_evaluate",
                           tuple(flatten_dotted(p) for p in points))
        if self.name != "optuna":
            for key in ("warm_start", "points_to_evaluate"):
                if getattr(self, key):
                    raise ConfigError(f"feeds an Optuna study: needs searcher name 'optuna', "
                                      f"not {self.name!r}", key=key)
            for key, default in (("sampler", "tpe"), ("stopped_trials", "complete")):
                if getattr(self, key) != default:
                    raise ConfigError(f"an Optuna setting: needs searcher name 'optuna', not "
                                      f"{self.name!r}", key=key)
