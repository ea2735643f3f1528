"""Run and resume a campaign as a Ray Tune experiment.

A run is a :class:`RunRequest` (what the user asked: the spec's text, ``--smoke``,
``--num-samples``, ``--set``), turned into the spec by :func:`build_spec`, and
:class:`RunOptions` (how and where to run). ``campaign.json`` stores the request, so that
``resume`` rebuilds the same spec with the same function.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ngpt_tune.errors import ConfigError, NgptTuneError
from ngpt_tune.experiment import (
    CAMPAIGN_FILE,
    campaign_record,
    read_campaign,
    trial_dirname,
    write_campaign,
)
from ngpt_tune.files import is_remote, join, local_path
from ngpt_tune.provenance import provenance
from ngpt_tune.smoke import smoke_version
from ngpt_tune.spec import CampaignSpec, parse_spec_text

DEFAULT_STORAGE = "ngpt_results"


@dataclass(frozen=True)
class RunRequest:
    """What to run: the spec (its text as read, and where it was read from) and the command
    line's ``--smoke``, ``--num-samples`` and ``--set``. Stored in ``campaign.json``."""

    spec_yaml: str
    spec_path: str | None = None
    smoke: bool = False
    num_samples: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # --set key=value, dotted keys
    loggers: tuple[str, ...] = ()  # --logger NAME: trackers added to the spec's loggers:

    @classmethod
    def from_file(cls, path: str | os.PathLike, **options: Any) -> RunRequest:
        path = Path(path).resolve()
        if not path.is_file():
            raise ConfigError("file not found", source=str(path))
        return cls(spec_yaml=path.read_text(), spec_path=str(path), **options)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunRequest:
        return cls(**record)

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunOptions:
    """How to run, as opposed to what (the spec)."""

    storage: str | None = None  # local folder or a URI pyarrow understands (s3://, gs://)
    name: str | None = None
    address: str | None = None  # an existing Ray cluster ("auto", "ray://host:10001", ...)
    dashboard: bool = False
    dashboard_host: str = "127.0.0.1"
    verbose: bool = False  # Ray's table and logs instead of one status block (progress.py)


def build_spec(request: RunRequest | str | os.PathLike, **options: Any) -> CampaignSpec:
    """The spec a request means: the spec's text, then ``--set``, ``--num-samples``, ``--smoke``;
    the data folders checked (before Ray starts) and pinned as the driver resolved them.

    ``run``, ``validate`` and ``resume`` (from ``campaign.json``) all go through here. A path
    (with ``smoke=``, ``num_samples=``, ``overrides=``) is short for ``RunRequest.from_file``.
    """
    if not isinstance(request, RunRequest):
        request = RunRequest.from_file(request, **options)
    spec = parse_spec_text(request.spec_yaml, source=request.spec_path)
    if request.overrides:
        try:
            spec = spec.with_overrides(request.overrides)
        except ConfigError as err:
            raise ConfigError(err.detail, key=err.key, source="--set") from None
    if request.num_samples is not None:
        if request.num_samples < 1:
            raise ConfigError("must be >= 1", key="--num-samples")
        spec = dataclasses.replace(spec, num_samples=request.num_samples)
    if request.smoke:
        spec = smoke_version(spec)
    if request.loggers:
        spec = dataclasses.replace(spec, loggers=spec.loggers.with_names(request.loggers))
    try:
        spec.check_data()
    except ConfigError as err:
        raise err.with_source(str(spec.source)) from None
    return spec.with_resolved_data()


def resolve_storage(storage: str | None) -> str:
    storage = storage or os.environ.get("NGPT_TUNE_STORAGE") or DEFAULT_STORAGE
    return storage if is_remote(storage) else str(local_path(storage))


