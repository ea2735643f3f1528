"""Tune's trial schedulers for a campaign (``scheduler:`` in the spec): Ray's ASHA, whose rungs
survive ``resume`` (:class:`ResumableASHA`), or FIFO. The rungs' arithmetic, without Ray, is
:mod:`ngpt_tune.asha`."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from ngpt_tune.experiment import trial_reports
from ngpt_tune.spec import CampaignSpec


class ResumableASHA(ASHAScheduler):
    """Ray's ASHA, whose rungs survive ``resume``, with each trial's bracket a function of its
    id.

    Tune saves the searcher's state but not the scheduler's, so a restored ASHA starts with
    empty rungs and lets a weak trial through a rung where the uninterrupted campaign stops it.
    Before the first trial is added, this one replays the reports already in the experiment
    folder through Ray's own rung bookkeeping: each rung then holds what it held when the
    driver stopped (what a rung records does not depend on the order the reports came in).
    A new experiment has no reports to replay. A trial the replay stops at its last report
    was stopped there before the driver died, though Tune's saved state (up to 2 s old) may
    still call it running: it is stopped again before it trains a step, not resumed.

    With several brackets Ray draws a trial's bracket from numpy's global random state; here
    the draw (same probabilities: a softmax of the brackets' rung counts) is seeded by the
    trial id, so the replay puts every trial back in its bracket.
    """

    def __init__(self, *, experiment: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._experiment = experiment
        self._replayed = experiment is None
        self._stopped_before: set[str] = set()  # stopped at a rung by the driver that died

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if not self._replayed:
            self._replayed = True
            self.replay(trial_reports(self._experiment))
        super().on_trial_add(tune_controller, trial)  # checks metric and mode
        self._trial_info[trial.trial_id] = self.bracket_of(trial.trial_id)

    def bracket_of(self, trial_id: str) -> Any:
        sizes = np.array([len(b._rungs) for b in self._brackets])
        weights = np.exp(sizes - sizes.max())
        draw = zlib.crc32(trial_id.encode()) / 2**32  # uniform in [0, 1), the same every run
        index = int(np.searchsorted(np.cumsum(weights / weights.sum()), draw, side="right"))
        return self._brackets[min(index, len(self._brackets) - 1)]

    def replay(self, reports: dict[str, list[dict[str, Any]]]) -> int:
        """Record ``reports`` (trial id -> reports in order) in the rungs; returns how many
        reports carried the time attribute and the metric."""
        count = 0
        for trial_id, rows in reports.items():
            trial, bracket = _ReplayedTrial(trial_id), self.bracket_of(trial_id)
            action = TrialScheduler.CONTINUE
            for row in rows:
                value = row.get(self._metric)
                if self._time_attr in row and isinstance(value, (int, float)):
                    action = bracket.on_result(trial, row[self._time_attr],
                                               self._metric_op * value)
                    count += 1
            if action == TrialScheduler.STOP and rows and not rows[-1].get("finished", False):
                self._stopped_before.add(trial_id)
        return count

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """Ray's choice, once the trials the replay found stopped are stopped again (Tune
        restored them as pending: its last save came before the stop)."""
        for trial in tune_controller.get_trials():
            if trial.trial_id in self._stopped_before and trial.status == Trial.PENDING:
                self._stopped_before.discard(trial.trial_id)
                tune_controller.stop_trial(trial)
        return super().choose_trial_to_run(tune_controller)


class _ReplayedTrial:
    """What a rung needs of a trial: its id."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def _asha(spec: CampaignSpec, experiment: str | None = None) -> TrialScheduler:
    grace, max_t = spec.asha_budgets()
    return ResumableASHA(experiment=experiment, time_attr=spec.scheduler.time_attr, max_t=max_t,
                         grace_period=grace, reduction_factor=spec.scheduler.reduction_factor,
                         brackets=spec.scheduler.brackets)


SCHEDULERS: dict[str, Callable[..., TrialScheduler]] = {
    "asha": _asha,
    "fifo": lambda spec, experiment=None: FIFOScheduler(),
}
