"""nGPT stays on the sphere, the variants are what they say, every model is causal."""

from __future__ import annotations

import math

import pytest
import torch

from ngpt_tune.config import ModelConfig
from ngpt_tune.model import GPT, NGPT, build_model

SMALL = dict(n_layer=2, n_embd=32, n_head=2, block_size=16, vocab_size=1000)


def model(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(**{**SMALL, **kw}))


def sphere_matrices(m: NGPT) -> list[tuple[str, torch.Tensor, int]]:
    out = [("wte", m.wte.weight, 1), ("lm_head", m.lm_head.weight, 1)]
    for i, b in enumerate(m.blocks):
        out += [(f"{i}.qkv", b.attn.qkv.weight, 1), (f"{i}.fc", b.mlp.fc.weight, 1),
                (f"{i}.attn.proj", b.attn.proj.weight, 0), (f"{i}.mlp.proj", b.mlp.proj.weight, 0)]
    return out


def test_weights_unit_norm_along_d_model_after_projection():
    m = model()
    assert isinstance(m, NGPT)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p))  # as an optimiser step would, off the sphere
    m.project_weights()
    for name, w, dim in sphere_matrices(m):
        assert w.shape[dim] == SMALL["n_embd"], name  # the normalised axis is d_model
        norms = w.norm(dim=dim)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5), name


def test_hidden_states_stay_on_the_sphere():
    m = model(gated_residuals=True)
    seen = []
    for block in m.blocks:
        block.register_forward_hook(lambda mod, inp, out: seen.append(out.norm(dim=-1)))
    m(torch.randint(0, 1000, (2, 16)))
    assert len(seen) == 2
    for norms in seen:
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_gpt_residual_stream_is_not_normalised():
    m = model(arch="gpt")
    assert isinstance(m, GPT) and not m.normalized
    seen = []
    m.blocks[-1].register_forward_hook(lambda mod, inp, out: seen.append(out.norm(dim=-1)))
    m(torch.randint(0, 1000, (2, 16)))
    assert not torch.allclose(seen[0], torch.ones_like(seen[0]), atol=1e-2)


@pytest.mark.parametrize("kw", [{}, {"gated_residuals": True}, {"arch": "gpt"},
                                {"alpha_mode": "scalar", "logit_scale": 15.0}])
def test_causal(kw):
    m = model(**kw).eval()
    x = torch.randint(0, 1000, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 1000  # change the future
    with torch.no_grad():
        a, _ = m(x)
        b, _ = m(y)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-5)
    assert not torch.allclose(a[0, 10:], b[0, 10:], atol=1e-5)


def test_padded_vocab_is_never_predicted():
    m = model(vocab_size=1000)
    assert m.padded_vocab == 1024
    logits, loss = m(torch.randint(0, 1000, (2, 8)), torch.randint(0, 1000, (2, 8)))
    assert logits.shape[-1] == 1000
    assert loss.item() == pytest.approx(math.log(1000), abs=0.1)  # cosine logits start flat


def test_variant_switches():
    vector = model()
    assert vector.blocks[0].attn_step.alpha.s.shape == (32,)
    assert vector.blocks[0].attn_step.alpha().mean().item() == pytest.approx(0.05)
    assert model(alpha_mode="scalar").blocks[0].attn_step.alpha.s.shape == (1,)
    assert model(alpha=0.28).blocks[0].mlp_step.alpha()[0].item() == pytest.approx(0.28)
    fixed = model(logit_scale=15.0)
    assert not hasattr(fixed, "s_z") and fixed.fixed_logit_scale == 15.0
    gated = model(gated_residuals=True, gate_init=-2.0)
    gate = gated.blocks[0].attn_step.gate
    assert gate.shape == (32,) and gate[0].item() == -2.0
    assert gated.blocks[0].mlp_step.gate is not gate
    shared = model(gated_residuals=True, shared_gates=True)
    assert shared.blocks[0].mlp_step.gate is shared.blocks[0].attn_step.gate
    assert model(gated_residuals=True, gate_mode="layer").blocks[0].attn_step.gate.shape == (1,)
    no_qk = model(learned_qk_scale=False)
    assert "blocks.0.attn.s_qk.s" not in dict(no_qk.named_parameters())
    assert "blocks.0.attn.s_qk.s" in dict(vector.named_parameters())
    no_mlp = model(learned_mlp_scale=False)
    assert not any("s_u" in n for n, _ in no_mlp.named_parameters())
    tied = model(tie_embeddings=True)
    assert tied.lm_head.weight is tied.wte.weight


