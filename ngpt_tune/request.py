"""What the user asked for: a :class:`RunRequest` (the spec's text, ``--smoke``,
``--num-samples``, ``--set``, ``--logger``, ``--warm-start``), the spec it means (:func:`build_spec`), and the
campaign record that stores both in ``campaign.json`` so that ``resume`` rebuilds the same spec
with the same function. No Ray here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ngpt_tune.errors import ConfigError
from ngpt_tune.experiment import SEED_KEY
from ngpt_tune.smoke import smoke_version
from ngpt_tune.spec import CampaignSpec, parse_spec_text


@dataclass(frozen=True)
class RunRequest:
    """What to run: the spec (its text as read, and where it was read from) and the command
    line's ``--smoke``, ``--num-samples`` and ``--set``. Stored in ``campaign.json``."""

    spec_yaml: str
    spec_path: str | None = None
    smoke: bool = False
    num_samples: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # --set key=value, dotted keys
    loggers: tuple[str, ...] = ()  # --logger NAME: trackers added to the spec's loggers:
    warm_start: tuple[str, ...] = ()  # --warm-start EXPERIMENT: added to searcher.warm_start

    @classmethod
    def from_file(cls, path: str | os.PathLike, **options: Any) -> RunRequest:
        path = Path(path).resolve()
        if not path.is_file():
            raise ConfigError("file not found", source=str(path))
        return cls(spec_yaml=path.read_text(), spec_path=str(path), **options)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunRequest:
        return cls(**record)

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_spec(request: RunRequest | str | os.PathLike, *, check_data: bool = True,
               **options: Any) -> CampaignSpec:
    """The spec a request means: the spec's text, then ``--set``, ``--num-samples``, ``--smoke``;
    the data folders checked (before Ray starts) and pinned as the driver resolved them.
    ``check_data=False``: the spec as recorded, for reading results on a machine that may not
    see the data (the analysis).

    ``run``, ``validate`` and ``resume`` (from ``campaign.json``) all go through here. A path
    (with ``smoke=``, ``num_samples=``, ``overrides=``) is short for ``RunRequest.from_file``.
    """
    if not isinstance(request, RunRequest):
        request = RunRequest.from_file(request, **options)
    spec = parse_spec_text(request.spec_yaml, source=request.spec_path)
    if request.overrides:
        try:
            spec = spec.with_overrides(request.overrides)
        except ConfigError as err:
            raise ConfigError(err.detail, key=err.key, source="--set") from None
    if request.num_samples is not None:
        if request.num_samples < 1:
            raise ConfigError("must be >= 1", key="--num-samples")
        spec = dataclasses.replace(spec, num_samples=request.num_samples)
    if request.smoke:
        spec = smoke_version(spec)
    if request.loggers:
        spec = dataclasses.replace(spec, loggers=spec.loggers.with_names(request.loggers))
    if request.warm_start:
        try:
            searcher = dataclasses.replace(spec.searcher, warm_start=(
                *spec.searcher.warm_start, *request.warm_start))
        except ConfigError as err:
            raise ConfigError(err.detail, source="--warm-start") from None
        spec = dataclasses.replace(spec, searcher=searcher)
    if not check_data:
        return spec
    try:
        spec.check_data()
    except ConfigError as err:
        raise err.with_source(str(spec.source)) from None
    return spec.with_resolved_data()


def campaign_record(spec: CampaignSpec, *, request: dict[str, Any] | None, command: str,
                    provenance: dict[str, Any]) -> dict[str, Any]:
    """What a ``campaign.json`` holds: the request that rebuilds the spec (``resume``; only in
    the campaign's own folder), the spec as run, and what the analysis needs (metric, mode,
    searched keys, budgets, ASHA's settings and rungs, provenance)."""
    asha = spec.scheduler.name == "asha"
    record = {
        "name": spec.name,
        "description": spec.description,
        "spec_path": spec.source,
        "spec": spec.to_dict(),
        "metric": spec.metric,
        "mode": spec.mode,
        "search_keys": spec.search_keys,
        "seed_key": SEED_KEY,
        "compare": None if spec.compare is None else {"by": spec.compare.by,
                                                      "baseline": spec.compare.baseline},
        "time_attr": spec.scheduler.time_attr,
        "asha_budgets": list(spec.asha_budgets()) if asha else None,
        "scheduler": spec.scheduler_record(),  # ASHA's settings and rungs, 'auto' resolved
        "max_steps": spec.max_steps(),
        "trial_count": spec.trial_count(),
        "smoke": spec.smoke,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance,
        "command": command,
    }
    if request is not None:
        record["request"] = request
    return record
