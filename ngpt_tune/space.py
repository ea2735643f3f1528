"""The search space of a campaign spec: per dotted config key, a distribution by name
(``choice``, ``grid``, ``uniform``, ``loguniform``, ``quniform``, ``randint``), optionally
conditional with ``when:``. :func:`parse_search` reads the ``search:`` section into
:class:`Param` objects; :mod:`ngpt_tune.search` turns them into Tune's and Optuna's spaces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ngpt_tune.config import flatten_dotted
from ngpt_tune.errors import ConfigError, unknown_key_message
from ngpt_tune.experiment import VARIANT_KEY

# distribution name -> number of arguments it takes (None: a non-empty list of values)
DISTRIBUTIONS: dict[str, int | None] = {
    "choice": None,  # sampled categorically (Optuna: categorical, random: uniform)
    "grid": None,  # every value (Tune's grid_search)
    "uniform": 2,
    "loguniform": 2,
    "quniform": 3,  # [low, high, q]
    "randint": 2,  # [low, high], both inclusive
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


def parse_search(raw: Any, variants: dict[str, dict[str, Any]]) -> tuple[Param, ...]:
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
