"""Optimisers with two learning rates, Muon's orthogonalisation, and the lr schedule."""

from __future__ import annotations

import pytest
import torch

from ngpt_tune.config import ModelConfig, OptimConfig
from ngpt_tune.model import build_model
from ngpt_tune.optim import Muon, build_optimizers, lr_multiplier, orthogonalize


def test_orthogonalize_flattens_the_spectrum():
    torch.manual_seed(0)
    g = torch.randn(48, 16) @ torch.diag(torch.logspace(-1, 0, 16))  # condition number 10
    s = torch.linalg.svdvals(orthogonalize(g, steps=5))
    assert s.min() > 0.5 and s.max() < 1.3


@pytest.mark.parametrize("name", ["adamw", "adam", "muon"])
def test_every_optimizer_steps_every_parameter(name):
    torch.manual_seed(0)
    m = build_model(ModelConfig(n_layer=1, n_embd=32, n_head=2, block_size=8, vocab_size=256))
    opts = build_optimizers(m, OptimConfig(name=name, lr=1e-2))
    assert (name == "muon") == any(isinstance(o, Muon) for o in opts)
    before = [p.detach().clone() for p in m.parameters()]
    _, loss = m(torch.randint(0, 256, (2, 8)), torch.randint(0, 256, (2, 8)))
    loss.backward()
    for o in opts:
        o.step()
    changed = [not torch.equal(a, p) for a, p in zip(before, m.parameters())]
    assert all(changed)


def test_vectors_get_the_other_learning_rate():
    m = build_model(ModelConfig(n_layer=1, n_embd=32, n_head=2, block_size=8, vocab_size=256))
    (adam,) = build_optimizers(m, OptimConfig(lr=1e-3, lr_other_scale=0.3, weight_decay=0.1))
    vector_ids = {id(p) for p in m.param_groups()["vector"]}
    for group in adam.param_groups:
        is_vector = {id(p) for p in group["params"]} <= vector_ids
        assert group["lr"] == pytest.approx(3e-4 if is_vector else 1e-3)
        assert group["weight_decay"] == (0.0 if is_vector else 0.1)


def test_lr_schedule():
    cfg = OptimConfig(warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_multiplier(0, 100, cfg) == pytest.approx(0.1)
    assert lr_multiplier(9, 100, cfg) == pytest.approx(1.0)
    assert lr_multiplier(55, 100, cfg) == pytest.approx(0.55)  # half-way down the cosine
    assert lr_multiplier(100, 100, cfg) == pytest.approx(0.1)
    linear = OptimConfig(schedule="linear", min_lr_ratio=0.0)
    assert lr_multiplier(25, 100, linear) == pytest.approx(0.75)
    assert lr_multiplier(70, 100, OptimConfig(schedule="constant")) == 1.0
