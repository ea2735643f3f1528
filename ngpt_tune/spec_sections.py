"""Each section of a campaign spec: a frozen dataclass that checks itself.

:class:`ngpt_tune.spec.CampaignSpec` has one field per section, built by :func:`parse_section`
or a section's own ``parse_*``; a bad value is a one-line ConfigError naming its key.
``loggers:`` names experiment trackers (README, "Experiment trackers"), made Ray Tune callbacks
by :mod:`ngpt_tune.logger_callbacks`; ``ladder:`` gives the sizes :mod:`ngpt_tune.ladder` runs.
Nothing here imports Ray; :func:`check_installed` imports a tracker's package before Ray starts.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from ngpt_tune.config import Config, ModelConfig, build_section, flatten_dotted
from ngpt_tune.errors import ConfigError, unknown_key_message
from ngpt_tune.experiment import VARIANT_KEY
from ngpt_tune.flops import non_embedding_params
from ngpt_tune.scheduler_spec import CooledRungsSpec, SchedulerSpec
from ngpt_tune.searcher_spec import SearcherSpec
from ngpt_tune.space import Param

__all__ = ["AXES", "LOGGERS", "TOKEN_RULES", "CheckpointSpec", "CompareSpec", "ConfirmSpec",
           "CooledRungsSpec", "LadderSpec", "LoggersSpec", "MLflowLogger", "ResourceSpec", "SchedulerSpec",
           "SearcherSpec", "TensorboardLogger", "WandbLogger", "check_installed", "parse_compare",
           "parse_confirm", "parse_ladder", "parse_loggers", "parse_section", "smoke_ladder"]


# ---- searcher: (ngpt_tune.searcher_spec), scheduler: (ngpt_tune.scheduler_spec), resources:, checkpoint:, compare:, confirm: ------------------------
@dataclass(frozen=True)
class ResourceSpec:
    cpus_per_trial: float = 1.0
    gpus_per_trial: Union[Literal["auto"], float] = "auto"  # auto: 1 when the cluster has GPUs

    def __post_init__(self) -> None:
        if self.cpus_per_trial <= 0:
            raise ConfigError("must be > 0", key="cpus_per_trial")
        if self.gpus_per_trial != "auto" and self.gpus_per_trial < 0:
            raise ConfigError("must be 'auto' or >= 0", key="gpus_per_trial")
        if self.gpus_per_trial != "auto" and self.gpus_per_trial > 1 \
                and self.gpus_per_trial != int(self.gpus_per_trial):  # Ray's rule
            raise ConfigError(f"a share of a GPU is <= 1; above 1, a whole number, got "
                              f"{self.gpus_per_trial}", key="gpus_per_trial")


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
class ConfirmSpec:
    """The confirmation stage (:mod:`ngpt_tune.confirm_stage`): after the search, its ``top_k``
    configurations (ranked on the mean over seeds) re-run with ``seeds`` fresh seeds each, at
    their full budget, beside an optional ``baseline`` arm (``{variant: NAME}`` and/or config
    overrides by dotted key)."""

    top_k: int = 3
    seeds: int = 3
    baseline: Any = None  # a mapping: {variant: NAME} and/or {dotted.key: value}

    def __post_init__(self) -> None:
        for key, minimum in (("top_k", 1), ("seeds", 2)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                why = " (a spread needs two runs)" if key == "seeds" else ""
                raise ConfigError(f"must be an integer >= {minimum}{why}, got {value!r}", key=key)
        if self.baseline is not None and (not isinstance(self.baseline, dict)
                                          or not self.baseline):
            raise ConfigError("must name a variant ({variant: NAME}) or config overrides",
                              key="baseline")

    def trial_count(self) -> int:
        """Trials of the stage at most (the search may have fewer configurations)."""
        return (self.top_k + (self.baseline is not None)) * self.seeds


def parse_compare(raw: Any, params: tuple[Param, ...]) -> CompareSpec | None:
    """``compare:``; ``by`` must be a searched parameter and ``baseline`` one of its values."""
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


def parse_confirm(raw: Any) -> ConfirmSpec | None:
    """``confirm:``; its ``baseline`` overrides may be nested or dotted."""
    if raw is None:
        return None
    if isinstance(raw, dict) and isinstance(raw.get("baseline"), dict):
        raw = {**raw, "baseline": flatten_dotted(raw["baseline"])}
    return build_section(ConfirmSpec, raw, prefix="confirm")

# ---- loggers: ------------------------------------------------------------------------------
MLFLOW_DB = "mlflow.db"  # the default MLflow tracking store, inside the experiment folder
MLFLOW_ARTIFACTS = "mlartifacts"
WANDB_DIR = "wandb"  # wandb.init(dir=EXPERIMENT) writes EXPERIMENT/wandb/offline-run-*/


@dataclass(frozen=True)
class TensorboardLogger:
    """Tune's TensorBoardX logger: ``events.out.tfevents.*`` in each trial folder."""


@dataclass(frozen=True)
class MLflowLogger:
    tracking_uri: str | None = None  # default: sqlite:///EXPERIMENT/mlflow.db
    experiment_name: str | None = None  # default: the campaign's name


@dataclass(frozen=True)
class WandbLogger:
    project: str | None = None  # default: the campaign's name
    entity: str | None = None  # a W&B team or user; default: the API key's user
    group: str | None = None  # default: the experiment folder's name
    mode: Literal["auto", "online", "offline"] = "auto"  # auto: offline without an API key


# name -> (settings type, the module it imports, the pip extra that installs it)
LOGGERS: dict[str, tuple[type, str | None, str | None]] = {
    "tensorboard": (TensorboardLogger, "tensorboardX", None),  # a dependency of ray[tune]
    "mlflow": (MLflowLogger, "mlflow", "mlflow"),
    "wandb": (WandbLogger, "wandb", "wandb"),
}


