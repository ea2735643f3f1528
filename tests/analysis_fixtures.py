"""Hand-made experiment folders with known numbers, shaped like the runner's and Ray Tune's.

The folder follows :mod:`ngpt_tune.experiment`: ``campaign.json`` written by its
``write_campaign``, Tune's ``experiment_state-*.json`` (each trial's final status and failure
count) and per trial ``params.json``, ``result.json`` (JSON lines carrying Tune's extra keys and
the nested ``config``), ``provenance.json`` and, for a trial that failed, ``error.txt``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ngpt_tune import experiment as contract
from ngpt_tune.config import Config

MAX_STEPS = 400
EVAL_EVERY = 100
TOKENS_PER_STEP = 32 * 128  # the default batch_size * block_size
N_PARAMS = 1_000_000
SECONDS_PER_STEP = 0.1

# alpha_lr campaign: configuration -> final val_loss per seed (0, 1, 2)
A = {"model.alpha": 0.15, "optim.lr": 5e-4}
B = {"model.alpha": 0.28, "optim.lr": 1e-3}
A_FINALS = [6.60, 6.78, 6.70]  # mean 6.6933: the best configuration on the mean
B_FINALS = [6.55, 6.95, 6.90]  # holds the single best trial (6.55), mean 6.80
F_FINAL = 6.85  # one seed only
STOPPED_LOSS = 6.50  # lower than any finished trial, at half the budget: must not be ranked


def write_campaign(
    root: Path,
    *,
    name: str,
    search_keys: list[str],
    compare: dict | None = None,
    spec: dict | None = None,
    metric: str = contract.DEFAULT_METRIC,
    mode: str = contract.DEFAULT_MODE,
) -> None:
    root.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "description": f"hand-made {name}",
        "spec_path": str(root / "spec.yaml"),
        "spec": spec or {"name": name},
        "metric": metric,
        "mode": mode,
        "search_keys": search_keys,
        "seed_key": contract.SEED_KEY,
        "compare": compare,
        "time_attr": "tokens_seen",
        "max_steps": MAX_STEPS,
        "created_at": "2026-01-02T03:04:05+00:00",
        "provenance": {
            "git_commit": "abc123",
            "packages": {"ray": "2.60.0"},
            "hardware": {"hostname": "test"},
            "created_at": "2026-01-02T03:04:05+00:00",
        },
        "command": f"python -m ngpt_tune run search_spaces/{name}.yaml",
        "request": {"spec_path": str(root / "spec.yaml"), "spec_yaml": f"name: {name}\n",
                    "smoke": False, "num_samples": None, "overrides": {}},
    }
    contract.write_campaign(root, record)
    write_tune_state(root, {})


TUNE_STATE_FILE = "experiment_state-2026-01-02_03-04-05.json"


def write_tune_state(root: Path, states: dict[str, tuple[str, int]]) -> None:
    """Add trials to Tune's saved state, as Ray writes it: per trial the trial's JSON (status,
    folder) and its run metadata's JSON (failure count). ``states``: folder -> (status, failures)."""
    path = root / TUNE_STATE_FILE
    data = json.loads(path.read_text()) if path.is_file() else {"trial_data": []}
    for dirname, (status, failures) in states.items():
        trial = {"status": status, "relative_logdir": dirname, "trial_id": dirname}
        data["trial_data"].append([json.dumps(trial), json.dumps({"num_failures": failures})])
    path.write_text(json.dumps(data))


def curve(final: float, n_reports: int, *, dip: float | None = None) -> list[float]:
    """Decreasing val_loss ending at ``final``; ``dip`` puts a lower value before the end."""
    losses = [final + 3.0 * (1 - (i + 1) / n_reports) ** 2 for i in range(n_reports)]
    if dip is not None and n_reports >= 2:
        losses[-2] = dip
    return losses


