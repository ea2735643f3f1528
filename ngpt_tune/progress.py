"""What a campaign prints while it runs: one live status block, or Ray's own table.

By default (quiet) the terminal shows one status block that is redrawn in place: trials
running / completed / stopped early / errored of N, the best so far with its configuration,
the tokens trained, the elapsed time and an estimate of the time left. Each failed trial gets
one line with the path of its error log. On a terminal that is not a TTY (CI, a pipe, a log
file) the block is a single status line printed every ``PIPE_INTERVAL_S`` seconds instead.

It is built from Tune's and Ray's own mechanisms:

- :class:`StatusReporter` is a ``ray.tune.ProgressReporter``, given to ``RunConfig``;
- :func:`ray_init_kwargs` is Ray's logging configuration: ``logging_level`` (no INFO lines on
  the driver), ``log_to_driver=False`` (the workers' output stays in Ray's session logs), and
  a ``worker_process_setup_hook`` (:func:`quiet_worker_logs`) that silences, in every worker,
  the logger ``ray.train._internal.storage`` whose INFO line "Checkpoint successfully created
  at: ..." is printed once per checkpoint per trial;
- :func:`configure_output` sets Tune's own switches (``TUNE_PRINT_ALL_TRIAL_ERRORS=0``: no
  traceback per failed trial, since the reporter prints one line;
  ``TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S=0``) and Optuna's verbosity.

``--verbose`` keeps all of Ray's output and Tune's ``CLIReporter`` table (every 15 s).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ray.tune import CLIReporter, ProgressReporter

from ngpt_tune.config import get_dotted
from ngpt_tune.experiment import INFEASIBLE_KEY, number_or_none

TTY_INTERVAL_S = 1.0  # redraw the block at most this often
PIPE_INTERVAL_S = 15.0  # a status line this often when stdout is not a terminal
VERBOSE_INTERVAL_S = 15  # Ray's table, with --verbose
CHECKPOINT_LOGGER = "ray.train._internal.storage"  # "Checkpoint successfully created at: ..."
MAX_PARAMS_SHOWN = 6

# Tune's trial statuses (ray.tune.experiment.Trial)
RUNNING, PENDING, PAUSED, TERMINATED, ERROR = "RUNNING", "PENDING", "PAUSED", "TERMINATED", "ERROR"


def quiet_worker_logs() -> None:
    """Ray's ``worker_process_setup_hook``: runs in every worker process before any task."""
    logging.getLogger(CHECKPOINT_LOGGER).setLevel(logging.WARNING)


def ray_init_kwargs(verbose: bool) -> dict[str, Any]:
    """Arguments for ``ray.init`` that set how much of Ray's output reaches the terminal."""
    hook = {"worker_process_setup_hook": f"{__name__}.quiet_worker_logs"}
    if verbose:
        return {"runtime_env": hook}
    return {"logging_level": logging.WARNING, "log_to_driver": False, "runtime_env": hook}


_verbose = False  # set for the whole process by configure_output, like the loggers it sets


def configure_output(verbose: bool) -> None:
    """Set how much this process prints during a campaign: Tune's and Optuna's switches on the
    driver (the user's environment variables win), and the default of
    :func:`progress_reporter`. Call it once, before ``ray.init``."""
    global _verbose
    _verbose = verbose
    if verbose:
        return
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")  # the reporter prints one line
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger(CHECKPOINT_LOGGER).setLevel(logging.WARNING)
    try:
        import optuna  # optuna only for a study's count: start-up

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:  # pragma: no cover - optuna is a dependency
        pass


def progress_reporter(spec: Any, *, verbose: bool | None = None, title: str | None = None,
                      stream: TextIO | None = None) -> ProgressReporter:
    """Tune's table when verbose (by default: as :func:`configure_output` set it), else a
    :class:`StatusReporter` titled ``title`` (default: the campaign's name)."""
    if _verbose if verbose is None else verbose:
        metric_columns = {"step": "step", spec.metric: spec.metric, "tokens_per_s": "tokens/s"}
        return CLIReporter(metric_columns=metric_columns,
                           parameter_columns=spec.search_keys[:MAX_PARAMS_SHOWN],
                           max_report_frequency=VERBOSE_INTERVAL_S, sort_by_metric=True)
    return StatusReporter(campaign=title or spec.name, metric=spec.metric, mode=spec.mode,
                          total=spec.trial_count(), search_keys=list(spec.search_keys),
                          stream=stream)


