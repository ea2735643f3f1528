"""Campaigns as Ray Jobs (`submit`, `jobs`, `logs`, `stop`, `submit --resume`) on a Ray head
that this module starts on the loopback address, with its dashboard, token authentication
and 2 GPUs declared (the trials train on the CPU: `train.device: cpu`).

All in one head and one test, to pay Ray's start once (it is also the test of a campaign on an
existing cluster with token authentication, its confirmation stage included): three campaigns are submitted at once;
one is followed to its end; one is stopped in the middle of its search and continued by a new
job; the GPUs' shares are read from every trial's provenance afterwards. Every Ray process the
head started is stopped by its process id (never `ray stop`, which would stop other users'
Ray on this machine).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import psutil
import pytest
from campaign_helpers import reports, results, trial_dirs
from experiments import ENV, cli

from ngpt_tune.presets import preset_yaml

SPEC = """
name: {name}
search:
  model.alpha: {{grid: {alphas}}}
searcher: grid
scheduler: fifo
max_concurrent_trials: {concurrent}
resources: {{gpus_per_trial: {gpus}, cpus_per_trial: 0.5}}
checkpoint: {{every: 0, keep: 2}}
""" + preset_yaml("tiny", {"data.val_tokens": 256, "train.device": "cpu", "train.threads": 1,
                           "optim.lr": 1.0e-2}, under="base").replace("{", "{{").replace("}", "}}")


TOKEN_FILE = Path(tempfile.gettempdir()) / f"ngpt-tune-test-token-{os.getpid()}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """``ray start --head`` with its dashboard on 127.0.0.1 and token authentication; yields
    the dashboard's URL. The test's own checkout reaches the jobs only through `submit`'s
    upload: the head's environment has no PYTHONPATH."""
    port, dashboard = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # a short path: Ray's socket names
    # the cluster's token in a file of the test's own (not ~/.ray/auth_token, which would turn
    # token authentication on for every later local Ray instance on this machine)
    TOKEN_FILE.write_text(secrets.token_hex(32))
    env = {**{k: v for k, v in ENV.items() if k != "PYTHONPATH"}, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(TOKEN_FILE),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{ENV['PATH']}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
         f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         "--num-gpus=2", "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats",
         # the ports Ray would otherwise take by default: other Ray instances on this machine
         f"--dashboard-agent-listen-port={free_port()}",
         f"--ray-client-server-port={free_port()}"],
        env=env, cwd=temp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "ray start --head failed"
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=2)  # noqa: S310
                break
            except urllib.error.HTTPError:  # it answers (401 without the token): it is up
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not come up"
                time.sleep(0.5)
        yield url
    finally:
        stop_tree(proc)
        TOKEN_FILE.unlink(missing_ok=True)


def stop_tree(proc: subprocess.Popen) -> None:
    """SIGTERM to ``ray start --block`` (it stops its node), then SIGKILL, by process id, to
    whatever it started that is still alive (job drivers run in sessions of their own)."""
    started = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(started, timeout=10)
    for p in alive:
        p.kill()


def job_cli(*args: str, cwd: Path, auth: bool = True) -> subprocess.CompletedProcess:
    """The CLI as a user on another machine runs it: no RAY_AUTH_MODE set (the token is found
    in the file at RAY_AUTH_TOKEN_PATH), or ``auth=False``: token authentication turned off
    here."""
    env = {k: v for k, v in ENV.items() if k != "RAY_AUTH_MODE"} | {
        "RAY_AUTH_TOKEN_PATH": str(TOKEN_FILE)}
    if not auth:
        env["RAY_AUTH_MODE"] = "disabled"
    return cli(*args, cwd=cwd, env=env, timeout=300)


def intervals(trials: list[Path]) -> list[tuple[float, float, str, float]]:
    """(start, end, GPU id, share) of each trial, from its provenance and its last report."""
    out = []
    for t in trials:
        p = json.loads((t / "provenance.json").read_text())
        start = p["started_at_unix"]
        out.append((start, start + results(t)[-1]["time_total_s"],
                    p["accelerator_ids"]["GPU"][0], p["resources"]["GPU"]))
    return out


def peak_load(spans: list[tuple[float, float, str, float]]) -> dict[str, float]:
    """The largest sum of shares held at once on each GPU (a sweep over starts and ends)."""
    events = defaultdict(list)
    for start, end, gpu, share in spans:
        events[gpu] += [(start, share), (end, -share)]
    peaks = {}
    for gpu, evs in events.items():
        load = peak = 0.0
        for _, delta in sorted(evs, key=lambda e: (e[0], e[1])):  # ends before starts
            load += delta
            peak = max(peak, load)
        peaks[gpu] = peak
    return peaks


