"""The training loop: plain PyTorch, no Ray. ``fit(config, report=callback)``.

Every ``eval_every`` steps (and at the last step) the loop evaluates on a fixed validation
set and calls ``report(metrics, save)``: ``metrics`` is a dict with the keys in
:data:`METRIC_KEYS`; ``save`` is ``None``, or, when a checkpoint is due, a function that writes
the full training state into a folder (see :func:`fit`'s ``resume_from``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.profiler import record_function

from ngpt_tune.checkpoints import load_first
from ngpt_tune.config import Config
from ngpt_tune.data import TokenLoader, resolve_shards, val_batches
from ngpt_tune.files import atomic_write
from ngpt_tune.model import LanguageModel, build_model
from ngpt_tune.optim import build_optimizers, lr_multiplier, set_lr

METRIC_KEYS = (
    "step", "tokens_seen", "train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s",
    "projections", "max_steps", "finished", "diverged", "n_params",
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


# The `compile: auto` rule (CUDA): compile when the compiled steps save more time than one
# compilation costs, i.e. when train.steps >= COMPILE_SECONDS / (eager step time * (1 - 1 /
# COMPILE_SPEEDUP)), the eager step time estimated from the model's FLOPs at EAGER_FLOPS_PER_S.
# These are assumptions, not measurements of the run (README "GPU path", benchmarks/RESULTS.md).
COMPILE_SECONDS = 60.0  # one cold compilation of a shape (CPU, inductor: 2x64 ~20 s, 11x768 ~80 s)
COMPILE_SPEEDUP = 1.3  # eager step time / compiled step time on a GPU (PyTorch 2's 1.3-2x)
EAGER_FLOPS_PER_S = 50e12  # the prior campaign's eager 11x768: 44.9K tokens/s on a GH200


def compile_break_even_steps(config: Config) -> int:
    """Steps after which ``compile: auto`` compiles (on CUDA): the compilation has paid off."""
    from ngpt_tune.flops import flops_per_token

    n_params = build_param_count(config)
    step_s = flops_per_token(config.model, n_params) * config.tokens_per_step / EAGER_FLOPS_PER_S
    return math.ceil(COMPILE_SECONDS / (step_s * (1 - 1 / COMPILE_SPEEDUP)))


def build_param_count(config: Config) -> int:
    """The model's parameter count (as ``num_params``), without building it on a device."""
    with torch.device("meta"):
        return build_model(config.model).num_params()


def compile_mode(config: Config, device: torch.device) -> str | None:
    """``torch.compile``'s mode for ``train.compile``, or None for eager.

    ``auto`` compiles on CUDA when the run is long enough to pay for the compilation
    (:func:`compile_break_even_steps`), never on a CPU (there inductor's compile time outweighs
    the gain for the small models a CPU trains). ``reduce-overhead`` adds CUDA graphs (worth it
    when a step is short: small batches, launch-bound); on a CPU it falls back to ``default``.
    """
    value = config.train.compile
    if value == "off" or (value == "auto" and device.type != "cuda"):
        return None
    if value == "auto" and config.train.steps < compile_break_even_steps(config):
        return None
    if value == "reduce-overhead" and device.type != "cuda":
        log.warning("train.compile: reduce-overhead needs CUDA (CUDA graphs); compiling "
                    "without them on %s", device.type)
        return "default"
    return "reduce-overhead" if value == "reduce-overhead" else "default"


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


def use_compile_cache(folder: str | os.PathLike) -> Path:
    """Send inductor's on-disk caches (compiled kernels, FX graphs; Triton's on CUDA) to
    ``folder``, created if missing. Call it in the worker before the first compilation, with
    one local folder per campaign and node, so that every trial there reuses the others'
    kernels (``compile_cache_folder`` gives one)."""
    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    return folder


