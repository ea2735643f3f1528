"""Campaign specs: one YAML file per campaign, validated before Ray starts.

A spec names the campaign, a fixed ``base`` configuration (the typed :class:`Config`), named
``variants`` (sets of overrides picked by the ``variant`` parameter), the ``search`` space (per
dotted config key a distribution by name, optionally conditional with ``when``), and how to
search (``searcher``, ``scheduler``, ``num_samples``, ``repeats``, ``resources``).

Nothing here imports Ray: a bad spec never starts a cluster.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from ngpt_tune.config import (
    BUILTIN_DATA,
    Config,
    TrainConfig,
    build_section,
    flatten_dotted,
    load_yaml,
    nest_dotted,
    set_dotted,
)
from ngpt_tune.errors import ConfigError, DataError, unknown_key_message

VARIANT_KEY = "variant"
SEED_KEY = "train.seed"
TRIAL_INDEX_KEY = "__trial_index__"  # set by Ray's Repeater on repeated Optuna configurations
SMOKE_MAX_TRIALS = 4

# distribution name -> number of arguments it takes (None: a non-empty list of values)
DISTRIBUTIONS: dict[str, int | None] = {
    "choice": None,  # sampled categorically (Optuna: categorical, random: uniform)
    "grid": None,  # every value (Tune's grid_search)
    "uniform": 2,
    "loguniform": 2,
    "quniform": 3,  # [low, high, q]
    "randint": 2,  # [low, high], both inclusive
}
SMOKE_MODEL = {"n_layer": 2, "n_embd": 32, "n_head": 2, "block_size": 32}
SMOKE_RUN = {
    "data.dir": BUILTIN_DATA, "data.batch_size": 4, "data.val_tokens": 1024,
    "train.steps": 24, "train.eval_every": 6, "train.device": "cpu", "train.compile": "off",
    **{f"model.{k}": v for k, v in SMOKE_MODEL.items()},
}


@dataclass(frozen=True)
class Param:
    """One searched key: ``model.alpha: {loguniform: [0.05, 0.5], when: {...}}``."""

    key: str
    dist: str
    args: tuple[Any, ...]
    when: dict[str, tuple[Any, ...]] | None = None

    @property
    def values(self) -> tuple[Any, ...]:
        """The values a categorical parameter takes, or the bounds of a numeric one."""
        return self.args if DISTRIBUTIONS[self.dist] is None else tuple(self.args[:2])

    def describe(self) -> str:
        text = f"{self.dist}({', '.join(repr(a) for a in self.args)})"
        if self.when:
            cond = ", ".join(f"{k} in {list(v)}" for k, v in self.when.items())
            text += f" when {cond}"
        return text


@dataclass(frozen=True)
class SearcherSpec:
    name: Literal["optuna", "random", "grid"] = "optuna"
    seed: int = 0
    n_startup_trials: int = 0  # Optuna TPE random start-up trials; 0: Optuna's default


@dataclass(frozen=True)
class SchedulerSpec:
    name: Literal["asha", "fifo"] = "asha"
    time_attr: Literal["tokens_seen", "step"] = "tokens_seen"
    grace_period: Union[Literal["auto"], float] = "auto"  # auto: max_t / reduction_factor**2
    reduction_factor: float = 3.0
    max_t: Union[Literal["auto"], float] = "auto"  # auto: the longest trial's budget

    def __post_init__(self) -> None:
        if self.reduction_factor <= 1:
            raise ConfigError("must be > 1", key="reduction_factor")
        for name in ("grace_period", "max_t"):
            value = getattr(self, name)
            if value != "auto" and value <= 0:
                raise ConfigError(f"must be 'auto' or > 0, got {value}", key=name)


@dataclass(frozen=True)
class ResourceSpec:
    cpus_per_trial: float = 1.0
    gpus_per_trial: Union[Literal["auto"], float] = "auto"  # auto: 1 when the cluster has GPUs

    def __post_init__(self) -> None:
        if self.cpus_per_trial <= 0:
            raise ConfigError("must be > 0", key="cpus_per_trial")
        if self.gpus_per_trial != "auto" and self.gpus_per_trial < 0:
            raise ConfigError("must be 'auto' or >= 0", key="gpus_per_trial")


@dataclass(frozen=True)
class CheckpointSpec:
    every: int = 0  # steps between checkpoints; 0: at every evaluation
    keep: int = 2  # per trial: the best by the metric and the latest

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ConfigError("must be >= 0", key="every")
        if self.keep < 1:
            raise ConfigError("must be >= 1", key="keep")


@dataclass(frozen=True)
class CompareSpec:
    """Arms of the campaign (values of ``by``) compared with the ``baseline`` arm."""

    by: str = VARIANT_KEY
    baseline: Any = None


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    description: str
    base: dict[str, Any]  # nested overrides of the Config defaults, as written
    params: tuple[Param, ...]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    searcher: SearcherSpec = field(default_factory=SearcherSpec)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    num_samples: int = 1
    repeats: int = 1  # seeds per configuration: train.seed, train.seed + 1, ...
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    max_concurrent_trials: int = 0  # 0: as many as resources allow
    max_failures: int = 1  # retries of a crashed trial before it is marked errored
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    compare: CompareSpec | None = None
    source: str | None = None
    smoke: bool = False
    forced: dict[str, Any] = field(default_factory=dict)  # applied last (e.g. by --smoke)

    # ---- derived views -------------------------------------------------------------------
    @property
    def base_config(self) -> Config:
        return self.resolve({})

    @property
    def search_keys(self) -> list[str]:
        return [p.key for p in self.params]

    def trial_count(self) -> int:
        """How many trials the campaign runs (configurations x repeats)."""
        if self.searcher.name == "grid":
            grid = math.prod(len(p.args) for p in self.params)
            return grid * self.num_samples * self.repeats
        return self.num_samples * self.repeats

    def _largest(self, key: str) -> float:
        """The largest value ``key`` takes in any trial: base, variants, searched values,
        with the forced overrides (``--smoke``) applied last."""
        configs = [self.base_config] + [self.resolve({VARIANT_KEY: n}) for n in self.variants]
        section, name = key.split(".")
        values = [getattr(getattr(c, section), name) for c in configs]
        if key not in self.forced:
            values += [max(p.values) for p in self.params if p.key == key]
        return float(max(values))

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

    def resolve(self, values: dict[str, Any]) -> Config:
        """The trial's typed config: base <- variant <- searched values <- forced overrides."""
        return Config.from_dict(self.trial_dict(values))

    def trial_dict(self, values: dict[str, Any]) -> dict[str, Any]:
        merged = copy.deepcopy(self.base)
        values = dict(values)
        variant = values.pop(VARIANT_KEY, None)
        if variant is not None:
            for key, value in self.variants[variant].items():
                set_dotted(merged, key, value)
        index = values.pop(TRIAL_INDEX_KEY, None)
        for key, value in values.items():
            if value is not None:  # None: a conditional parameter that is not active
                set_dotted(merged, key, value)
        if index is not None:
            seed = merged.get("train", {}).get("seed", TrainConfig().seed)
            set_dotted(merged, SEED_KEY, int(seed) + int(index))
        for key, value in self.forced.items():
            set_dotted(merged, key, value)
        return merged

    def effective(self, key: str, values: dict[str, Any]) -> Any:
        """The value ``key`` takes given the searched ``values`` so far (for ``when``)."""
        if key in values:
            return values[key]
        variant = values.get(VARIANT_KEY)
        if variant is not None and key in self.variants.get(variant, {}):
            return self.variants[variant][key]
        node: Any = self.base
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return _default_value(key)
            node = node[part]
        return node

    def is_active(self, param: Param, values: dict[str, Any]) -> bool:
        return all(self.effective(k, values) in allowed for k, allowed in (param.when or {}).items())

    def check_data(self) -> None:
        """Open the shard headers of every data folder the campaign can use, so that a
        missing, empty or corrupt shard fails here, before Ray starts."""
        from ngpt_tune.data import resolve_shards  # the data module is heavier: import late

        candidates: list[tuple[str, dict[str, Any]]] = [("base", {})]
        candidates += [(f"variants.{n}", {VARIANT_KEY: n}) for n in self.variants]
        candidates += [("search", {p.key: v}) for p in self.params
                       if p.key.startswith("data.") and DISTRIBUTIONS[p.dist] is None
                       for v in p.args]
        checked = set()
        for prefix, values in candidates:
            try:
                data = self.resolve(values).data
                if data.dir == BUILTIN_DATA or data in checked:
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

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["params"] = {p.key: p.describe() for p in self.params}
        return out

    def with_overrides(self, flat: dict[str, Any]) -> CampaignSpec:
        """``--set key=value``: dotted config keys go into ``base``."""
        base = copy.deepcopy(self.base)
        for key, value in flat.items():
            set_dotted(base, key, value)
        spec = dataclasses.replace(self, base=base)
        _check_configs(_without_data(spec))
        return spec

    def smoke_version(self) -> CampaignSpec:
        """The same campaign shrunk to a CPU-sized run: tiny model, built-in corpus, few steps,
        at most four trials. Searched size keys are dropped; budgets are rescaled."""
        size_keys = set(SMOKE_RUN)
        params = tuple(p for p in self.params if p.key not in size_keys)
        searcher, repeats = self.searcher, min(self.repeats, 2)
        spec = dataclasses.replace(self, params=params, repeats=repeats, smoke=True,
                                   forced={**self.forced, **SMOKE_RUN},
                                   scheduler=dataclasses.replace(
                                       self.scheduler, grace_period="auto", max_t="auto",
                                       reduction_factor=2.0),
                                   resources=dataclasses.replace(self.resources,
                                                                 cpus_per_trial=1.0,
                                                                 gpus_per_trial=0),
                                   max_concurrent_trials=2)
        if spec.trial_count() > SMOKE_MAX_TRIALS and searcher.name == "grid":
            # keep a grid (seeds stay paired): two values of one axis (the compared arm and
            # its baseline, if any), the first value of every other axis
            axis = self.compare.by if self.compare else params[0].key
            cut = []
            for p in params:
                keep = p.args[:1]
                if p.key == axis:
                    first = (self.compare.baseline,) if self.compare else ()
                    keep = (first + tuple(v for v in p.args if v not in first))[:2]
                cut.append(dataclasses.replace(p, args=keep))
            spec = dataclasses.replace(spec, params=tuple(cut))
        elif spec.trial_count() > SMOKE_MAX_TRIALS:
            spec = dataclasses.replace(spec, num_samples=max(1, SMOKE_MAX_TRIALS // repeats))
        return spec


_TOP_KEYS = {
    "name", "description", "metric", "mode", "base", "variants", "search", "searcher",
    "scheduler", "num_samples", "repeats", "resources", "max_concurrent_trials",
    "max_failures", "checkpoint", "compare",
}


def load_spec(path: str | os.PathLike) -> CampaignSpec:
    """Read and validate a campaign spec; every problem is a one-line ConfigError."""
    path = Path(path).resolve()
    raw = load_yaml(path)
    try:
        return parse_spec(raw, source=str(path))
    except ConfigError as err:
        raise err.with_source(str(path)) from None


def parse_spec(raw: Any, *, source: str | None = None) -> CampaignSpec:
    if not isinstance(raw, dict):
        raise ConfigError("a campaign spec must be a YAML mapping", source=source)
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(unknown_key_message(str(key), _TOP_KEYS), key=str(key))
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ConfigError("a non-empty name without '/' is required", key="name")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("must be text", key="description")
    base = raw.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError("must be a mapping of config sections", key="base")
    base = nest_dotted(base)
    variants = _parse_variants(raw.get("variants"))
    params = _parse_search(raw.get("search"), variants)
    spec = CampaignSpec(
        name=name,
        description=description.strip(),
        base=base,
        params=params,
        variants=variants,
        metric=_choice(raw, "metric", ("val_loss", "train_loss"), "val_loss"),
        mode=_choice(raw, "mode", ("min", "max"), "min"),
        searcher=_section(SearcherSpec, raw.get("searcher"), "searcher"),
        scheduler=_section(SchedulerSpec, raw.get("scheduler"), "scheduler"),
        num_samples=_count(raw, "num_samples", 1, minimum=1),
        repeats=_count(raw, "repeats", 1, minimum=1),
        resources=_section(ResourceSpec, raw.get("resources"), "resources"),
        max_concurrent_trials=_count(raw, "max_concurrent_trials", 0, minimum=0),
        max_failures=_count(raw, "max_failures", 1, minimum=0),
        checkpoint=_section(CheckpointSpec, raw.get("checkpoint"), "checkpoint"),
        compare=_parse_compare(raw.get("compare"), params, variants),
        source=source,
    )
    _check_configs(_without_data(spec))
    _check_searcher(_without_data(spec))
    return spec


def _section(cls: type, value: Any, key: str) -> Any:
    if isinstance(value, str):  # "searcher: grid" is short for {"name": "grid"}
        value = {"name": value}
    return build_section(cls, value, prefix=key)


def _choice(raw: dict, key: str, allowed: tuple[str, ...], default: str) -> str:
    value = raw.get(key, default)
    if value not in allowed:
        raise ConfigError(f"expected one of {', '.join(allowed)}, got {value!r}", key=key)
    return value


def _count(raw: dict, key: str, default: int, *, minimum: int) -> int:
    value = raw.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"must be an integer >= {minimum}, got {value!r}", key=key)
    return value


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


def _parse_search(raw: Any, variants: dict[str, dict[str, Any]]) -> tuple[Param, ...]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("the search space is empty: give at least one parameter", key="search")
    params = []
    for key, body in _flatten_search(raw).items():
        where = f"search.{key}"
        if key == VARIANT_KEY and not variants:
            raise ConfigError("'variant' needs a 'variants' section", key=where)
        if not isinstance(body, dict):
            raise ConfigError(
                f"expected a distribution such as {{choice: [...]}} or {{loguniform: [lo, hi]}}, "
                f"got {body!r}", key=where)
        body = dict(body)
        when = body.pop("when", None)
        if len(body) != 1:
            raise ConfigError(
                f"give exactly one distribution of {', '.join(DISTRIBUTIONS)}", key=where)
        dist, args = next(iter(body.items()))
        if dist not in DISTRIBUTIONS:
            raise ConfigError(unknown_key_message(dist, DISTRIBUTIONS), key=f"{where}.{dist}")
        params.append(Param(key, dist, _check_args(dist, args, f"{where}.{dist}"),
                            _parse_when(when, f"{where}.when")))
        if key == VARIANT_KEY:
            unknown = [v for v in params[-1].values if v not in variants]
            if unknown:
                raise ConfigError(f"unknown variant {unknown[0]!r}; defined: "
                                  f"{', '.join(variants)}", key=where)
    return tuple(params)


def _flatten_search(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections (``model: {alpha: {...}}``) and dotted keys both name config keys."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        # a section holds only mappings ({alpha: {uniform: [...]}}); anything else is a body
        is_section = isinstance(value, dict) and value and all(
            isinstance(v, dict) for v in value.values()) and not set(value) & {"when"}
        if is_section:
            out.update(_flatten_search(value, full + "."))
        else:
            out[full] = value
    return out


def _check_args(dist: str, args: Any, key: str) -> tuple[Any, ...]:
    arity = DISTRIBUTIONS[dist]
    if not isinstance(args, (list, tuple)) or not args:
        raise ConfigError("expected a list", key=key)
    if arity is None:
        return tuple(args)
    if len(args) != arity or not all(_is_number(a) for a in args):
        raise ConfigError(f"expected {arity} numbers, got {args!r}", key=key)
    args = tuple(float(a) if dist != "randint" else a for a in args)
    low, high = args[0], args[1]
    if dist == "randint" and not all(isinstance(a, int) for a in args):
        raise ConfigError("randint bounds must be integers", key=key)
    if not low < high:
        raise ConfigError(f"low {low} must be below high {high}", key=key)
    if dist == "loguniform" and low <= 0:
        raise ConfigError("loguniform bounds must be > 0", key=key)
    if dist == "quniform" and args[2] <= 0:
        raise ConfigError("q must be > 0", key=key)
    return args


def _is_number(value: Any) -> bool:
    if isinstance(value, str):
        try:
            float(value)
            return True
        except ValueError:
            return False
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_when(raw: Any, key: str) -> dict[str, tuple[Any, ...]] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("expected a mapping {key: value or [values]}", key=key)
    return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in flatten_dotted(raw).items()}


def _parse_compare(raw: Any, params: tuple[Param, ...], variants: dict) -> CompareSpec | None:
    if raw is None:
        return None
    compare = build_section(CompareSpec, raw, prefix="compare")
    by = {p.key: p for p in params}.get(compare.by)
    if by is None:
        raise ConfigError(f"'{compare.by}' is not a searched parameter", key="compare.by")
    if compare.baseline not in by.values:
        raise ConfigError(f"{compare.baseline!r} is not a value of {compare.by}",
                          key="compare.baseline")
    return compare


def _without_data(spec: CampaignSpec) -> CampaignSpec:
    """The spec with the built-in corpus: parsing checks everything but the data folders,
    which :meth:`CampaignSpec.check_data` checks once ``--smoke`` and ``--set`` are known."""
    return dataclasses.replace(spec, forced={**spec.forced, "data.dir": BUILTIN_DATA})


def _check_searcher(spec: CampaignSpec) -> None:
    for p in spec.params:
        if spec.searcher.name == "grid" and p.dist != "grid":
            raise ConfigError("searcher 'grid' needs every parameter as {grid: [...]}",
                              key=f"search.{p.key}")
        if p.dist == "grid" and p.when:
            raise ConfigError("a grid parameter cannot be conditional", key=f"search.{p.key}")
    if spec.scheduler.name == "asha":
        grace, max_t = spec.asha_budgets()
        if grace > max_t:
            raise ConfigError(f"grace_period {grace:g} is above the max budget max_t {max_t:g}",
                              key="scheduler.grace_period")


def _check_configs(spec: CampaignSpec) -> None:
    """Every variant, and every searched value at its bounds, must make a valid Config."""
    try:
        spec.base_config  # noqa: B018 - validates
    except ConfigError as err:
        raise err.under("base") from None
    for name in spec.variants:
        try:
            spec.resolve({VARIANT_KEY: name})
        except ConfigError as err:
            raise ConfigError(f"{err.key}: {err.detail}", key=f"variants.{name}") from None
    categorical = [p for p in spec.params if DISTRIBUTIONS[p.dist] is None and not p.when]
    combos = math.prod(len(p.args) for p in categorical)
    for p in spec.params:
        for value in p.values:
            value = round(value) if p.dist == "randint" else value
            try:
                spec.resolve({p.key: value})
            except ConfigError as err:
                detail = err.detail if "unknown key" in err.detail else (
                    f"value {value!r} is invalid: {err.detail}")
                raise ConfigError(detail, key=f"search.{p.key}") from None
    if combos <= 512:
        for combo in itertools.product(*(p.args for p in categorical)):
            values = {p.key: v for p, v in zip(categorical, combo)}
            try:
                spec.resolve(values)
            except ConfigError as err:
                raise ConfigError(f"the combination {values} is invalid: {err}",
                                  key="search") from None


def _default_value(key: str) -> Any:
    node: Any = Config().to_dict()
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
