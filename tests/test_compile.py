"""The GPU path's compile and dtype branches, exercised on a CPU.

Compiling on a CPU (inductor's C++ backend) takes seconds to a minute even for a tiny model:
the tests that compile are few, tiny and marked slow.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
from conftest import tiny_config

from ngpt_tune.compiling import COMPILE_SECONDS, compile_break_even_steps, compile_mode
from ngpt_tune.config import Config
from ngpt_tune.model import build_model
from ngpt_tune.train import fit

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # compile_mode only reads the device's type: no GPU needed


def losses(config) -> list[float]:
    """Train and val loss at every evaluation, in that order."""
    reports = []
    fit(config, report=lambda m, save: reports.append(m))
    return [r[key] for r in reports for key in ("train_loss", "val_loss")]


def unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


@pytest.mark.slow
def test_compiled_training_equals_eager_and_compiles_once_per_shape():
    """A few compiled steps give eager's losses within 1e-4; a second trial of the same shapes
    with another alpha and logit scale compiles nothing new (as in a reused Ray worker)."""
    base = {"train.steps": 3, "train.eval_every": 3, "model.logit_scale": 10.0}
    eager = losses(tiny_config(**base, **{"train.compile": "off"}))
    compiled = losses(tiny_config(**base, **{"train.compile": "on"}))
    assert compiled == pytest.approx(eager, abs=1e-4)
    graphs = unique_graphs()
    second = {**base, "model.alpha": 0.28, "model.logit_scale": 15.0, "model.gate_init": 1.0}
    again = losses(tiny_config(**second, **{"train.compile": "on"}))
    assert unique_graphs() == graphs  # the same graphs served the second trial
    assert again == pytest.approx(losses(tiny_config(**second, **{"train.compile": "off"})),
                                  abs=1e-4)


@pytest.mark.parametrize("kw", [{}, {"model.gated_residuals": True},
                                {"model.arch": "gpt"}], ids=["ngpt", "gated", "gpt"])
def test_no_graph_breaks_in_the_step(kw):
    config = tiny_config(**kw)
    torch.manual_seed(0)
    model = build_model(config.model)
    x = torch.randint(0, config.model.vocab_size, (2, config.model.block_size))
    explained = torch._dynamo.explain(model)(x, x, return_logits=False)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    if model.normalized:  # GPT's project_weights does nothing and is not compiled
        projection = torch._dynamo.explain(model.project_weights)()
        assert (projection.graph_count, projection.graph_break_count) == (1, 0)


def test_bfloat16_autocast_trains_close_to_float32():
    base = {"train.steps": 20, "train.eval_every": 10}
    f32 = losses(tiny_config(**base, **{"train.dtype": "float32"}))
    bf16 = losses(tiny_config(**base, **{"train.dtype": "bfloat16"}))
    assert all(math.isfinite(v) for v in bf16)
    assert bf16[-1] < bf16[1]  # the val loss falls
    assert bf16[-1] == pytest.approx(f32[-1], rel=0.02)


def test_reduce_overhead_on_a_cpu_falls_back_with_a_log_line(caplog):
    config = tiny_config(**{"train.compile": "reduce-overhead"})
    with caplog.at_level(logging.WARNING, logger="ngpt_tune.compiling"):
        assert compile_mode(config, CPU) == "default"
    assert "reduce-overhead needs CUDA" in caplog.text
    assert compile_mode(config, CUDA) == "reduce-overhead"


def test_compile_auto_pays_for_itself():
    """auto: never on a CPU; on CUDA only for runs longer than the break-even step count."""
    prior = Config.from_dict({  # the prior campaign's production trial: 400 steps at 11x768
        "model": {"n_layer": 11, "n_embd": 768, "n_head": 12, "block_size": 128},
        "data": {"batch_size": 32}, "train": {"steps": 400}})
    break_even = compile_break_even_steps(prior)
    assert 400 < break_even < 10_000
    assert compile_mode(prior, CUDA) is None
    long = prior.override({"train.steps": break_even})
    assert compile_mode(long, CUDA) == "default"
    assert compile_mode(long, CPU) is None
    assert compile_mode(prior.override({"train.compile": "on"}), CUDA) == "default"
    assert compile_mode(long.override({"train.compile": "off"}), CUDA) is None
    # a bigger batch makes each step longer: fewer steps to break even
    assert compile_break_even_steps(prior.override({"data.batch_size": 64})) < break_even
    assert COMPILE_SECONDS > 0
