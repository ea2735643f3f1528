"""`run --address`: a campaign on an existing Ray cluster started with `ray start --head`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from campaign_helpers import write_spec

pytestmark = pytest.mark.slow
# a tiny campaign, then its confirmation stage: the whole run on the cluster (the quickstart
# smoke run itself, on a local Ray instance, is tests/experiments.py's quickstart_cli)
CAMPAIGN = """
name: cluster-test
search:
  model.alpha: {grid: [0.05, 0.3]}
searcher: grid
scheduler: fifo
confirm: {top_k: 1, seeds: 2}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_campaign_on_an_existing_cluster(tmp_path):
    port = free_port()
    # token authentication must be configured alike on every node and on the driver
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
         "--include-dashboard", "false", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(8)
        assert head.poll() is None, "ray start --head failed"
        spec = write_spec(tmp_path, CAMPAIGN, steps=12, eval_every=6)
        out = subprocess.run(
            [sys.executable, "-m", "ngpt_tune", "run", str(spec),
             "--address", f"127.0.0.1:{port}", "--storage", str(tmp_path / "r"),
             "--name", "cluster"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert "Connected to Ray cluster" in out.stdout + out.stderr
        assert "campaign cluster-test: 2 trials" in out.stdout
        assert "confirmed winner:" in out.stdout  # the confirmation stage ran there too
        assert (tmp_path / "r" / "cluster" / "summary.json").exists()
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops its node on SIGTERM
        head.wait(timeout=60)

