"""Optimisers (AdamW, Adam, Muon + AdamW) with two learning rates, and the lr schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ngpt_tune.config import OptimConfig

# Coefficients of the quintic Newton-Schulz iteration tuned in modded-nanogpt: they push all
# singular values of the normalised matrix towards ~1 in five steps.
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int) -> torch.Tensor:
    """Approximate the nearest semi-orthogonal matrix ``U V^T`` of ``g = U S V^T``.

    ``g`` is one (rows, cols) matrix or a batch (n, rows, cols) of same-shape matrices,
    orthogonalised together: one batched matmul per iteration instead of one per matrix.
    """
    a, b, c = NS_COEFFS
    x = g.bfloat16() if g.is_cuda else g.float()
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    # spectral norm <= Frobenius norm <= 1, per matrix
    x = x / (torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    if tall:
        x = x.mT
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """MomentUm Orthogonalized by Newton-Schulz, for hidden 2-D weight matrices (one device).

    Each step: Nesterov momentum on the gradient, orthogonalise the update by ``ns_steps``
    quintic Newton-Schulz iterations, scale by ``sqrt(max(1, rows/cols))``, apply with ``lr``.
    """

    def __init__(self, params, *, lr: float = 0.02, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, weight_decay: float = 0.0):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                        weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            by_shape: dict[torch.Size, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.ndim != 2:
                    raise ValueError("Muon only optimises 2-D matrices")
                by_shape.setdefault(p.shape, []).append(p)
            for shape, params in by_shape.items():  # e.g. every layer's qkv at once
                self._step_same_shape(group, shape, params)

    def _step_same_shape(self, group: dict, shape: torch.Size, params: list[torch.Tensor]):
        grads = [p.grad for p in params]
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad)
            bufs.append(state["momentum_buffer"])
        momentum = group["momentum"]
        torch._foreach_lerp_(bufs, grads, 1 - momentum)
        g = torch._foreach_lerp(grads, bufs, momentum) if group["nesterov"] else bufs
        update = orthogonalize(torch.stack(g), group["ns_steps"])  # (n, rows, cols)
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
        scale = max(1.0, shape[0] / shape[1]) ** 0.5
        torch._foreach_add_(params, list(update.unbind(0)), alpha=-group["lr"] * scale)


def build_optimizers(model: nn.Module, cfg: OptimConfig) -> list[torch.optim.Optimizer]:
    """Optimisers for ``model.param_groups()``; every param group records its peak ``base_lr``.

    AdamW/Adam: matrices and embeddings at ``lr`` (with weight decay), vectors at
    ``lr * lr_other_scale`` (no decay). Muon: hidden matrices under Muon at ``muon_lr``, the
    rest under AdamW as above.
    """
    groups = model.param_groups()
    lr_other = cfg.lr * cfg.lr_other_scale
    adam_groups = [
        {"params": groups["embed"], "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": groups["vector"], "lr": lr_other, "weight_decay": 0.0},
    ]
    optimizers: list[torch.optim.Optimizer] = []
    if cfg.name == "muon":
        optimizers.append(Muon(groups["matrix"], lr=cfg.muon_lr, momentum=cfg.muon_momentum,
                               ns_steps=cfg.ns_steps, weight_decay=cfg.weight_decay))
    else:
        adam_groups.insert(0, {"params": groups["matrix"], "lr": cfg.lr,
                               "weight_decay": cfg.weight_decay})
    adam_cls = torch.optim.AdamW if cfg.name in ("adamw", "muon") else torch.optim.Adam
    adam_groups = [g for g in adam_groups if g["params"]]
    # fused: one kernel pass per tensor (read p, g, m, v; write p, m, v) on CUDA and on CPU,
    # where the default single-tensor loop makes ~10 passes (8x slower on a 50K x 256 matrix)
    optimizers.append(adam_cls(adam_groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                               fused=True))
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    return optimizers


def lr_multiplier(step: int, total: int, cfg: OptimConfig) -> float:
    """Linear warmup over ``warmup_steps``, then the schedule down to ``min_lr_ratio``.

    cosine/linear decay over every step after the warmup; wsd holds the peak and decays over
    the last ``cooldown_frac`` of the ``total`` steps (never into the warmup) in
    ``cooldown_shape``; constant stays at the peak.
    """
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant" or total <= cfg.warmup_steps:
        return 1.0
    if cfg.schedule == "wsd":
        start = max(cfg.warmup_steps, total - round(cfg.cooldown_frac * total))
        if step < start:
            return 1.0
        return cooldown_multiplier(step - start, total - start, cfg)
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape


def cooldown_multiplier(step: int, length: int, cfg: OptimConfig, *, peak: float = 1.0) -> float:
    """Step ``step`` of a ``length``-step cooldown in ``cooldown_shape``, from ``peak`` (a
    multiplier of the peak lr) down to ``min_lr_ratio``, which it reaches at ``step == length``."""
    progress = min(1.0, step / max(1, length))
    if cfg.cooldown_shape == "1-sqrt":
        shape = 1 - math.sqrt(progress)
    elif cfg.cooldown_shape == "cosine":
        shape = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        shape = 1 - progress
    return cfg.min_lr_ratio + (peak - cfg.min_lr_ratio) * shape


def set_lr(optimizers: list[torch.optim.Optimizer], multiplier: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * multiplier
