"""ngpt_tune/campaign.py: one loop over the recorded stages, for run, resume and confirm.

Fake stage kinds (no Ray) show the loop's contract: each stage's plan is frozen once, before it
starts; an interrupted stage is recorded as such and is the one the next call continues; a
finished stage never runs again; ``after`` runs once per stage."""

from __future__ import annotations

import pytest

import ngpt_tune.campaign as campaign
from ngpt_tune.experiment import Stage, read_campaign, read_stages, write_campaign
from ngpt_tune.spec import parse_spec
from ngpt_tune.stages import Campaign


class FakeKind:
    def __init__(self, interrupt_once: set[str]):
        self.calls: list[tuple[str, str]] = []
        self.interrupt_once = interrupt_once

    def plan(self, c, stage):
        self.calls.append(("plan", stage.name))
        return {"planned": stage.name}

    def run(self, c, stage, *, resuming):
        self.calls.append(("resume" if resuming else "run", stage.name))
        if stage.name in self.interrupt_once:
            self.interrupt_once.discard(stage.name)
            return False
        return True

    def after(self, c, stage):
        self.calls.append(("after", stage.name))


@pytest.fixture
def fake(monkeypatch, tmp_path):
    kind = FakeKind({"b"})
    monkeypatch.setattr(campaign, "KINDS", {"search": kind, "ladder_fit": kind})
    monkeypatch.setattr(campaign, "_finish", lambda c, interrupted: c.folder)
    write_campaign(tmp_path, {"name": "x"})
    spec = parse_spec({"name": "x", "search": {"optim.lr": {"loguniform": [1e-4, 1e-2]}}})
    stages = [Stage("a", "search", "a", "done", {}), Stage("b", "search", "b"),
              Stage("c", "ladder_fit", ".")]
    return kind, Campaign(str(tmp_path), spec, stages, {}, "cmd"), tmp_path


def test_the_loop_continues_the_interrupted_stage_and_skips_finished_ones(fake):
    kind, c, folder = fake
    campaign._run(c)  # b is interrupted
    assert [(s.name, s.status) for s in read_stages(read_campaign(folder))] == [
        ("a", "done"), ("b", "interrupted"), ("c", "pending")]
    assert kind.calls == [("plan", "b"), ("run", "b")]
    again = Campaign(c.folder, c.spec, read_stages(read_campaign(folder)), {}, "cmd")
    campaign._run(again)  # what `resume` does
    assert [(s.name, s.status) for s in read_stages(read_campaign(folder))] == [
        ("a", "done"), ("b", "done"), ("c", "done")]
    # b's plan was frozen before its first run and not made again; a never ran
    assert kind.calls[2:] == [("resume", "b"), ("after", "b"), ("plan", "c"), ("run", "c"),
                              ("after", "c")]
    assert read_stages(read_campaign(folder))[1].plan == {"planned": "b"}
