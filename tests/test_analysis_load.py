"""analysis.load: trial folders -> trials / history DataFrames; schema; Parquet round trip."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analysis_fixtures import (
    A_FINALS,
    N_PARAMS,
    STOPPED_LOSS,
    TOKENS_PER_STEP,
    curve,
    make_alpha_lr,
    write_campaign,
    write_trial,
)

import analysis.location
from analysis import (
    FIXED_TRIAL_COLUMNS,
    HISTORY_SCHEMA,
    load_experiment,
    write_outputs,
)
from analysis.load import read_reports
from analysis.location import fetch
from analysis.schema import TRIAL_FIELDS
from ngpt_tune.config import ModelConfig
from ngpt_tune.errors import NgptTuneError
from ngpt_tune.experiment import RESULT_FILE, TUNE_STATE_GLOB
from ngpt_tune.flops import flops_per_token


@pytest.fixture
def alpha_lr(tmp_path):
    return make_alpha_lr(tmp_path / "alpha_lr")


def by_id(exp):
    return exp.trials.set_index("trial_id")


def test_status_of_every_trial(alpha_lr):
    exp = load_experiment(alpha_lr)
    status = by_id(exp)["status"].to_dict()
    assert status == {
        "a0": "completed",
        "a1": "completed",
        "a2": "completed",
        "b0": "completed",
        "b1": "completed",
        "b2": "completed",
        "f0": "completed",
        "c0": "stopped",
        "d0": "diverged",
        "e0e0e_00009": "errored",
    }


def test_trial_columns_hold_the_reported_numbers(alpha_lr):
    trials = by_id(load_experiment(alpha_lr))
    a1 = trials.loc["a1"]
    assert a1["final_val_loss"] == A_FINALS[1]
    assert a1["steps"] == a1["max_steps"] == 400
    assert a1["tokens_seen"] == 400 * TOKENS_PER_STEP
    assert a1["budget_fraction"] == 1.0
    assert a1["seed"] == 1 and a1["train.seed"] == 1
    assert a1["model.alpha"] == 0.15 and a1["optim.lr"] == 5e-4
    assert a1["n_params"] == N_PARAMS
    assert a1["wall_time_s"] == pytest.approx(40.0)
    assert a1["device"] == "cpu"
    assert a1["flops"] == pytest.approx(
        400 * TOKENS_PER_STEP * flops_per_token(ModelConfig(), N_PARAMS)
    )
    assert trials.loc["b0", "best_val_loss"] == 6.50 and trials.loc["b0", "final_val_loss"] == 6.55
    stopped = trials.loc["c0"]
    assert (stopped["steps"], stopped["budget_fraction"]) == (200, 0.5)
    assert stopped["final_val_loss"] == STOPPED_LOSS
    assert (
        math.isinf(trials.loc["d0", "final_val_loss"]) and trials.loc["d0", "best_val_loss"] == 8.0
    )
    errored = trials.loc["e0e0e_00009"]
    assert errored["error"] == "RuntimeError: CUDA out of memory"
    assert pd.isna(errored["steps"]) and errored["n_reports"] == 0


def test_seeds_of_one_configuration_share_a_group(alpha_lr):
    trials = by_id(load_experiment(alpha_lr))
    a = trials.loc[["a0", "a1", "a2"]]
    assert a["config_id"].nunique() == 1
    assert set(a["group"]) == {"model.alpha=0.15, optim.lr=0.0005"}
    assert trials.loc["b0", "config_id"] != trials.loc["a0", "config_id"]


def test_config_values_are_columns_by_dotted_key(alpha_lr):
    trials = load_experiment(alpha_lr).trials
    assert list(trials.columns[: len(FIXED_TRIAL_COLUMNS)]) == list(FIXED_TRIAL_COLUMNS)
    for key in ("model.alpha", "optim.lr", "model.n_layer", "data.batch_size", "optim.betas"):
        assert key in trials
    assert trials["optim.betas"].iloc[0] == "[0.9, 0.95]"  # lists are JSON text
    assert str(trials["model.n_layer"].dtype) == "Int64"
    assert "__trial_index__" not in trials


def test_history_has_one_row_per_report(alpha_lr):
    exp = load_experiment(alpha_lr)
    history = exp.history
    assert list(history.columns) == HISTORY_SCHEMA.names
    assert len(history) == 7 * 4 + 2 + 2  # 7 finished trials, the stopped and the diverged one
    a0 = history[history["trial_id"] == "a0"]
    assert a0["step"].tolist() == [100, 200, 300, 400]
    assert a0["val_loss"].tolist() == curve(A_FINALS[0], 4)
    assert a0["tokens_seen"].tolist() == [s * TOKENS_PER_STEP for s in (100, 200, 300, 400)]
    assert math.isinf(history[history["trial_id"] == "d0"]["val_loss"].iloc[-1])


def test_parquet_round_trip_and_schema(alpha_lr):
    exp = load_experiment(alpha_lr)
    write_outputs(exp, plots=False)
    trials = pd.read_parquet(alpha_lr / "trials.parquet")
    history = pd.read_parquet(alpha_lr / "history.parquet")
    pd.testing.assert_frame_equal(trials, exp.trials)
    pd.testing.assert_frame_equal(history, exp.history)
    schema = pq.read_schema(alpha_lr / "trials.parquet")
    for expected in TRIAL_FIELDS:
        assert schema.field(expected.name).type == expected.type, expected.name
    assert schema.field("model.alpha").type == pa.float64()
    assert schema.field("model.gated_residuals").type == pa.bool_()
    assert (
        pq.read_schema(alpha_lr / "history.parquet")
        .remove_metadata()
        .equals(HISTORY_SCHEMA.remove_metadata())
    )
    assert schema.metadata[b"ngpt_tune.schema_version"] == b"1"


def test_empty_experiment_keeps_the_schema(tmp_path):
    root = tmp_path / "empty"
    write_campaign(root, name="empty", search_keys=["model.alpha"])
    exp = load_experiment(root)
    assert exp.trials.empty and exp.history.empty
    summary_path = write_outputs(root)
    assert list(pd.read_parquet(root / "trials.parquet").columns) == list(FIXED_TRIAL_COLUMNS)
    summary = json.loads(summary_path.read_text())
    assert summary["counts"]["total"] == 0 and summary["best"] is None


def test_tune_result_json_quirks(tmp_path):
    """A line cut short by a crash, NaN written by Python's json."""
    root = tmp_path / "bare"
    write_campaign(root, name="bare", search_keys=["optim.lr", "train.seed"])
    folder = write_trial(
        root,
        "t1",
        trial_id="t1",
        params={"optim.lr": 0.01, "train.seed": 3},
        val_losses=[float("nan"), 7.0],
    )
    with open(folder / "result.json", "a") as handle:
        handle.write('{"step": 300, "val_loss": 6.')  # a crash mid-line
    assert len(read_reports(folder / "result.json")) == 2
    exp = load_experiment(root)
    assert exp.campaign["name"] == "bare"
    assert exp.search_keys == ["optim.lr"]
    row = exp.trials.iloc[0]
    assert (row["status"], row["steps"], row["best_val_loss"]) == ("stopped", 200, 7.0)
    assert math.isnan(exp.history["val_loss"].iloc[0])


