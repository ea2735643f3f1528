"""The ``ladder:`` section of a campaign spec: the sizes to search (model overrides by dotted
key), the token rule, the ``target`` size and the size axis (:class:`LadderSpec`). What runs at
each size: ``ngpt_tune.ladder_plan``; the fit: ``analysis.ladder_fit``."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from ngpt_tune.config import Config, ModelConfig
from ngpt_tune.errors import ConfigError, unknown_key_message

__all__ = ["AXES", "TOKEN_RULES", "LadderSpec", "load_ladder", "non_embedding_params",
           "parse_ladder", "smoke_ladder", "split_ladder"]

AXES = ("params", "width", "depth")
TOKEN_RULES = ("equal", "proportional")  # the same tokens per rung, or tokens ~ parameters
# --smoke: three tiny sizes (head size even for RoPE) toward a fourth, on the built-in corpus
SMOKE_SIZES = ({"model.n_layer": 1, "model.n_embd": 16, "model.n_head": 2},
               {"model.n_layer": 2, "model.n_embd": 24, "model.n_head": 2},
               {"model.n_layer": 2, "model.n_embd": 32, "model.n_head": 2})
SMOKE_TARGET = {"model.n_layer": 3, "model.n_embd": 48, "model.n_head": 2}


# ---- the section -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LadderSpec:
    """``ladder:``: ``sizes`` (a list of model overrides, e.g. ``{model.n_layer: 4,
    model.n_embd: 192, model.n_head: 3}``), ``target`` (one more), ``tokens`` (``equal`` or
    ``proportional``: train.steps scaled by the size's parameters over the first rung's),
    ``axis`` (``params``, ``width`` or ``depth``), ``near_best`` (share of a rung's trials, best
    first, in its quadratic fit), ``bootstrap`` (resamples), ``confidence`` (of the intervals),
    ``bracket`` (the target spec searches the prediction interval widened by this factor each
    way), ``target_search`` (go on, in the same campaign, to that search at the target size and
    its confirmation)."""

    sizes: tuple[dict[str, Any], ...] = ()
    target: dict[str, Any] = field(default_factory=dict)
    tokens: str = "equal"
    axis: str = "params"
    near_best: float = 0.5
    bootstrap: int = 1000
    confidence: float = 0.9
    bracket: float = 1.25
    target_search: bool = False  # then search at the target around the prediction, confirmed

    def __post_init__(self) -> None:
        if not isinstance(self.sizes, (list, tuple)) or len(self.sizes) < 2:
            raise ConfigError("must list at least two sizes (a trend needs two points)",
                              key="sizes")
        sizes = tuple(_size_overrides(s, f"sizes[{i}]") for i, s in enumerate(self.sizes))
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "target", _size_overrides(self.target, "target"))
        if self.tokens not in TOKEN_RULES:
            raise ConfigError(f"must be one of {', '.join(TOKEN_RULES)}, got {self.tokens!r}",
                              key="tokens")
        if self.axis not in AXES:
            raise ConfigError(f"must be one of {', '.join(AXES)}, got {self.axis!r}", key="axis")
        if not (isinstance(self.near_best, (int, float)) and 0 < self.near_best <= 1):
            raise ConfigError(f"must be in (0, 1], got {self.near_best!r}", key="near_best")
        if not (isinstance(self.bootstrap, int) and self.bootstrap >= 100):
            raise ConfigError(f"must be an integer >= 100, got {self.bootstrap!r}",
                              key="bootstrap")
        if not (isinstance(self.confidence, float) and 0.5 <= self.confidence < 1):
            raise ConfigError(f"must be in [0.5, 1), got {self.confidence!r}", key="confidence")
        if not (isinstance(self.bracket, (int, float)) and self.bracket >= 1):
            raise ConfigError(f"must be >= 1, got {self.bracket!r}", key="bracket")
        if not isinstance(self.target_search, bool):
            raise ConfigError(f"must be true or false, got {self.target_search!r}",
                              key="target_search")
        values = [self.size_of(s) for s in sizes]
        if len(set(values)) < 2:
            raise ConfigError(f"the sizes must differ along axis '{self.axis}' (all {values[0]})",
                              key="sizes")

    def model(self, overrides: dict[str, Any]) -> ModelConfig:
        return _model(overrides, "ladder")

    def size_of(self, overrides: dict[str, Any]) -> float:
        """The size along :attr:`axis` of a rung given by ``overrides``."""
        model = self.model(overrides)
        if self.axis == "width":
            return float(model.n_embd)
        if self.axis == "depth":
            return float(model.n_layer)
        return float(non_embedding_params(model))

    def steps_for(self, rung: int, steps: int) -> int:
        """train.steps at ``rung`` (``len(sizes)``: the target) given the first rung's."""
        if self.tokens == "equal":
            return steps
        first = non_embedding_params(self.model(self.sizes[0]))
        here = non_embedding_params(self.model(self.rungs[rung]))
        return max(1, round(steps * here / first))

    @property
    def rungs(self) -> tuple[dict[str, Any], ...]:
        """The sizes, then the target."""
        return (*self.sizes, self.target)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sizes"] = [dict(s) for s in self.sizes]
        return out