def compile_cache_folder(campaign: str) -> Path:
    """A node-local folder for ``campaign``'s inductor caches (under the system temp dir)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in campaign) or "campaign"
    return Path(tempfile.gettempdir()) / "ngpt_tune_inductor" / safe


class _CompiledShapes:
    """What this process has compiled since dynamo's last reset.

    Compiled code is kept between runs (a reused Ray worker's trials) and serves every run of
    the same shapes: trial-varying numbers reach the graph as tensors (see model.py's
    ``Scale``). A run with other shapes resets dynamo first (else its graphs would pile up
    and dynamo would switch to dynamic shapes), and so does a run that finds more graphs
    compiled since the last reset than dynamo's per-function recompile limit.
    """

    key: tuple | None = None
    graphs_at_reset: int = 0

    @classmethod
    def prepare(cls, key: tuple) -> bool:
        """Reset dynamo if ``key``'s run cannot reuse the compiled code; True if it reset."""
        from torch._dynamo.utils import counters

        graphs = counters["stats"]["unique_graphs"]
        limit = getattr(torch._dynamo.config, "recompile_limit", 8)
        if key == cls.key and graphs - cls.graphs_at_reset < limit:
            return False
        torch.compiler.reset()
        cls.key, cls.graphs_at_reset = key, counters["stats"]["unique_graphs"]
        return True


def compile_key(config: Config, device: torch.device, mode: str) -> tuple:
    """What decides the compiled graphs: the model's structure and shapes, not its numbers."""
    model = asdict(config.model)
    for value_only in ("alpha", "gate_init", "rope_base"):  # tensors in the model
        model.pop(value_only)
    model["logit_scale"] = model["logit_scale"] == "learned"
    return (tuple(sorted(model.items())), config.data.batch_size, config.train.dtype,
            device.type, mode)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
        forward: Callable = model
        project: Callable = model.project_weights
        mode = compile_mode(config, device)
        if mode is not None:
            _CompiledShapes.prepare(compile_key(config, device, mode))
            forward = torch.compile(model, mode=None if mode == "default" else mode)
            if model.normalized:  # one fused norm-and-divide kernel per matrix
                project = torch.compile(model.project_weights)
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
            from torch._inductor.cudagraph_trees import reset_cudagraph_trees

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

    def train_step(self) -> torch.Tensor:
        """One optimiser step; returns the loss as a tensor (no host sync)."""
        cfg = self.config
        x, y = self.loader.next_batch(self.device)
        if self.cudagraphs:  # the previous step's graph outputs may now be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with record_function("forward"), self.autocast():
            _, loss = self.forward(x, y, return_logits=False)
        with record_function("backward"):
            loss.backward()
        if cfg.optim.grad_clip:
            with record_function("clip_grad"):
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        set_lr(self.optimizers, lr_multiplier(self.step, cfg.train.steps, cfg.optim))
        with record_function("optimizer"):
            for opt in self.optimizers:
                opt.step()
                opt.zero_grad(set_to_none=True)
        self.step += 1
        # nGPT: back onto the unit sphere, every proj_every optimiser steps (1 = the paper)
        if self.model.normalized and self.step % cfg.model.proj_every == 0:
            self.project_weights()
            self.projections += 1
        return loss.detach()

    def project_weights(self) -> None:
        """The model's ``project_weights``, compiled when the model is."""
        with record_function("project_weights"):
            (self.project or self.model.project_weights)()

    @torch.no_grad()
    def evaluate(self) -> float:
        self.model.eval()
        total = torch.zeros((), device=self.device)
        for x, y in self.val_set:  # already on the device
            if self.cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()
            with self.autocast():
                _, loss = self.forward(x, y, return_logits=False)
            total += loss.float()
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

    A non-finite training or validation loss ends the run with ``diverged: True`` in the
    last metrics; it is not raised.
    """
    device = pick_device(config)
    configure_process(config, device)
    trainer = Trainer.create(config, device)
    try:
        if resume_from is not None:
            load_first(trainer.load, resume_from)
        return _train(trainer, report, checkpoint_every)
    finally:  # also when report raises (Ray stops a trial from inside tune.report)
        trainer.release()


def _train(trainer: Trainer, report: ReportFn | None, checkpoint_every: int) -> FitResult:
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
        due = checkpoint_every and (trainer.step % checkpoint_every == 0 or trainer.step == steps)
        if report is not None:
            report(metrics, trainer.save if due and not metrics["diverged"] else None)
        if metrics["diverged"]:
            return FitResult(metrics, diverged=True)
        loss_sum.zero_()
        window_start, window_steps = time.perf_counter(), 0
    return FitResult(metrics, diverged=False)
