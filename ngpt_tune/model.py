"""nGPT (the normalized Transformer, Loshchilov et al. 2024, arXiv 2410.01131) and a GPT baseline.

Read top to bottom: shared pieces (rotary embedding, learned scales), the nGPT block, the GPT
block, then the two models. Shapes: B batch, T time, C = n_embd, H heads, D = C / H.

nGPT keeps every embedding row and every weight matrix on the unit sphere along the d_model
axis (``project_weights``, called by the training loop after optimiser steps) and moves the
hidden state along the sphere: ``h <- Norm(h + alpha * (Norm(block(h)) - h))``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ngpt_tune.config import ModelConfig

VOCAB_MULTIPLE = 64  # embedding rows padded to a multiple of 64 for fast matmuls


EPS = 1e-6  # norms below this are clamped (as F.normalize's eps)


class _Unit(torch.autograd.Function):
    """``x / max(|x|, eps)`` along the last axis, with a hand-written backward.

    The closed form ``(g - y <g, y>) / |x|`` makes fewer passes over the tensor than
    autograd's backward of ``F.normalize``. Timings: benchmarks/RESULTS.md.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        clamped = norm.clamp_min(EPS)
        y = x / clamped
        ctx.save_for_backward(y, clamped, norm >= EPS)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        y, clamped, on_sphere = ctx.saved_tensors
        # the radial part of g is removed only where the norm was not clamped (there y = x/eps)
        radial = torch.linalg.vecdot(g, y, dim=-1).unsqueeze(-1) * on_sphere
        return (g - y * radial) / clamped


def unit(x: torch.Tensor) -> torch.Tensor:
    """Project onto the unit sphere along the last axis."""
    return _Unit.apply(x)


