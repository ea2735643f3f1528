"""The canonical experiments: each built once per test run, the first time a selected test asks
for it, into a session folder; many tests assert on each one.

A test must not change these folders: one that writes (``analyze``, ``confirm``, a notebook
running the analysis) copies the folder first (``shutil.copytree``: a smoke experiment is a few
MB, copied in well under a second).

| fixture | what it is | built |
|---|---|---|
| ``quickstart_cli`` / ``smoke_experiment`` | ``run search_spaces/quickstart.yaml --smoke``: Optuna + ASHA, 4 trials, then its confirmation stage (top 2 x 2 seeds), with its terminal output and exit status | the CLI in a subprocess, as a user runs it |
| ``asha_campaign`` | Optuna (TPE after 2 trials) + ASHA, 4 trials one at a time, one hopeless learning rate among the choices so that ASHA stops something | in this process (``ray_session``) |
| ``grid_campaign`` | a 2 x 2 grid with ``repeats: 2`` (8 trials of 12 steps, a checkpointed report every 2, two checkpoints kept) | in this process (``ray_session``) |
| ``shipped_smoke(name)`` | ``run search_spaces/NAME.yaml --smoke`` for the shipped specs that take their own path through Ray (tests/test_runner.py says which) | in this process (``ray_session``), once per name |
| ``killed_ladder`` / ``smoke_ladder`` | ``run search_spaces/ladder.yaml --smoke``: three tiny sizes, the fit, the target search and its confirmation; killed (kill -9) in its second size and, resumed, in its target search, then resumed to its end | the CLI in subprocesses |
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "search_spaces"
# the environment of every CLI run in the tests: no usage report, output as it is written
ENV = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
       "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


def cli(*args: str, cwd: Path, timeout: float = 600,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m ngpt_tune ARGS`` in a subprocess, its output captured."""
    return subprocess.run([sys.executable, "-m", "ngpt_tune", *map(str, args)], cwd=cwd,
                          env=env or ENV, capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class CliRun:
    """A finished ``run`` through the CLI: its experiment folder and what the terminal showed."""

    experiment: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


# ---- (a) the quickstart smoke run, through the CLI -----------------------------------------
@pytest.fixture(scope="session")
def quickstart_cli(tmp_path_factory) -> CliRun:
    """``python -m ngpt_tune run search_spaces/quickstart.yaml --smoke`` (quiet output)."""
    storage = tmp_path_factory.mktemp("quickstart")
    out = cli("run", SPECS / "quickstart.yaml", "--smoke", "--storage", storage,
              "--name", "quickstart", cwd=storage)
    return CliRun(storage / "quickstart", out.returncode, out.stdout, out.stderr)


@pytest.fixture(scope="session")
def smoke_experiment(quickstart_cli) -> Path:
    """The quickstart smoke run's experiment folder (the run ended well)."""
    assert quickstart_cli.returncode == 0, quickstart_cli.text[-3000:]
    return quickstart_cli.experiment


# ---- (b) an Optuna + ASHA campaign -----------------------------------------------------------
ASHA_CAMPAIGN = """
name: asha-test
search:
  optim.lr: {choice: [1.0e-5, 2.0e-2]}   # a hopeless and a good learning rate
  model.alpha: {loguniform: [0.03, 0.5]}
searcher: {name: optuna, seed: 0, n_startup_trials: 2}
scheduler: {name: asha, time_attr: step, grace_period: 6, reduction_factor: 2}
num_samples: 4
max_concurrent_trials: 1
"""
ASHA_TRIALS = 4


@pytest.fixture(scope="session")
def asha_campaign(ray_session, tmp_path_factory) -> Path:
    from campaign_helpers import run, write_spec

    root = tmp_path_factory.mktemp("asha")
    return run(write_spec(root, ASHA_CAMPAIGN), root / "results", "asha")


# ---- (c) a grid with repeats ---------------------------------------------------------------
GRID_CAMPAIGN = """
name: grid-test
search:
  model.proj_every: {grid: [1, 3]}
  model.alpha_mode: {grid: [vector, scalar]}
searcher: grid
scheduler: fifo
repeats: 2
checkpoint: {every: 2, keep: 2}   # six checkpointed reports per trial, two kept on disk
"""


@pytest.fixture(scope="session")
def grid_campaign(ray_session, tmp_path_factory) -> Path:
    from campaign_helpers import run, write_spec

    root = tmp_path_factory.mktemp("grid")
    return run(write_spec(root, GRID_CAMPAIGN, steps=12, eval_every=2), root / "results", "grid")


# ---- the shipped specs through Ray, each at most once ------------------------------------------
@pytest.fixture(scope="session")
def shipped_smoke(ray_session, tmp_path_factory):
    """``shipped_smoke("gated")``: that spec's smoke experiment, run the first time it is asked
    for."""
    from campaign_helpers import run

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = run(SPECS / f"{name}.yaml", tmp_path_factory.mktemp(name), "smoke",
                              smoke=True)
        return built[name]

    return get


# ---- (d) a smoke ladder with its target stage, killed twice on the way ------------------------
@dataclass(frozen=True)
class KilledLadder:
    """The shipped ladder with --smoke through the CLI, killed (kill -9) while its second size
    trained, resumed, killed again while its target search trained, and resumed to its end."""

    experiment: Path
    first_size: dict[Path, str]  # rung0's result files when the second size was killed
    stages_at_first_kill: dict[str, str]  # stage name -> status in campaign.json then
    second: object  # campaign_helpers.Interrupted: the resume killed in the target search,
    # then the last resume


@pytest.fixture(scope="session")
def killed_ladder(tmp_path_factory) -> KilledLadder:
    import json

    from campaign_helpers import kill_and_resume, reports

    def training(folder: str):
        return lambda experiment: any(rows and not rows[-1]["finished"]
                                      for rows in reports(experiment / folder))

    def first_size(experiment: Path) -> dict[Path, str]:
        return {p: p.read_text() for p in (experiment / "rung0").glob("*/result.json")}

    root = tmp_path_factory.mktemp("ladder")
    spec = root / "ladder.yaml"
    spec.write_text((SPECS / "ladder.yaml").read_text())
    experiment = root / "results" / "ladder"
    first = kill_and_resume(spec, experiment, when=training("rung1"), run_args=("--smoke",),
                            between=first_size, resume=False)
    stages = {s["name"]: s["status"]
              for s in json.loads((experiment / "campaign.json").read_text())["stages"]}
    second = kill_and_resume(spec, experiment, when=training("target"), again=True)
    return KilledLadder(experiment, first.between, stages, second)


@pytest.fixture(scope="session")
def smoke_ladder(killed_ladder) -> Path:
    """The ladder's folder at its end: every stage done, as an uninterrupted run leaves it
    (tests/test_ladder.py asserts that it is)."""
    return killed_ladder.experiment