def test_a_folder_without_campaign_json_is_not_an_experiment(tmp_path):
    write_trial(tmp_path / "bare", "t1", params={"optim.lr": 0.01}, val_losses=[7.0])
    with pytest.raises(NgptTuneError, match="not an ngpt-tune experiment folder"):
        load_experiment(tmp_path / "bare")


def test_load_from_a_file_uri(alpha_lr):
    exp = load_experiment(alpha_lr.as_uri())
    assert exp.path == alpha_lr.resolve() and len(exp.trials) == 10


def test_remote_uri_is_copied_and_outputs_uploaded(alpha_lr, monkeypatch):
    copy = fetch(alpha_lr.as_uri())
    assert (copy / "train_0_a" / "result.json").is_file()
    assert not (copy / "train_0_a" / "checkpoint_000000").exists()  # checkpoints are skipped
    shutil.rmtree(copy)
    monkeypatch.setattr(analysis.location, "is_remote", lambda path: True)
    summary_path = write_outputs(alpha_lr.as_uri(), plots=False)
    assert summary_path.parent != alpha_lr  # analysed in a local copy...
    uploaded = json.loads((alpha_lr / "summary.json").read_text())  # ...and copied back
    assert uploaded["experiment"] == alpha_lr.as_uri()
    assert uploaded["best"]["config_path"] == f"{alpha_lr.as_uri()}/best_config.yaml"
    assert (alpha_lr / "trials.parquet").is_file()
    shutil.rmtree(summary_path.parent)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such experiment"):
        load_experiment(tmp_path / "nope")


