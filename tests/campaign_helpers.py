"""Helpers for tests that run real campaigns: tiny specs, trial folders, their reports."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from ngpt_tune.campaign import run_campaign
from ngpt_tune.presets import preset_yaml
from ngpt_tune.request import RunRequest, build_spec
from ngpt_tune.runner import RunOptions


def write_spec(tmp_path: Path, body: str, *, steps: int = 24, eval_every: int = 6) -> Path:
    """``body`` with the tiny preset as its base (a 1e-2 learning rate, 512 validation tokens)."""
    base = preset_yaml("tiny", {"optim.lr": 1.0e-2, "data.val_tokens": 512, "train.steps": steps,
                                "train.eval_every": eval_every, "train.device": "cpu"},
                       under="base")
    path = tmp_path / "spec.yaml"
    path.write_text(body + "\n" + base)
    return path


def run(spec_path: Path, storage: Path, name: str, **kw) -> Path:
    """``python -m ngpt_tune run SPEC --storage STORAGE --name NAME`` in this process; ``kw``:
    ``smoke``, ``num_samples``, ``overrides`` (``--set``)."""
    request = RunRequest.from_file(spec_path, **kw)
    return Path(run_campaign(build_spec(request), RunOptions(storage=str(storage), name=name),
                             request=request, command=f"python -m ngpt_tune run {spec_path}"))


def trial_dirs(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.iterdir() if p.is_dir() and (p / "params.json").exists())


def results(trial: Path) -> list[dict]:
    lines = (trial / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip().endswith("}")]




def wait_for(predicate, timeout: float, proc: subprocess.Popen, *, every: float = 0.2) -> None:
    """Poll ``predicate`` until it holds; fail if ``proc`` (a CLI run) ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"run exited early ({proc.returncode}):\n{out[-3000:]}")
        time.sleep(every)
    raise AssertionError("timed out waiting")
