"""The training loop: plain PyTorch, no Ray. ``fit(config, report=callback)``.

Every ``eval_every`` steps (and at the last step) the loop evaluates on a fixed validation
set and calls ``report(metrics, save)``: ``metrics`` is a dict with the keys in
:data:`METRIC_KEYS`; ``save`` is ``None``, or, when a checkpoint is due, a function that writes
the full training state into a folder (see :func:`fit`'s ``resume_from``).

With ``cooled_rungs`` (:mod:`ngpt_tune.branches`), the evaluation that reaches each of ASHA's
milestones reports the loss of a short cooldown branched from the run as ``val_loss`` (the
run's own as ``val_loss_raw``, and ``cooled: True``); ``branch_tokens`` counts the tokens the
branches trained.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.profiler import record_function

from ngpt_tune.branches import CooledRungs, cooled_loss
from ngpt_tune.checkpoints import load_first
from ngpt_tune.compiling import compile_model
from ngpt_tune.config import Config
from ngpt_tune.data import TokenLoader, resolve_shards, val_batches
from ngpt_tune.files import atomic_write
from ngpt_tune.model import LanguageModel, build_model
from ngpt_tune.optim import build_optimizers, lr_multiplier, set_lr

METRIC_KEYS = (
    "step", "tokens_seen", "train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s",
    "projections", "max_steps", "finished", "diverged", "n_params", "branch_tokens",
)
STATE_FILE = "state.pt"

log = logging.getLogger(__name__)

SaveFn = Callable[[Path], None]
ReportFn = Callable[[dict[str, Any], "SaveFn | None"], None]


@dataclass
class FitResult:
    """How a run ended: the last metrics reported and whether the loss went non-finite."""

    metrics: dict[str, Any]
    diverged: bool


def pick_device(config: Config) -> torch.device:
    wanted = config.train.device
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but CUDA is not available")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(wanted)


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS (CPU runs).

    Each step's big temporaries (logits, head and embedding gradients) are over glibc's 32 MB
    mmap threshold and would page-fault afresh every step; see benchmarks/RESULTS.md for the
    cost. Once per process; returns whether it applied (Linux with glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(
            libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
        return False


def return_freed_memory() -> None:
    """Give the heap's free pages back to the OS (the end of a run, after
    :func:`keep_freed_memory`). glibc keeps a heap per thread, and a reused Ray worker runs
    each trial in a new thread: without this, each heap would keep a whole trial's peak."""
    if keep_freed_memory():
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def configure_process(config: Config, device: torch.device) -> None:
    """Process-wide settings for a run on ``device``: allocator, thread count, TF32."""
    if device.type == "cpu":
        keep_freed_memory()
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def micro_batches(x: torch.Tensor, y: torch.Tensor,
                  rows: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` cut into pieces of ``rows`` rows (views, no copy); whole when ``rows`` is 0
    or not smaller than the batch."""
    if not rows or rows >= x.size(0):
        return [(x, y)]
    return list(zip(x.split(rows), y.split(rows)))


@dataclass
class Trainer:
    """The state of one run: model, optimisers, data position, counters."""

    config: Config
    model: LanguageModel
    forward: Callable  # the model, compiled or not
    optimizers: list[torch.optim.Optimizer]
    loader: TokenLoader
    val_set: list[tuple[torch.Tensor, torch.Tensor]]
    device: torch.device
    step: int = 0
    projections: int = 0
    branch_steps: int = 0  # steps trained in cooled branches (ngpt_tune.branches)
    project: Callable | None = None  # model.project_weights, compiled or not
    cudagraphs: bool = False  # compiled with mode "reduce-overhead"

    @classmethod
    def create(cls, config: Config, device: torch.device) -> Trainer:
        seed_everything(config.train.seed)
        train_files, val_files = resolve_shards(config.data)
        B, T = config.data.batch_size, config.model.block_size
        loader = TokenLoader(train_files, batch_size=B, block_size=T, seed=config.train.seed)
        val_set = val_batches(val_files, n_tokens=config.data.val_tokens, batch_size=B,
                              block_size=T)
        # the fixed val set lives on the device: an evaluation copies nothing from the host
        val_set = [(x.to(device), y.to(device)) for x, y in val_set]
        model = build_model(config.model).to(device)
        forward, project, mode = compile_model(model, config, device)
        optimizers = build_optimizers(model, config.optim)
        return cls(config, model, forward, optimizers, loader, val_set, device,
                   project=project, cudagraphs=mode == "reduce-overhead")

    def release(self) -> None:
        """Free what this run holds (model, optimisers, data, CUDA graph pools), so that the
        next trial in a reused worker starts from the same memory. Compiled code stays: the
        next run of the same shapes reuses it."""
        for opt in self.optimizers:
            opt.state.clear()
        self.optimizers.clear()
        self.val_set.clear()
        self.loader.release()
        for p in self.model.parameters():
            p.grad = None
        self.forward = self.project = None
        if self.cudagraphs:  # the pools hold static copies of this run's inputs and outputs
            from torch._inductor.cudagraph_trees import (
                reset_cudagraph_trees,  # inductor's internals: only on CUDA
            )

            reset_cudagraph_trees()
        del self.model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return_freed_memory()

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = self.config.train.dtype
        if dtype == "bfloat16" or (dtype == "auto" and self.device.type == "cuda"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def accumulate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward and backward of the batch ``(x, y)``, in micro-batches of
        ``data.micro_batch_size`` rows when set: each one's loss is scaled by its share of the
        batch, so the gradients summed into ``.grad`` and the loss returned (a tensor, no host
        sync) are the whole batch's."""
        pieces = micro_batches(x, y, self.config.data.micro_batch_size)
        if len(pieces) == 1:
            return self._forward_backward(x, y, 1.0)
        total = torch.zeros((), device=self.device)  # a copy: CUDA graphs reuse their outputs
        for xs, ys in pieces:
            total += self._forward_backward(xs, ys, xs.size(0) / x.size(0))
        return total

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor, share: float) -> torch.Tensor:
        if self.cudagraphs:  # the previous graph outputs may now be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with record_function("forward"), self.autocast():
            _, loss = self.forward(x, y, return_logits=False)
        if share != 1.0:
            loss = loss * share
        with record_function("backward"):
            loss.backward()
        return loss.detach()

    def train_step(self, lr_mult: float | None = None) -> torch.Tensor:
        """One optimiser step at the schedule's lr (or ``lr_mult`` x the peak); returns the
        loss as a tensor (no host sync)."""
        cfg = self.config
        loss = self.accumulate(*self.loader.next_batch(self.device))
        if cfg.optim.grad_clip:
            with record_function("clip_grad"):
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        if lr_mult is None:
            lr_mult = lr_multiplier(self.step, cfg.train.steps, cfg.optim)
        set_lr(self.optimizers, lr_mult)
        with record_function("optimizer"):
            for opt in self.optimizers:
                opt.step()
                opt.zero_grad(set_to_none=True)
        self.step += 1
        # nGPT: back onto the unit sphere, every proj_every optimiser steps (1 = the paper)
        if self.model.normalized and self.step % cfg.model.proj_every == 0:
            self.project_weights()
            self.projections += 1
        return loss

    def project_weights(self) -> None:
        """The model's ``project_weights``, compiled when the model is."""
        with record_function("project_weights"):
            (self.project or self.model.project_weights)()

    @torch.no_grad()
    def evaluate(self) -> float:
        self.model.eval()
        total = torch.zeros((), device=self.device)
        for x, y in self.val_set:  # already on the device
            for xs, ys in micro_batches(x, y, self.config.data.micro_batch_size):
                if self.cudagraphs:
                    torch.compiler.cudagraph_mark_step_begin()
                with self.autocast():
                    _, loss = self.forward(xs, ys, return_logits=False)
                total += loss.float() * (xs.size(0) / x.size(0))
        self.model.train()
        return (total / len(self.val_set)).item()

    def current_lr(self) -> float:
        return self.optimizers[0].param_groups[0]["lr"]

    def metrics(self, *, train_loss: float, val_loss: float, train_time: float,
                window_steps: int, elapsed: float) -> dict[str, Any]:
        """The report dict (the keys of :data:`METRIC_KEYS`) for losses already measured.

        A run with no training window (resumed at its last step) has no train loss to judge.
        """
        train_ok = math.isfinite(train_loss) or not window_steps
        diverged = not (train_ok and math.isfinite(val_loss))
        tokens_per_step = self.config.tokens_per_step
        return {
            "step": self.step,
            "tokens_seen": self.step * tokens_per_step,
            "train_loss": train_loss,
            "val_loss": math.inf if diverged else val_loss,
            "lr": self.current_lr(),
            "tokens_per_s": window_steps * tokens_per_step / max(train_time, 1e-9),
            "elapsed_s": elapsed,
            "projections": self.projections,
            "max_steps": self.config.train.steps,
            "finished": self.step >= self.config.train.steps and not diverged,
            "diverged": diverged,
            "n_params": self.model.num_params(),
            "branch_tokens": self.branch_steps * tokens_per_step,
        }

    def save(self, directory: Path) -> None:
        """Everything needed to continue bit-for-bit: weights, optimisers, data, RNGs."""
        state = {
            "config": asdict(self.config),
            "model": self.model.state_dict(),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "loader": self.loader.state_dict(),
            "step": self.step,
            "projections": self.projections,
            "branch_steps": self.branch_steps,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }
        atomic_write(directory / STATE_FILE, lambda tmp: torch.save(state, tmp))

    def load(self, directory: Path) -> None:
        state = torch.load(directory / STATE_FILE, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        for opt, opt_state in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(opt_state)
        self.loader.load_state_dict(state["loader"])
        self.step, self.projections = state["step"], state["projections"]
        self.branch_steps = state.get("branch_steps", 0)
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])


def fit(
    config: Config,
    *,
    report: ReportFn | None = None,
    resume_from: Path | Iterable[Path] | None = None,
    checkpoint_every: int = 0,
    cooled_rungs: CooledRungs | None = None,
) -> FitResult:
    """Train ``config``; call ``report`` at each evaluation.

    Args:
        config: the run.
        report: called as ``report(metrics, save)`` at every evaluation.
        resume_from: a folder written by a ``save`` function: continue from there; or
            several, newest first: continue from the first that loads (an unreadable one is
            skipped with a warning, see :func:`ngpt_tune.checkpoints.load_first`).
        checkpoint_every: pass a ``save`` function at evaluations where ``step`` is a multiple
            of it (and at the last step); 0 never passes one.
        cooled_rungs: branch a cooldown at these milestones and report its loss there
            (:mod:`ngpt_tune.branches`); None: never.

    A non-finite training or validation loss ends the run with ``diverged: True`` in the
    last metrics; it is not raised.
    """
    device = pick_device(config)
    configure_process(config, device)
    trainer = Trainer.create(config, device)
    try:
        if resume_from is not None:
            load_first(trainer.load, resume_from)
        return _train(trainer, report, checkpoint_every, cooled_rungs)
    finally:  # also when report raises (Ray stops a trial from inside tune.report)
        trainer.release()


def _train(trainer: Trainer, report: ReportFn | None, checkpoint_every: int,
           cooled_rungs: CooledRungs | None = None) -> FitResult:
    config = trainer.config
    steps, eval_every = config.train.steps, config.train.eval_every
    if trainer.step >= steps:  # resumed from the final checkpoint: report the finished state
        metrics = trainer.metrics(train_loss=math.nan, val_loss=trainer.evaluate(),
                                  train_time=0.0, window_steps=0, elapsed=0.0)
        if report is not None:
            report(metrics, None)
        return FitResult(metrics, diverged=metrics["diverged"])
    start = time.perf_counter()
    window_start, window_steps = start, 0
    loss_sum = torch.zeros((), device=trainer.device)
    metrics: dict[str, Any] = {}
    while trainer.step < steps:
        loss_sum += trainer.train_step()
        window_steps += 1
        if trainer.step % eval_every and trainer.step != steps:
            continue
        train_loss = (loss_sum / window_steps).item()  # the one host sync per eval window
        now = time.perf_counter()
        # no evaluation of a diverged model
        val_loss = trainer.evaluate() if math.isfinite(train_loss) else math.inf
        metrics = trainer.metrics(train_loss=train_loss, val_loss=val_loss,
                                  train_time=now - window_start, window_steps=window_steps,
                                  elapsed=now - start)
        if cooled_rungs is not None:
            _judge_cooled(trainer, metrics, cooled_rungs, window_steps)
        due = checkpoint_every and (trainer.step % checkpoint_every == 0 or trainer.step == steps)
        if report is not None:
            report(metrics, trainer.save if due and not metrics["diverged"] else None)
        if metrics["diverged"]:
            return FitResult(metrics, diverged=True)
        loss_sum.zero_()
        window_start, window_steps = time.perf_counter(), 0
    return FitResult(metrics, diverged=False)


def _judge_cooled(trainer: Trainer, metrics: dict[str, Any], rungs: CooledRungs,
                  window: int) -> None:
    """At a milestone's evaluation, ``val_loss`` becomes a cooled branch's (the run's own kept
    as ``val_loss_raw``); a diverged branch reports inf but does not end the run."""
    metrics["val_loss_raw"], metrics["cooled"] = metrics["val_loss"], False
    if metrics["diverged"] or not rungs.due(trainer.step, window, trainer.config.train.steps):
        return
    metrics["val_loss"] = cooled_loss(trainer, rungs.length(trainer.step))
    metrics["cooled"] = True
    metrics["branch_tokens"] = trainer.branch_steps * trainer.config.tokens_per_step
