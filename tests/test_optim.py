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


def test_wsd_holds_the_peak_then_cools_down_in_its_shape():
    cfg = OptimConfig(warmup_steps=10, schedule="wsd", min_lr_ratio=0.0, cooldown_frac=0.2,
                      cooldown_shape="linear")
    curve = [lr_multiplier(s, 100, cfg) for s in range(101)]
    assert curve[4] == pytest.approx(0.5)  # warmup as under every schedule
    assert curve[9:81] == [1.0] * 72  # stable until the last 20 of 100 steps
    assert curve[90] == pytest.approx(0.5)  # half-way down the linear cooldown
    assert curve[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(curve[9:], curve[10:]))  # never rises after the warmup
    sqrt = OptimConfig(schedule="wsd", min_lr_ratio=0.1, cooldown_frac=0.2,
                       cooldown_shape="1-sqrt")
    assert lr_multiplier(80, 100, sqrt) == pytest.approx(1.0)
    assert lr_multiplier(85, 100, sqrt) == pytest.approx(0.1 + 0.9 * (1 - 0.25 ** 0.5))
    assert lr_multiplier(100, 100, sqrt) == pytest.approx(0.1)
    cos = OptimConfig(schedule="wsd", min_lr_ratio=0.0, cooldown_frac=0.5, cooldown_shape="cosine")
    assert lr_multiplier(75, 100, cos) == pytest.approx(0.5)


def test_wsd_cooldown_never_eats_the_warmup():
    cfg = OptimConfig(warmup_steps=30, schedule="wsd", min_lr_ratio=0.0, cooldown_frac=1.0,
                      cooldown_shape="linear")
    assert lr_multiplier(29, 100, cfg) == pytest.approx(1.0)
    assert lr_multiplier(65, 100, cfg) == pytest.approx(0.5)  # 70 steps of cooldown from 30


@pytest.mark.parametrize("bad", [0.0, 1.5])
def test_wsd_cooldown_fraction_out_of_range_names_the_key(bad):
    from ngpt_tune.config import Config
    from ngpt_tune.errors import ConfigError
    with pytest.raises(ConfigError, match="optim.cooldown_frac"):
        Config.from_dict({"optim": {"schedule": "wsd", "cooldown_frac": bad}})