def _tune_environment() -> None:
    """Tune settings that exist only as environment variables; the user's values win."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table with our columns
    # save the experiment state every 2 s (Tune's default: every 10 s or more), so that a
    # killed driver loses at most a couple of seconds of bookkeeping
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")


def ray_init_kwargs(options: RunOptions) -> dict[str, Any]:
    """Arguments of ``ray.init``: an existing cluster when an address is given (or in
    RAY_ADDRESS), else a local instance whose dashboard, if asked for, binds to 127.0.0.1
    unless the user names another host. How much Ray prints: ``progress.ray_init_kwargs``."""
    from ngpt_tune.progress import ray_init_kwargs as output_kwargs

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
    import ray

    from ngpt_tune.progress import configure_output

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
        handler = signal.getsignal(signal.SIGINT)  # Tune's, while a campaign runs
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, as_ctrl_c)


def _gpus_per_trial(spec: CampaignSpec) -> float:
    import ray

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
    import torch

    if torch.cuda.is_available():
        return
    for where, values in spec.arms(searched="train.device"):
        device = spec.resolve(values).train.device
        if device.startswith("cuda"):
            key = "search.train.device" if where == "search" else f"{where}.train.device"
            raise ConfigError(f"{device!r}, but this machine has no CUDA device and no "
                              "--address names a cluster: use 'auto' or 'cpu', or --address",
                              key=key, source=spec.source)


def build_tuner(spec: CampaignSpec, *, storage: str, name: str, restore: bool = False,
                stage: Any = None):
    """The Tuner for ``spec`` (or, with ``restore``, the one saved at ``storage/name``).
    ``stage``: another stage's search (:class:`ngpt_tune.confirm_stage.ConfirmPlan`), whose
    ``tune_parts(spec)`` gives the param_space, search_alg, scheduler and num_samples."""
    from ray import tune

    from ngpt_tune.logger_callbacks import build_callbacks
    from ngpt_tune.progress import progress_reporter
    from ngpt_tune.search import SCHEDULERS, SEARCHERS, param_space, tune_num_samples
    from trainables.ngpt import train_ngpt

    gpus = _gpus_per_trial(spec)
    cpus = spec.resources.cpus_per_trial
    threads = 0 if gpus else max(1, int(cpus))  # CPU trials: torch threads = the CPU share
    trainable = tune.with_resources(
        tune.with_parameters(train_ngpt, spec=spec, threads=threads), {"cpu": cpus, "gpu": gpus}
    )
    if restore:  # a stage's sample_from functions are saved as placeholders: give them again
        space = stage.tune_parts(spec)["param_space"] if stage is not None else None
        return tune.Tuner.restore(_join(storage, name), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=True, param_space=space)
    reporter = progress_reporter(  # Ray's table with --verbose, else one status block
        spec, title=spec.name if stage is None else f"{spec.name} confirmation")
    parts = stage.tune_parts(spec) if stage is not None else dict(
        param_space=param_space(spec),
        search_alg=SEARCHERS[spec.searcher.name](spec, experiment=_join(storage, name)),
        scheduler=SCHEDULERS[spec.scheduler.name](spec, experiment=_join(storage, name)),
        num_samples=tune_num_samples(spec))
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
                                      experiment=_join(storage, name), spec=spec),
        ),
    )


def run_campaign(spec: CampaignSpec, options: RunOptions, *, request: RunRequest,
                 command: str | None = None) -> str:
    """Run ``spec`` (``build_spec(request)``); returns the experiment folder (path or URI).
    ``command``, the command line that started it, is recorded in ``campaign.json``."""
    command = command or f"python -m ngpt_tune run {request.spec_path}"
    if spec.ladder is not None:  # one search per rung, then the fit: ngpt_tune.ladder
        from ngpt_tune.ladder import run_ladder

        return run_ladder(spec, options, request=request, command=command)
    check_devices(spec, options)
    _tune_environment()
    storage = resolve_storage(options.storage)
    name = options.name or f"{spec.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    experiment = _join(storage, name)
    print(f"ngpt-tune: campaign '{spec.name}', {spec.trial_count()} trials, results in "
          f"{experiment}", flush=True)
    init_ray(options)
    write_campaign(experiment, campaign_record(spec, request=request.to_record(),
                                               command=command, provenance=provenance()))
    tuner = build_tuner(spec, storage=storage, name=name)
    results = tuner.fit()
    if spec.confirm is not None:
        results = _confirm_after_search(experiment, spec, results, request=request.to_record(),
                                        command=command)
    return _finish(experiment, results)


def resume_campaign(experiment: str, options: RunOptions) -> str:
    """Continue a stopped or killed campaign from its folder."""
    _tune_environment()
    experiment, record = _open_campaign(experiment)
    if "ladder_rungs_done" in record:  # a ladder: its rungs are Tune experiments inside
        from ngpt_tune.ladder import resume_ladder

        return resume_ladder(experiment, build_spec(RunRequest.from_record(record["request"])),
                             options)
    _check_restorable(experiment)
    spec = build_spec(RunRequest.from_record(record["request"]))
    check_devices(spec, options)
    storage, _, name = experiment.rstrip("/").rpartition("/")
    init_ray(options)
    command = f"python -m ngpt_tune resume {experiment}"
    if record.get("confirmation"):  # the search had ended: continue the confirmation stage
        from ngpt_tune.confirm_stage import resume_confirmation

        return _finish(experiment, resume_confirmation(experiment, spec, record, command=command))
    print(f"ngpt-tune: resuming '{spec.name}' from {experiment}", flush=True)
    tuner = build_tuner(spec, storage=storage, name=name, restore=True)
    results = tuner.fit()
    if spec.confirm is not None:
        results = _confirm_after_search(experiment, spec, results, request=record["request"],
                                        command=command)
    return _finish(experiment, results)


def confirm_campaign(experiment: str, options: RunOptions, *, top_k: int | None = None,
                     seeds: int | None = None, baseline: str | None = None,
                     command: str | None = None) -> str:
    """``confirm``: the confirmation stage for a finished experiment, with the spec's
    ``confirm:`` settings (or the defaults) and the command line's on top."""
    from ngpt_tune.confirm_stage import (
        confirm_plan,
        confirm_settings,
        resume_confirmation,
        run_confirmation,
    )

    _tune_environment()
    experiment, record = _open_campaign(experiment)
    spec = build_spec(RunRequest.from_record(record["request"]))
    settings = confirm_settings(spec, top_k=top_k, seeds=seeds, baseline=baseline)
    plan, linked = confirm_plan(experiment, spec, record, settings)
    check_devices(spec, options)
    init_ray(options)
    command = command or f"python -m ngpt_tune confirm {experiment}"
    if linked:
        results = resume_confirmation(experiment, spec, record, command=command)
    else:
        results = run_confirmation(experiment, spec, plan, request=record["request"],
                                   command=command)
    return _finish(experiment, results)