def write_trial(
    root: Path,
    dirname: str,
    *,
    params: dict[str, Any],
    val_losses: list[float],
    trial_id: str | None = None,
    overrides: dict[str, Any] | None = None,
    variant: str | None = None,
    diverged: bool = False,
    error: str | None = None,
    device: str = "cpu",
    max_steps: int = MAX_STEPS,
    batch_size: int = 32,
    provenance: bool = True,
    timestamp0: float = 1_767_323_045.0,
    status: str | None = None,
    failures: int | None = None,
    train_losses: list[float] | None = None,
) -> Path:
    """One trial folder. ``val_losses`` are the reports, every EVAL_EVERY steps. ``status`` and
    ``failures``: Tune's final state of the trial (default: ERROR after one failure when
    ``error`` is given, else TERMINATED)."""
    folder = root / dirname
    folder.mkdir(parents=True)
    trial_id = trial_id or dirname
    config_params = {k: v for k, v in params.items() if "." in k}
    config = Config().override(
        {
            **config_params,
            **(overrides or {}),
            "train.steps": max_steps,
            "data.batch_size": batch_size,
        }
    )
    (folder / contract.PARAMS_FILE).write_text(
        json.dumps({**params, contract.TRIAL_INDEX_KEY: 0}))
    if provenance:
        (folder / contract.PROVENANCE_FILE).write_text(
            json.dumps(
                {
                    "config": dataclasses.asdict(config),
                    "seed": config.train.seed,
                    "variant": variant,
                    "n_params": N_PARAMS,
                    "device": device,
                    "git_commit": "abc123",
                    "packages": {},
                    "hardware": {},
                    "created_at": "2026-01-02T03:05:00+00:00",
                }
            )
        )
    tokens_per_step = batch_size * 128
    lines = []
    for i, loss in enumerate(val_losses):
        step = min((i + 1) * EVAL_EVERY, max_steps)
        last_diverged = diverged and i == len(val_losses) - 1
        report = {
            "step": step,
            "tokens_seen": step * tokens_per_step,
            "train_loss": train_losses[i] if train_losses else loss + 0.05,
            "val_loss": math.inf if last_diverged else loss,
            "lr": 1e-3 * (1 - step / (2 * max_steps)),
            "tokens_per_s": 40_000.0 + i,
            "elapsed_s": step * SECONDS_PER_STEP,
            "projections": step,
            "max_steps": max_steps,
            "finished": step == max_steps and not last_diverged,
            "diverged": last_diverged,
            "n_params": N_PARAMS,
            # Ray Tune's own keys
            "trial_id": trial_id,
            "training_iteration": i + 1,
            "time_total_s": step * SECONDS_PER_STEP,
            "time_this_iter_s": EVAL_EVERY * SECONDS_PER_STEP,
            "timestamp": int(timestamp0 + step),
            "date": "2026-01-02_03-05-00",
            "hostname": "node0",
            "node_ip": "127.0.0.1",
            "pid": 1,
            "done": False,
            "config": params,
            "checkpoint_dir_name": None,
        }
        lines.append(json.dumps(report))
    (folder / contract.RESULT_FILE).write_text("".join(line + "\n" for line in lines))
    failed = error is not None
    write_tune_state(root, {dirname: (status or ("ERROR" if failed else "TERMINATED"),
                                      int(failed) if failures is None else failures)})
    if error is not None:
        (folder / contract.ERROR_FILE).write_text(
            "Failure # 1 (occurred at 2026-01-02_03-06-00)\nTraceback (most recent call last):\n"
            f'  File "x.py", line 1, in <module>\n{error}\n'
        )
    (folder / "checkpoint_000000").mkdir()
    (folder / "checkpoint_000000" / "state.pt").write_bytes(b"not read")
    return folder