class StatusReporter(ProgressReporter):
    """One status block for the whole campaign, redrawn in place (or a line on a non-TTY).

    Example:
        >>> reporter = StatusReporter(campaign="quickstart", metric="val_loss", mode="min",
        ...                           total=8, search_keys=["model.alpha", "optim.lr"])
        >>> print("\\n".join(reporter.render([], now=reporter.start)))  # doctest: +ELLIPSIS
        quickstart: 0 of 8 trials started, 00:00 elapsed
        ...
    """

    def __init__(self, *, campaign: str, metric: str, mode: str, total: int,
                 search_keys: Sequence[str], stream: TextIO | None = None,
                 tty: bool | None = None, interval_s: float | None = None,
                 clock: Any = time.monotonic) -> None:
        self.campaign, self.metric, self.mode, self.total = campaign, metric, mode, total
        self.search_keys = list(search_keys)
        self._stream = stream
        self._tty = tty
        self._interval = interval_s
        self._clock = clock
        self.start = clock()
        self._last_report: float | None = None
        self._drawn = 0  # lines of the block now on screen (TTY)
        self._failures: dict[str, int] = {}  # trial_id -> failures already printed
        self._last_line = ""

    # --- Tune's ProgressReporter interface --------------------------------------------------

    def setup(self, start_time: float | None = None, total_samples: int | None = None,
              metric: str | None = None, mode: str | None = None, **kwargs: Any) -> None:
        self.start = self._clock()
        self._last_report, self._drawn = None, 0  # a fresh run (or a resumed one)
        if total_samples:  # Tune's count: right for any stage (a confirmation's grid too)
            self.total = int(total_samples)
        if self.tty:  # a log line printed below the block: draw the next block below it
            _KEEP_BLOCK.reporter = self
            for name in ("", "ray"):
                if _KEEP_BLOCK not in logging.getLogger(name).handlers:
                    logging.getLogger(name).addHandler(_KEEP_BLOCK)
        self.metric = metric or self.metric
        self.mode = mode or self.mode

    def should_report(self, trials: Sequence[Any], done: bool = False) -> bool:
        if done or self._last_report is None or self._new_failures(trials):
            return True
        return self._clock() - self._last_report >= self.interval_s

    def report(self, trials: Sequence[Any], done: bool, *sys_info: str) -> None:
        now = self._clock()
        self._last_report = now
        errors = self.failure_lines(trials)
        block = self.render(trials, now=now, done=done)
        out = self.stream
        if self.tty:
            self._erase(out)
            for line in errors:
                out.write(line + "\n")
            width = max(20, shutil.get_terminal_size().columns - 1)  # no wrapped lines
            out.write("\n".join(line[:width] for line in block) + "\n")
            self._drawn = len(block)
            if done:
                self._drawn = 0  # leave the final block on screen
        else:
            for line in errors:
                out.write(line + "\n")
            line = self.one_line(block)
            if line != self._last_line or done:
                out.write(line + "\n")
                self._last_line = line
        out.flush()

    # --- what is shown -----------------------------------------------------------------------

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    @property
    def tty(self) -> bool:
        if self._tty is not None:
            return self._tty
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"

    @property
    def interval_s(self) -> float:
        if self._interval is not None:
            return self._interval
        return TTY_INTERVAL_S if self.tty else PIPE_INTERVAL_S

    def render(self, trials: Sequence[Any], *, now: float, done: bool = False) -> list[str]:
        """The status block: a title line, then trials, the best so far and its configuration,
        tokens (each as it exists)."""
        counts = self.counts(trials)
        elapsed = max(0.0, now - self.start)
        started = len(trials) - counts["pending"]
        left = None if done else self.time_left(trials, elapsed)
        if done:
            lines = [f"{self.campaign}: {len(trials)} trials done in {_clock(elapsed)}"]
        else:
            timing = f"{_clock(elapsed)} elapsed" + (f", about {_clock(left)} left"
                                                      if left is not None else "")
            lines = [f"{self.campaign}: {started} of {self.total} trials started, {timing}"]
        shown = [f"{counts[k]} {label}" for k, label in (
            ("running", "running"), ("completed", "completed"), ("stopped", "stopped early"),
            ("diverged", "diverged"), ("infeasible", "infeasible (out of memory)"),
            ("errored", "errored")) if counts[k] or k in
            ("running", "completed", "stopped", "errored")]
        to_run = max(0, self.total - started)
        if to_run:
            shown.append(f"{to_run} to run")
        lines.append("  trials  " + ", ".join(shown))
        best = self.best(trials)
        if best is not None:
            trial, value, finished = best
            where = "" if finished else f" (at step {_fmt(trial.last_result.get('step'))} of " \
                                        f"{_fmt(trial.last_result.get('max_steps'))})"
            lines.append(f"  best    {self.metric} {value:.4f}{where}, trial {trial.trial_id}")
            params = self.params_text(trial)
            if params:
                lines.append(f"          {params}")
        tokens = sum((number_or_none(t.last_result.get("tokens_seen")) or 0)
                     + (number_or_none(t.last_result.get("branch_tokens")) or 0) for t in trials)
        speed = sum(number_or_none(t.last_result.get("tokens_per_s")) or 0
                    for t in trials if t.status == RUNNING)
        if tokens:
            lines.append(f"  tokens  {tokens:,.0f} trained"
                         + (f", {speed:,.0f} tokens/s now" if speed else ""))
        return lines

    def one_line(self, block: list[str]) -> str:
        """The block as one line, for logs and pipes."""
        return " | ".join(re.sub(r"\s+", " ", part.strip()) for part in block)

    def counts(self, trials: Sequence[Any]) -> dict[str, int]:
        out = dict.fromkeys(("running", "completed", "stopped", "diverged", "infeasible",
                             "errored", "pending"), 0)
        for trial in trials:
            out[self.state(trial)] += 1
        return out

    @staticmethod
    def state(trial: Any) -> str:
        """completed / stopped (by the scheduler) / diverged / infeasible (out of memory) /
        errored / running / pending."""
        status, last = trial.status, trial.last_result or {}
        if status == ERROR:
            return "errored"
        if status == TERMINATED:
            if last.get(INFEASIBLE_KEY):
                return "infeasible"
            if last.get("diverged"):
                return "diverged"
            return "completed" if last.get("finished") else "stopped"
        if status == RUNNING:
            return "running"
        return "pending"  # PENDING, PAUSED: waiting for resources or a retry

    def best(self, trials: Sequence[Any]) -> tuple[Any, float, bool] | None:
        """The best trial so far: among finished trials if any, else among all that reported."""
        scored = []
        for trial in trials:
            value = number_or_none((trial.last_result or {}).get(self.metric))
            if value is not None and math.isfinite(value):
                scored.append((trial, value, self.state(trial) == "completed"))
        if not scored:
            return None
        finished = [s for s in scored if s[2]]
        pool = finished or scored
        sign = 1.0 if self.mode == "min" else -1.0
        return min(pool, key=lambda s: (sign * s[1], str(s[0].trial_id)))

    def params_text(self, trial: Any) -> str:
        config = getattr(trial, "config", None) or (trial.last_result or {}).get("config") or {}
        parts = []
        for key in self.search_keys[:MAX_PARAMS_SHOWN]:
            value = get_dotted(config, key)
            if value is not None:
                parts.append(f"{key}={_fmt(value)}")
        return ", ".join(parts)

    def time_left(self, trials: Sequence[Any], elapsed: float) -> float | None:
        """Seconds left if every trial still to run goes to its full budget (ASHA usually
        stops some early, so the campaign tends to end sooner): work done so far, in trial
        budgets, over the elapsed time, applied to the budgets left."""
        done_work, left_work = 0.0, 0.0
        for trial in trials:
            state = self.state(trial)
            fraction = _fraction(trial.last_result or {})
            done_work += fraction
            if state in ("running", "pending"):  # a pending trial may be a retry, part done
                left_work += 1.0 - fraction
        left_work += max(0, self.total - len(trials))
        if done_work <= 0 or elapsed <= 0:
            return None
        return left_work * elapsed / done_work

    def failure_lines(self, trials: Sequence[Any]) -> list[str]:
        """One line per new failure: the error's last line and the path of the error log."""
        lines = []
        for trial in trials:
            failures = int(getattr(trial, "num_failures", 0) or 0)
            if trial.status == ERROR:
                failures = max(failures, 1)
            if failures <= self._failures.get(trial.trial_id, 0):
                continue
            self._failures[trial.trial_id] = failures
            local = getattr(trial, "error_file", None)  # the driver's copy, read now
            message = _last_line(local) or "see the log"
            log = _stored(trial, local)
            what = "errored" if trial.status == ERROR else f"failed (attempt {failures}), retrying"
            lines.append(f"trial {trial.trial_id} {what}: {message}"
                         + (f" (log: {log})" if log else ""))
        return lines

    def _new_failures(self, trials: Sequence[Any]) -> bool:
        return any(
            max(int(getattr(t, "num_failures", 0) or 0), int(t.status == ERROR))
            > self._failures.get(t.trial_id, 0) for t in trials)

    def _erase(self, out: TextIO) -> None:
        if self._drawn:
            out.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the block's first line, clear below
            self._drawn = 0


