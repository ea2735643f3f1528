"""Run and resume a campaign as a Ray Tune experiment."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ngpt_tune.errors import ConfigError, NgptTuneError
from ngpt_tune.files import atomic_write, is_remote, local_path
from ngpt_tune.provenance import provenance
from ngpt_tune.spec import CampaignSpec, load_spec, parse_spec

CAMPAIGN_FILE = "campaign.json"
DEFAULT_STORAGE = "ngpt_results"


@dataclass(frozen=True)
class RunOptions:
    """How to run, as opposed to what (the spec)."""

    storage: str | None = None  # local folder or a URI pyarrow understands (s3://, gs://)
    name: str | None = None
    address: str | None = None  # an existing Ray cluster ("auto", "ray://host:10001", ...)
    dashboard: bool = False
    dashboard_host: str = "127.0.0.1"


def build_spec(path: str, *, smoke: bool = False, num_samples: int | None = None,
               overrides: dict[str, Any] | None = None) -> CampaignSpec:
    """The spec as the CLI means it: the file, ``--set`` overrides, ``--num-samples``, ``--smoke``.

    The same function rebuilds the spec on ``resume`` from what ``campaign.json`` recorded.
    """
    return _adjust(load_spec(path), smoke=smoke, num_samples=num_samples,
                   overrides=overrides or {})


def _adjust(spec: CampaignSpec, *, smoke: bool, num_samples: int | None,
            overrides: dict[str, Any]) -> CampaignSpec:
    """Apply ``--set``, ``--num-samples`` and ``--smoke``; then check the data folders (before
    Ray starts) and pin them as the driver resolved them."""
    if overrides:
        try:
            spec = spec.with_overrides(overrides)
        except ConfigError as err:
            raise ConfigError(err.detail, key=err.key, source="--set") from None
    if num_samples is not None:
        if num_samples < 1:
            raise ConfigError("must be >= 1", key="--num-samples")
        spec = dataclasses.replace(spec, num_samples=num_samples)
    if smoke:
        spec = spec.smoke_version()
    try:
        spec.check_data()
    except ConfigError as err:
        raise err.with_source(str(spec.source)) from None
    return spec.with_resolved_data()


def resolve_storage(storage: str | None) -> str:
    storage = storage or os.environ.get("NGPT_TUNE_STORAGE") or DEFAULT_STORAGE
    return storage if is_remote(storage) else str(local_path(storage))


def write_text(storage_dir: str, relative: str, text: str) -> None:
    """Write a small file under a local folder or a URI (via pyarrow's filesystems)."""
    if not is_remote(storage_dir):
        atomic_write(Path(storage_dir) / relative, lambda tmp: tmp.write_text(text))
        return
    import pyarrow.fs

    fs, root = pyarrow.fs.FileSystem.from_uri(storage_dir)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/{relative}") as out:
        out.write(text.encode())


def campaign_record(spec: CampaignSpec, *, argv: list[str], rebuild: dict[str, Any]) -> dict:
    return {
        "name": spec.name,
        "description": spec.description,
        "spec_path": spec.source,
        "spec": spec.to_dict(),
        "metric": spec.metric,
        "mode": spec.mode,
        "search_keys": spec.search_keys,
        "seed_key": "train.seed",
        "compare": None if spec.compare is None else {"by": spec.compare.by,
                                                      "baseline": spec.compare.baseline},
        "time_attr": spec.scheduler.time_attr,
        "asha_budgets": spec.asha_budgets() if spec.scheduler.name == "asha" else None,
        "max_steps": spec.max_steps(),
        "trial_count": spec.trial_count(),
        "smoke": spec.smoke,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance(),
        "command": " ".join(["python -m ngpt_tune", *argv]),
        "rebuild": rebuild,
    }


def _tune_environment() -> None:
    """Tune settings that exist only as environment variables; the user's values win."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table with our columns
    # save the experiment state every 2 s (Tune's default: every 10 s or more), so that a
    # killed driver loses at most a couple of seconds of bookkeeping
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")


def ray_init_kwargs(options: RunOptions) -> dict[str, Any]:
    """Arguments of ``ray.init``: an existing cluster when an address is given (or in
    RAY_ADDRESS), else a local instance whose dashboard, if asked for, binds to 127.0.0.1
    unless the user names another host."""
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    if address:  # the cluster's own settings (dashboard included) stay as they are
        return {"address": address, "log_to_driver": True}
    # "local": a new instance, even where `ray start` left a cluster behind (`--address auto`
    # is how to use that one)
    kwargs: dict[str, Any] = {"address": "local", "include_dashboard": options.dashboard,
                              "log_to_driver": True}
    if options.dashboard:
        kwargs["dashboard_host"] = options.dashboard_host
    return kwargs


def init_ray(options: RunOptions) -> None:
    import ray

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
    if options.dashboard:
        url = context.dashboard_url
        print(f"Ray dashboard: http://{url}" if url else "Ray dashboard: not available "
              "(install ray[default])", flush=True)


def _gpus_per_trial(spec: CampaignSpec) -> float:
    import ray

    if spec.resources.gpus_per_trial != "auto":
        return float(spec.resources.gpus_per_trial)
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def build_tuner(spec: CampaignSpec, *, storage: str, name: str, restore: bool = False):
    """The Tuner for ``spec`` (or, with ``restore``, the one saved at ``storage/name``)."""
    from ray import tune

    from ngpt_tune.search import SCHEDULERS, SEARCHERS, param_space, tune_num_samples
    from trainables.ngpt import train_ngpt

    gpus = _gpus_per_trial(spec)
    cpus = spec.resources.cpus_per_trial
    threads = 0 if gpus else max(1, int(cpus))  # CPU trials: torch threads = the CPU share
    trainable = tune.with_resources(
        tune.with_parameters(train_ngpt, spec=spec, threads=threads), {"cpu": cpus, "gpu": gpus}
    )
    if restore:
        return tune.Tuner.restore(_join(storage, name), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=True)
    metric_columns = {"step": "step", spec.metric: spec.metric, "tokens_per_s": "tokens/s"}
    reporter = tune.CLIReporter(metric_columns=metric_columns,
                                parameter_columns=spec.search_keys[:6],
                                max_report_frequency=15, sort_by_metric=True)
    return tune.Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode,
            search_alg=SEARCHERS[spec.searcher.name](spec),
            scheduler=SCHEDULERS[spec.scheduler.name](spec),
            num_samples=tune_num_samples(spec),
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
        ),
    )


def run_campaign(spec: CampaignSpec, options: RunOptions, *, argv: list[str],
                 rebuild: dict[str, Any]) -> str:
    """Run ``spec``; returns the experiment folder (path or URI)."""
    _tune_environment()
    storage = resolve_storage(options.storage)
    name = options.name or f"{spec.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    experiment = _join(storage, name)
    print(f"ngpt-tune: campaign '{spec.name}', {spec.trial_count()} trials, results in "
          f"{experiment}", flush=True)
    init_ray(options)
    record = campaign_record(spec, argv=argv, rebuild=rebuild)
    write_text(experiment, CAMPAIGN_FILE, json.dumps(record, indent=2, default=str))
    tuner = build_tuner(spec, storage=storage, name=name)
    results = tuner.fit()
    return _finish(experiment, results)


def resume_campaign(experiment: str, options: RunOptions) -> str:
    """Continue a stopped or killed campaign from its folder."""
    _tune_environment()
    experiment = experiment if is_remote(experiment) else str(local_path(experiment))
    record = read_campaign(experiment)
    rebuild = record["rebuild"]
    spec = parse_spec(yaml.safe_load(rebuild["yaml"]), source=record.get("spec_path"))
    spec = _adjust(spec, smoke=rebuild["smoke"], num_samples=rebuild["num_samples"],
                   overrides=rebuild["overrides"])
    storage, _, name = experiment.rstrip("/").rpartition("/")
    init_ray(options)
    print(f"ngpt-tune: resuming '{spec.name}' from {experiment}", flush=True)
    tuner = build_tuner(spec, storage=storage, name=name, restore=True)
    return _finish(experiment, tuner.fit())


def read_campaign(experiment: str) -> dict[str, Any]:
    from ray import tune

    if not is_remote(experiment):
        path = Path(experiment) / CAMPAIGN_FILE
        if not path.is_file():
            raise NgptTuneError(f"{experiment}: not an ngpt-tune experiment folder "
                                f"({CAMPAIGN_FILE} is missing)")
        if not tune.Tuner.can_restore(experiment):
            raise NgptTuneError(f"{experiment}: Ray Tune saved no state here yet; run it again")
        return json.loads(path.read_text())
    import pyarrow.fs

    fs, root = pyarrow.fs.FileSystem.from_uri(experiment)
    with fs.open_input_stream(f"{root}/{CAMPAIGN_FILE}") as stream:
        return json.loads(stream.read().decode())


def _join(storage: str, name: str) -> str:
    return storage.rstrip("/") + "/" + name if is_remote(storage) else str(Path(storage) / name)


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
