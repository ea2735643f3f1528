"""The plain-PyTorch training loop: reports, learning, resume equality, divergence."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from conftest import tiny_config

from ngpt_tune.presets import preset_yaml
from ngpt_tune.train import METRIC_KEYS, fit

UNIFORM_LOSS = math.log(50257)  # where every model starts


def run(config):
    reports = []
    result = fit(config, report=lambda metrics, save: reports.append(metrics))
    return result, reports


def test_reports_every_eval_with_all_keys():
    result, reports = run(tiny_config(**{"train.steps": 12, "train.eval_every": 5}))
    assert [r["step"] for r in reports] == [5, 10, 12]  # and at the last step
    for r in reports:
        assert set(METRIC_KEYS) <= set(r)
        assert r["tokens_seen"] == r["step"] * 4 * 32
        assert r["projections"] == r["step"]  # proj_every 1: after every optimiser step
    assert reports[-1]["finished"] and not reports[0]["finished"]
    assert result.metrics == reports[-1] and not result.diverged


def test_lazy_projection_counts():
    _, reports = run(tiny_config(**{"train.steps": 15, "model.proj_every": 7}))
    assert [r["projections"] for r in reports] == [0, 1, 2]
    _, gpt = run(tiny_config(**{"train.steps": 5, "model.arch": "gpt"}))
    assert gpt[-1]["projections"] == 0


@pytest.mark.parametrize(
    "overrides",
    [{}, {"model.gated_residuals": True}, {"model.arch": "gpt", "optim.lr": 3e-3}],
    ids=["ngpt", "gated", "gpt"],
)
def test_models_learn_on_the_builtin_corpus(overrides):
    config = tiny_config(**{"train.steps": 150, "train.eval_every": 50, **overrides})
    _, reports = run(config)
    losses = [r["val_loss"] for r in reports]
    assert losses[-1] < UNIFORM_LOSS - 1.0, losses
    assert losses[-1] < losses[0], losses


def test_deterministic_on_cpu():
    a = run(tiny_config(**{"train.steps": 6}))[1]
    b = run(tiny_config(**{"train.steps": 6}))[1]
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]
    c = run(tiny_config(**{"train.steps": 6, "train.seed": 1}))[1]
    assert c[-1]["val_loss"] != a[-1]["val_loss"]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_checkpoint_resume_gives_the_same_loss(tmp_path, optimizer):
    config = tiny_config(**{"train.steps": 10, "model.proj_every": 3, "optim.name": optimizer,
                            "optim.warmup_steps": 2})
    straight = run(config)[1]

    saved = []

    def report(metrics, save):
        if metrics["step"] == 5:
            save(tmp_path)
            saved.append(metrics["step"])
            raise KeyboardInterrupt  # the process dies after its step-5 checkpoint

    with pytest.raises(KeyboardInterrupt):
        fit(config, report=report, checkpoint_every=5)
    assert saved == [5]
    resumed = []
    fit(config, report=lambda m, s: resumed.append(m), resume_from=tmp_path)
    assert [r["step"] for r in resumed] == [10]
    assert resumed[-1]["val_loss"] == straight[-1]["val_loss"]
    assert resumed[-1]["train_loss"] == straight[-1]["train_loss"]
    assert resumed[-1]["projections"] == straight[-1]["projections"]


def test_checkpoint_offered_only_when_due():
    offered = []
    fit(tiny_config(**{"train.steps": 20}), checkpoint_every=10,
        report=lambda m, save: offered.append((m["step"], save is not None)))
    assert offered == [(5, False), (10, True), (15, False), (20, True)]


def test_non_finite_loss_is_reported_as_diverged_not_raised():
    config = tiny_config(**{"model.arch": "gpt", "optim.lr": 1e30, "optim.grad_clip": 0.0})
    result, reports = run(config)
    assert result.diverged
    assert reports[-1]["diverged"] and not reports[-1]["finished"]
    assert reports[-1]["val_loss"] == math.inf
    assert reports[-1]["step"] < config.train.steps  # stopped at the first evaluation


def test_train_command_prints_falling_val_loss(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(preset_yaml("tiny", {"optim.lr": 1.0e-2, "data.val_tokens": 1024,
                                        "train.steps": 40, "train.eval_every": 20,
                                        "train.threads": 1}))
    out = subprocess.run([sys.executable, "-m", "ngpt_tune", "train", str(cfg)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    vals = [float(line.split("val ")[1].split()[0]) for line in out.stdout.splitlines()
            if line.startswith("step")]
    assert len(vals) == 2 and vals[1] < vals[0] < UNIFORM_LOSS


def test_train_command_rejects_a_bad_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {n_layer: 1, n_embd: 30, n_head: 4}\n")
    out = subprocess.run([sys.executable, "-m", "ngpt_tune", "train", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"ngpt-tune: error: {cfg}: key 'model.n_embd': n_embd=30 is "
                                  "not divisible by n_head=4")


@pytest.mark.parametrize("resume", [False, True])
def test_a_stopped_run_releases_its_model_and_optimisers(monkeypatch, tmp_path, resume):
    """Ray stops a trial by raising inside tune.report: the model, its optimiser state and
    the data are released all the same (a reused worker's next trial starts clean)."""
    import gc
    import weakref

    from ngpt_tune import train

    config = tiny_config(**{"train.steps": 10})
    if resume:  # a run resumed at its last step takes the early branch
        fit(config, report=lambda m, save: save and save(tmp_path), checkpoint_every=10)
    made = []
    real_create = train.Trainer.create

    def create(*args, **kwargs):
        trainer = real_create(*args, **kwargs)
        made.append((weakref.ref(trainer.model), trainer))
        return trainer

    monkeypatch.setattr(train.Trainer, "create", create)

    def report(metrics, save):
        raise KeyboardInterrupt  # what tune.report raises to stop a trial is not an Exception

    with pytest.raises(KeyboardInterrupt):
        fit(config, report=report, resume_from=tmp_path if resume else None)
    gc.collect()
    (model, trainer), = made
    assert model() is None
    assert trainer.optimizers == [] and trainer.val_set == []
