"""The ``scheduler:`` section of a campaign spec: a frozen dataclass that checks itself.

``name`` picks the scheduler (:data:`ngpt_tune.search.SCHEDULERS`); ASHA's rungs follow from
``grace_period``, ``reduction_factor``, ``max_t`` and ``brackets`` (:mod:`ngpt_tune.asha`);
``cooled_rungs`` judges them on cooled branches (:mod:`ngpt_tune.branches`). Nothing here
imports Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Union

from ngpt_tune.config import build_section
from ngpt_tune.errors import ConfigError


@dataclass(frozen=True)
class CooledRungsSpec:
    """``scheduler.cooled_rungs``: judge ASHA's rungs on a cooldown branched from each trial
    (:mod:`ngpt_tune.branches`) lasting ``fraction`` of the steps so far."""

    fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.fraction}", key="fraction")


@dataclass(frozen=True)
class SchedulerSpec:
    name: Literal["asha", "fifo"] = "asha"
    time_attr: Literal["tokens_seen", "step"] = "tokens_seen"
    grace_period: Union[Literal["auto"], float] = "auto"  # auto: max_t / reduction_factor**2
    reduction_factor: float = 2.0  # 2 beat 3 in benchmarks/search_efficiency.py (RESULTS.md §3)
    max_t: Union[Literal["auto"], float] = "auto"  # auto: the longest trial's budget
    brackets: int = 1  # ASHA brackets: bracket s starts stopping at grace * rf**s (Hyperband)
    cooled_rungs: Any = None  # {fraction: 0.1} (or true): rungs judged on cooled branches

    def __post_init__(self) -> None:
        cooled = self.cooled_rungs
        if cooled is True or isinstance(cooled, dict):
            cooled = build_section(CooledRungsSpec, {} if cooled is True else cooled,
                                   prefix="cooled_rungs")
        elif cooled is False:
            cooled = None
        elif cooled is not None and not isinstance(cooled, CooledRungsSpec):
            raise ConfigError(f"expected {{fraction: F}} or true, got {cooled!r}",
                              key="cooled_rungs")
        object.__setattr__(self, "cooled_rungs", cooled)
        if cooled is not None and self.name != "asha":
            raise ConfigError(f"judges ASHA's rungs: needs scheduler name 'asha', not "
                              f"{self.name!r}", key="cooled_rungs")
        if self.reduction_factor <= 1:
            raise ConfigError("must be > 1", key="reduction_factor")
        if self.brackets < 1:
            raise ConfigError(f"must be >= 1, got {self.brackets}", key="brackets")
        for name in ("grace_period", "max_t"):
            value = getattr(self, name)
            if value != "auto" and value <= 0:
                raise ConfigError(f"must be 'auto' or > 0, got {value}", key=name)
