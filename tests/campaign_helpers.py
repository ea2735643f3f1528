"""Helpers for tests that run real campaigns: tiny specs, trial folders, their reports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments import ENV, cli

from ngpt_tune.campaign import run_campaign
from ngpt_tune.config import BUILTIN_DATA, ModelConfig
from ngpt_tune.presets import preset_yaml
from ngpt_tune.request import RunRequest, build_spec
from ngpt_tune.runner import RunOptions
from ngpt_tune.spec import CampaignSpec


def write_spec(tmp_path: Path, body: str, *, steps: int = 24, eval_every: int = 6,
               gpt2: bool = False) -> Path:
    """``body`` with the tiny preset as its base (a 1e-2 learning rate, 512 validation tokens);
    ``gpt2``: on GPT-2's vocabulary instead of the compact one (steps ten times as long)."""
    overrides = {"optim.lr": 1.0e-2, "data.val_tokens": 512, "train.steps": steps,
                 "train.eval_every": eval_every, "train.device": "cpu"}
    if gpt2:
        overrides |= {"data.dir": BUILTIN_DATA, "model.vocab_size": ModelConfig().vocab_size}
    base = preset_yaml("tiny", overrides, under="base")
    path = tmp_path / "spec.yaml"
    path.write_text(body + "\n" + base)
    return path


def run(spec_path: Path, storage: Path, name: str, *, spec: CampaignSpec | None = None,
        **kw) -> Path:
    """``python -m ngpt_tune run SPEC --storage STORAGE --name NAME`` in this process; ``kw``:
    ``smoke``, ``num_samples``, ``overrides`` (``--set``); ``spec``: the campaign already built
    from that request (e.g. validated before a test damages its data). The one place where the
    tests call the runner's internals to run a campaign."""
    request = RunRequest.from_file(spec_path, **kw)
    return Path(run_campaign(spec or build_spec(request),
                             RunOptions(storage=str(storage), name=name), request=request,
                             command=f"python -m ngpt_tune run {spec_path}"))


def trial_dirs(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.iterdir() if p.is_dir() and (p / "params.json").exists())


def results(trial: Path) -> list[dict]:
    lines = (trial / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip().endswith("}")]


def reports(folder: Path) -> list[list[dict]]:
    """The reports of every trial in ``folder`` that has written its result file."""
    if not folder.is_dir():
        return []
    return [results(t) for t in trial_dirs(folder) if (t / "result.json").exists()]


def wait_for(predicate, timeout: float, proc: subprocess.Popen, *, every: float = 0.05,
             log: Path | None = None) -> None:
    """Poll ``predicate`` until it holds; fail if ``proc`` (a CLI run) ends first or time runs
    out. The run's output for the failure message: its pipe, or ``log`` where it writes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out = log.read_text() if log else proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"run exited early ({proc.returncode}):\n{out[-3000:]}")
        time.sleep(every)
    raise AssertionError("timed out waiting")


# ---- one kill-and-resume ---------------------------------------------------------------------
@dataclass
class Interrupted:
    """What :func:`kill_and_resume` saw: the run's output up to its end, what ``between``
    returned (the folder as the kill left it), and the ``resume`` run (None without one)."""

    experiment: Path
    output: str
    between: Any
    resumed: subprocess.CompletedProcess | None


def kill_and_resume(spec: Path, experiment: Path, *, when: Callable[[Path], bool],
                    sig: signal.Signals = signal.SIGKILL, run_args: tuple[str, ...] = (),
                    between: Callable[[Path], Any] | None = None, resume: bool = True,
                    resume_args: tuple[str, ...] = (), timeout: float = 300,
                    env: dict[str, str] | None = None, again: bool = False) -> Interrupted:
    """``python -m ngpt_tune run SPEC --storage PARENT --name NAME`` (``again``: ``resume
    EXPERIMENT``, to kill a campaign a second time) in a subprocess of its own session; once ``when(experiment)`` holds (polled with :func:`wait_for`), ``sig``: SIGKILL
    goes to the whole process group (kill -9 of the driver and its local Ray); SIGTERM or
    SIGINT to the driver only, whose exit (and last save) is awaited. Then ``between`` (e.g.
    the reports before the resume, or damage to a checkpoint), then ``python -m ngpt_tune
    resume EXPERIMENT`` (asserted to succeed). The run's output goes to a file beside the
    spec, so a long run never blocks on a full pipe."""
    cwd = spec.parent
    log = cwd / f"{experiment.name}-run.log"
    cmd = [sys.executable, "-m", "ngpt_tune", "run", str(spec), "--storage",
           str(experiment.parent), "--name", experiment.name, *run_args]
    if again:
        cmd = [sys.executable, "-m", "ngpt_tune", "resume", str(experiment), *resume_args]
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env or ENV, stdout=sink,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            wait_for(lambda: when(experiment), timeout, proc, log=log)
            if sig != signal.SIGKILL:
                proc.send_signal(sig)
                proc.wait(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray
            proc.wait()
    output = log.read_text()
    seen = between(experiment) if between else None
    resumed = None
    if resume:
        resumed = cli("resume", experiment, *resume_args, cwd=cwd, env=env)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return Interrupted(experiment, output, seen, resumed)
