"""The quiet terminal: the status block on fake trials, and line counts of real CLI runs."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ngpt_tune.progress import (
    CHECKPOINT_LOGGER,
    PIPE_INTERVAL_S,
    StatusReporter,
    progress_reporter,
    quiet_worker_logs,
    ray_init_kwargs,
)

REPO = Path(__file__).resolve().parents[1]
KEYS = ["model.alpha", "optim.lr"]


def trial(trial_id, status, *, step=None, max_steps=24, loss=None, finished=False,
          diverged=False, tokens=None, speed=None, alpha=0.1, lr=1e-3, failures=0,
          error_file=None):
    last = {}
    if step is not None:
        last = {"step": step, "max_steps": max_steps, "val_loss": loss, "finished": finished,
                "diverged": diverged, "tokens_seen": tokens if tokens is not None else step * 128,
                "tokens_per_s": speed}
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=last,
                           config={"model.alpha": alpha, "optim.lr": lr},
                           num_failures=failures, error_file=error_file)


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def reporter(stream=None, *, tty=False, total=6, clock=None):
    return StatusReporter(campaign="quickstart", metric="val_loss", mode="min", total=total,
                          search_keys=KEYS, stream=stream or io.StringIO(), tty=tty,
                          clock=clock or Clock())


def campaign_trials():
    return [
        trial("aaa", "TERMINATED", step=24, loss=10.72, finished=True, alpha=0.1028, lr=0.006842),
        trial("bbb", "TERMINATED", step=24, loss=10.80, finished=True),
        trial("ccc", "TERMINATED", step=6, loss=10.50),  # stopped by ASHA, lower but at 1/4
        trial("ddd", "RUNNING", step=12, loss=10.90, speed=1500.0),
        trial("eee", "PENDING"),
    ]


def test_the_block_counts_trials_and_shows_the_best_finished_one():
    clock = Clock()
    r = reporter(clock=clock)
    clock.now += 66.0
    block = r.render(campaign_trials(), now=clock.now)
    assert block[0].startswith("quickstart: 4 of 6 trials started, 01:06 elapsed, about ")
    assert block[1] == "  trials  1 running, 2 completed, 1 stopped early, 0 errored, 2 to run"
    # the stopped trial's 10.50 at a quarter of the budget is not the best so far
    assert block[2] == "  best    val_loss 10.7200, trial aaa"
    assert block[3] == "          model.alpha=0.1028, optim.lr=0.006842"
    assert block[4] == f"  tokens  {(24 + 24 + 6 + 12) * 128:,} trained, 1,500 tokens/s now"


def test_before_any_trial_finishes_the_best_is_shown_with_its_budget():
    r = reporter()
    block = r.render([trial("ddd", "RUNNING", step=12, loss=10.9),
                      trial("fff", "RUNNING", step=6, loss=10.95)], now=r.start + 5)
    assert "  best    val_loss 10.9000 (at step 12 of 24), trial ddd" in block[2]


def test_time_left_assumes_full_budgets_for_what_remains():
    """Done: 1 + 1 + 1/4 + 1/2 trial budgets in 66 s; left: 1/2 + 1 (pending) + 1 (not yet
    created) budgets, at the same pace."""
    r = reporter()
    left = r.time_left(campaign_trials(), elapsed=66.0)
    assert left == pytest.approx((0.5 + 1 + 1) * 66.0 / (1 + 1 + 0.25 + 0.5))
    assert r.time_left([trial("eee", "PENDING")], elapsed=10.0) is None  # nothing done yet


def test_maximize_picks_the_highest():
    r = StatusReporter(campaign="c", metric="acc", mode="max", total=2, search_keys=[])
    a = trial("a", "TERMINATED", step=24, finished=True)
    b = trial("b", "TERMINATED", step=24, finished=True)
    a.last_result["acc"], b.last_result["acc"] = 0.5, 0.7
    assert r.best([a, b])[0] is b


def test_a_failed_trial_is_one_line_with_its_log(tmp_path):
    log = tmp_path / "trial_ddd" / "error.txt"
    log.parent.mkdir()
    log.write_text("Failure # 1\nTraceback (most recent call last):\n  File \"x.py\"\n"
                   "RuntimeError: CUDA out of memory\n\n")
    out = io.StringIO()
    r = reporter(out)
    trials = campaign_trials()
    r.report(trials, False)
    trials[3] = trial("ddd", "PENDING", step=12, loss=10.9, failures=1, error_file=str(log))
    assert r.should_report(trials)  # a new failure is shown at once
    r.report(trials, False)
    trials[3] = trial("ddd", "ERROR", step=12, loss=10.9, failures=2, error_file=str(log))
    r.report(trials, False)
    r.report(trials, True)
    lines = out.getvalue().splitlines()
    failures = [line for line in lines if line.startswith("trial ddd")]
    assert failures == [
        f"trial ddd failed (attempt 1), retrying: RuntimeError: CUDA out of memory (log: {log})",
        f"trial ddd errored: RuntimeError: CUDA out of memory (log: {log})",
    ]
    assert "1 errored" in lines[-1]


def test_without_a_tty_status_lines_come_at_an_interval():
    clock, out = Clock(), io.StringIO()
    r = reporter(out, clock=clock)
    trials = campaign_trials()
    assert r.interval_s == PIPE_INTERVAL_S
    assert r.should_report(trials)
    r.report(trials, False)
    clock.now += PIPE_INTERVAL_S / 2
    assert not r.should_report(trials)
    clock.now += PIPE_INTERVAL_S / 2
    assert r.should_report(trials)
    trials[3].last_result["step"] = 18
    r.report(trials, False)
    r.report(trials, True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\x1b" not in out.getvalue()
    assert lines[-1].startswith(f"quickstart: 5 trials done in 00:{PIPE_INTERVAL_S:02.0f} | trials 1 ")
    assert lines[0].startswith("quickstart: 4 of 6 trials started, 00:00 elapsed | trials 1 "
                               "running, 2 completed")
    assert " | best val_loss 10.7200, trial aaa | model.alpha=0.1028, optim.lr=0.006842 | " \
        in lines[0]


def test_on_a_tty_the_block_is_redrawn_in_place():
    out = io.StringIO()
    r = reporter(out, tty=True)
    trials = campaign_trials()
    r.report(trials, False)
    first = out.getvalue()
    assert first.count("\n") == 5 and "\x1b" not in first
    r.report(trials, False)
    assert out.getvalue()[len(first):].startswith("\x1b[5F\x1b[J")  # up 5 lines, clear
    r.report(trials, True)
    r.report(trials, True)  # the final block stays on screen: nothing erased after it
    assert out.getvalue().count("\x1b[5F") == 2


def test_verbose_keeps_ray_s_table_and_logs():
    from ray.tune import CLIReporter

    from ngpt_tune.spec import load_spec

    spec = load_spec(str(REPO / "search_spaces" / "quickstart.yaml"))
    assert isinstance(progress_reporter(spec, verbose=True), CLIReporter)
    quiet = progress_reporter(spec, verbose=False)
    assert isinstance(quiet, StatusReporter) and quiet.total == spec.trial_count()
    assert ray_init_kwargs(True).get("log_to_driver") is None
    assert ray_init_kwargs(False)["log_to_driver"] is False
    assert ray_init_kwargs(False)["logging_level"] == logging.WARNING


def test_the_worker_hook_silences_the_checkpoint_logger():
    """Ray's "Checkpoint successfully created at: ..." is an INFO line of this logger."""
    import ray.train._internal.storage as storage

    assert storage.logger.name == CHECKPOINT_LOGGER
    hook = ray_init_kwargs(False)["runtime_env"]["worker_process_setup_hook"]
    assert hook == "ngpt_tune.progress.quiet_worker_logs"
    logger = logging.getLogger(CHECKPOINT_LOGGER)
    level = logger.level
    try:
        quiet_worker_logs()
        assert not logger.isEnabledFor(logging.INFO)
    finally:
        logger.setLevel(level)