@pytest.mark.slow
def test_campaigns_as_ray_jobs(head, tmp_path):
    storage = tmp_path / "shared"
    specs = {  # submitted at once, sharing the 2 GPUs
        "whole": ("[0.05, 0.3]", 2, 1),  # a whole GPU per trial, followed to its end
        "stopped": ("[0.05, 0.1, 0.3]", 1, 0.5),  # half a GPU; stopped mid-search, resumed
    }
    for name, (alphas, concurrent, gpus) in specs.items():
        (tmp_path / f"{name}.yaml").write_text(SPEC.format(name=name, alphas=alphas,
                                                           concurrent=concurrent, gpus=gpus))
    # the followed campaign goes on to its confirmation stage, on the cluster too
    with (tmp_path / "whole.yaml").open("a") as f:
        f.write("confirm: {top_k: 1, seeds: 2}\n")

    # token authentication is on: a client without the token is refused, in one line
    refused = job_cli("jobs", "--address", head, cwd=tmp_path, auth=False)
    assert refused.returncode == 2 and "refused the request" in refused.stderr
    assert "auth_token" in refused.stderr and refused.stderr.count("\n") == 1

    for name in specs:  # the stopped one long enough to be stopped before its third trial ends
        steps = 120 if name == "stopped" else 12
        out = job_cli("submit", f"{name}.yaml", "--storage", storage, "--name", name,
                      "--address", head, "--set", f"train.steps={steps}", "train.eval_every=6",
                      cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"submitted job {name} to {head}" in out.stdout
        assert f"experiment  {storage / name}" in out.stdout
        assert f"logs {name} --follow --address {head}" in out.stdout

    listed = job_cli("jobs", "--address", head, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    for name in specs:  # each job with its status and its experiment folder
        assert any(line.split()[0] == name and line.endswith(str(storage / name))
                   for line in listed.stdout.splitlines()), listed.stdout

    # stop "stopped" once its first trial has reported, before its third
    deadline = time.monotonic() + 120
    while not any(reports(storage / "stopped")):
        assert time.monotonic() < deadline, job_cli("logs", "stopped", "--address", head,
                                                    cwd=tmp_path).stdout[-3000:]
        time.sleep(0.2)
    stopped = job_cli("stop", "stopped", "--address", head, cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert "job stopped: STOPPED" in stopped.stdout
    assert f"submit --resume {storage / 'stopped'} --address {head}" in stopped.stdout
    before = reports(storage / "stopped")
    assert len(before) < 3 or not all(r and r[-1].get("finished") for r in before)
    record = json.loads((storage / "stopped" / "campaign.json").read_text())
    assert record["stages"][0]["status"] == "interrupted"  # the driver saved and said so

    # follow "whole" to its end: the ranking is in its output, the folder complete
    followed = job_cli("logs", "whole", "--follow", "--address", head, cwd=tmp_path)
    assert followed.returncode == 0, followed.stdout[-3000:] + followed.stderr
    assert "campaign whole: 2 trials (2 completed)" in followed.stdout
    assert "completed trials" in followed.stdout  # the ranking's table
    assert "ngpt-tune: job whole: SUCCEEDED" in followed.stdout
    # the job's driver joined the cluster (not a Ray of its own), and confirmed the winner there
    assert "Connected to Ray cluster" in followed.stdout
    assert "confirmed winner:" in followed.stdout
    whole = storage / "whole"
    for f in ("campaign.json", "summary.json", "trials.parquet", "history.parquet",
              "report.html"):
        assert (whole / f).is_file(), f
    assert json.loads((whole / "summary.json").read_text())["counts"]["completed"] == 2

    # continue "stopped" as a new job of the same experiment
    resumed = job_cli("submit", "--resume", storage / "stopped", "--address", head,
                      cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "submitted job stopped-2" in resumed.stdout
    done = job_cli("logs", "stopped-2", "--follow", "--address", head, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    summary = json.loads((storage / "stopped" / "summary.json").read_text())
    assert summary["counts"]["total"] == summary["counts"]["completed"] == 3
    assert all(results(t)[-1]["finished"] for t in trial_dirs(storage / "stopped"))
    listed = job_cli("jobs", "--address", head, cwd=tmp_path).stdout
    status = {line.split()[0]: line.split()[1] for line in listed.splitlines()[1:]}
    assert status == {"whole": "SUCCEEDED", "stopped": "STOPPED", "stopped-2": "SUCCEEDED"}, \
        listed

    # the GPUs were shared between the campaigns, never beyond a whole GPU each
    spans = [s for name in specs for s in intervals(trial_dirs(storage / name))]
    assert {share for *_, share in spans} == {1.0, 0.5}
    assert all(load <= 1.0 + 1e-9 for load in peak_load(spans).values()), peak_load(spans)


@pytest.mark.parametrize(("args", "message"), [
    (("run", "{spec}", "--resume-if-exists"),
     "--resume-if-exists needs --name: the experiment to continue"),
    (("submit", "{spec}", "--address", "http://127.0.0.1:1"), "submit needs --storage"),
    (("submit", "{spec}", "--storage", "s3://b/x"), "give --address http://HEAD:8265"),
    (("submit", "--address", "http://127.0.0.1:1"), "submit takes a SPEC, or --resume"),
    (("jobs", "--address", "http://127.0.0.1:1"),
     "the Ray dashboard at http://127.0.0.1:1: Failed to connect"),
])
def test_job_commands_refuse_bad_input_in_one_line(tmp_path, args, message):
    (tmp_path / "s.yaml").write_text(SPEC.format(name="s", alphas="[0.1]", concurrent=1, gpus=0))
    env = {k: v for k, v in ENV.items() if k not in ("NGPT_TUNE_STORAGE", "RAY_ADDRESS")}
    out = cli(*(a.format(spec=tmp_path / "s.yaml") for a in args), cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