def make_alpha_lr(root: Path) -> Path:
    """Two 3-seed configurations, one single seed, one stopped early, one diverged, one error.

    - a0, a1, a2: completed, 6.60, 6.78, 6.70 (alpha 0.15, lr 5e-4)
    - b0, b1, b2: completed, 6.55, 6.95, 6.90 (alpha 0.28, lr 1e-3); b0 dips to 6.50 first
    - f0: completed, 6.85 (alpha 0.2, lr 7e-4)
    - c0: stopped, 6.50 at step 200 of 400
    - d0: diverged, inf at step 200
    - e0e0e_00009: errored, no report (its id read from the runner's folder name)
    """
    write_campaign(root, name="alpha_lr", search_keys=["model.alpha", "optim.lr", "train.seed"])
    for seed, final in enumerate(A_FINALS):
        write_trial(
            root,
            f"train_{seed}_a",
            trial_id=f"a{seed}",
            params={**A, "train.seed": seed},
            val_losses=curve(final, 4),
        )
    for seed, final in enumerate(B_FINALS):
        dip = 6.50 if seed == 0 else None
        write_trial(
            root,
            f"train_{seed}_b",
            trial_id=f"b{seed}",
            params={**B, "train.seed": seed},
            val_losses=curve(final, 4, dip=dip),
        )
    write_trial(
        root,
        "train_0_f",
        trial_id="f0",
        params={"model.alpha": 0.2, "optim.lr": 7e-4, "train.seed": 0},
        val_losses=curve(F_FINAL, 4),
    )
    write_trial(
        root,
        "train_0_c",
        trial_id="c0",
        params={"model.alpha": 0.05, "optim.lr": 2e-3, "train.seed": 0},
        val_losses=[7.9, STOPPED_LOSS],
    )
    write_trial(
        root,
        "train_0_d",
        trial_id="d0",
        params={"model.alpha": 0.5, "optim.lr": 3e-3, "train.seed": 0},
        val_losses=[8.0, 9.0],
        diverged=True,
    )
    write_trial(
        root,
        contract.trial_dirname("e0e0e_00009"),
        params={"model.alpha": 0.1, "optim.lr": 1e-4, "train.seed": 0},
        val_losses=[],
        error="RuntimeError: CUDA out of memory",
        provenance=False,
    )
    return root


COMPARE_SEED = 1234


def compare_finals(gap: float = 0.1) -> dict[str, list[float]]:
    """Seeded final losses per arm: gated is ``gap`` lower in expectation; gpt has one seed."""
    rng = np.random.default_rng(COMPARE_SEED)
    return {
        "ngpt": [float(v) for v in 7.0 + 0.05 * rng.standard_normal(3)],
        "gated": [float(v) for v in 7.0 - gap + 0.05 * rng.standard_normal(3)],
        "gpt": [float(v) for v in 7.0 + 0.05 * rng.standard_normal(1)],
    }


VARIANT_OVERRIDES = {
    "ngpt": {},
    "gated": {"model.gated_residuals": True},
    "gpt": {"model.arch": "gpt"},
}


def make_compare(root: Path, *, gap: float = 0.1, device: str = "cpu") -> Path:
    """Variants against the baseline ``ngpt`` arm, 3 seeds each (``gpt``: 1 seed)."""
    write_campaign(
        root,
        name="gated_vs_ngpt",
        search_keys=["variant", "train.seed"],
        compare={"by": "variant", "baseline": "ngpt"},
    )
    for variant, finals in compare_finals(gap).items():
        for seed, final in enumerate(finals):
            write_trial(
                root,
                f"train_{variant}_{seed}",
                trial_id=f"{variant}{seed}",
                params={"variant": variant, "train.seed": seed},
                overrides=VARIANT_OVERRIDES[variant],
                variant=variant,
                val_losses=curve(final, 4),
                device=device,
            )
    return root


def make_random_search(root: Path, n: int = 16) -> Path:
    """``n`` single-seed trials, alpha and lr drawn at random, loss depending mostly on lr."""
    write_campaign(root, name="random", search_keys=["model.alpha", "optim.lr", "train.seed"])
    rng = np.random.default_rng(7)
    for i in range(n):
        alpha = float(rng.uniform(0.05, 0.5))
        lr = float(10 ** rng.uniform(-4, -2))
        final = 6.5 + 0.5 * (math.log10(lr) + 3) ** 2 + 0.01 * alpha
        write_trial(
            root,
            f"train_{i:02d}",
            trial_id=f"r{i:02d}",
            params={"model.alpha": alpha, "optim.lr": lr, "train.seed": 0},
            val_losses=curve(final, 4),
        )
    return root
