"""The Ray Tune function trainable around :func:`ngpt_tune.train.fit`.

Every ``ray.tune`` call of ngpt-tune's training lives here (Tune's reporting API changed twice
in Ray's history). Tune's config dict becomes the typed :class:`Config` once, at the top.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from ngpt_tune.checkpoints import older_checkpoints
from ngpt_tune.compiling import compile_cache_folder, use_compile_cache
from ngpt_tune.config import Config
from ngpt_tune.experiment import ERROR_KEY, INFEASIBLE_KEY, PROVENANCE_FILE, VARIANT_KEY
from ngpt_tune.memory import out_of_memory
from ngpt_tune.provenance import placement, provenance
from ngpt_tune.spec import CampaignSpec
from ngpt_tune.train import fit, pick_device


def train_ngpt(tune_config: dict[str, Any], *, spec: CampaignSpec, threads: int = 0) -> None:
    """Train one trial of ``spec``; ``tune_config`` holds the searched values (dotted keys)."""
    config = spec.resolve(tune_config)
    # one on-disk kernel cache per campaign and node: the trials there reuse each other's
    use_compile_cache(compile_cache_folder(spec.name))
    if threads and not config.train.threads:
        config = config.override({"train.threads": threads})
    checkpoint_every = spec.checkpoint.every or config.train.eval_every
    trial_dir = Path(tune.get_context().get_trial_dir())
    ray_context = ray.get_runtime_context()
    got = placement(device=pick_device(config), accelerator_ids=ray_context.get_accelerator_ids(),
                    resources=ray_context.get_assigned_resources(),
                    node_id=ray_context.get_node_id())
    record = provenance(
        **got,
        config=dataclasses.asdict(config), seed=config.train.seed,
        variant=tune_config.get(VARIANT_KEY), searched=dict(tune_config),
        trial_id=tune.get_context().get_trial_id(),
    )
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / PROVENANCE_FILE).write_text(json.dumps(record, indent=2, default=str))

    last: dict[str, Any] = {}

    def report(metrics: dict[str, Any], save) -> None:
        last.update(metrics)
        if save is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            save(Path(folder))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    # ASHA's rungs judged on cooled branches (None in the confirmation stage: no rungs there)
    cooled = spec.cooled_rungs(config)
    error = None
    try:
        _fit(config, report, checkpoint_every, cooled)
    except Exception as err:  # the traceback (and what its frames hold) is freed on leaving
        error = out_of_memory(err)
        if error is None:
            raise  # a crash: Tune retries it (max_failures), then marks it errored
    if error is not None:
        # does not fit: ended normally with one last report, so that Tune does not retry it
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        tune.report(infeasible_report(spec, config, last, error))


def infeasible_report(spec: CampaignSpec, config: Config, last: dict[str, Any],
                      error: str) -> dict[str, Any]:
    """The last report of a trial that ran out of memory: flagged (:data:`INFEASIBLE_KEY`,
    with the error line), with the worst value of the metric so that no scheduler or ranking
    takes it for a good trial, at the step of its last report (0 before any)."""
    worst = math.inf if spec.mode == "min" else -math.inf
    return {"step": last.get("step", 0), "tokens_seen": last.get("tokens_seen", 0),
            "max_steps": config.train.steps, "val_loss": worst, "train_loss": worst,
            "finished": False, "diverged": False, INFEASIBLE_KEY: True, ERROR_KEY: error}


def _fit(config: Config, report, checkpoint_every: int, cooled: Any) -> None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        fit(config, report=report, checkpoint_every=checkpoint_every, cooled_rungs=cooled)
        return
    with contextlib.ExitStack() as stack:
        # the latest checkpoint, then (only if it cannot be read) the older ones, newest first
        older = [tune.Checkpoint(path, filesystem=checkpoint.filesystem)
                 for path in older_checkpoints(checkpoint.path, checkpoint.filesystem)]
        folders = (Path(stack.enter_context(c.as_directory())) for c in [checkpoint, *older])
        fit(config, report=report, resume_from=folders, checkpoint_every=checkpoint_every,
            cooled_rungs=cooled)
