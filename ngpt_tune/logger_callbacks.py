"""Experiment trackers: the spec's ``loggers:`` section (:class:`ngpt_tune.spec_sections.
LoggersSpec`, also ``run --logger NAME``) as Ray Tune's own logger callbacks, set up for
ngpt-tune's experiment folders, for ``tune.RunConfig(callbacks=...)``:

- ``tensorboard``: Tune's TensorBoardX logger (event files in every trial folder; Tune writes
  them by default too). View with ``tensorboard --logdir EXPERIMENT``.
- ``mlflow``: Ray's ``MLflowLoggerCallback``; one MLflow run per trial, in the experiment
  named after the campaign, in ``sqlite:///EXPERIMENT/mlflow.db`` unless ``tracking_uri``.
- ``wandb``: Ray's ``WandbLoggerCallback``; project named after the campaign; offline runs in
  ``EXPERIMENT/wandb/`` when no W&B API key is configured (``wandb sync`` uploads them).

This module imports Ray (the runner imports it when it builds a Tuner), and a tracker's package
when one of its callbacks is built. One function per name in
:data:`ngpt_tune.spec_sections.LOGGERS`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback
from ray.tune.logger import TBXLoggerCallback

from ngpt_tune.config import flatten_dotted
from ngpt_tune.errors import ConfigError
from ngpt_tune.files import is_remote
from ngpt_tune.spec_sections import (
    MLFLOW_ARTIFACTS,
    MLFLOW_DB,
    LoggersSpec,
    MLflowLogger,
    TensorboardLogger,
    WandbLogger,
)


def build_callbacks(loggers: LoggersSpec, *, campaign: str, experiment: str,
                    spec: Any = None) -> list[Any]:
    """Ray Tune callbacks for ``loggers``, for ``tune.RunConfig(callbacks=...)``.

    ``campaign`` names the MLflow experiment and the W&B project; ``experiment`` is the
    experiment folder (the default MLflow store and W&B offline runs go inside it); ``spec``
    (a CampaignSpec) adds every key of each trial's resolved config to its logged params.
    """
    return [_CALLBACKS[name](getattr(loggers, name), campaign=campaign, experiment=experiment,
                             spec=spec)
            for name in loggers.names]


def tensorboard(settings: TensorboardLogger, *, campaign: str, experiment: str,
                spec: Any = None) -> TBXLoggerCallback:
    return TBXLoggerCallback()


def mlflow(settings: MLflowLogger, *, campaign: str, experiment: str,
           spec: Any = None) -> MLflowLoggerCallback:
    tracking_uri, artifacts = settings.tracking_uri, None
    if tracking_uri is None:
        if is_remote(experiment):
            raise ConfigError("give a tracking URI (an MLflow server, or sqlite:///PATH) when "
                              f"the results go to {experiment}", key="loggers.mlflow.tracking_uri")
        folder = Path(experiment).resolve()
        tracking_uri = f"sqlite:///{folder / MLFLOW_DB}"
        artifacts = (folder / MLFLOW_ARTIFACTS).as_uri()
    return _MLflowCallback(tracking_uri, experiment_name=settings.experiment_name or campaign,
                           tags={"ngpt_tune.experiment": experiment},
                           artifact_location=artifacts, spec=spec)


def wandb(settings: WandbLogger, *, campaign: str, experiment: str,
          spec: Any = None) -> WandbLoggerCallback:

    import wandb as wandb_sdk  # the tracker's package: only when it is used

    kwargs: dict[str, Any] = {}
    mode = settings.mode
    if mode == "auto" and not os.environ.get("WANDB_MODE"):  # the user's WANDB_MODE wins
        mode = "online" if wandb_sdk.login(prompt=False, verify=False) else "offline"
    if mode != "auto":
        kwargs["mode"] = mode
    if not is_remote(experiment):
        kwargs["dir"] = str(Path(experiment).resolve())  # runs go to EXPERIMENT/wandb/
    if settings.entity:
        kwargs["entity"] = settings.entity
    return _WandbCallback(project=settings.project or campaign, group=settings.group,
                          spec=spec, **kwargs)


_CALLBACKS = {"tensorboard": tensorboard, "mlflow": mlflow, "wandb": wandb}  # LOGGERS' names


def trial_params(spec: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Every key of the trial's resolved config (``model.alpha``, ``optim.lr``, ...), then
    the searched values as Tune sampled them."""
    resolved = {} if spec is None else flatten_dotted(dataclasses.asdict(spec.resolve(values)))
    return {**resolved, **values}


class _MLflowCallback(MLflowLoggerCallback):
    """Ray's MLflow logger, plus: the experiment's artifacts inside the experiment folder;
    the trial's whole resolved config as params; the training step as MLflow's step; and the
    trial -> run mapping kept across ``resume``, so a resumed trial continues its run."""

    def __init__(self, tracking_uri: str, *, artifact_location: str | None, spec: Any,
                 **kwargs: Any):
        super().__init__(tracking_uri, **kwargs)
        self._artifact_location = artifact_location
        self._spec = spec
        self._restored_runs: dict[str, str] = {}

    def setup(self, *args: Any, **kwargs: Any) -> None:
        if self._artifact_location is not None:
            from mlflow import MlflowClient  # the tracker's package: only when it is used

            client = MlflowClient(self.tracking_uri)
            if client.get_experiment_by_name(self.experiment_name) is None:
                client.create_experiment(self.experiment_name,
                                         artifact_location=self._artifact_location)
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial: Any) -> None:
        if trial not in self._trial_runs and trial.trial_id in self._restored_runs:
            self._trial_runs[trial] = self._restored_runs[trial.trial_id]
        super().log_trial_start(trial)
        if self._spec is not None:
            from mlflow.entities import Param  # the tracker's package: only when it is used

            params = trial_params(self._spec, trial.config)
            params = [Param(k, str(v)) for k, v in params.items() if k not in trial.config]
            from mlflow import MlflowClient  # the tracker's package: only when it is used

            client = MlflowClient(self.tracking_uri)
            for start in range(0, len(params), 100):  # MLflow takes 100 params per batch
                client.log_batch(self._trial_runs[trial], params=params[start:start + 100])

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        # text is no metric (Ray would log trial_id "75740_00000" as the number 7574000000)
        result = {k: v for k, v in result.items() if not isinstance(v, str)}
        if "step" not in result:
            super().log_trial_result(iteration, trial, result)
            return
        self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=result,
                                     step=int(result["step"]))

    def get_state(self) -> dict:
        runs = {t.trial_id: run for t, run in getattr(self, "_trial_runs", {}).items()}
        return {"runs": {**self._restored_runs, **runs}}

    def set_state(self, state: dict) -> None:
        self._restored_runs = dict(state.get("runs", {}))


class _WandbCallback(WandbLoggerCallback):
    """Ray's W&B logger, plus: no API key needed in offline mode (Ray asks for one unless
    WANDB_MODE is set), and the trial's whole resolved config in the run's config."""

    def __init__(self, *, spec: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self._spec = spec

    def setup(self, *args: Any, **kwargs: Any) -> None:
        if self.kwargs.get("mode") != "offline":
            super().setup(*args, **kwargs)

    def _start_logging_actor(self, trial: Any, exclude_results: list, **init_kwargs: Any):
        init_kwargs["config"] = trial_params(self._spec, init_kwargs.get("config", {}))
        super()._start_logging_actor(trial, exclude_results, **init_kwargs)