def test_param_groups_split_matrices_embeddings_and_vectors():
    m = model(gated_residuals=True)
    groups = m.param_groups()
    assert len(groups["embed"]) == 2
    assert all(p.ndim == 2 for p in groups["matrix"]) and len(groups["matrix"]) == 8
    assert all(p.ndim == 1 for p in groups["vector"])
    total = sum(len(g) for g in groups.values())
    assert total == len(list(m.parameters()))


def test_num_params_excludes_padding():
    m = model(vocab_size=1000)
    padded = sum(p.numel() for p in m.parameters())
    assert m.num_params() == padded - 2 * 24 * 32


def test_unit_backward_is_f_normalize_s():
    from ngpt_tune.model import EPS, unit

    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(unit, (x,))
    clamped = torch.randn(4, 8, dtype=torch.float64)
    clamped[1] *= EPS / 100  # a row under eps: scaled, not projected (as F.normalize)
    g = torch.randn(4, 8, dtype=torch.float64)
    ours = clamped.clone().requires_grad_()
    ref = clamped.clone().requires_grad_()
    unit(ours).backward(g)
    torch.nn.functional.normalize(ref, dim=-1, eps=EPS).backward(g)
    assert torch.allclose(unit(clamped), torch.nn.functional.normalize(clamped, dim=-1, eps=EPS))
    assert torch.allclose(ours.grad, ref.grad, rtol=1e-10, atol=0)


@pytest.mark.parametrize("scaled", [True, False])
def test_head_backward_is_autograd_s(scaled):
    from ngpt_tune.model import _Head

    torch.manual_seed(0)
    V, V_pad, C = 5, 8, 4
    h = torch.randn(2, 3, C, dtype=torch.float64, requires_grad=True)
    W = torch.randn(V_pad, C, dtype=torch.float64, requires_grad=True)
    s = torch.randn(V_pad, dtype=torch.float64, requires_grad=True) if scaled else None
    inputs = (h, W, s) if scaled else (h, W)

    def head(h, W, s=None):
        return _Head.apply(h, W, s, V)

    def reference(h, W, s=None):
        return torch.nn.functional.linear(h, (W if s is None else s[:, None] * W)[:V])

    assert torch.autograd.gradcheck(head, inputs)
    g = torch.randn(2, 3, V, dtype=torch.float64)
    ours = torch.autograd.grad(head(*inputs), inputs, g)
    ref = torch.autograd.grad(reference(*inputs), inputs, g)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert ours[1][V:].abs().sum() == 0  # padding rows get no gradient


@pytest.mark.parametrize("kw", [{}, {"logit_scale": 15.0}, {"arch": "gpt"}])
def test_head_paths_agree(kw, monkeypatch):
    """The eager path (_Head) and the compiled/autocast path (F.linear) give the same logits
    and gradients."""
    m = model(**kw)
    idx, targets = torch.randint(0, 1000, (2, 16)), torch.randint(0, 1000, (2, 16))

    def logits_and_grads():
        m.zero_grad()
        logits, loss = m(idx, targets)
        loss.backward()
        return logits.detach(), [p.grad.clone() for p in m.parameters()]

    eager = logits_and_grads()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    plain = logits_and_grads()
    assert torch.allclose(eager[0], plain[0], atol=1e-6)
    for a, b in zip(eager[1], plain[1]):
        assert torch.allclose(a, b, atol=1e-6)


def test_trial_varying_numbers_are_tensors():
    """alpha and a fixed logit scale reach the forward as buffers, not Python floats, so one
    compiled graph serves trials that differ in them (see tests/test_compile.py)."""
    a, b = model(alpha=0.15, logit_scale=10.0), model(alpha=0.28, logit_scale=15.0)
    floats = {}
    for m in (a, b):
        for name, mod in m.named_modules():
            for attr, value in vars(mod).items():
                if isinstance(value, float):
                    floats.setdefault((name, attr), set()).add(value)
    assert {k: v for k, v in floats.items() if len(v) > 1} == {}
    assert isinstance(a.blocks[0].attn_step.alpha.factor, torch.Tensor)
    assert a.fixed_logit_scale.item() == 10.0 and b.fixed_logit_scale.item() == 15.0
