"""Cooled rungs in the plain loop: a branch leaves the main run bit-identical, reports its own
loss at the milestones only, counts its tokens, and gives the same values after a resume."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_config

from ngpt_tune.branches import CooledRungs, Snapshot, milestone_steps
from ngpt_tune.optim import cooldown_multiplier, lr_multiplier
from ngpt_tune.train import Trainer, fit

# 8 steps, evaluations every 2: milestones at steps 2 and 3 are judged at 2 and 4
RUNGS = CooledRungs(at_steps=(2, 3), fraction=0.5)
SHORT = {"train.steps": 8, "train.eval_every": 2, "data.val_tokens": 256}


def reports_of(config, **kwargs):
    reports = []
    fit(config, report=lambda m, save: reports.append(m), **kwargs)
    return reports


@pytest.mark.parametrize("overrides", [{}, {"optim.name": "muon", "model.proj_every": 3,
                                            "optim.schedule": "wsd", "optim.warmup_steps": 2}],
                         ids=["adamw-cosine", "muon-wsd"])
def test_branches_leave_the_main_run_bit_identical(overrides):
    config = tiny_config(**SHORT, **overrides)
    plain = reports_of(config)
    cooled = reports_of(config, cooled_rungs=RUNGS)
    assert [r["step"] for r in cooled] == [2, 4, 6, 8]
    for p, c in zip(plain, cooled):  # the run's own numbers, to the bit
        assert (c["val_loss_raw"], c["train_loss"], c["lr"], c["projections"]) == \
            (p["val_loss"], p["train_loss"], p["lr"], p["projections"])
        assert c["tokens_seen"] == p["tokens_seen"]
    assert [r["cooled"] for r in cooled] == [True, True, False, False]
    assert [r["val_loss"] == r["val_loss_raw"] for r in cooled] == [False, False, True, True]
    # branches of round(0.5 * 2) = 1 and round(0.5 * 4) = 2 steps, 128 tokens each
    assert [r["branch_tokens"] for r in cooled] == [128, 384, 384, 384]
    assert all(r["branch_tokens"] == 0 for r in plain)


def test_a_cooled_branch_beats_the_raw_loss_at_a_high_learning_rate():
    """The point of the branch: mid-schedule at a high lr, the cooldown shows a lower loss."""
    config = tiny_config(**{"optim.lr": 3e-2, "optim.schedule": "wsd", "train.steps": 24,
                            "data.val_tokens": 512,
                            "train.eval_every": 12})
    first = reports_of(config, cooled_rungs=CooledRungs(at_steps=(12,), fraction=0.5))[0]
    assert first["cooled"] and first["val_loss"] < first["val_loss_raw"]


def test_the_branch_decays_from_the_schedule_to_the_floor(monkeypatch):
    """The branch's learning rates: from where the main schedule stands, down to
    min_lr_ratio at its last step, in cooldown_shape; the main run's lr is put back."""
    config = tiny_config(**SHORT, **{"optim.cooldown_shape": "linear"})
    seen: list[float] = []
    original = Trainer.train_step

    def spy(self, lr_mult=None):
        if lr_mult is not None:
            seen.append(lr_mult)
        return original(self, lr_mult)

    monkeypatch.setattr(Trainer, "train_step", spy)
    reports_of(config, cooled_rungs=CooledRungs(at_steps=(4,), fraction=1.0))
    start = lr_multiplier(4, 8, config.optim)  # cosine, a little below the peak
    assert seen == pytest.approx([cooldown_multiplier(i, 4, config.optim, peak=start)
                                  for i in range(1, 5)])
    assert seen[-1] == pytest.approx(config.optim.min_lr_ratio)


def test_resume_gives_the_same_rung_values(tmp_path):
    """A run killed after its step-2 checkpoint (and first branch) resumes with the same
    cooled values and the same branch token count as the uninterrupted run."""
    config = tiny_config(**SHORT)
    straight = reports_of(config, cooled_rungs=RUNGS)

    def die_after_2(metrics, save):
        if metrics["step"] == 2:
            save(tmp_path)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, report=die_after_2, checkpoint_every=2, cooled_rungs=RUNGS)
    resumed = reports_of(config, resume_from=tmp_path, cooled_rungs=RUNGS)
    assert resumed == [{**r, "elapsed_s": s["elapsed_s"], "tokens_per_s": s["tokens_per_s"]}
                       for r, s in zip(straight[1:], resumed)]


def test_snapshot_keeps_storage_and_restores_in_place():
    """No new tensors: parameters and optimiser moments keep their storage (what a compiled
    model and CUDA graphs hold on to), and their values come back."""
    trainer = Trainer.create(tiny_config(**SHORT), torch.device("cpu"))
    for _ in range(3):
        trainer.train_step()
    params = {n: (p.data_ptr(), p.detach().clone()) for n, p in trainer.model.named_parameters()}
    moments = {id(p): s["exp_avg"].data_ptr() for p, s in trainer.optimizers[0].state.items()}
    saved = Snapshot(trainer)
    for _ in range(2):
        trainer.train_step(0.5)
    saved.restore(trainer)
    assert trainer.step == 3
    for n, p in trainer.model.named_parameters():
        assert p.data_ptr() == params[n][0] and torch.equal(p, params[n][1])
    assert {id(p): s["exp_avg"].data_ptr()
            for p, s in trainer.optimizers[0].state.items()} == moments
    trainer.release()


def test_milestones_become_steps():
    # tokens: 128 per step; a milestone between steps is reached at the next one
    assert milestone_steps([640.0, 1280.0, 2560.0], time_attr="tokens_seen",
                           tokens_per_step=128, total_steps=20) == (5, 10)
    assert milestone_steps([700.0], time_attr="tokens_seen", tokens_per_step=128,
                           total_steps=20) == (6,)
    assert milestone_steps([5.0, 10.0, 20.0], time_attr="step", tokens_per_step=128,
                           total_steps=20) == (5, 10)
    assert CooledRungs((6,), 0.1).due(10, 5, 20) and not CooledRungs((6,), 0.1).due(5, 5, 20)
    assert not CooledRungs((20,), 0.1).due(20, 5, 20)  # the last step is the run's own
    with pytest.raises(ValueError, match="fraction"):
        CooledRungs((5,), 0.0)
    assert math.isfinite(CooledRungs((5,), 1.0).length(5))
