"""Experiment trackers through Ray Tune's own callbacks: ``loggers:`` and ``run --logger``.

The slow tests run one tiny campaign with all three trackers and read back what a user would
open: MLflow's store with MLflow's client, W&B's offline run files with W&B's record schema,
TensorBoard's event files.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from campaign_helpers import results, run, trial_dirs, write_spec

from ngpt_tune.errors import ConfigError
from ngpt_tune.spec_sections import (
    MLFLOW_DB,
    LoggersSpec,
    MLflowLogger,
    TensorboardLogger,
    WandbLogger,
    parse_loggers,
)

TRACKED = """
name: tracked
search:
  model.alpha: {grid: [0.05, 0.2]}
searcher: grid
scheduler: fifo
loggers: [tensorboard, mlflow, wandb]
"""


# ---- the spec section -------------------------------------------------------------------
def test_loggers_are_names_or_names_with_settings():
    assert parse_loggers(None) == LoggersSpec()
    assert parse_loggers(["tensorboard", "mlflow"]).names == ["tensorboard", "mlflow"]
    loggers = parse_loggers([{"mlflow": {"tracking_uri": "http://mlflow:5000"}}, "wandb"])
    assert loggers.mlflow == MLflowLogger(tracking_uri="http://mlflow:5000")
    assert loggers.wandb == WandbLogger()
    loggers = parse_loggers({"wandb": {"project": "ngpt", "mode": "offline"}, "tensorboard": None})
    assert loggers == LoggersSpec(tensorboard=TensorboardLogger(),
                                  wandb=WandbLogger(project="ngpt", mode="offline"))


@pytest.mark.parametrize("raw, key, needle", [
    (["mlfow"], "loggers.mlfow", "did you mean 'mlflow'"),
    ({"mlflow": {"tracking_url": "x"}}, "loggers.mlflow.tracking_url", "did you mean"),
    ({"wandb": {"mode": "cloud"}}, "loggers.wandb.mode", "'offline'"),
    (["mlflow", "mlflow"], "loggers.mlflow", "listed twice"),
    ("42", "loggers.42", "unknown key"),
    (7, "loggers", "expected a list"),
])
def test_bad_loggers_name_the_key(raw, key, needle):
    with pytest.raises(ConfigError) as err:
        parse_loggers(raw)
    assert err.value.key == key
    assert needle in str(err.value)


def test_logger_option_adds_trackers_and_keeps_the_specs_settings():
    spec = parse_loggers({"mlflow": {"experiment_name": "mine"}})
    both = spec.with_names(["mlflow", "wandb"])
    assert both.names == ["mlflow", "wandb"]
    assert both.mlflow.experiment_name == "mine"
    with pytest.raises(ConfigError, match="unknown logger 'comet'"):
        spec.with_names(["comet"])


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_missing_extra_is_one_line_naming_the_extra(monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # `import NAME` now raises ImportError
    with pytest.raises(ConfigError) as err:
        parse_loggers(["tensorboard", name])
    message = str(err.value)
    assert err.value.key == f"loggers.{name}"
    assert f"pip install 'ngpt-tune[{name}]'" in message
    assert "\n" not in message


def test_missing_extra_stops_validate_and_run_before_anything_starts(monkeypatch, capsys,
                                                                     tmp_path):
    from ngpt_tune.__main__ import main

    monkeypatch.setitem(sys.modules, "mlflow", None)
    spec = write_spec(tmp_path, TRACKED.replace("[tensorboard, mlflow, wandb]", "[mlflow]"))
    assert main(["validate", str(spec)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == (f"ngpt-tune: error: {spec}: key 'loggers.mlflow': logging to mlflow needs "
                    "the mlflow package, which is not installed (import of mlflow halted; "
                    "None in sys.modules): pip install 'ngpt-tune[mlflow]'")
    plain = write_spec(tmp_path, TRACKED.replace("loggers: [tensorboard, mlflow, wandb]", ""))
    storage = tmp_path / "results"
    assert main(["run", str(plain), "--logger", "mlflow", "--storage", str(storage)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--logger" in line and "pip install 'ngpt-tune[mlflow]'" in line
    assert not storage.exists()  # no experiment folder: nothing was started


def test_logger_option_is_recorded_for_resume(tmp_path):
    from ngpt_tune.request import RunRequest, build_spec

    spec = write_spec(tmp_path, TRACKED.replace("[tensorboard, mlflow, wandb]", "[tensorboard]"))
    request = RunRequest.from_file(spec, loggers=("wandb",))
    record = json.loads(json.dumps(request.to_record()))  # as campaign.json keeps it
    assert build_spec(RunRequest.from_record(record)).loggers.names == ["tensorboard", "wandb"]


# ---- the callbacks, without Ray running ------------------------------------------------
def test_wandb_goes_offline_into_the_experiment_without_an_api_key(monkeypatch, tmp_path):
    from ngpt_tune import logger_callbacks

    no_credentials(monkeypatch, tmp_path)
    callback = logger_callbacks.wandb(WandbLogger(), campaign="c", experiment=str(tmp_path))
    assert callback.project == "c"
    assert callback.kwargs == {"mode": "offline", "dir": str(tmp_path.resolve())}
    # with credentials (faked: a real login would stay in this process's W&B session)
    monkeypatch.setattr("wandb.login", lambda **kwargs: not kwargs["prompt"])
    callback = logger_callbacks.wandb(WandbLogger(entity="team"), campaign="c",
                                      experiment=str(tmp_path))
    assert callback.kwargs == {"mode": "online", "dir": str(tmp_path.resolve()),
                               "entity": "team"}


class FakeTrial:
    """What the MLflow callback reads of a Tune trial."""

    def __init__(self, trial_id: str, config: dict):
        self.trial_id, self.config = trial_id, config

    def __str__(self) -> str:
        return f"train_ngpt_{self.trial_id}"


def test_resumed_trial_continues_its_mlflow_run(tmp_path):
    """Tune saves callback state with the experiment and restores it on ``resume``; a
    restarted trial logs into the MLflow run it had, not into a new one."""
    import pickle

    from mlflow import MlflowClient

    from ngpt_tune import logger_callbacks

    def fresh():
        return logger_callbacks.mlflow(MLflowLogger(), campaign="c", experiment=str(tmp_path))

    first = fresh()
    first.setup()
    trial = FakeTrial("t1", {"model.alpha": 0.1})
    first.log_trial_start(trial)
    first.log_trial_result(1, trial, {"step": 4, "val_loss": 5.0})
    state = pickle.loads(pickle.dumps(first.get_state()))

    second = fresh()  # what Tune unpickles on resume: state first, then setup
    second.set_state(state)
    second.setup()
    trial = FakeTrial("t1", {"model.alpha": 0.1})  # the trial, as Tune restores it
    second.log_trial_start(trial)
    second.log_trial_result(2, trial, {"step": 8, "val_loss": 4.0})
    second.log_trial_end(trial)

    client = MlflowClient(f"sqlite:///{tmp_path.resolve() / MLFLOW_DB}")
    [run_] = client.search_runs([client.get_experiment_by_name("c").experiment_id])
    history = client.get_metric_history(run_.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(4, 5.0), (8, 4.0)]
    assert run_.data.params["model.alpha"] == "0.1"
    assert run_.info.status == "FINISHED"


# ---- one real campaign with all three trackers -----------------------------------------
@pytest.fixture(scope="module")
def tracked(ray_session, tmp_path_factory):
    """``loggers: [tensorboard, mlflow, wandb]`` on a 2-trial grid, with no W&B credentials."""
    tmp = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as monkeypatch:
        no_credentials(monkeypatch, tmp)
        # GPT-2's vocabulary: trials of a second, not a fifth of one. W&B's run record is
        # written once wandb.init has finished in Ray's logging actor; a trial that ends before
        # that leaves an offline run without it (seen with the compact vocabulary)
        spec = write_spec(tmp, TRACKED, steps=12, eval_every=4, gpt2=True)
        experiment = run(spec, tmp / "results", "tracked")
    return experiment, {t.name.removeprefix("trial_"): results(t) for t in trial_dirs(experiment)}


@pytest.mark.slow
def test_mlflow_store_holds_each_trials_params_and_metric_history(tracked):
    from mlflow import MlflowClient

    experiment, reports = tracked
    client = MlflowClient(f"sqlite:///{experiment / MLFLOW_DB}")
    mlflow_experiment = client.get_experiment_by_name("tracked")  # the campaign's name
    runs = client.search_runs([mlflow_experiment.experiment_id])
    assert len(runs) == len(reports) == 2
    for run_ in runs:
        trial_id = run_.info.run_name.removeprefix("train_ngpt_")
        rows = reports[trial_id]
        assert run_.info.status == "FINISHED"
        assert run_.data.tags["ngpt_tune.experiment"] == str(experiment)
        params = run_.data.params
        assert float(params["model.alpha"]) == rows[0]["config"]["model.alpha"]  # searched
        assert params["train.steps"] == "12" and params["model.n_embd"] == "32"  # resolved
        for metric in ("val_loss", "train_loss", "tokens_seen"):
            history = client.get_metric_history(run_.info.run_id, metric)
            assert [m.step for m in history] == [r["step"] for r in rows], metric
            assert [m.value for m in history] == pytest.approx([r[metric] for r in rows]), metric
        assert [r["step"] for r in rows] == [4, 8, 12]


@pytest.mark.slow
def test_wandb_offline_runs_hold_each_trials_history(tracked):
    experiment, reports = tracked
    folders = sorted((experiment / "wandb").glob("offline-run-*"))
    assert len(folders) == 2
    for folder in folders:
        [log] = folder.glob("run-*.wandb")
        run_, history = read_wandb(log)
        rows = reports[run_.run_id]  # the W&B run id is the trial id
        assert run_.project == "tracked"
        config = {u.key: json.loads(u.value_json) for u in run_.config.update}
        assert config["model.alpha"] == rows[0]["config"]["model.alpha"]
        assert config["train.steps"] == 12
        for metric in ("step", "val_loss", "train_loss", "tokens_seen"):
            assert [h[metric] for h in history] == pytest.approx([r[metric] for r in rows])


@pytest.mark.slow
def test_tensorboard_event_files_in_every_trial(tracked):
    experiment, reports = tracked
    for trial in trial_dirs(experiment):
        events = list(trial.glob("events.out.tfevents.*"))
        assert len(events) == 1 and events[0].stat().st_size > 0


# ---- helpers ----------------------------------------------------------------------------
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """No W&B API key anywhere W&B looks: environment, netrc, its settings folder."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp / "wandb-config"))


def read_wandb(path: Path):
    """The run record and the history rows of a ``.wandb`` file (W&B's LevelDB-style log:
    a 7-byte file header, 32 KiB blocks of records with a 7-byte header each, a record split
    across blocks as FIRST, MIDDLE..., LAST), parsed with W&B's own protobuf schema."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block, pos, chunks = path.read_bytes(), 32768, 7, b""
    run_, history = None, []
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # the rest of a block too small for a header is zero padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = Record.FromString(chunks)
            chunks = b""
            if record.HasField("run"):
                run_ = record.run
            elif record.HasField("history"):
                history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                for item in record.history.item})
    return run_, history
