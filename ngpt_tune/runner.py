"""Launching Tune runs: where results go, Ray started (or joined) the way a campaign needs, and
the Tuner of one stage (:func:`build_tuner`). What runs in which order is ``ngpt_tune.campaign``'s
business; what a stage runs is ``ngpt_tune.stages``'s.

This module imports Ray (through the searchers, the progress reporter and the trainable):
the CLI imports it only once the input has been checked.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray import tune

from ngpt_tune.errors import ConfigError, NgptTuneError
from ngpt_tune.experiment import trial_dirname
from ngpt_tune.files import is_remote, join, local_path
from ngpt_tune.logger_callbacks import build_callbacks
from ngpt_tune.progress import configure_output, progress_reporter
from ngpt_tune.progress import ray_init_kwargs as output_kwargs
from ngpt_tune.schedulers import SCHEDULERS
from ngpt_tune.search import (
    SEARCHERS,
    fail_stale_trials,
    param_space,
    tune_num_samples,
)
from ngpt_tune.spec import CampaignSpec
from trainables.ngpt import train_ngpt

DEFAULT_STORAGE = "ngpt_results"
STOP_REQUESTED = threading.Event()  # a SIGTERM came: the campaign stops after this stage


@dataclass(frozen=True)
class RunOptions:
    """How to run, as opposed to what (the spec)."""

    storage: str | None = None  # local folder or a URI pyarrow understands (s3://, gs://)
    name: str | None = None
    address: str | None = None  # an existing Ray cluster ("auto", "ray://host:10001", ...)
    dashboard: bool = False
    dashboard_host: str = "127.0.0.1"
    verbose: bool = False  # Ray's table and logs instead of one status block (progress.py)


def resolve_storage(storage: str | None) -> str:
    storage = storage or os.environ.get("NGPT_TUNE_STORAGE") or DEFAULT_STORAGE
    return storage if is_remote(storage) else str(local_path(storage))


def tune_environment() -> None:
    """Tune settings that exist only as environment variables; the user's values win."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table with our columns
    # save the experiment state every 2 s (Tune's default: every 10 s or more), so that a
    # killed driver loses at most a couple of seconds of bookkeeping
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")


def ray_init_kwargs(options: RunOptions) -> dict[str, Any]:
    """Arguments of ``ray.init``: an existing cluster when an address is given (or in
    RAY_ADDRESS), else a local instance whose dashboard, if asked for, binds to 127.0.0.1
    unless the user names another host. How much Ray prints: ``progress.ray_init_kwargs``."""

    address = options.address or os.environ.get("RAY_ADDRESS") or None
    if address:  # the cluster's own settings (dashboard included) stay as they are
        return {"address": address, "log_to_driver": True, **output_kwargs(options.verbose)}
    # "local": a new instance, even where `ray start` left a cluster behind (`--address auto`
    # is how to use that one)
    kwargs: dict[str, Any] = {"address": "local", "include_dashboard": options.dashboard,
                              "log_to_driver": True, **output_kwargs(options.verbose)}
    if options.dashboard:
        kwargs["dashboard_host"] = options.dashboard_host
    return kwargs


def init_ray(options: RunOptions) -> None:
    configure_output(options.verbose)  # a status block, or Ray's table and logs
    if ray.is_initialized():
        return
    kwargs = ray_init_kwargs(options)
    try:
        context = ray.init(**kwargs)
    except ConnectionError as err:
        raise NgptTuneError(
            f"could not connect to the Ray cluster at {kwargs.get('address')}: {err}; is it "
            "running (`ray status`), and does this machine hold the cluster's auth token "
            "(~/.ray/auth_token)?") from None
    stop_on_sigterm()
    if kwargs["address"] != "local" and not options.verbose:  # Ray's line is INFO: hidden
        print(f"Connected to Ray cluster at {context.address_info.get('address')}", flush=True)
    if options.dashboard:
        url = context.dashboard_url
        print(f"Ray dashboard: http://{url}" if url else "Ray dashboard: not available "
              "(install ray[default])", flush=True)