class _KeepBlock(logging.Handler):
    """Prints nothing: notes that a log record went to the terminal after the status block,
    so that the next redraw does not move the cursor up over it."""

    reporter: StatusReporter | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.reporter is not None:
            self.reporter._drawn = 0


_KEEP_BLOCK = _KeepBlock()


def _stored(trial: Any, local: str | None) -> str | None:
    """Where the error log ends up: in the experiment folder (or its URI), not Ray's staging
    folder on the driver."""
    storage, path = getattr(trial, "storage", None), getattr(trial, "path", None)
    if not local or storage is None or not path:
        return local
    try:
        kind = storage.storage_filesystem.type_name
    except AttributeError:
        return local
    name = Path(local).name
    if kind == "local":
        return str(Path(path) / name)
    scheme = {"gcs": "gs"}.get(kind, kind)  # pyarrow's name -> the URI scheme
    return f"{scheme}://{path}/{name}"


def _fraction(last: dict[str, Any]) -> float:
    step, max_steps = number_or_none(last.get("step")), number_or_none(last.get("max_steps"))
    if not step or not max_steps:
        return 0.0
    return min(1.0, step / max_steps)


def _last_line(path: str | None) -> str | None:
    if not path:
        return None
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((line.strip() for line in reversed(lines) if line.strip()), None)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "?" if value is None else str(value)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
