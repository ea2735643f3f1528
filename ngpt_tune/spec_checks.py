"""The checks :func:`ngpt_tune.spec.parse_spec` runs on a whole campaign, before Ray starts:
every variant and every searched value make a valid config, the searcher and the scheduler fit
the search space and the budgets, and the confirmation's baseline arm exists.

Each check takes the spec and raises a one-line ConfigError naming the key.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import TYPE_CHECKING, Any

from ngpt_tune import asha
from ngpt_tune.config import BUILTIN_DATA, flatten_dotted
from ngpt_tune.errors import ConfigError
from ngpt_tune.experiment import VARIANT_KEY
from ngpt_tune.space import DISTRIBUTIONS

if TYPE_CHECKING:
    from ngpt_tune.spec import CampaignSpec


def check_spec(spec: CampaignSpec) -> None:
    """Every check, on ``spec`` with the built-in corpus (the data folders are checked by
    :meth:`CampaignSpec.check_data` once ``--smoke`` and ``--set`` are known)."""
    checked = without_data(spec)
    check_configs(checked)
    if spec.confirm is not None:
        confirm_baseline(checked, spec.confirm.baseline)
    check_searcher(checked)


def confirm_baseline(spec: CampaignSpec, baseline: dict[str, Any] | None,
                     *, key: str = "confirm.baseline") -> dict[str, Any] | None:
    """The baseline arm's values (dotted keys, ``variant`` included), checked against ``spec``:
    a known variant, and overrides that make a valid config. ``key`` names it in errors."""
    if baseline is None:
        return None
    values = flatten_dotted(baseline)
    variant = values.get(VARIANT_KEY)
    if VARIANT_KEY in values and variant not in spec.variants:
        known = ", ".join(spec.variants) or "none"
        raise ConfigError(f"unknown variant {variant!r} (variants: {known})",
                          key=f"{key}.{VARIANT_KEY}" if key.startswith("confirm") else key)
    try:
        spec.resolve(values)
    except ConfigError as err:
        raise ConfigError(err.detail, key=f"{key}.{err.key}" if err.key else key) from None
    return values


def without_data(spec: CampaignSpec) -> CampaignSpec:
    """The spec with the built-in corpus: parsing checks everything but the data folders,
    which :meth:`CampaignSpec.check_data` checks once ``--smoke`` and ``--set`` are known."""
    return dataclasses.replace(spec, forced={**spec.forced, "data.dir": BUILTIN_DATA})


def check_searcher(spec: CampaignSpec) -> None:
    storage = spec.searcher.storage
    if storage and (spec.searcher.name != "optuna" or not ("://" in storage or "$" in storage)):
        raise ConfigError(f"must be an Optuna database URL (sqlite:///PATH, postgresql://..., "
                          f"or ${{VAR}} holding one) for searcher 'optuna', got {storage!r}",
                          key="searcher.storage")
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
        rungs = len(asha.rung_budgets(grace, max_t, spec.scheduler.reduction_factor))  # bracket 0
        if spec.scheduler.brackets > rungs:
            raise ConfigError(f"{spec.scheduler.brackets} brackets, but grace_period {grace:g} "
                              f"to max_t {max_t:g} holds {rungs} rung(s): at most {rungs}",
                              key="scheduler.brackets")


def check_configs(spec: CampaignSpec) -> None:
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