@dataclass(frozen=True)
class LoggersSpec:
    """The ``loggers:`` section: which trackers a campaign logs to (none by default)."""

    tensorboard: TensorboardLogger | None = None
    mlflow: MLflowLogger | None = None
    wandb: WandbLogger | None = None

    @property
    def names(self) -> list[str]:
        return [name for name in LOGGERS if getattr(self, name) is not None]

    def with_names(self, names: list[str] | tuple[str, ...], *, source: str = "--logger"
                   ) -> LoggersSpec:
        """The section with the trackers ``names`` added, with default settings
        (``run --logger NAME``); a tracker the spec already sets keeps its settings."""
        added = {}
        for name in names:
            if name not in LOGGERS:
                raise ConfigError(f"unknown logger {name!r}; known: {', '.join(LOGGERS)}",
                                  source=source)
            if getattr(self, name) is None:
                added[name] = LOGGERS[name][0]()
        check_installed(LoggersSpec(**added), source=source)
        return dataclasses.replace(self, **added)


def parse_loggers(raw: Any, *, key: str = "loggers") -> LoggersSpec:
    """``[tensorboard, mlflow]``, ``{mlflow: {tracking_uri: ...}}`` or a list mixing names
    and one-entry mappings; checks that each tracker's package is installed."""
    if raw is None:
        return LoggersSpec()
    entries: list[tuple[str, Any]] = []
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, dict):
        entries = [(str(name), settings) for name, settings in raw.items()]
    elif isinstance(raw, (list, tuple)):
        for item in raw:
            if isinstance(item, str):
                entries.append((item, None))
            elif isinstance(item, dict) and len(item) == 1:
                entries.append(next((str(n), s) for n, s in item.items()))
            else:
                raise ConfigError(f"expected a logger name or {{name: {{settings}}}}, got "
                                  f"{item!r}", key=key)
    else:
        raise ConfigError(f"expected a list of logger names ({', '.join(LOGGERS)}), got "
                          f"{raw!r}", key=key)
    settings: dict[str, Any] = {}
    for name, body in entries:
        if name not in LOGGERS:
            raise ConfigError(unknown_key_message(name, LOGGERS), key=f"{key}.{name}")
        if name in settings:
            raise ConfigError("listed twice", key=f"{key}.{name}")
        settings[name] = build_section(LOGGERS[name][0], body, prefix=f"{key}.{name}")
    loggers = LoggersSpec(**settings)
    check_installed(loggers, key=key)
    return loggers


def check_installed(loggers: LoggersSpec, *, key: str = "loggers",
                    source: str | None = None) -> None:
    """Import each tracker's package; a missing one is a one-line error naming the extra."""
    for name in loggers.names:
        _, module, extra = LOGGERS[name]
        try:
            importlib.import_module(module)
        except ImportError as err:
            install = (f"pip install 'ngpt-tune[{extra}]'" if extra
                       else f"pip install {module}")
            raise ConfigError(f"logging to {name} needs the {module} package, which is not "
                              f"installed ({err}): {install}", key=f"{key}.{name}",
                              source=source) from None


# ---- ladder: -------------------------------------------------------------------------------
AXES = ("params", "width", "depth")
TOKEN_RULES = ("equal", "proportional")  # the same tokens per rung, or tokens ~ parameters
# --smoke: three tiny sizes (head size even for RoPE) toward a fourth, on the built-in corpus
SMOKE_SIZES = ({"model.n_layer": 1, "model.n_embd": 16, "model.n_head": 2},
               {"model.n_layer": 2, "model.n_embd": 24, "model.n_head": 2},
               {"model.n_layer": 2, "model.n_embd": 32, "model.n_head": 2})
SMOKE_TARGET = {"model.n_layer": 3, "model.n_embd": 48, "model.n_head": 2}


@dataclass(frozen=True)
class LadderSpec:
    """``ladder:``: ``sizes`` (a list of model overrides, e.g. ``{model.n_layer: 4,
    model.n_embd: 192, model.n_head: 3}``), ``target`` (one more), ``tokens`` (``equal`` or
    ``proportional``: train.steps scaled by the size's parameters over the first rung's),
    ``axis`` (``params``, ``width`` or ``depth``), ``near_best`` (share of a rung's trials, best
    first, in its quadratic fit), ``bootstrap`` (resamples), ``confidence`` (of the intervals),
    ``bracket`` (the target search: the prediction interval widened this much each way),
    ``target_search`` (go on to that search and its confirmation in the same campaign)."""

    sizes: tuple[dict[str, Any], ...] = ()
    target: dict[str, Any] = field(default_factory=dict)
    tokens: str = "equal"
    axis: str = "params"
    near_best: float = 0.5
    bootstrap: int = 1000
    confidence: float = 0.9
    bracket: float = 1.25
    target_search: bool = False

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
            raise ConfigError(f"must be true or false, got {self.target_search!r}", key="target_search")
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


def smoke_ladder(ladder: LadderSpec) -> LadderSpec:
    """``--smoke``: three tiny sizes toward a fourth (the fit still has three points)."""
    return dataclasses.replace(ladder, sizes=SMOKE_SIZES, target=dict(SMOKE_TARGET),
                               bootstrap=min(ladder.bootstrap, 200))


def parse_section(cls: type, value: Any, key: str) -> Any:
    """A section that :class:`ngpt_tune.spec.CampaignSpec` types as a dataclass, from its YAML
    value (None: the defaults)."""
    if cls is LoggersSpec:  # a list of names, or names with settings
        return parse_loggers(value, key=key)
    if isinstance(value, str):  # "searcher: grid" is short for {"name": "grid"}
        value = {"name": value}
    return build_section(cls, value, prefix=key)
