"""Campaigns as Ray Jobs: ``submit``, ``jobs``, ``logs`` and ``stop`` through the cluster's
dashboard (Ray's ``JobSubmissionClient``).

A submitted campaign is ``python -m ngpt_tune run SPEC --storage S --name N
--resume-if-exists`` run by the cluster itself: it goes on whatever happens to the machine
that submitted it, and the dashboard's Jobs page shows it. The code (the ``ngpt_tune``,
``trainables`` and ``analysis`` packages) and the spec travel in the job's runtime
environment (``py_modules`` and ``working_dir``), unless ``--installed`` says the cluster's
own installation is to be used. The driver asks for no GPU and no CPU: the trials get them
all. The experiment folder is named before the job starts and kept in the job's metadata, so
``jobs`` can say where each campaign writes.

Ray's job client is imported only where a command talks to a cluster (the CLI imports this
module at start-up).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import importlib
import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ngpt_tune.errors import NgptTuneError
from ngpt_tune.files import is_remote, join, local_path

if TYPE_CHECKING:
    from ray.job_submission import JobStatus, JobSubmissionClient

T = TypeVar("T")
# the job's metadata: which jobs are campaigns, and where each one writes
EXPERIMENT_KEY = "ngpt_tune_experiment"
KIND_KEY = "ngpt_tune_kind"  # "run" or "resume"
PACKAGES = ("ngpt_tune", "trainables", "analysis")  # what `py_modules` uploads
# seconds a stopped campaign gets to save its state before Ray kills it (Ray's default: 3)
STOP_WAIT_S = 60
AGENT_WAIT_S = 60  # how long to wait for a new head's job agent
# the spec's ${...} variables that the cluster should see as the submitter set them
FORWARDED_ENV = ("NGPT_DATA_DIR",)


def dashboard_address(address: str | None) -> str:
    """The dashboard's URL: ``--address``, else ``$RAY_ADDRESS`` when it is one."""
    address = address or os.environ.get("RAY_ADDRESS", "")
    if not address.startswith(("http://", "https://")):
        raise NgptTuneError("jobs go through the cluster's dashboard: give --address "
                            "http://HEAD:8265 (or set RAY_ADDRESS to it)")
    return address.rstrip("/")


def auth_headers() -> dict[str, str]:
    """The dashboard's token authentication. Ray's client sends the token only where
    ``RAY_AUTH_MODE=token`` is set; ``ray start`` turns authentication on wherever a token
    exists, so, with the mode unset, the token is sent when there is one: ``$RAY_AUTH_TOKEN``,
    the file at ``$RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token`` (Ray's own order)."""
    if os.environ.get("RAY_AUTH_MODE"):
        return {}  # "token": Ray's client adds it; "disabled": none is wanted
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        token = path.read_text().strip() if path.is_file() else ""
    return {"Authorization": f"Bearer {token}"} if token else {}


def connect(address: str | None) -> JobSubmissionClient:
    from ray.job_submission import JobSubmissionClient  # Ray: only where a cluster is reached

    for name in ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "Uploading package ..." lines
    return JobSubmissionClient(dashboard_address(address), headers=auth_headers() or None)


def one_line_errors(call: Callable[..., T]) -> Callable[..., T]:
    """``call(address, ...)``'s failures to talk to the dashboard as one line (NgptTuneError)."""

    @functools.wraps(call)
    def wrapped(address: str | None, *args: Any, **kwargs: Any) -> T:
        from ray.exceptions import AuthenticationError  # Ray: only where a cluster is reached

        try:
            return call(address, *args, **kwargs)
        except AuthenticationError as err:
            raise NgptTuneError(
                f"the Ray dashboard at {dashboard_address(address)} refused the request "
                f"({_first_line(err)}): give this machine the cluster's token (RAY_AUTH_TOKEN, "
                "or the head's ~/.ray/auth_token copied to ~/.ray/auth_token)") from None
        except (ConnectionError, RuntimeError) as err:
            raise NgptTuneError(f"the Ray dashboard at {dashboard_address(address)}: "
                                f"{_first_line(err)}") from None

    return wrapped


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(".")


@dataclass(frozen=True)
class Submission:
    """What ``submit`` sends: the ``python -m ngpt_tune`` arguments to run on the cluster, the
    experiment folder they write, and the spec file to send beside them (None to resume)."""

    args: list[str]
    experiment: str
    kind: str
    spec: Path | None = None
    installed: bool = False  # use the cluster's ngpt-tune instead of uploading this one


