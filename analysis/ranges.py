"""The searched distributions of a campaign, and warnings when the best value sits at an edge.

``search_space(campaign)`` reads the distributions from ``campaign.json``'s ``spec`` record
(``spec.params``: ``{"optim.lr": "loguniform(0.0003, 0.01)"}`` as the runner writes it, or
``{"optim.lr": {"loguniform": [3e-4, 1e-2]}}`` as in a spec file). ``range_warnings`` flags a
best value in the outer ``EDGE`` (10%) of a numeric range, measured in log space for
``loguniform``, and proposes bounds widened on that side by half the range (in log space for
``loguniform``: the bound times ``sqrt(high / low)``); a positive lower bound stays positive,
and every proposed bound stays inside the key's valid domain: the values the config itself
accepts (``ngpt_tune.config``'s own checks, asked by building a config with the bound:
``model.alpha`` at most 1, ``optim.weight_decay`` at least 0, ``optim.lr`` above 0...). A bound
already at the domain's edge is not moved; the warning says the optimum sits at the edge of
what the config allows.
``search_distributions`` gives each distribution as text, for captions; ``is_log`` says
whether one is drawn on a log axis.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

EDGE = 0.1
WIDEN = 0.5  # the proposed bound moves out by this share of the searched range
NUMERIC = ("uniform", "loguniform", "quniform", "randint")
CONTINUOUS = ("uniform", "loguniform", "quniform")
_DESCRIBED = re.compile(r"^\s*(\w+)\((.*?)\)(?:\s+when\s.*)?\s*$", re.DOTALL)


def search_space(campaign: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{key: {"dist": "loguniform", "args": [low, high]}}`` for the keys the spec searched;
    keys whose distribution cannot be read are left out."""
    spec = campaign.get("spec") or {}
    params = spec.get("params") if isinstance(spec, dict) else None
    if not isinstance(params, dict):
        params = spec.get("search") if isinstance(spec, dict) else None
    out = {}
    for key, described in (params or {}).items():
        parsed = _parse(described)
        if parsed is not None:
            out[key] = parsed
    return out


def search_distributions(campaign: dict[str, Any]) -> dict[str, str]:
    """The spec's distribution of each searched key as text, e.g. ``loguniform(0.03, 0.5)``.

    ``campaign.json`` records them as ``spec.params`` (text); a dict form
    (``{"loguniform": [lo, hi]}``, as in a spec's ``search:``) is accepted too.
    """
    spec = campaign.get("spec") or {}
    params = spec.get("params") or spec.get("search") or {}
    out = {}
    for key, dist in params.items():
        if isinstance(dist, dict):
            kind = next((k for k in dist if k != "when"), None)
            args = dist[kind] if kind else None
            args = ", ".join(map(str, args)) if isinstance(args, list) else args
            out[key] = f"{kind}({args})" if kind else json.dumps(dist)
        else:
            out[key] = str(dist)
    return out


def is_log(distribution: str) -> bool:
    return distribution.strip().lower().startswith(("loguniform", "qloguniform", "lograndint"))


