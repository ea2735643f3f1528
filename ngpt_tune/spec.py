"""Campaign specs: one YAML file per campaign, validated before Ray starts.

A spec names the campaign, a fixed ``base`` configuration (the typed :class:`Config`), named
``variants`` (sets of overrides picked by the ``variant`` parameter), the ``search`` space (per
dotted config key a distribution by name, optionally conditional with ``when``: the grammar is in
:mod:`ngpt_tune.space`), and how to search (``searcher``, ``scheduler``, ``num_samples``...).

Each top-level key is a field of :class:`CampaignSpec`, its default written once there; each
section (``searcher:``, ``scheduler:``, ``loggers:``, ``ladder:``...) is a frozen dataclass in
:mod:`ngpt_tune.spec_sections` that checks itself. One merge rule, :meth:`CampaignSpec.trial_dict`
(base <- variant <- searched values <- forced overrides), gives a trial's config, the value a
``when:`` condition sees, and the budgets. ``--smoke`` shrinking is in :mod:`ngpt_tune.smoke`.

Nothing here imports Ray: a bad spec never starts a cluster.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ngpt_tune import asha
from ngpt_tune.config import (
    BUILTIN_CORPORA,
    Config,
    TrainConfig,
    _coerce,
    flatten_dotted,
    get_dotted,
    load_yaml,
    nest_dotted,
    set_dotted,
)
from ngpt_tune.errors import ConfigError, DataError, unknown_key_message
from ngpt_tune.experiment import (
    CONFIRM_ARM_KEY,
    DEFAULT_METRIC,
    DEFAULT_MODE,
    SEED_KEY,
    TRIAL_INDEX_KEY,
    VARIANT_KEY,
    Metric,
    Mode,
)
from ngpt_tune.space import DISTRIBUTIONS, Param, parse_search
from ngpt_tune.spec_checks import check_configs, check_spec, confirm_baseline, without_data
from ngpt_tune.spec_sections import (
    CheckpointSpec,
    CompareSpec,
    ConfirmSpec,
    LadderSpec,
    LoggersSpec,
    ResourceSpec,
    SchedulerSpec,
    SearcherSpec,
    parse_compare,
    parse_confirm,
    parse_ladder,
    parse_section,
)

if TYPE_CHECKING:
    from ngpt_tune.branches import CooledRungs

__all__ = ["CONFIRM_ARM_KEY", "DISTRIBUTIONS", "SEED_KEY", "TRIAL_INDEX_KEY", "VARIANT_KEY",
           "CampaignSpec", "CheckpointSpec", "CompareSpec", "ConfirmSpec", "Param", "ResourceSpec",
           "SchedulerSpec", "SearcherSpec", "confirm_baseline", "load_spec", "parse_spec",
           "parse_spec_text"]


# ---- the campaign -----------------------------------------------------------------------------
_COUNTS = {"num_samples": 1, "repeats": 1, "max_concurrent_trials": 0, "max_failures": 0}


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    description: str = ""
    base: dict[str, Any] = field(default_factory=dict)  # nested overrides of Config, as written
    params: tuple[Param, ...] = ()
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric: Metric = DEFAULT_METRIC  # a report key: what ASHA, the searcher and analysis rank
    mode: Mode = DEFAULT_MODE
    num_samples: int = 1
    repeats: int = 1  # seeds per configuration: train.seed, train.seed + 1, ...
    max_concurrent_trials: int = 0  # 0: as many as resources allow
    max_failures: int = 1  # retries of a crashed trial before it is marked errored
    searcher: SearcherSpec = field(default_factory=SearcherSpec)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    loggers: LoggersSpec = field(default_factory=LoggersSpec)  # trackers
    compare: CompareSpec | None = None
    confirm: ConfirmSpec | None = None  # the confirmation stage after the search
    ladder: LadderSpec | None = None  # a ladder campaign's sizes (run by ngpt_tune.ladder)
    # not spec keys: where it came from, and what the command line forced
    source: str | None = None
    smoke: bool = False
    forced: dict[str, Any] = field(default_factory=dict)  # applied last (e.g. by --smoke)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or "/" in self.name:
            raise ConfigError("a non-empty name without '/' is required", key="name")
        for key, minimum in _COUNTS.items():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"must be an integer >= {minimum}, got {value!r}", key=key)
        if self.scheduler.cooled_rungs is not None and self.metric != "val_loss":
            raise ConfigError(f"a branch is judged on val_loss: needs metric 'val_loss', not "
                              f"{self.metric!r}", key="scheduler.cooled_rungs")

    # ---- the merge rule: base <- variant <- searched values <- forced overrides ----------
    def trial_dict(self, values: dict[str, Any]) -> dict[str, Any]:
        """The nested config of a trial given its searched ``values`` (dotted keys; ``variant``
        picks a variant; ``__trial_index__`` offsets the seed; None: an inactive parameter)."""
        merged = copy.deepcopy(self.base)
        values = dict(values)
        variant = values.pop(VARIANT_KEY, None)
        values.pop(CONFIRM_ARM_KEY, None)
        if variant is not None:
            for key, value in self.variants[variant].items():
                set_dotted(merged, key, value)
        index = values.pop(TRIAL_INDEX_KEY, None)
        for key, value in values.items():
            if value is not None:
                set_dotted(merged, key, value)
        if index is not None:
            seed = merged.get("train", {}).get("seed", TrainConfig().seed)
            set_dotted(merged, SEED_KEY, int(seed) + int(index))
        for key, value in self.forced.items():
            set_dotted(merged, key, value)
        return merged

    def resolve(self, values: dict[str, Any]) -> Config:
        """The trial's typed config (validated)."""
        return Config.from_dict(self.trial_dict(values))

    def effective(self, key: str, values: dict[str, Any]) -> Any:
        """The value ``key`` takes given the searched ``values`` so far (for ``when``)."""
        if key in values and values[key] is None:
            return None  # an inactive conditional parameter
        return get_dotted(self.trial_dict(values), key, default=get_dotted(_DEFAULTS, key))

    def is_active(self, param: Param, values: dict[str, Any]) -> bool:
        return all(self.effective(k, values) in allowed for k, allowed in (param.when or {}).items())

    # ---- derived views -------------------------------------------------------------------
    @property
    def base_config(self) -> Config:
        return self.resolve({})

    @property
    def search_keys(self) -> list[str]:
        return [p.key for p in self.params]

    def arms(self, searched: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(where, values) for the base, every variant and every value of the categorical
        parameters whose key starts with ``searched`` (``"data."``): the configurations to
        check before Ray starts."""
        yield "base", {}
        for name in self.variants:
            yield f"variants.{name}", {VARIANT_KEY: name}
        for p in self.params:
            if searched and p.key.startswith(searched) and DISTRIBUTIONS[p.dist] is None:
                for value in p.args:
                    yield "search", {p.key: value}

    def trial_count(self) -> int:
        """How many trials the campaign runs (configurations x repeats)."""
        if self.searcher.name == "grid":
            grid = math.prod(len(p.args) for p in self.params)
            return grid * self.num_samples * self.repeats
        return self.num_samples * self.repeats

    def _largest(self, key: str) -> float:
        """The largest value ``key`` takes in any trial: base or variant, with the largest
        searched value or without, merged by :meth:`trial_dict`."""
        searched = [None] + [max(p.values) for p in self.params if p.key == key]
        return float(max(
            get_dotted(self.trial_dict({**values, key: value}), key, default=get_dotted(_DEFAULTS, key))
            for _, values in self.arms() for value in searched))

    def max_steps(self) -> int:
        return int(self._largest("train.steps"))

    def max_budget(self) -> float:
        """An upper bound on the longest trial, in the scheduler's time unit."""
        steps = self._largest("train.steps")
        if self.scheduler.time_attr == "step":
            return steps
        return steps * self._largest("data.batch_size") * self._largest("model.block_size")

    def asha_budgets(self) -> tuple[float, float]:
        """(grace_period, max_t) in the scheduler's time unit, 'auto' resolved."""
        s = self.scheduler
        max_t = self.max_budget() if s.max_t == "auto" else float(s.max_t)
        grace = max_t / s.reduction_factor**2 if s.grace_period == "auto" else float(s.grace_period)
        return grace, max_t

    def scheduler_record(self) -> dict[str, Any]:
        """``campaign.json``'s ``scheduler`` entry (:func:`ngpt_tune.asha.scheduler_record`):
        the settings the scheduler runs with, 'auto' resolved, and ASHA's rung budgets."""
        s = self.scheduler
        grace, max_t = self.asha_budgets() if s.name == "asha" else (None, None)
        record = asha.scheduler_record(s.name, time_attr=s.time_attr, grace=grace, max_t=max_t,
                                       reduction_factor=s.reduction_factor, brackets=s.brackets)
        if s.cooled_rungs is not None:
            record["cooled_rungs"] = dataclasses.asdict(s.cooled_rungs)
        return record

    def cooled_rungs(self, config: Config) -> CooledRungs | None:
        """Where a trial of ``config`` branches a cooldown (``scheduler.cooled_rungs``): ASHA's
        rungs, every bracket's, as steps of this trial; None: it never branches."""
        from ngpt_tune.branches import CooledRungs, milestone_steps  # torch: trials only

        s = self.scheduler
        if s.name != "asha" or s.cooled_rungs is None:
            return None
        rungs = self.scheduler_record()["rungs"]
        steps = milestone_steps(rungs, time_attr=s.time_attr,
                                tokens_per_step=config.tokens_per_step,
                                total_steps=config.train.steps)
        return CooledRungs(steps, s.cooled_rungs.fraction)

    def check_data(self) -> None:
        """Open the shard headers of every data folder the campaign can use, so that a
        missing, empty or corrupt shard fails here, before Ray starts."""
        from ngpt_tune.data import resolve_shards  # the data module is heavier: import late

        checked = set()
        for prefix, values in self.arms(searched="data."):
            try:
                data = self.resolve(values).data
                if data.dir in BUILTIN_CORPORA or data in checked:
                    continue
                checked.add(data)
                resolve_shards(data)
            except ConfigError as err:
                raise err.under(prefix) from None
            except DataError as err:
                raise ConfigError(str(err), key=f"{prefix}.data") from None

    def with_resolved_data(self) -> CampaignSpec:
        """The spec with its data folders as the driver resolved them (absolute, variables
        expanded), so that workers on other nodes read the same folder."""
        base = copy.deepcopy(self.base)
        set_dotted(base, "data.dir", self.base_config.data.dir)
        variants = {name: {**o, "data.dir": self.resolve({VARIANT_KEY: name}).data.dir}
                    if "data.dir" in o else o for name, o in self.variants.items()}
        return dataclasses.replace(self, base=base, variants=variants)

    def with_overrides(self, flat: dict[str, Any]) -> CampaignSpec:
        """``--set key=value``: dotted config keys go into ``base``."""
        base = copy.deepcopy(self.base)
        for key, value in flat.items():
            set_dotted(base, key, value)
        spec = dataclasses.replace(self, base=base)
        check_configs(without_data(spec))
        return spec

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["params"] = {p.key: p.describe() for p in self.params}
        return out


_DEFAULTS = Config().to_dict()


# ---- parsing ---------------------------------------------------------------------------------
_HINTS = typing.get_type_hints(CampaignSpec)
# top-level keys typed by CampaignSpec's fields: plain values, and sections (dataclasses)
_SCALARS = ("name", "description", "metric", "mode", *_COUNTS)
_SECTIONS = {f.name: _HINTS[f.name] for f in dataclasses.fields(CampaignSpec)
             if dataclasses.is_dataclass(_HINTS[f.name])}
_TOP_KEYS = {*_SCALARS, *_SECTIONS, "base", "variants", "search", "compare", "confirm", "ladder"}


def load_spec(path: str | os.PathLike) -> CampaignSpec:
    """Read and validate a campaign spec; every problem is a one-line ConfigError."""
    path = Path(path).resolve()
    return _with_source(lambda: parse_spec(load_yaml(path), source=str(path)), str(path))


def parse_spec_text(text: str, *, source: str | None = None) -> CampaignSpec:
    """Parse a spec from its YAML text (as ``campaign.json`` records it)."""

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "malformed"
        raise ConfigError(f"not valid YAML{where}: {problem}", source=source) from None
    return _with_source(lambda: parse_spec(raw, source=source), source)


def _with_source(parse: typing.Callable[[], CampaignSpec], source: str | None) -> CampaignSpec:
    try:
        return parse()
    except ConfigError as err:
        raise (err.with_source(source) if source else err) from None


def parse_spec(raw: Any, *, source: str | None = None) -> CampaignSpec:
    if not isinstance(raw, dict):
        raise ConfigError("a campaign spec must be a YAML mapping", source=source)
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(unknown_key_message(str(key), _TOP_KEYS), key=str(key))
    if raw.get("name") is None:
        raise ConfigError("a non-empty name without '/' is required", key="name")
    kwargs: dict[str, Any] = {key: raw[key] if key in _COUNTS else  # checked by __post_init__
                              _coerce(raw[key], _HINTS[key], key=key)
                              for key in _SCALARS if raw.get(key) is not None}
    kwargs["description"] = kwargs.get("description", "").strip()
    kwargs.update({key: parse_section(cls, raw.get(key), key) for key, cls in _SECTIONS.items()})
    base = raw.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError("must be a mapping of config sections", key="base")
    variants = _parse_variants(raw.get("variants"))
    params = parse_search(raw.get("search"), variants)
    spec = CampaignSpec(**kwargs, base=nest_dotted(base), params=params, variants=variants,
                        compare=parse_compare(raw.get("compare"), params),
                        confirm=parse_confirm(raw.get("confirm")),
                        ladder=None if raw.get("ladder") is None else parse_ladder(raw["ladder"]),
                        source=source)
    check_spec(spec)
    return spec


def _parse_variants(raw: Any) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("must map variant names to config overrides", key="variants")
    variants = {}
    for name, overrides in raw.items():
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise ConfigError("must be a mapping of config keys", key=f"variants.{name}")
        variants[str(name)] = flatten_dotted(overrides)
    return variants