def cluster_storage(storage: str | None) -> str:
    """Where a submitted campaign writes: a folder every node and the user can read (the path
    as every node mounts it) or a URI. A job has no folder of its own to default to."""
    storage = storage or os.environ.get("NGPT_TUNE_STORAGE")
    if not storage:
        raise NgptTuneError("submit needs --storage (or $NGPT_TUNE_STORAGE): a folder that every "
                            "node of the cluster mounts at the same path, or a URI (s3://...)")
    return storage if is_remote(storage) else str(local_path(storage))


def run_submission(spec: Path, spec_name: str, args: argparse.Namespace) -> Submission:
    """``run SPEC`` on the cluster with the ``run`` options in ``args`` (``--smoke``,
    ``--set``...), continuing the experiment if it already exists there."""
    storage = cluster_storage(args.storage)
    name = args.name or f"{spec_name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    options = ["--smoke"] * args.smoke + ["--verbose"] * args.verbose
    options += ["--num-samples", str(args.num_samples)] if args.num_samples else []
    options += ["--set", *args.set] if args.set else []
    for logger in args.logger or ():
        options += ["--logger", logger]
    for source in args.warm_start or ():  # a folder on the cluster's storage, as for run
        options += ["--warm-start", source]
    run = ["run", spec.name, "--storage", storage, "--name", name, "--resume-if-exists"]
    return Submission([*run, *options], join(storage, name), "run", spec=spec,
                      installed=args.installed)


def resume_submission(experiment: str, *, installed: bool = False) -> Submission:
    experiment = experiment if is_remote(experiment) else str(local_path(experiment))
    return Submission(["resume", experiment], experiment, "resume", installed=installed)