# --- real runs through the CLI --------------------------------------------------------------


def run_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "ngpt_tune", "run", str(REPO / "search_spaces" /
           "quickstart.yaml"), "--smoke", "--storage", str(tmp_path), "--name", "q", *extra]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)


@pytest.mark.slow
def test_a_quiet_run_prints_a_status_and_the_ranking_and_verbose_ray_s_table(quickstart_cli,
                                                                             tmp_path):
    quiet = quickstart_cli  # the quickstart smoke run, through the CLI (tests/experiments.py)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    text = quiet.stdout + quiet.stderr
    lines = text.splitlines()
    assert "Checkpoint successfully created" not in text
    assert "== Status ==" not in text and "INFO" not in text
    status = [line for line in lines if line.startswith("quickstart: ")]
    assert status and status[-1].startswith("quickstart: 4 trials done in ")
    assert "completed trials" in text and "best configuration:" in text
    assert (quiet.experiment / "report.html").is_file()

    verbose = run_cli(tmp_path / "verbose", "--verbose")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    loud = verbose.stdout + verbose.stderr
    assert "== Status ==" in loud and "Trial name" in loud and "INFO" in loud
    assert "completed trials" in loud
    # before this change the quiet run printed what --verbose prints now, plus a
    # "Checkpoint successfully created" line per checkpoint (73 lines in all on one machine)
    assert len(lines) <= len(loud.splitlines()) / 2, text


@pytest.mark.slow
def test_a_failed_trial_is_one_line_naming_its_log(tmp_path):
    """A trial that raises (CUDA asked for on a machine without it) is retried once, then
    errored: one line each, with the error's last line and the error log in the experiment."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA, where train.device=cuda fails")
    cmd = [sys.executable, "-m", "ngpt_tune", "run", str(REPO / "search_spaces" /
           "quickstart.yaml"), "--set", "train.device=cuda", "--num-samples", "1",
           "--storage", str(tmp_path), "--name", "e",
           "--address", "local"]  # without --address, `run` refuses cuda before Ray starts
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                         cwd=tmp_path)
    text = out.stdout + out.stderr
    failed = [line for line in text.splitlines() if line.startswith("trial ")]
    assert len(failed) == 2, text
    logs = list((tmp_path / "e").glob("trial_*/error.txt"))
    assert len(logs) == 1
    assert failed[0].endswith(f"CUDA is not available (log: {logs[0]})")
    assert " failed (attempt 1), retrying: " in failed[0] and " errored: " in failed[1]
    assert "Traceback" not in text  # no stack trace on the terminal


def test_a_log_line_below_the_block_is_not_drawn_over():
    out = io.StringIO()
    r = reporter(out, tty=True)
    r.setup()
    trials = campaign_trials()
    r.report(trials, False)
    logging.getLogger("ray.tune").warning("something Ray wants the user to see")
    r.report(trials, False)
    assert "\x1b[" not in out.getvalue()  # the second block is drawn below the log line
    r.report(trials, False)
    assert out.getvalue().count("\x1b[5F") == 1


def test_the_reporter_survives_tune_s_pickle_of_the_tuner():
    """Tuner.restore (resume) unpickles the reporter saved with the experiment."""
    import pickle

    r = StatusReporter(campaign="quickstart", metric="val_loss", mode="min", total=4,
                       search_keys=KEYS)
    again = pickle.loads(pickle.dumps(r))
    again.setup()
    block = again.render([], now=again.start)
    assert block[0] == "quickstart: 0 of 4 trials started, 00:00 elapsed"