def test_analysis_imports_neither_ray_nor_torch(alpha_lr):
    code = (
        "import sys; from analysis import write_outputs; "
        f"write_outputs({str(alpha_lr)!r}); "
        "loaded = sorted(m for m in ('ray', 'torch') if m in sys.modules); "
        "assert not loaded, loaded"
    )
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=alpha_lr, env=env)


def test_trial_written_by_the_runner(tmp_path):
    """The runner names folders ``trial_{id}``; the trainable's provenance names the device."""
    root = tmp_path / "runner"
    write_campaign(root, name="runner", search_keys=["optim.lr"])
    folder = write_trial(root, "trial_deadbeef", params={"optim.lr": 0.01}, val_losses=[],
                         status="ERROR", failures=2)
    (folder / "result.json").unlink()
    (folder / "error.txt").write_text("Traceback ...\nValueError: boom\n\n")
    ok = write_trial(
        root,
        "trial_0123abcd",
        trial_id="0123abcd",
        params={"optim.lr": 0.02},
        val_losses=[7.0, 6.0, 5.0, 4.0],
    )
    prov = json.loads((ok / "provenance.json").read_text())
    prov["device"] = "cuda"  # ngpt_tune.provenance.placement: the device the loop trained on
    (ok / "provenance.json").write_text(json.dumps(prov))
    trials = by_id(load_experiment(root))
    assert trials.loc["deadbeef", "status"] == "errored"
    assert trials.loc["deadbeef", "error"] == "ValueError: boom"
    assert trials.loc["deadbeef", "failures"] == 2
    assert trials.loc["0123abcd", "device"] == "cuda"


def test_a_retried_trial_keeps_the_status_of_its_last_run(tmp_path):
    """Lost its node, retried from its checkpoint, then stopped by ASHA: error.txt from the
    first run remains, Tune's final state is TERMINATED; it is ``stopped``, not ``errored``."""
    root = tmp_path / "retried"
    write_campaign(root, name="retried", search_keys=["optim.lr"])
    write_trial(root, "trial_r0", trial_id="r0", params={"optim.lr": 0.01},
                val_losses=[7.5, 7.0], error="ray.exceptions.NodeDiedError: node lost",
                status="TERMINATED", failures=1)
    write_trial(root, "trial_r1", trial_id="r1", params={"optim.lr": 0.02},
                val_losses=curve(6.9, 4), error="ray.exceptions.NodeDiedError: node lost",
                status="TERMINATED", failures=1)
    write_trial(root, "trial_r2", trial_id="r2", params={"optim.lr": 0.03},
                val_losses=[7.5], error="RuntimeError: CUDA out of memory",
                status="ERROR", failures=2)
    trials = by_id(load_experiment(root))
    assert trials["status"].to_dict() == {"r0": "stopped", "r1": "completed", "r2": "errored"}
    assert trials["failures"].to_dict() == {"r0": 1, "r1": 1, "r2": 2}
    assert trials.loc["r0", "error"] == "ray.exceptions.NodeDiedError: node lost"
    summary = json.loads(write_outputs(root, plots=False).read_text())
    assert summary["counts"]["stopped"] == 1 and summary["counts"]["errored"] == 1
    assert summary["retried"] == [
        {"trial_id": t, "status": status, "failures": 1,
         "last_error": "ray.exceptions.NodeDiedError: node lost"}
        for t, status in [("r0", "stopped"), ("r1", "completed")]]
    assert [(f["trial_id"], f["failures"]) for f in summary["failed"]] == [("r2", 2)]