@one_line_errors
def submit(address: str | None, job: Submission) -> str:
    """Submit ``job``; returns what to print: its id (the experiment's name; ``-2``, ``-3``...
    for later jobs of the same experiment), where it writes, the commands that follow it."""
    client = connect(address)
    url = dashboard_address(address)
    taken = {j.submission_id for j in client.list_jobs()}
    base = job.experiment.rstrip("/").rsplit("/", 1)[-1]
    job_id = next(i for n in range(1, len(taken) + 2)
                  if (i := base if n == 1 else f"{base}-{n}") not in taken)
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env |= {"RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_S), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="ngpt-job-") as staging:
        runtime_env: dict = {"env_vars": env}
        if job.spec is not None:  # the working folder holds the spec, alone
            shutil.copy(job.spec, Path(staging) / job.spec.name)
            runtime_env["working_dir"] = staging
        if not job.installed:
            runtime_env["py_modules"] = [_package_dir(p) for p in PACKAGES]
            runtime_env["excludes"] = ["__pycache__", "*.pyc"]
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                job_id = client.submit_job(
                    entrypoint=shlex.join(["python", "-m", "ngpt_tune", *job.args]),
                    submission_id=job_id, runtime_env=runtime_env,
                    metadata={EXPERIMENT_KEY: job.experiment, KIND_KEY: job.kind},
                    entrypoint_num_gpus=0, entrypoint_num_cpus=0)
                break
            except RuntimeError as err:  # a head just started: its job agent may not be up
                if "No available agent" not in str(err) or time.monotonic() > deadline:
                    raise NgptTuneError(f"the cluster refused the job: {_first_line(err)}") \
                        from None
                time.sleep(1)
    cli = "python -m ngpt_tune"
    return (f"submitted job {job_id} to {url}\n"
            f"  experiment  {job.experiment}\n"
            f"  dashboard   {url}/#/jobs/{job_id}\n"
            f"  follow      {cli} logs {job_id} --follow --address {url}\n"
            f"  list        {cli} jobs --address {url}\n"
            f"  stop        {cli} stop {job_id} --address {url}\n"
            f"  analyze     {cli} analyze {job.experiment}")


def _package_dir(name: str) -> str:
    return str(Path(importlib.import_module(name).__file__).parent)


@dataclass(frozen=True)
class JobRow:
    job_id: str
    status: str
    started: str
    experiment: str


@one_line_errors
def list_jobs(address: str | None) -> list[JobRow]:
    """The cluster's campaign jobs, oldest first."""
    rows = []
    for j in sorted(connect(address).list_jobs(), key=lambda j: j.start_time or 0):
        meta = j.metadata or {}
        if EXPERIMENT_KEY not in meta:
            continue  # not a campaign
        started = (dt.datetime.fromtimestamp(j.start_time / 1000).strftime("%Y-%m-%d %H:%M")
                   if j.start_time else "-")
        rows.append(JobRow(j.submission_id or j.job_id or "-", str(j.status), started,
                           meta[EXPERIMENT_KEY]))
    return rows


def format_jobs(rows: list[JobRow]) -> str:
    if not rows:
        return "no campaign jobs on this cluster"
    header = ("job", "status", "started", "experiment")
    table = [header, *((r.job_id, r.status, r.started, r.experiment) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3]
                     for row in table)


def _info(client: JobSubmissionClient, job_id: str):
    try:
        return client.get_job_info(job_id)
    except RuntimeError as err:
        raise NgptTuneError(f"job {job_id}: {_first_line(err)} (`ngpt-tune jobs` lists "
                            "the jobs)") from None


@one_line_errors
def logs(address: str | None, job_id: str, *, follow: bool) -> str:
    """Print the job's output (``follow``: as it comes, until the job ends); returns its
    status."""
    client = connect(address)
    _info(client, job_id)  # an unknown id: one line
    if not follow:
        print(client.get_job_logs(job_id), end="", flush=True)
    else:
        async def tail() -> None:
            async for chunk in client.tail_job_logs(job_id):
                print(chunk, end="", flush=True)

        asyncio.run(tail())
    return str(_wait_terminal(client, job_id, 10 if follow else 0))


@one_line_errors
def stop(address: str | None, job_id: str, *, wait_s: float = STOP_WAIT_S + 30) -> str:
    """Stop the job (SIGTERM to its driver: Tune saves the experiment's state) and wait for it
    to end; returns what to print: its status and the command that continues it."""
    client = connect(address)
    experiment = (_info(client, job_id).metadata or {}).get(EXPERIMENT_KEY, "EXPERIMENT_DIR")
    client.stop_job(job_id)
    status = _wait_terminal(client, job_id, wait_s)
    return (f"job {job_id}: {status}; continue it with `python -m ngpt_tune submit --resume "
            f"{experiment} --address {dashboard_address(address)}`")


def _wait_terminal(client: JobSubmissionClient, job_id: str, wait_s: float) -> JobStatus:
    deadline = time.monotonic() + wait_s
    while True:
        status = client.get_job_status(job_id)
        if status.is_terminal() or time.monotonic() >= deadline:
            return status
        time.sleep(0.5)


# ---- the command line: `jobs`, `logs`, `stop` (`submit` is in __main__, beside `run`) -------
def cmd_jobs(args: argparse.Namespace) -> int:
    """List the cluster's campaign jobs: id, status, start, experiment folder."""
    print(format_jobs(list_jobs(args.address)), flush=True)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """Print a job's output; --follow: as it comes, until the job ends (exit status 0 if it
    succeeded)."""
    status = logs(args.address, args.job, follow=args.follow)
    if not args.follow:
        return 0
    print(f"ngpt-tune: job {args.job}: {status}", flush=True)
    return 0 if status == "SUCCEEDED" else 1


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a job: its campaign saves its state, to be continued with submit --resume."""
    print(stop(args.address, args.job), flush=True)
    return 0


def add_parsers(sub: argparse._SubParsersAction, submit_help: str | None) -> None:
    """``submit``, ``jobs``, ``logs`` and ``stop``."""
    submit = sub.add_parser("submit", help=submit_help)
    submit.add_argument("spec", nargs="?", help="campaign spec (search_spaces/*.yaml)")
    submit.add_argument("--resume", metavar="EXPERIMENT_DIR",
                        help="instead of a spec: continue this experiment as a new job")
    submit.add_argument("--smoke", action="store_true", help="as for run")
    submit.add_argument("--num-samples", type=int, help="as for run")
    submit.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                        help="as for run")
    submit.add_argument("--logger", action="append", metavar="NAME", help="as for run")
    submit.add_argument("--warm-start", action="append", metavar="EXPERIMENT",
                        help="as for run (a folder the cluster sees at that path, or a URI)")
    submit.add_argument("--verbose", action="store_true",
                        help="Ray's trial table and logs in the job's output")
    submit.add_argument("--name", help="experiment name (default: SPEC_NAME-DATE-TIME); an "
                        "experiment of that name that exists already is continued")
    submit.add_argument("--storage", help="results folder that every node mounts at the same "
                        "path, or a URI (default: $NGPT_TUNE_STORAGE)")
    submit.add_argument("--installed", action="store_true", help="run the ngpt-tune "
                        "installed on the cluster instead of sending this one with the job")
    parsers = [submit, sub.add_parser("jobs", help=cmd_jobs.__doc__)]
    for name, doc in (("logs", cmd_logs.__doc__), ("stop", cmd_stop.__doc__)):
        p = sub.add_parser(name, help=doc)
        p.add_argument("job", help="a job id printed by submit (`jobs` lists them)")
        parsers.append(p)
    parsers[2].add_argument("--follow", action="store_true", help="stream until the job ends")
    for p in parsers:
        p.add_argument("--address", help="the cluster's dashboard, http://HEAD:8265 (default: "
                       "$RAY_ADDRESS)")