def _confirm_after_search(experiment: str, spec: CampaignSpec, results: Any, *,
                          request: dict[str, Any], command: str) -> Any:
    """The confirmation stage once the search has ended (not when it was interrupted);
    returns the results ``_finish`` reports on."""
    from ngpt_tune.confirm_stage import interrupted, plan_confirmation, run_confirmation

    if interrupted(results):
        return results
    try:
        plan = plan_confirmation(experiment, spec, spec.confirm)
    except NgptTuneError as err:
        print(f"ngpt-tune: no confirmation stage: {err}", flush=True)
        return results
    return run_confirmation(experiment, spec, plan, request=request, command=command)


def _open_campaign(experiment: str) -> tuple[str, dict[str, Any]]:
    """The experiment's folder (absolute, or its URI) and its campaign record, which must hold
    the request that rebuilds the spec."""
    experiment = experiment if is_remote(experiment) else str(local_path(experiment))
    record = read_campaign(experiment)
    if "request" not in record:
        raise NgptTuneError(f"{experiment}: {CAMPAIGN_FILE} was written by an older ngpt-tune "
                            "(it holds no request); start the campaign again with `run`")
    return experiment, record


def _check_restorable(experiment: str) -> None:
    from ray import tune

    if not is_remote(experiment) and not tune.Tuner.can_restore(experiment):
        raise NgptTuneError(f"{experiment}: Ray Tune saved no state here yet; run it again")


def _join(storage: str, name: str) -> str:
    return join(storage, name)


def _finish(experiment: str, results: Any) -> str:
    """Analyse the experiment, print the ranking, say where everything is."""
    from analysis import format_ranking, write_outputs

    try:
        summary_path = write_outputs(experiment)
        print(format_ranking(summary_path))
        print(f"\nsummary: {summary_path}")
    except Exception as err:  # the experiment itself is saved; the analysis can be re-run
        print(f"ngpt-tune: analysis failed ({type(err).__name__}: {err}); run "
              f"`python -m ngpt_tune analyze {experiment}`", file=sys.stderr)
    unfinished = [r for r in results if not r.metrics.get("done", True)] if results else []
    if unfinished:
        print(f"interrupted: resume with `python -m ngpt_tune resume {experiment}`")
    print(f"results: {experiment}")
    return experiment
