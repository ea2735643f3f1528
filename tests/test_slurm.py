"""The SLURM launcher (cluster/slurm/ngpt_tune.sbatch) run on this machine, with stand-ins for
`srun` and `scontrol` on PATH: an allocation of two nodes that both live on the loopback
address. The launcher starts a Ray head and a worker (each a `ray start --block` "job step"),
runs the campaign across both, is stopped by the time limit's SIGTERM, and a second
submission of the same script continues the same experiment to its end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from campaign_helpers import reports, results, trial_dirs
from experiments import ENV, REPO

from ngpt_tune.presets import preset_yaml

LAUNCHER = REPO / "cluster" / "slurm" / "ngpt_tune.sbatch"
SRUN = """#!/bin/bash
# stand-in for srun: runs the step here (every node is this machine, on 127.0.0.1)
echo "srun $*" >> "$FAKE_SLURM_LOG"
while [[ $1 == -* ]]; do shift; done   # the launcher writes srun's options as --opt=value
if [[ $1 == hostname ]]; then echo 127.0.0.1; exit 0; fi
exec "$@"
"""
SCONTROL = """#!/bin/bash
# stand-in for scontrol: `show hostnames` lists two nodes; the rest is recorded
echo "scontrol $*" >> "$FAKE_SLURM_LOG"
if [[ $1 == show && $2 == hostnames ]]; then printf 'node1\\nnode2\\n'; fi
"""
CAMPAIGN = """
name: slurm-test
search:
  model.alpha: {grid: [0.05, 0.1, 0.2, 0.3]}
searcher: grid
scheduler: fifo
resources: {gpus_per_trial: 0, cpus_per_trial: 1}
""" + preset_yaml("tiny", {"data.val_tokens": 256, "train.device": "cpu", "train.threads": 1,
                           "optim.lr": 1.0e-2, "train.steps": 12, "train.eval_every": 6},
                  under="base")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_slurm(root: Path) -> dict[str, str]:
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    temp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # Ray's socket paths must stay short
    return {
        **{k: v for k, v in ENV.items() if k != "RAY_AUTH_MODE"},
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), ENV["PATH"]]),
        "FAKE_SLURM_LOG": str(root / "slurm-calls.log"),
        "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_JOB_ID": "4242",
        "SPEC": str(root / "spec.yaml"), "NAME": "slurm", "STORAGE": str(root / "shared"),
        "RAY_PORT": str(free_port()), "DASHBOARD_PORT": str(free_port()),
        "RAY_START_ARGS": f"--num-cpus=1 --num-gpus=0 --temp-dir={temp} --disable-usage-stats",
        "RAY_HEAD_ARGS": f"--ray-client-server-port={free_port()} "
                         f"--dashboard-agent-listen-port={free_port()}",
        "RAY_LAUNCH": "manual", "NODE_WAIT_S": "120",
    }


def launch(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(["bash", str(LAUNCHER)], env=env, cwd=cwd, stdout=log.open("a"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    """Wait for the launcher; whatever it started and left alive is killed by process id."""
    started = psutil.Process(proc.pid).children(recursive=True)
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, alive = psutil.wait_procs(started, timeout=5)
        for p in alive:
            p.kill()
    return log.read_text()


@pytest.mark.slow
def test_the_launcher_runs_on_two_nodes_and_a_resubmission_continues(tmp_path):
    (tmp_path / "spec.yaml").write_text(CAMPAIGN)
    env = fake_slurm(tmp_path)
    env["REQUEUE"] = "1"
    experiment = tmp_path / "shared" / "slurm"
    log = tmp_path / "ngpt-tune-4242.log"

    # the first allocation: SIGTERM (the time limit's --signal) once a trial has reported
    first = launch(env, tmp_path, log)
    procs = []
    try:
        deadline = time.monotonic() + 240
        while not any(reports(experiment)):
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            procs = psutil.Process(first.pid).children(recursive=True) or procs
            time.sleep(0.2)
        first.send_signal(signal.SIGTERM)
        out = finish(first, log)
    finally:
        for p in procs:  # a failed wait above: nothing is left running
            if p.is_running():
                p.kill()
    assert first.returncode == 0, out[-3000:]
    assert "ngpt-tune: 2 nodes (node1 node2), head 127.0.0.1:" in out
    assert "ngpt-tune: 2 Ray nodes up" in out
    assert "interrupted: resume with" in out
    assert "ngpt-tune: requeueing job 4242" in out
    calls = (tmp_path / "slurm-calls.log").read_text()
    assert "scontrol requeue 4242" in calls
    assert "srun --nodes=1 --ntasks=1 --nodelist=node2 ray start --block --address=127.0.0.1:" \
        in calls
    record = json.loads((experiment / "campaign.json").read_text())
    assert record["stages"][0]["status"] == "interrupted"
    before = {t.name for t in trial_dirs(experiment)
              if (t / "result.json").exists() and (rows := results(t))
              and rows[-1].get("finished")}

    # the second allocation (the same script, re-submitted) continues it to its end
    env["REQUEUE"] = "0"
    second = launch(env, tmp_path, log)
    out = finish(second, log)[len(out):]
    assert second.returncode == 0, out[-3000:]
    assert f"ngpt-tune: {experiment} exists: continuing it" in out
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["counts"]["total"] == summary["counts"]["completed"] == 4
    trials = trial_dirs(experiment)
    assert before <= {t.name for t in trials}  # finished trials were kept, not run again
    nodes = {json.loads((t / "provenance.json").read_text())["node_id"] for t in trials}
    assert len(nodes) == 2  # the trials ran on both Ray nodes


def test_symmetric_run_command_line(tmp_path):
    """With RAY_LAUNCH=symmetric every node runs `ray symmetric-run` in one job step, the
    campaign as its entrypoint (srun only records here: nothing starts)."""
    env = fake_slurm(tmp_path)
    (tmp_path / "bin" / "srun").write_text(
        '#!/bin/bash\necho "srun $*" >> "$FAKE_SLURM_LOG"\n'
        'if [[ $* == *hostname* ]]; then echo 10.0.0.1; fi\n')
    env.update(RAY_LAUNCH="symmetric", RAY_PORT="6379", RAY_START_ARGS="--num-cpus=8",
               RAY_HEAD_ARGS="", RUN_ARGS="--smoke")
    out = subprocess.run(["bash", str(LAUNCHER)], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    calls = (tmp_path / "slurm-calls.log").read_text().splitlines()
    assert calls[-1] == (
        "srun --nodes=2 --ntasks-per-node=1 ray symmetric-run --address 10.0.0.1:6379 "
        f"--min-nodes 2 --num-cpus=8 -- python -m ngpt_tune run {tmp_path / 'spec.yaml'} "
        f"--storage {tmp_path / 'shared'} --name slurm --resume-if-exists "
        "--address 10.0.0.1:6379 --smoke")