def range_warnings(
    space: dict[str, dict[str, Any]], params: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """One warning per numeric searched key whose value in ``params`` lies in the outer 10%."""
    warnings = []
    for key, dist in space.items():
        value = (params or {}).get(key)
        if dist["dist"] not in NUMERIC or not _is_number(value):
            continue
        low, high = float(dist["args"][0]), float(dist["args"][1])
        position = edge_position(value, low, high, log=dist["dist"] == "loguniform")
        if position is None or EDGE <= position <= 1 - EDGE:
            continue
        side = "low" if position < EDGE else "high"
        proposed = in_domain(key, widened(low, high, side, dist=dist["dist"]), [low, high],
                             integer=dist["dist"] == "randint")
        share = position if side == "low" else 1 - position
        scale = " (in log space)" if dist["dist"] == "loguniform" else ""
        bound = "lower" if side == "low" else "upper"
        moved = proposed != [low, high]
        advice = (f"try [{proposed[0]:.4g}, {proposed[1]:.4g}]" if moved else
                  "the bound is already the edge of the values the config accepts")
        warnings.append(
            {
                "key": key,
                "dist": dist["dist"],
                "value": value,
                "bounds": [low, high],
                "position": position,
                "edge": side,
                "proposed": proposed,
                "message": (
                    f"{key} = {value:.4g} is {max(share, 0):.0%} from the {bound} bound of its "
                    f"{dist['dist']} range [{low:.4g}, {high:.4g}]{scale}: the optimum may lie "
                    f"beyond it; {advice}"
                ),
            }
        )
    return warnings


def valid_value(key: str, value: float) -> bool | None:
    """Whether the config accepts ``value`` for ``key`` (its own checks); ``None`` when the key
    is not a config key (a spec-level key such as ``variant``)."""
    from ngpt_tune.config import Config, nest_dotted
    from ngpt_tune.errors import ConfigError

    try:
        Config.from_dict(nest_dotted({key: value}))
    except ConfigError as err:
        return False if err.key == key else None
    except (TypeError, ValueError):
        return None
    return True


def in_domain(key: str, proposed: list[float], searched: list[float], *,
              integer: bool = False) -> list[float]:
    """``proposed`` with each bound that the config rejects moved back to the last value it
    accepts between the searched bound and the proposed one (bisection; 0 itself when the
    domain is closed at 0). Keys the config does not know are returned unchanged."""
    out = list(proposed)
    for i in (0, 1):
        inside, outside = float(searched[i]), float(proposed[i])
        if inside == outside or valid_value(key, _typed(outside, integer)) is not False:
            continue
        if not valid_value(key, _typed(inside, integer)):
            continue  # the searched bound itself is refused: nothing sound to clip to
        for _ in range(60):
            middle = (inside + outside) / 2
            inside, outside = ((middle, outside) if valid_value(key, _typed(middle, integer))
                               else (inside, middle))
        limit = inside
        for candidate in (round(outside, 12), _round(limit, down=i == 0), 0.0):
            between = min(limit, float(searched[i])) <= candidate <= max(limit, float(
                searched[i])) or abs(candidate - limit) < 1e-9 * max(1.0, abs(limit))
            if between and valid_value(key, _typed(candidate, integer)):
                limit = candidate
                break
        out[i] = _typed(limit + 0.0, integer)  # no -0.0
    return out


def _typed(value: float, integer: bool) -> float:
    return int(round(value)) if integer else float(value)


def edge_position(value: float, low: float, high: float, *, log: bool) -> float | None:
    """Where ``value`` sits in [low, high]: 0 at low, 1 at high (log space when ``log``)."""
    if high <= low or (log and (low <= 0 or value <= 0)):
        return None
    if log:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)


def widened(low: float, high: float, side: str, *, dist: str) -> list[float]:
    """The range moved out on ``side`` by ``WIDEN`` of its width, rounded outward."""
    if dist == "loguniform":
        factor = (high / low) ** WIDEN
        new = [_round(low / factor, down=True), high] if side == "low" else [
            low, _round(high * factor, down=False)]
    else:
        width = WIDEN * (high - low)
        if side == "low":
            bound = low - width
            if low > 0 and bound <= 0:
                bound = low / 2  # a positive parameter stays positive
            new = [_round(bound, down=True), high]
        else:
            new = [low, _round(high + width, down=False)]
    if dist == "randint":
        new = [math.floor(new[0]), math.ceil(new[1])]
    return new


def _round(x: float, *, down: bool, digits: int = 2) -> float:
    """``x`` to ``digits`` significant digits, rounded away from the searched range."""
    if x == 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(abs(x))) - digits + 1)
    rounded = (math.floor if down else math.ceil)(x / scale) * scale
    return float(f"{rounded:.{digits + 2}g}")


def _parse(described: Any) -> dict[str, Any] | None:
    if isinstance(described, dict):  # {"loguniform": [lo, hi], "when": {...}}
        dists = [k for k in described if k != "when"]
        if len(dists) == 1 and isinstance(described[dists[0]], (list, tuple)):
            return {"dist": dists[0], "args": list(described[dists[0]])}
        return None
    if not isinstance(described, str):
        return None
    match = _DESCRIBED.match(described)
    if match is None:
        return None
    try:
        args = ast.literal_eval(f"({match.group(2)},)") if match.group(2).strip() else ()
    except (ValueError, SyntaxError):
        return None
    return {"dist": match.group(1), "args": list(args)}


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )
