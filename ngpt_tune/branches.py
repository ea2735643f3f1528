"""Cooled rungs: ASHA's rungs judged on a short cooldown branched from the run.

Mid-schedule, a high learning rate looks worse than it will end: the loss it would reach
after the decay is hidden by the noise the high rate keeps. At each ASHA milestone the loop can
branch a short cooldown from the run's current state (the learning rate decayed from where the
schedule stands to its floor, ``optim.min_lr_ratio``, in ``optim.cooldown_shape``, over
``fraction`` of the steps so far; Hägele et al. 2024), evaluate the branch, and put the
state back: model, optimisers, data position, RNGs and counters. The main run then goes on
bit for bit as if there had been no branch (``tests/test_branches.py``).

Everything stays on the device: the snapshot is a clone of each tensor where it lives, and the
restore copies it back in place, so the parameters and optimiser state keep their storage (a
compiled model, CUDA graphs included, reuses its graphs).
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ngpt_tune.optim import cooldown_multiplier, lr_multiplier

if TYPE_CHECKING:  # the trainer uses this module
    from ngpt_tune.train import Trainer


@dataclass(frozen=True)
class CooledRungs:
    """Where the loop branches and for how long.

    ``at_steps``: the steps of ASHA's milestones; the loop branches at the evaluation that
    first reaches each (the report ASHA records the rung from), never at the last step, whose
    value is the run's own cooled one. ``fraction``: a branch lasts ``fraction`` of the steps
    so far (at least one).
    """

    at_steps: tuple[int, ...]
    fraction: float

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"cooled rungs: fraction must be in (0, 1], got {self.fraction}")

    def due(self, step: int, window: int, total: int) -> bool:
        """Whether the evaluation at ``step``, ``window`` steps after the previous one, is the
        first to reach a milestone (decided from the step alone: the same after a resume)."""
        return step < total and any(step - window < m <= step for m in self.at_steps)

    def length(self, step: int) -> int:
        return max(1, round(self.fraction * step))


def milestone_steps(milestones: list[float], *, time_attr: str, tokens_per_step: int,
                    total_steps: int) -> tuple[int, ...]:
    """ASHA's milestones (in ``time_attr``: ``step`` or ``tokens_seen``) as the first step that
    reaches each, the ones before the run's last step only."""
    per_step = tokens_per_step if time_attr == "tokens_seen" else 1
    steps = {max(1, math.ceil(m / per_step - 1e-9)) for m in milestones}
    return tuple(sorted(s for s in steps if s < total_steps))


class Snapshot:
    """The run's state, cloned where it lives (no copy to the host but the RNGs' own)."""

    def __init__(self, trainer: Trainer):
        self.model = [t.detach().clone() for t in trainer.model.state_dict().values()]
        self.optim = [{p: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
                       for p, s in opt.state.items()} for opt in trainer.optimizers]
        self.lrs = [[g["lr"] for g in opt.param_groups] for opt in trainer.optimizers]
        self.loader = trainer.loader.state_dict()
        self.counters = (trainer.step, trainer.projections)
        self.rng: dict[str, Any] = {
            "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        }

    @torch.no_grad()
    def restore(self, trainer: Trainer) -> None:
        for target, saved in zip(trainer.model.state_dict().values(), self.model):
            target.copy_(saved)
        for opt, states, lrs in zip(trainer.optimizers, self.optim, self.lrs):
            for p in [p for p in opt.state if p not in states]:  # made by the branch
                del opt.state[p]
            for p, saved in states.items():
                state = opt.state[p]
                for k in [k for k in state if k not in saved]:
                    del state[k]
                for k, v in saved.items():
                    if torch.is_tensor(v) and torch.is_tensor(state.get(k)):
                        state[k].copy_(v)
                    else:
                        state[k] = v
            for group, lr in zip(opt.param_groups, lrs):
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
        trainer.loader.load_state_dict(self.loader)
        trainer.step, trainer.projections = self.counters
        torch.set_rng_state(self.rng["torch"])
        np.random.set_state(self.rng["numpy"])
        random.setstate(self.rng["python"])
        if self.rng["cuda"] is not None:
            torch.cuda.set_rng_state_all(self.rng["cuda"])


def cooled_loss(trainer: Trainer, length: int) -> float:
    """Train a ``length``-step cooldown from the trainer's state, evaluate it, put the state
    back; returns the branch's validation loss (inf if it diverged). The branch's steps are
    added to ``trainer.branch_steps``."""
    cfg = trainer.config.optim
    start = lr_multiplier(trainer.step, trainer.config.train.steps, cfg)
    # in the warmup the schedule may stand below the floor: the branch then holds its lr
    shape = dataclasses.replace(cfg, min_lr_ratio=min(cfg.min_lr_ratio, start))
    saved = Snapshot(trainer)
    loss_sum = torch.zeros((), device=trainer.device)
    try:
        for i in range(1, length + 1):
            loss_sum += trainer.train_step(cooldown_multiplier(i, length, shape, peak=start))
        value = trainer.evaluate() if math.isfinite(loss_sum.item()) else math.inf
    finally:
        saved.restore(trainer)
    trainer.branch_steps += length
    return value
