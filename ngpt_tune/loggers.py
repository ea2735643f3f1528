"""Experiment trackers, opt-in: the spec's ``loggers:`` section and ``run --logger NAME``.

Each tracker is Ray Tune's own logger callback, given to ``tune.RunConfig(callbacks=...)``:

- ``tensorboard``: Tune's TensorBoardX logger (event files in every trial folder; Tune writes
  them by default too). View with ``tensorboard --logdir EXPERIMENT``.
- ``mlflow``: Ray's ``MLflowLoggerCallback``; one MLflow run per trial, in the experiment
  named after the campaign, in ``sqlite:///EXPERIMENT/mlflow.db`` unless ``tracking_uri``.
- ``wandb``: Ray's ``WandbLoggerCallback``; project named after the campaign; offline runs in
  ``EXPERIMENT/wandb/`` when no W&B API key is configured (``wandb sync`` uploads them).

A spec lists them by name, or maps names to settings::

    loggers: [tensorboard, mlflow]
    loggers:
      mlflow: {tracking_uri: "http://mlflow.internal:5000"}
      wandb: {project: ngpt, entity: my-team}

Nothing here imports Ray or the trackers' packages, except :func:`check_installed`, which
imports a tracker's package to fail before Ray starts when its extra is missing.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Literal

from ngpt_tune.config import build_section
from ngpt_tune.errors import ConfigError, unknown_key_message

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


def build_callbacks(loggers: LoggersSpec, *, campaign: str, experiment: str,
                    spec: Any = None) -> list[Any]:
    """Ray Tune callbacks for ``loggers``, for ``tune.RunConfig(callbacks=...)``.

    ``campaign`` names the MLflow experiment and the W&B project; ``experiment`` is the
    experiment folder (the default MLflow store and W&B offline runs go inside it); ``spec``
    (a CampaignSpec) adds every key of each trial's resolved config to its logged params.
    """
    if not loggers.names:
        return []
    from ngpt_tune import logger_callbacks  # imports Ray and the trackers

    return [getattr(logger_callbacks, name)(getattr(loggers, name), campaign=campaign,
                                            experiment=experiment, spec=spec)
            for name in loggers.names]