@pytest.mark.parametrize(("metric", "mode", "order"), [
    ("val_loss", "min", ["v", "w", "t"]),
    ("train_loss", "min", ["t", "w", "v"]),
    ("train_loss", "max", ["v", "w", "t"]),
])
def test_the_campaign_s_metric_and_mode_rank_the_trials(tmp_path, metric, mode, order):
    """``metric: train_loss`` / ``mode: max`` in the spec: ranked and labelled so."""
    from analysis import format_ranking

    root = tmp_path / metric
    write_campaign(root, name="m", search_keys=["optim.lr"], metric=metric, mode=mode)
    for trial_id, lr, val, train in [("v", 1e-3, 6.0, 6.9), ("w", 2e-3, 6.5, 6.5),
                                     ("t", 3e-3, 7.0, 5.0)]:
        write_trial(root, f"trial_{trial_id}", trial_id=trial_id, params={"optim.lr": lr},
                    val_losses=curve(val, 4), train_losses=[9.0, 8.0, 7.0, train])
    summary = json.loads(write_outputs(root, plots=False).read_text())
    assert [e["trial_id"] for e in summary["ranking"]] == order
    assert summary["ranked_on"].startswith(f"final_{metric} (the {metric} of the last report; "
                                           f"mode {mode})")
    assert summary["best"]["value"] == {"val_loss": {"v": 6.0, "w": 6.5, "t": 7.0},
                                        "train_loss": {"v": 6.9, "w": 6.5, "t": 5.0}}[
                                            metric][order[0]]
    header = next(line for line in format_ranking(summary).splitlines() if " trial " in line)
    assert header.split()[4] == metric


def test_reports_repeated_after_a_restore_are_one_history_row_each(tmp_path):
    """A trial restored from a checkpoint (a killed driver, a lost node) reports the steps after
    that checkpoint again, and one restored from its final checkpoint reports its finished state
    once more: the history keeps one row per step, the ranking one entry per trial."""
    root = tmp_path / "restored"
    write_campaign(root, name="restored", search_keys=["optim.lr"])
    folder = write_trial(root, "trial_d0", trial_id="d0", params={"optim.lr": 0.01},
                         val_losses=curve(6.9, 4))
    rows = (folder / RESULT_FILE).read_text().splitlines()
    (folder / RESULT_FILE).write_text("\n".join(rows + rows[2:] + rows[-1:]) + "\n")
    write_trial(root, "trial_d1", trial_id="d1", params={"optim.lr": 0.02},
                val_losses=curve(7.1, 4))
    experiment = load_experiment(root)
    history = experiment.history[experiment.history.trial_id == "d0"]
    assert history["step"].tolist() == sorted(set(history["step"])) and len(history) == 4
    summary = json.loads(write_outputs(root, plots=False).read_text())
    assert [e["trial_id"] for e in summary["ranking"]] == ["d0", "d1"]


def test_the_newest_tune_state_is_the_one_named_last(tmp_path):
    """A resumed run syncs the older state file again, so modification times lie: the name's
    time stamp decides."""
    root = tmp_path / "resumed"
    write_campaign(root, name="resumed", search_keys=["optim.lr"])
    write_trial(root, "trial_s0", trial_id="s0", params={"optim.lr": 0.01},
                val_losses=[7.5, 7.0], status="TERMINATED")
    (new,) = root.glob(TUNE_STATE_GLOB)
    old = root / "experiment_state-2000-01-01_00-00-00.json"
    old.write_text(new.read_text().replace("TERMINATED", "RUNNING"))
    os.utime(new, (1, 1))  # the older file looks newer
    assert by_id(load_experiment(root)).loc["s0", "status"] == "stopped"
