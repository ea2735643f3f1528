"""What a model costs: training FLOPs per token (6N for the matmuls plus attention, PaLM
appendix B), and the non-embedding parameter count a ladder's size axis uses."""

from __future__ import annotations

from ngpt_tune.config import ModelConfig


def flops_per_token(model: ModelConfig, n_params: int) -> float:
    """Forward + backward FLOPs per trained token.

    ``6 * n_params`` counts every weight's multiply-add forward and twice backward; attention
    scores and the weighted sum add ``12 * n_layer * n_embd * block_size`` (Chowdhery et al.
    2022, appendix B; causal masking is not discounted, as there).
    """
    return 6.0 * n_params + 12.0 * model.n_layer * model.n_embd * model.block_size


def non_embedding_params(model: ModelConfig) -> int:
    """Weights in the blocks: per layer 4 d^2 (q, k, v, out) + 3 d h (SwiGLU up, gate, down);
    the embedding and unembedding (vocabulary x d) and nGPT's scale vectors (O(d)) are left out."""
    d, h = model.n_embd, model.mlp_hidden
    return model.n_layer * (4 * d * d + 3 * d * h)