def _size_overrides(raw: Any, key: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("must be a mapping of model overrides, e.g. {model.n_layer: 4, "
                          "model.n_embd: 192, model.n_head: 3}", key=key)
    flat = {}
    for name, value in raw.items():
        name = str(name)
        dotted = name if name.startswith("model.") else f"model.{name}"
        flat[dotted] = value
    _model(flat, key)
    return flat


def _model(overrides: dict[str, Any], key: str) -> ModelConfig:
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    kwargs = {}
    for dotted, value in overrides.items():
        name = dotted.removeprefix("model.")
        if name not in fields:
            raise ConfigError(unknown_key_message(name, fields), key=f"{key}.{dotted}")
        kwargs[name] = value
    try:
        return Config.from_dict({"model": kwargs}).model
    except ConfigError as err:
        raise ConfigError(err.detail, key=f"{key}.{err.key}" if err.key else key) from None


def non_embedding_params(model: ModelConfig) -> int:
    """Weights in the blocks: per layer 4 d^2 (q, k, v, out) + 3 d h (SwiGLU up, gate, down);
    the embedding and unembedding (vocabulary x d) and nGPT's scale vectors (O(d)) are left out."""
    d, h = model.n_embd, model.mlp_hidden
    return model.n_layer * (4 * d * d + 3 * d * h)


def parse_ladder(raw: Any) -> LadderSpec:
    """The ``ladder:`` section; every problem is a one-line ConfigError naming ``ladder.KEY``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"must be a mapping, got {raw!r}", key="ladder")
    names = {f.name for f in dataclasses.fields(LadderSpec)}
    for key in raw:
        if key not in names:
            raise ConfigError(unknown_key_message(str(key), names), key=f"ladder.{key}")
    kwargs = dict(raw)
    if "confidence" in kwargs and isinstance(kwargs["confidence"], int):
        kwargs["confidence"] = float(kwargs["confidence"])
    if "sizes" in kwargs and isinstance(kwargs["sizes"], list):
        kwargs["sizes"] = tuple(kwargs["sizes"])
    try:
        return LadderSpec(**kwargs)
    except ConfigError as err:
        raise err.under("ladder") from None


def split_ladder(raw: dict[str, Any]) -> tuple[dict[str, Any], LadderSpec | None]:
    """A raw spec mapping without its ``ladder:`` section, and that section parsed."""
    if not isinstance(raw, dict) or "ladder" not in raw:
        return raw, None
    rest = {k: v for k, v in raw.items() if k != "ladder"}
    return rest, parse_ladder(raw["ladder"])


def load_ladder(path: str | os.PathLike) -> tuple[Any, LadderSpec | None, dict[str, Any]]:
    """(CampaignSpec without its ladder, the ladder or None, the raw mapping as written)."""
    from ngpt_tune.config import load_yaml
    from ngpt_tune.spec import parse_spec

    raw = load_yaml(path)
    try:
        rest, ladder = split_ladder(raw)
    except ConfigError as err:
        raise err.with_source(str(path)) from None
    return parse_spec(rest, source=str(path)), ladder, raw


def smoke_ladder(ladder: LadderSpec) -> LadderSpec:
    """``--smoke``: three tiny sizes toward a fourth (the fit still has three points)."""
    return dataclasses.replace(ladder, sizes=SMOKE_SIZES, target=dict(SMOKE_TARGET),
                               bootstrap=min(ladder.bootstrap, 200))
