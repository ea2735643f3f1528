"""Cooled rungs in the plain loop: a branch leaves the main run bit-identical, reports its own
loss at the milestones only, counts its tokens, and gives the same values after a resume."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from analysis_fixtures import make_compare
from conftest import tiny_config

from analysis import load_experiment, summarize
from ngpt_tune.branches import CooledRungs, Snapshot, milestone_steps
from ngpt_tune.errors import ConfigError
from ngpt_tune.experiment import RESULT_FILE
from ngpt_tune.optim import cooldown_multiplier, lr_multiplier
from ngpt_tune.spec import SchedulerSpec, parse_spec_text
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


SPEC = """
name: cooled
base: {train: {steps: 40, eval_every: 5}, data: {batch_size: 4}, model: {block_size: 32}}
search: {optim.lr: {loguniform: [1.0e-3, 1.0e-1]}}
scheduler: {name: asha, cooled_rungs: {fraction: 0.2}}
"""


def test_the_spec_gives_each_trial_the_rungs_as_steps():
    """scheduler.cooled_rungs: ASHA's rungs (at 1/4 and 1/2 of 40 steps of 128 tokens) as the
    trial's steps; the confirmation stage's FIFO spec and a plain spec branch nowhere."""
    spec = parse_spec_text(SPEC)
    assert spec.scheduler_record()["cooled_rungs"] == {"fraction": 0.2}
    rungs = spec.cooled_rungs(spec.base_config)
    assert rungs == CooledRungs(at_steps=(10, 20), fraction=0.2)
    # a larger batch reaches the same token budgets at other steps (max_t before its end)
    assert spec.cooled_rungs(spec.base_config.override({"data.batch_size": 8})).at_steps == \
        (5, 10, 20)
    confirm = dataclasses.replace(spec, scheduler=SchedulerSpec(name="fifo"))
    assert confirm.cooled_rungs(spec.base_config) is None
    plain = parse_spec_text(SPEC.replace(", cooled_rungs: {fraction: 0.2}", ""))
    assert plain.cooled_rungs(plain.base_config) is None
    assert parse_spec_text(SPEC.replace("{fraction: 0.2}", "true")).scheduler.cooled_rungs \
        .fraction == 0.1


@pytest.mark.parametrize("change,message", [
    ("{fraction: 0.2}", "scheduler.cooled_rungs.fraction': must be in (0, 1], got 0.0"),
    ("{fractoin: 0.2}", "scheduler.cooled_rungs.fractoin"),
    ("name: asha", "scheduler.cooled_rungs': judges ASHA's rungs: needs scheduler name 'asha'"),
    ("name: cooled", "scheduler.cooled_rungs': a branch is judged on val_loss"),
])
def test_bad_cooled_rungs_settings_are_one_line(change, message):
    text = {"{fraction: 0.2}": SPEC.replace("0.2", "0.0"),
            "{fractoin: 0.2}": SPEC.replace("fraction", "fractoin"),
            "name: asha": SPEC.replace("name: asha", "name: fifo"),
            "name: cooled": SPEC + "metric: train_loss\n"}[change]
    with pytest.raises(ConfigError) as err:
        parse_spec_text(text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_branch_tokens_count_in_the_campaign_compute(tmp_path):
    """A trial's branch tokens join the campaign's tokens and FLOPs; the history keeps the
    run's own loss beside the value ASHA judged."""
    root = make_compare(tmp_path / "cmp")
    plain = summarize(load_experiment(root))["compute"]
    result = root / "train_ngpt_0" / RESULT_FILE
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    rows[0].update(val_loss_raw=rows[0]["val_loss"] + 0.5, cooled=True, branch_tokens=1000)
    for row in rows[1:]:
        row.update(val_loss_raw=row["val_loss"], cooled=False, branch_tokens=1000)
    result.write_text("".join(json.dumps(r) + "\n" for r in rows))
    exp = load_experiment(root)
    trial = exp.trials.set_index("trial_id").loc["ngpt0"]
    assert trial["branch_tokens"] == 1000
    per_token = trial["flops"] / (trial["tokens_seen"] + 1000)
    compute = summarize(exp)["compute"]
    assert compute["total_tokens"] == plain["total_tokens"] + 1000
    assert compute["branch_tokens"] == 1000
    assert compute["flops"] == pytest.approx(plain["flops"] + 1000 * per_token)
    first = exp.history[exp.history["trial_id"] == "ngpt0"].iloc[0]
    assert first["val_loss_raw"] == pytest.approx(first["val_loss"] + 0.5)


@pytest.mark.slow
def test_a_compiled_model_branches_without_a_new_graph():
    """The branch runs the compiled module the run compiled: no graph is added, and the run's
    own numbers are those of the run without branches."""
    from torch._dynamo.utils import counters

    config = tiny_config(**{**SHORT, "train.compile": "on", "train.steps": 4})
    plain = reports_of(config)
    graphs = counters["stats"]["unique_graphs"]
    cooled = reports_of(config, cooled_rungs=CooledRungs(at_steps=(2,), fraction=1.0))
    assert counters["stats"]["unique_graphs"] == graphs
    assert cooled[0]["cooled"] and cooled[0]["branch_tokens"] == 2 * 128
    assert [r["val_loss_raw"] for r in cooled] == [r["val_loss"] for r in plain]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_branch_state_stays_on_the_device():
    """The snapshot is cloned on the GPU (nothing of the model or optimiser goes to the
    host), and after a branch the run's weights and moments are back to the bit."""
    from ngpt_tune.branches import cooled_loss

    trainer = Trainer.create(tiny_config(**{**SHORT, "train.device": "cuda"}),
                             torch.device("cuda"))
    for _ in range(2):
        trainer.train_step()
    saved = Snapshot(trainer)
    assert all(t.is_cuda for t in saved.model)
    assert all(v.is_cuda for s in saved.optim[0].values() for v in s.values()
               if torch.is_tensor(v) and v.ndim)
    before = [t.clone() for t in trainer.model.state_dict().values()]
    assert math.isfinite(cooled_loss(trainer, 2))
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.state_dict().values()))
    trainer.release()
