"""ngpt_tune.asha: the rung arithmetic is Ray's, and campaign records give it back."""

import pytest
from ray.tune.schedulers.async_hyperband import _Bracket

from ngpt_tune.asha import bracket_rungs, recorded_rungs, rung_budgets, scheduler_record


@pytest.mark.parametrize("grace,max_t,rf,brackets", [
    (2500, 10000, 2, 1), (2500, 10000, 2, 2), (10000 / 9, 10000, 3, 1), (10000 / 9, 10000, 3, 3),
    (7, 100, 2.5, 2), (1, 1, 2, 1), (3, 1000, 4, 3),
])
def test_bracket_rungs_are_rays(grace, max_t, rf, brackets):
    ray_rungs = [sorted(r for r, _ in _Bracket(grace, max_t, rf, s)._rungs)
                 for s in range(brackets)]
    ours = bracket_rungs(grace, max_t, rf, brackets)
    assert len(ours) == len(ray_rungs)
    for mine, rays in zip(ours, ray_rungs):
        assert mine == pytest.approx(rays)


def test_default_rungs_at_factor_2():
    # the example: grace auto = max_t / 4, budgets [2500, 10000]: rungs at 1/4 and 1/2,
    # the top one (max_t) being where a trial ends, as Ray counts it
    assert rung_budgets(2500, 10000, 2) == [2500, 5000, 10000]
    assert rung_budgets(2500, 10000, 2, brackets=2) == [2500, 5000, 10000]


def test_recorded_rungs_new_and_legacy_records():
    record = {"scheduler": scheduler_record("asha", time_attr="step", grace=10, max_t=40,
                                            reduction_factor=2, brackets=1)}
    assert recorded_rungs(record) == [10, 20, 40]
    assert recorded_rungs({"scheduler": scheduler_record(
        "fifo", time_attr="step", grace=None, max_t=None, reduction_factor=2, brackets=1)}) is None
    legacy = {"asha_budgets": [10, 90], "spec": {"scheduler": {"reduction_factor": 3}}}
    assert recorded_rungs(legacy) == [10, 30, 90]
    # a legacy record without the factor: the spec's default (2), not Ray's 3
    assert recorded_rungs({"asha_budgets": [10, 40], "spec": {}}) == [10, 20, 40]
    assert recorded_rungs({"asha_budgets": None}) is None


def test_legacy_records_give_ray_s_rungs():
    """A record from before ``scheduler.rungs`` (``asha_budgets`` and the spec's factor):
    the rungs of Ray's own scheduler, max_t included where Ray counts it."""
    from ray.tune.schedulers import AsyncHyperBandScheduler

    for grace, max_t, rf in ((6, 24, 2), (40, 120, 2), (1000, 81000, 3), (5, 7, 3)):
        campaign = {"asha_budgets": [grace, max_t],
                    "spec": {"scheduler": {"reduction_factor": rf}}}
        ray_asha = AsyncHyperBandScheduler(time_attr="step", metric="val_loss", mode="min",
                                           grace_period=grace, max_t=max_t,
                                           reduction_factor=rf)
        milestones = sorted(m for m, _ in ray_asha._brackets[0]._rungs)
        assert recorded_rungs(campaign) == pytest.approx(milestones)
    assert recorded_rungs({"asha_budgets": None}) is None  # was [] from the page's own copy
