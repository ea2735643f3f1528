"""When and how the training loop compiles the model (``train.compile``), and what this process
keeps compiled between runs.

- ``compile: auto``: compile on CUDA when the run pays for one compilation
  (:func:`compile_break_even_steps`, from :data:`COMPILE_SECONDS` and :data:`COMPILE_SPEEDUP`);
- :func:`compile_model`: the model's forward and weight projection, compiled or not, with dynamo
  reset only when a run cannot reuse what is compiled;
- :func:`use_compile_cache` / :func:`compile_cache_folder`: inductor's on-disk caches, shared by a
  campaign's trials on one node.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from ngpt_tune.config import Config
from ngpt_tune.flops import flops_per_token
from ngpt_tune.model import LanguageModel, build_model

log = logging.getLogger(__name__)

# The `compile: auto` rule (CUDA): compile when the compiled steps save more time than one
# compilation costs, i.e. when train.steps >= COMPILE_SECONDS / (eager step time * (1 - 1 /
# COMPILE_SPEEDUP)), the eager step time estimated from the model's FLOPs at EAGER_FLOPS_PER_S.
# These are assumptions, not measurements of the run (README "GPU path", benchmarks/RESULTS.md).
COMPILE_SECONDS = 60.0  # one cold compilation of a shape (CPU, inductor: 2x64 ~20 s, 11x768 ~80 s)
COMPILE_SPEEDUP = 1.3  # eager step time / compiled step time on a GPU (PyTorch 2's 1.3-2x)
EAGER_FLOPS_PER_S = 50e12  # the prior campaign's eager 11x768: 44.9K tokens/s on a GH200


def compile_break_even_steps(config: Config) -> int:
    """Steps after which ``compile: auto`` compiles (on CUDA): the compilation has paid off."""

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
        from torch._dynamo.utils import counters  # dynamo's internals: only once compiled

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


def compile_model(model: LanguageModel, config: Config,
                  device: torch.device) -> tuple[Callable, Callable, str | None]:
    """``model``'s forward and ``project_weights``, compiled per :func:`compile_mode`, and that
    mode (None: both eager)."""
    forward: Callable = model
    project: Callable = model.project_weights
    mode = compile_mode(config, device)
    if mode is not None:
        _CompiledShapes.prepare(compile_key(config, device, mode))
        forward = torch.compile(model, mode=None if mode == "default" else mode)
        if model.normalized:  # one fused norm-and-divide kernel per matrix
            project = torch.compile(model.project_weights)
    return forward, project, mode
