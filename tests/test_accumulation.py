"""Gradient accumulation (``data.micro_batch_size``): a batch run as micro-batches gives the
same loss, the same gradients and the same training run as the batch in one piece, for nGPT,
the GPT baseline and Muon."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from ngpt_tune.errors import ConfigError
from ngpt_tune.train import Trainer, fit

ARMS = {"ngpt": {}, "gpt": {"model.arch": "gpt"}, "muon": {"optim.name": "muon"}}


def _trainer(micro: int, **overrides) -> Trainer:
    config = tiny_config(**{"data.batch_size": 8, "data.micro_batch_size": micro, **overrides})
    return Trainer.create(config, torch.device("cpu"))


@pytest.mark.parametrize("arm", ["ngpt", "gpt"])  # Muon changes the step, not the gradients
def test_micro_batches_give_the_batch_loss_and_gradients(arm):
    whole, pieces = _trainer(0, **ARMS[arm]), _trainer(2, **ARMS[arm])  # 1 x 8 rows, 4 x 2
    x, y = whole.loader.next_batch()
    loss_whole, loss_pieces = whole.accumulate(x, y), pieces.accumulate(x, y)
    assert loss_pieces.item() == pytest.approx(loss_whole.item(), rel=1e-6)
    grads = [(name, p.grad, q.grad) for (name, p), q in
             zip(whole.model.named_parameters(), pieces.model.parameters())]
    assert len(grads) > 5 and all(g is not None and h is not None for _, g, h in grads)
    for name, g, h in grads:
        torch.testing.assert_close(h, g, rtol=1e-5, atol=1e-7, msg=name)
    assert whole.evaluate() == pytest.approx(pieces.evaluate(), rel=1e-6)  # the same val set


@pytest.mark.parametrize("arm", ["muon"])
def test_a_run_in_micro_batches_is_the_same_run(arm):
    """6 optimiser steps of nGPT under Muon (projections, clipping and Muon's
    orthogonalisation included)."""
    runs = []
    for micro in (0, 4):
        reports = []
        fit(tiny_config(**{"data.batch_size": 8, "data.micro_batch_size": micro,
                           "train.steps": 6, "train.eval_every": 3, **ARMS[arm]}),
            report=lambda m, save, out=reports: out.append(m))
        runs.append(reports)
    whole, pieces = runs
    assert [r["tokens_seen"] for r in pieces] == [r["tokens_seen"] for r in whole]
    for a, b in zip(whole, pieces):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)


def test_the_batch_must_be_a_multiple_of_the_micro_batch():
    with pytest.raises(ConfigError, match="key 'data.micro_batch_size': batch_size 8 is not a "
                                          "multiple of micro_batch_size 3"):
        tiny_config(**{"data.batch_size": 8, "data.micro_batch_size": 3})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_micro_batches_on_cuda_in_bf16():
    """Under bf16 autocast the pieces round differently: the same loss to 1e-3 and gradients
    pointing the same way (cosine > 0.99, norms within 2%)."""
    configs = [tiny_config(**{"data.batch_size": 8, "data.micro_batch_size": micro,
                              "train.device": "cuda", "train.dtype": "bfloat16"})
               for micro in (0, 2)]
    whole, pieces = (Trainer.create(c, torch.device("cuda")) for c in configs)
    x, y = whole.loader.next_batch(whole.device)
    assert pieces.accumulate(x, y).item() == pytest.approx(whole.accumulate(x, y).item(),
                                                           rel=1e-3)
    for (name, p), q in zip(whole.model.named_parameters(), pieces.model.parameters()):
        g, h = p.grad.flatten().float(), q.grad.flatten().float()
        assert torch.nn.functional.cosine_similarity(g, h, dim=0) > 0.99, name
        assert h.norm().item() == pytest.approx(g.norm().item(), rel=0.02), name