class _Head(torch.autograd.Function):
    """Logits ``h @ (s * W[:V])^T`` for a vocabulary-padded (V_pad, C) output embedding W and
    optional per-row scales s (V_pad,), with a backward written for eager CPU runs.

    Autograd's backward makes several extra passes over the (V, C) matrix (the scale's
    products, a zero-filled copy for the padding slice); this one writes W's gradient in
    place. Timings: benchmarks/RESULTS.md.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None,
                vocab: int) -> torch.Tensor:
        w = weight[:vocab]
        if scale is not None:
            w = w * scale[:vocab, None]
        ctx.vocab = vocab
        ctx.save_for_backward(h, weight, scale, w)
        return F.linear(h, w)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        h, weight, scale, w = ctx.saved_tensors
        V = ctx.vocab
        g2 = g.reshape(-1, g.size(-1))  # (N, V)
        grad_h = (g2 @ w).view_as(h) if ctx.needs_input_grad[0] else None
        grad_w = torch.empty_like(weight)
        torch.mm(g2.T, h.reshape(-1, h.size(-1)), out=grad_w[:V])  # d(s * W): (V, C)
        grad_w[V:].zero_()  # padding rows are never scored
        grad_s = None
        if scale is not None:
            grad_s = torch.zeros_like(scale)
            grad_s[:V] = torch.einsum("vc,vc->v", grad_w[:V], weight[:V])
            grad_w[:V] *= scale[:V, None]
        return grad_h, grad_w, grad_s, None


class Rotary(nn.Module):
    """Rotary position embedding (RoPE), applied to (B, T, H, D) queries and keys (or to
    queries and keys together as (B, T, 2H, D): one set of kernels for both)."""

    def __init__(self, head_dim: int, block_size: int, base: float):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(block_size, dtype=torch.float32), inv_freq)  # (T, D/2)
        self.register_buffer("cos", angles.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", angles.sin()[None, :, None, :], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.size(1)
        cos, sin = self.cos[:, :T].to(x.dtype), self.sin[:, :T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Scale(nn.Module):
    """A learned scale stored as ``s * init/stored_init`` (the paper's init/scale trick).

    The parameter starts at ``stored_init`` while the effective value starts at ``init``; a
    small ``stored_init`` gives the scale a larger effective learning rate under Adam.
    """

    def __init__(self, size: int, *, init: float, stored_init: float, learned: bool = True):
        super().__init__()
        value = torch.full((size,), float(stored_init))
        if learned:
            self.s = nn.Parameter(value)
        else:
            self.register_buffer("s", value, persistent=False)
        # a tensor, not a Python float: alpha's factor differs between trials, and a float
        # would be compiled in as a constant (one graph per trial instead of one per shape)
        self.register_buffer("factor", torch.tensor(init / stored_init), persistent=False)
        self.learned = learned

    def forward(self) -> torch.Tensor:
        return self.s * self.factor


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention with RoPE; nGPT normalises q, k and scales them by s_qk."""

    def __init__(self, cfg: ModelConfig, rotary: Rotary, *, normalized: bool):
        super().__init__()
        C = cfg.n_embd
        self.n_head, self.head_dim, self.normalized = cfg.n_head, cfg.head_dim, normalized
        self.qkv = nn.Linear(C, 3 * C, bias=False)  # rows are q, k, v weights along d_model
        self.proj = nn.Linear(C, C, bias=False)
        self.rotary = rotary
        if normalized:
            # s_qk per head dimension, effective init 1, stored at 1/sqrt(C); softmax scale
            # sqrt(D) because q.k of unit vectors is a cosine in [-1, 1].
            stored_init = C**-0.5
            self.s_qk = Scale(C, init=1.0, stored_init=stored_init, learned=cfg.learned_qk_scale)
            self.softmax_scale = math.sqrt(self.head_dim)
            # (s q).(s k) = (s^2 q).k: only q is scaled, by the stored s^2, and the constant
            # factor^2 = C joins the softmax scale (a float that depends on the shape only)
            self.score_scale = self.softmax_scale / stored_init**2
        else:
            self.softmax_scale = 1.0 / math.sqrt(self.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        H, D = self.n_head, self.head_dim
        # split/chunk, not slicing: their backward is one concatenation, no zero-filled copies
        qk, v = self.qkv(x).view(B, T, 3 * H, D).split([2 * H, H], dim=2)
        qk = self.rotary(qk)  # (B, T, 2H, D): q and k rotated together
        scale = self.softmax_scale
        if self.normalized:
            qk = unit(qk)
        q, k = qk.chunk(2, dim=2)  # (B, T, H, D) each
        if self.normalized and self.s_qk.learned:
            q = q * self.s_qk.s.square().view(H, D)
            scale = self.score_scale
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, scale=scale,
        )  # (B, H, T, D)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    """``proj(u * silu(v))``; nGPT scales u by s_u and v by s_v * sqrt(C)."""

    def __init__(self, cfg: ModelConfig, *, normalized: bool):
        super().__init__()
        C, hidden = cfg.n_embd, cfg.mlp_hidden
        self.fc = nn.Linear(C, 2 * hidden, bias=False)  # rows: u then v, along d_model
        self.proj = nn.Linear(hidden, C, bias=False)
        self.normalized = normalized
        if normalized:
            learned = cfg.learned_mlp_scale
            self.s_u = Scale(hidden, init=1.0, stored_init=1.0, learned=learned)
            self.s_v = Scale(hidden, init=1.0, stored_init=1.0, learned=learned)
            self.v_factor = math.sqrt(C)  # keeps silu's input in its non-linear range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.fc.weight  # (2 * hidden, C)
        if self.normalized:
            # s_u and s_v * sqrt(C) scale the rows of the weight: the same product as scaling
            # the (B, T, hidden) activations, for a fraction of the memory traffic
            scale = torch.cat((self.s_u(), self.s_v() * self.v_factor))
            weight = weight * scale[:, None]
        u, v = F.linear(x, weight).chunk(2, dim=-1)
        return self.proj(u * F.silu(v))


class ResidualStep(nn.Module):
    """nGPT's hidden-state update for one branch: ``Norm(h + a * (Norm(out) - h))``.

    ``a`` is the learned eigen learning rate (per channel or one scalar), optionally times
    ``sigmoid(g)``, the prior campaign's residual gate. ``gate`` may be shared with the other branch.
    """

    def __init__(self, cfg: ModelConfig, gate: nn.Parameter | None):
        super().__init__()
        size = cfg.n_embd if cfg.alpha_mode == "vector" else 1
        self.alpha = Scale(size, init=cfg.alpha, stored_init=cfg.n_embd**-0.5)
        self.gate = gate

    def forward(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        a = self.alpha().abs()
        if self.gate is not None:
            a = a * torch.sigmoid(self.gate)
        u = unit(out)
        if u.dtype != h.dtype:  # under autocast: compute in the wider type, as h + a (u - h) would
            dtype = torch.promote_types(u.dtype, h.dtype)
            h, u = h.to(dtype), u.to(dtype)
        return unit(torch.lerp(h, u, a))  # h + a (u - h), one kernel; h is unit-norm


def _gate(cfg: ModelConfig) -> nn.Parameter:
    size = cfg.n_embd if cfg.gate_mode == "channel" else 1
    return nn.Parameter(torch.full((size,), float(cfg.gate_init)))


class NormalizedBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, rotary: Rotary):
        super().__init__()
        self.attn = CausalSelfAttention(cfg, rotary, normalized=True)
        self.mlp = SwiGLU(cfg, normalized=True)
        attn_gate = mlp_gate = None
        if cfg.gated_residuals:
            attn_gate = _gate(cfg)
            mlp_gate = attn_gate if cfg.shared_gates else _gate(cfg)
        self.attn_step = ResidualStep(cfg, attn_gate)
        self.mlp_step = ResidualStep(cfg, mlp_gate)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.attn_step(h, self.attn(h))
        return self.mlp_step(h, self.mlp(h))


class PreNormBlock(nn.Module):
    """The standard GPT block: ``x + attn(rms(x))``, ``x + mlp(rms(x))``."""

    def __init__(self, cfg: ModelConfig, rotary: Rotary):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg, rotary, normalized=False)
        self.mlp_norm = nn.RMSNorm(cfg.n_embd)
        self.mlp = SwiGLU(cfg, normalized=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class LanguageModel(nn.Module):
    """Embedding, a stack of blocks, head; ``forward(idx, targets)`` -> (logits, loss)."""

    normalized = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = cfg.vocab_size
        self.padded_vocab = -(-cfg.vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
        self.wte = nn.Embedding(self.padded_vocab, cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, self.padded_vocab, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.rotary = Rotary(cfg.head_dim, cfg.block_size, cfg.rope_base)

    def head(self, h: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over the real vocabulary (padding rows are never scored): ``h @ W^T``, or
        with ``scale`` (V_pad,) ``h @ (scale * W)^T``, scaling the (V, C) weight rather than
        the (B, T, V) logits."""
        V = self.vocab_size
        if torch.is_autocast_enabled(h.device.type) or torch.compiler.is_compiling():
            # compiled (CUDA): inductor fuses the slicing and scaling passes itself
            weight = self.lm_head.weight[:V]
            return F.linear(h, weight if scale is None else weight * scale[:V, None])
        return _Head.apply(h, self.lm_head.weight, scale, V)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
        return_logits: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(logits, loss)``; ``return_logits=False`` gives ``(None, loss)``, which spares a
        compiled model from writing out the (B, T, V) float32 logits (the training loop)."""
        h = self.wte(idx)  # (B, T, C)
        for block in self.blocks:
            h = block(h)
        logits = self.logits(h)  # (B, T, V): padded ids are never scored
        if targets is None:
            return logits.float(), None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1))
        return (logits.float() if return_logits else None), loss

    def num_params(self) -> int:
        """Trainable parameters, without the embedding rows added by vocabulary padding."""
        total = sum(p.numel() for p in self.parameters())
        pad = self.padded_vocab - self.cfg.vocab_size
        matrices = 1 if self.cfg.tie_embeddings else 2
        return total - matrices * pad * self.cfg.n_embd

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimiser treatment: ``matrix`` (hidden 2-D weights), ``embed``
        (embedding and head) and ``vector`` (scales, gates, alphas, norms)."""
        embed_ids = {id(self.wte.weight), id(self.lm_head.weight)}
        groups: dict[str, list[nn.Parameter]] = {"matrix": [], "embed": [], "vector": []}
        seen: set[int] = set()
        for p in self.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            kind = "embed" if id(p) in embed_ids else "matrix" if p.ndim == 2 else "vector"
            groups[kind].append(p)
        return groups

    @torch.no_grad()
    def project_weights(self) -> None:
        """Put weights back on the unit sphere (a no-op for the GPT baseline)."""


class NGPT(LanguageModel):
    normalized = True

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.blocks = nn.ModuleList(NormalizedBlock(cfg, self.rotary) for _ in range(cfg.n_layer))
        self.learned_logit_scale = cfg.logit_scale == "learned"
        if self.learned_logit_scale:
            # s_z per token, effective init 1, stored at 1/sqrt(C)
            self.s_z = Scale(self.padded_vocab, init=1.0, stored_init=cfg.n_embd**-0.5)
        else:  # a tensor, as Scale's factor: trials with other scales share one compiled graph
            self.register_buffer("fixed_logit_scale", torch.tensor(float(cfg.logit_scale)),
                                 persistent=False)
        for p in self.parameters():
            if p.ndim == 2:
                nn.init.normal_(p, std=cfg.n_embd**-0.5)
        self._sphere = self._sphere_groups()
        self.project_weights()

    def _sphere_groups(self) -> dict[int, list[nn.Parameter]]:
        """Matrices by the weight axis that is d_model: 1 for rows (wte, lm_head, qkv, fc),
        0 for columns (the two output projections, which write into d_model)."""
        rows = [self.wte.weight, self.lm_head.weight]
        cols = []
        for block in self.blocks:
            rows += [block.attn.qkv.weight, block.mlp.fc.weight]
            cols += [block.attn.proj.weight, block.mlp.proj.weight]
        unique_rows = list({id(p): p for p in rows}.values())  # tied embeddings appear once
        return {1: unique_rows, 0: cols}

    @torch.no_grad()
    def project_weights(self) -> None:
        for dim, params in self._sphere.items():
            norms = [torch.linalg.vector_norm(p, dim=dim, keepdim=True) for p in params]
            torch._foreach_clamp_min_(norms, 1e-6)
            torch._foreach_div_(params, norms)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        # cosine logits (rows of lm_head and h are unit vectors) times s_z; the scale is
        # folded into the (V, C) weight or the (B, T, C) input, never the (B, T, V) logits
        if self.learned_logit_scale:
            return self.head(h, self.s_z())
        return self.head(h * self.fixed_logit_scale)


class GPT(LanguageModel):
    """Plain pre-norm GPT (RMSNorm, RoPE, SwiGLU, untied): the residual stream is NOT
    normalised (NVIDIA's first nGPT baseline did that by mistake)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.blocks = nn.ModuleList(PreNormBlock(cfg, self.rotary) for _ in range(cfg.n_layer))
        self.final_norm = nn.RMSNorm(cfg.n_embd)
        for name, p in self.named_parameters():
            if p.ndim == 2:
                std = 0.02 / math.sqrt(2 * cfg.n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, std=std)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.final_norm(h))


def build_model(cfg: ModelConfig) -> LanguageModel:
    return NGPT(cfg) if cfg.arch == "ngpt" else GPT(cfg)
