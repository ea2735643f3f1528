"""A node lost mid-trial, and a preempted driver: the campaign still ends as it would have.

The node-loss test runs Ray's own multi-node test cluster (``ray.cluster_utils.Cluster``: a
head and a worker node on this machine) in a subprocess. Two identical-shape trials run, one per
node; once the trial on the worker node has saved a checkpoint, the worker node is removed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from campaign_helpers import kill_and_resume, results, trial_dirs, write_spec

from ngpt_tune.config import Config
from ngpt_tune.train import fit

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent

# the driver: a 2-node cluster, the campaign, and a thread that removes the worker node once
# the trial on it has saved a checkpoint; prints the node ids as one JSON line
DRIVER = """
import json, sys, threading, time
from pathlib import Path
import ray
from ray.cluster_utils import Cluster
from campaign_helpers import run

root = Path(sys.argv[1])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
worker = cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
nodes = {"head": cluster.head_node.node_id, "worker": worker.node_id}

def remove_worker_after_its_first_checkpoint():
    experiment = root / "r" / "nodes"
    while True:
        for trial in experiment.glob("trial_*"):
            prov = trial / "provenance.json"
            if prov.exists() and any(trial.glob("checkpoint_0*")):
                try:
                    on = json.loads(prov.read_text())["node_id"]
                except ValueError:  # being written
                    continue
                if on == nodes["worker"]:
                    nodes["lost_trial"] = trial.name
                    cluster.remove_node(worker, allow_graceful=False)
                    return
        time.sleep(0.05)

threading.Thread(target=remove_worker_after_its_first_checkpoint, daemon=True).start()
run(root / "spec.yaml", root / "r", "nodes")
print("NODES " + json.dumps(nodes), flush=True)
ray.shutdown()
cluster.shutdown()
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
           "RAY_AIR_NEW_OUTPUT": "0"}
    env.pop("RAY_ADDRESS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


def test_a_lost_node_costs_the_trial_only_the_steps_since_its_checkpoint(tmp_path):
    write_spec(tmp_path, """
name: nodes
search:
  train.seed: {grid: [0, 1]}
searcher: grid
scheduler: fifo
max_failures: 2
""", steps=120, eval_every=10)  # a window of 11 reports after the first checkpoint, for the
    # thread that removes the node to act in, also on a loaded machine
    out = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path)], cwd=tmp_path,
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    nodes = json.loads(out.stdout.split("NODES ", 1)[1].splitlines()[0])
    assert "lost_trial" in nodes, "the worker node was never removed"
    experiment = tmp_path / "r" / "nodes"
    lost = experiment / nodes["lost_trial"]
    rows = results(lost)

    # it was retried on the surviving node, from its last checkpoint, not from step 0
    restarts = [i for i, r in enumerate(rows) if i and r["iterations_since_restore"] == 1]
    assert restarts, "the trial was not restored"
    # where the retry ran: its provenance, or (when Tune's artifact sync brought back the first
    # attempt's provenance.json along with the checkpoint) the worker process that reported it,
    # one the head node's other trial reported from (Tune reuses that actor)
    on_head = {r["pid"] for t in trial_dirs(experiment) if t != lost
               and json.loads((t / "provenance.json").read_text())["node_id"] == nodes["head"]
               for r in results(t)}
    retried_in = {r["pid"] for r in rows[restarts[-1]:]}
    assert (json.loads((lost / "provenance.json").read_text())["node_id"] == nodes["head"]
            or retried_in <= on_head), (retried_in, on_head)
    assert not retried_in & {r["pid"] for r in rows[:restarts[-1]]}  # not the lost process
    resumed_at = rows[restarts[-1]]["step"] - 10  # the checkpoint's step
    assert resumed_at > 0
    assert resumed_at in [r["step"] for r in rows[:restarts[-1]]]
    assert rows[-1]["step"] == 120 and rows[-1]["finished"]

    # every loss it reported equals the uninterrupted run's at the same step
    config = Config.from_dict(json.loads((lost / "provenance.json").read_text())["config"])
    reference = {}
    fit(config, report=lambda m, save: reference.setdefault(m["step"], m["val_loss"]))
    assert {r["step"]: r["val_loss"] for r in rows} == reference

    # its status is what it would have been without the loss; the failure stays as information
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["counts"].get("completed") == 2, summary["counts"]
    assert not summary["counts"].get("errored")
    assert len(summary["ranking"]) == 2


def test_sigterm_saves_state_like_ctrl_c_and_a_corrupt_checkpoint_is_skipped(tmp_path):
    """A preemption (SIGTERM) stops the run resumably; after it, the latest checkpoint is
    truncated (as by a node lost mid-write) and ``resume`` falls back to the previous one."""
    spec_path = write_spec(tmp_path, """
name: preempt
search:
  model.alpha: {grid: [0.1]}
searcher: grid
scheduler: fifo
checkpoint: {every: 100, keep: 3}
""", steps=1000, eval_every=100)  # the resumed run long enough (seconds) for Ray to forward
    # its worker's log line to the terminal before the driver exits

    def two_checkpoints(experiment: Path) -> bool:
        return any(len(results(t)) >= 2 for t in experiment.glob("trial_*")
                   if (t / "result.json").exists())

    def cut_the_latest_checkpoint(experiment: Path) -> tuple[list[dict], Path]:
        (trial,) = trial_dirs(experiment)
        before = results(trial)
        assert not before[-1]["finished"]
        # the latest checkpoint Tune recorded (a newer folder may exist: written by the trial
        # after the driver's last save), cut short
        latest, previous = (trial / r["checkpoint_dir_name"] for r in before[-1:-3:-1])
        state = latest / "state.pt"
        state.write_bytes(state.read_bytes()[:1000])
        return before, latest

    # a preemption: SIGTERM, what a cloud provider sends before preempting; then the resume
    # with --verbose: the trials' logs reach the terminal (by default they stay in Ray's files)
    stopped = kill_and_resume(spec_path, tmp_path / "r" / "exp", when=two_checkpoints,
                              sig=signal.SIGTERM, between=cut_the_latest_checkpoint,
                              resume_args=("--verbose",), timeout=240, env=_env())
    experiment = stopped.experiment
    assert f"resume with `python -m ngpt_tune resume {experiment}`" in stopped.output, (
        stopped.output[-3000:])
    before, latest = stopped.between
    out = stopped.resumed
    assert f"checkpoint {latest} could not be read" in out.stdout + out.stderr
    (trial,) = trial_dirs(experiment)
    after = results(trial)
    resumed = after[len(before)]  # the first report after the resume
    assert resumed["iterations_since_restore"] == 1
    assert resumed["step"] == before[-2]["step"] + 100  # continued from the previous checkpoint
    assert after[-1]["finished"] and after[-1]["step"] == 1000