def stop_on_sigterm() -> None:
    """Handle SIGTERM (a cloud preemption, a batch system's time limit) as Ctrl-C: Tune saves
    the experiment's state and the run ends with `resume with ...`. Installed after
    ``ray.init``, whose own SIGTERM handler exits at once; a second signal still stops at once."""
    if threading.current_thread() is not threading.main_thread():
        return

    def as_ctrl_c(signum: int, frame: Any) -> None:
        STOP_REQUESTED.set()
        handler = signal.getsignal(signal.SIGINT)  # Tune's, while a campaign runs
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, as_ctrl_c)


def _gpus_per_trial(spec: CampaignSpec) -> float:
    if spec.resources.gpus_per_trial != "auto":
        return float(spec.resources.gpus_per_trial)
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def _trial_dirname(trial: Any) -> str:
    return trial_dirname(trial.trial_id)


def check_devices(spec: CampaignSpec, options: RunOptions) -> None:
    """Trials that ask for CUDA on a local Ray instance without CUDA fail here, before Ray
    starts, naming the key (on a cluster, ``--address``, the cluster decides)."""
    if options.address or os.environ.get("RAY_ADDRESS"):
        return
    if torch.cuda.is_available():
        return
    for where, values in spec.arms(searched="train.device"):
        device = spec.resolve(values).train.device
        if device.startswith("cuda"):
            key = "search.train.device" if where == "search" else f"{where}.train.device"
            raise ConfigError(f"{device!r}, but this machine has no CUDA device and no "
                              "--address names a cluster: use 'auto' or 'cpu', or --address",
                              key=key, source=spec.source)


def search_parts(spec: CampaignSpec, experiment: str) -> dict[str, Any]:
    """Tune's param_space, search_alg, scheduler and num_samples for a search of ``spec``
    whose experiment folder is ``experiment`` (the searcher's journal and ASHA's replay read it)."""
    return dict(param_space=param_space(spec),
                search_alg=SEARCHERS[spec.searcher.name](spec, experiment=experiment),
                scheduler=SCHEDULERS[spec.scheduler.name](spec, experiment=experiment),
                num_samples=tune_num_samples(spec))


def build_tuner(spec: CampaignSpec, *, storage: str, name: str, restore: bool = False,
                parts: dict[str, Any] | None = None, title: str | None = None):
    """The Tuner for a stage running ``spec`` at ``storage/name`` (or, with ``restore``, the
    one Tune saved there). ``parts``: the stage's param_space, search_alg, scheduler and
    num_samples (default: :func:`search_parts`). On restore only ``param_space`` is used:
    ``tune.sample_from`` functions are saved as placeholders and must be given again."""
    gpus = _gpus_per_trial(spec)
    cpus = spec.resources.cpus_per_trial
    threads = 0 if gpus else max(1, int(cpus))  # CPU trials: torch threads = the CPU share
    trainable = tune.with_resources(
        tune.with_parameters(train_ngpt, spec=spec, threads=threads), {"cpu": cpus, "gpu": gpus}
    )
    if restore:
        space = parts["param_space"] if parts is not None else None
        return tune.Tuner.restore(join(storage, name), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=True, param_space=space)
    parts = parts or search_parts(spec, join(storage, name))
    fail_stale_trials(parts["search_alg"])  # a study an earlier, killed driver started
    reporter = progress_reporter(spec, title=title or spec.name)  # Ray's table with --verbose
    return tune.Tuner(
        trainable,
        param_space=parts["param_space"],
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode,
            search_alg=parts["search_alg"], scheduler=parts["scheduler"],
            num_samples=parts["num_samples"],
            max_concurrent_trials=spec.max_concurrent_trials or None,
            trial_dirname_creator=_trial_dirname,
            reuse_actors=True,  # every trial asks the same resources: keep warm workers
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=spec.checkpoint.keep, checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            sync_config=tune.SyncConfig(sync_artifacts=True),
            progress_reporter=reporter,
            verbose=1,
            callbacks=build_callbacks(spec.loggers, campaign=spec.name,
                                      experiment=join(storage, name), spec=spec),
        ),
    )


def interrupted(results: Any) -> bool:
    """Whether a Tune run ended with trials left to run (Ctrl-C, SIGTERM): a SIGTERM came
    (``ray job stop``, a batch system's time limit), or a trial did not finish (one that
    never reported and did not fail was never run)."""
    return STOP_REQUESTED.is_set() or bool(results) and any(
        not r.metrics.get("done", True) or (not r.metrics and r.error is None) for r in results)
