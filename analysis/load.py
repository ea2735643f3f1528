"""Read an experiment folder into two DataFrames, without Ray and without a GPU.

The folder is the one :mod:`ngpt_tune.experiment` describes: ``campaign.json``, Tune's
``experiment_state-*.json`` and one ``trial_<id>`` folder per trial (``params.json``,
``result.json``, ``provenance.json``, ``error.txt`` if it ever failed). The status of a trial
comes from Tune's final state of it (the newest ``experiment_state-*.json``) and its last report:

- ``errored``: Tune's final state is ERROR (its retries, ``max_failures``, are spent);
- ``infeasible``: the last report has ``infeasible: true``: its memory allocation was refused
  (out of memory), so it ended without a retry; ``error`` holds the allocator's line;
- ``diverged``: the last report has ``diverged: true``;
- ``completed``: the last report has ``finished: true`` (``step == max_steps``);
- ``stopped``: reported but never finished, i.e. stopped early by the scheduler (its budget
  is ``budget_fraction = steps / max_steps`` and ``tokens_seen``);
- ``unfinished``: Tune's state has it running or pending (the campaign was interrupted, or is
  still running): ``resume`` continues it;
- ``pending``: no report.

A trial that failed, was retried from its checkpoint and then finished or was stopped keeps
its status; ``failures`` (Tune's count) and ``error`` (the last line of ``error.txt``) say what
happened on the way. A trial that Tune's saved state does not know yet (saved every few
seconds) is ``errored`` when it has an ``error.txt`` and no finished report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from analysis.location import Location, locate
from analysis.schema import (
    FIXED_TRIAL_COLUMNS,
    HISTORY_SCHEMA,
    config_column,
    to_frame,
    trials_schema,
)
from ngpt_tune.config import ModelConfig, flatten_dotted
from ngpt_tune.errors import ConfigError
from ngpt_tune.experiment import (
    CAMPAIGN_FILE,
    ERROR_FILE,
    ERROR_KEY,
    INFEASIBLE_KEY,
    PARAMS_FILE,
    PROVENANCE_FILE,
    RESULT_FILE,
    TRIAL_INDEX_KEY,
    TUNE_STATE_GLOB,
    final_column,
    number_or_none,
    parse_reports,
    read_campaign,
    trial_id_from_dirname,
)
from ngpt_tune.flops import flops_per_token

__all__ = ["CAMPAIGN_FILE", "Experiment", "TrialRecord", "TuneState", "load_experiment",
           "read_reports", "read_trial", "trial_status"]
LIVE_STATES = ("RUNNING", "PENDING", "PAUSED")


@dataclass
class Experiment:
    """One campaign's results: ``trials`` (one row per trial), ``history`` (one per report)."""

    path: Path  # the local folder that was read
    campaign: dict[str, Any]
    trials: pd.DataFrame
    history: pd.DataFrame
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial_id -> nested config
    trials_schema: pa.Schema = field(default_factory=trials_schema)
    location: Location | None = None

    @property
    def name(self) -> str:
        return str(self.campaign.get("name") or self.path.name)

    @property
    def metric(self) -> str:
        """The report key the campaign optimised (``val_loss`` or ``train_loss``)."""
        return str(self.campaign["metric"])

    @property
    def mode(self) -> str:
        return str(self.campaign["mode"])

    @property
    def metric_column(self) -> str:
        """The trials column the analysis ranks on: the metric's last report."""
        return final_column(self.metric)

    @property
    def seed_key(self) -> str:
        return str(self.campaign["seed_key"])

    @property
    def search_keys(self) -> list[str]:
        """The searched keys, the seed key excluded."""
        return [k for k in self.campaign.get("search_keys") or [] if k != self.seed_key]

    @property
    def display_path(self) -> str:
        return self.location.display if self.location else str(self.path)

    def completed(self) -> pd.DataFrame:
        return self.trials[self.trials["status"] == "completed"]


def load_experiment(path: str | os.PathLike) -> Experiment:
    """Load the experiment at ``path`` (a folder, or a URI ``pyarrow.fs`` can open).

    Example:
        >>> exp = load_experiment("ngpt_results/alpha_lr")  # doctest: +SKIP
        >>> exp.trials.groupby("model.alpha")["final_val_loss"].mean()  # doctest: +SKIP
    """
    location = locate(path)
    root = location.local
    if not root.is_dir():
        raise FileNotFoundError(f"{location.display}: no such experiment folder")
    campaign = read_campaign(root)
    states = tune_trial_states(root)
    records = [read_trial(folder, state=states.get(folder.name)) for folder in trial_folders(root)]
    seed_key = campaign["seed_key"]
    search_keys = [k for k in campaign["search_keys"] if k != seed_key]
    rows, config_values, configs = [], [], {}
    for record in records:
        row, values = _trial_row(record, seed_key)
        rows.append(row)
        config_values.append(values)
        if record.config:
            configs[row["trial_id"]] = record.config
    _name_groups(rows, config_values, search_keys, seed_key)
    schema = _with_config_columns(rows, config_values)
    history = [h for record, row in zip(records, rows) for h in _history_rows(record, row)]
    return Experiment(
        path=root,
        campaign=campaign,
        trials=to_frame(rows, schema),
        history=to_frame(history, HISTORY_SCHEMA),
        configs=configs,
        trials_schema=schema,
        location=location,
    )


def trial_folders(root: Path) -> list[Path]:
    """Sub-folders holding ``params.json`` or ``result.json``, by name."""
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and ((d / PARAMS_FILE).is_file() or (d / RESULT_FILE).is_file())
    )


@dataclass(frozen=True)
class TuneState:
    """Tune's final word on a trial: ``status`` (TERMINATED, ERROR, RUNNING, PENDING, PAUSED)
    and ``num_failures`` (how often it crashed, retries included)."""

    status: str
    num_failures: int = 0


@dataclass
class TrialRecord:
    """What one trial folder holds, as read from disk."""

    folder: Path
    params: dict[str, Any]
    reports: list[dict[str, Any]]
    provenance: dict[str, Any]
    error: str | None
    state: TuneState | None = None  # None: Tune's saved state does not know the trial

    @property
    def config(self) -> dict[str, Any]:
        return self.provenance.get("config") or {}


def tune_trial_states(root: Path) -> dict[str, TuneState]:
    """Trial folder name -> Tune's state of it, from the newest ``experiment_state-*.json``
    (``trial_data``: per trial, the trial's JSON and its run metadata's JSON).

    Newest by the time stamp in the name (``experiment_state-2026-11-23_21-49-20.json``), not
    by modification time: a resumed run copies the older state files again when it syncs."""
    saved = sorted(root.glob(TUNE_STATE_GLOB))
    if not saved:
        return {}
    try:
        states = {}
        for entry in json.loads(saved[-1].read_text())["trial_data"]:
            trial, metadata = (json.loads(e) if isinstance(e, str) else e for e in entry[:2])
            states[str(trial["relative_logdir"])] = TuneState(
                str(trial["status"]), int(metadata.get("num_failures") or 0))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return {}  # a format this version does not know: statuses from the reports alone
    return states


def read_trial(folder: Path, *, state: TuneState | None = None) -> TrialRecord:
    reports = read_reports(folder / RESULT_FILE)
    params = _read_json(folder / PARAMS_FILE)
    provenance = _read_json(folder / PROVENANCE_FILE)
    params = {k: v for k, v in flatten_dotted(params).items() if k != TRIAL_INDEX_KEY}
    error_file = folder / ERROR_FILE
    error = None
    if error_file.is_file():
        lines = [line.strip() for line in error_file.read_text(errors="replace").splitlines()]
        error = next((line for line in reversed(lines) if line), "error.txt is empty")
    return TrialRecord(folder, params, reports, provenance, error, state)


def read_reports(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``result.json`` (:func:`ngpt_tune.experiment.parse_reports`)."""
    return parse_reports(path.read_text(errors="replace")) if path.is_file() else []




def trial_status(record: TrialRecord) -> str:
    """One of :data:`analysis.schema.STATUSES`, as the module docstring defines them."""
    last = record.reports[-1] if record.reports else None
    state = record.state.status if record.state else None
    if state == "ERROR" or (state is None and record.error is not None
                            and not (last and last.get("finished"))):
        return "errored"
    live = state in LIVE_STATES
    if last is None:
        return "unfinished" if live else "pending"
    if last.get(INFEASIBLE_KEY):
        return "infeasible"
    if last.get("diverged"):
        return "diverged"
    if last.get("finished"):
        return "completed"
    return "unfinished" if live else "stopped"


def _trial_row(record: TrialRecord, seed_key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fixed columns of one trial, and its configuration values by dotted key."""
    prov, reports = record.provenance, record.reports
    last = reports[-1] if reports else {}
    values = flatten_dotted(record.config)
    for key, value in record.params.items():
        values.setdefault(key, value)
    variant = prov.get("variant", record.params.get("variant"))
    values.setdefault("variant", variant)
    seed = prov.get("seed", values.get(seed_key))
    val_losses = [number_or_none(r.get("val_loss")) for r in reports]
    finite = [v for v in val_losses if v is not None and math.isfinite(v)]
    steps, max_steps = _int(last.get("step")), _int(last.get("max_steps"))
    if max_steps is None:
        max_steps = _int(values.get("train.steps"))
    tokens = _int(last.get("tokens_seen"))
    branch_tokens = _int(last.get("branch_tokens"))
    n_params = _int(last.get("n_params"))
    speeds = [s for s in (number_or_none(r.get("tokens_per_s")) for r in reports) if s is not None]
    wall = number_or_none(last.get("time_total_s", last.get("elapsed_s")))
    trial_id = str(
        last.get("trial_id") or prov.get("trial_id") or trial_id_from_dirname(record.folder.name)
    )
    row = {
        "trial_id": trial_id,
        "trial_dir": record.folder.name,
        "status": trial_status(record),
        "variant": None if variant is None else str(variant),
        "seed": _int(seed),
        "final_val_loss": val_losses[-1] if val_losses else None,
        "best_val_loss": min(finite) if finite else None,
        "final_train_loss": number_or_none(last.get("train_loss")),
        "steps": steps,
        "max_steps": max_steps,
        "budget_fraction": steps / max_steps if steps is not None and max_steps else None,
        "tokens_seen": tokens,
        "branch_tokens": branch_tokens,
        "tokens_per_s": statistics.median(speeds) if speeds else None,
        "wall_time_s": wall,
        "n_params": n_params,
        "flops": _flops(record.config, n_params,
                        None if tokens is None else tokens + (branch_tokens or 0)),
        "device": prov.get("device"),
        "gpus": number_or_none((prov.get("resources") or {}).get("GPU")),
        "n_reports": len(reports),
        "started_at": _time(prov.get("created_at"))
        or _time(reports[0].get("timestamp") if reports else None),
        "ended_at": _time(last.get("timestamp")),
        "error": record.error or (str(last[ERROR_KEY]) if last.get(INFEASIBLE_KEY) else None),
        "failures": record.state.num_failures if record.state else int(record.error is not None),
    }
    return row, values


def _name_groups(
    rows: list[dict], values: list[dict], search_keys: list[str], seed_key: str
) -> None:
    """Trials whose configs differ only by the seed share ``config_id`` and ``group``."""
    names: dict[str, set[str]] = {}
    for row, config in zip(rows, values):
        same = {k: v for k, v in config.items() if k != seed_key}
        digest = json.dumps(same, sort_keys=True, default=str).encode()
        row["config_id"] = hashlib.sha1(digest).hexdigest()[:10]
        shown = [k for k in search_keys if k in config]
        row["group"] = ", ".join(f"{k}={format_value(config[k])}" for k in shown) or "default"
        names.setdefault(row["group"], set()).add(row["config_id"])
    for row in rows:
        if len(names[row["group"]]) > 1:  # same searched values, other keys differ
            row["group"] = f"{row['group']} [{row['config_id'][:6]}]"


def _with_config_columns(rows: list[dict], values: list[dict]) -> pa.Schema:
    keys = sorted({k for config in values for k in config} - set(FIXED_TRIAL_COLUMNS))
    fields = []
    for key in keys:
        column_field, column = config_column(key, [config.get(key) for config in values])
        fields.append(column_field)
        for row, value in zip(rows, column):
            row[key] = value
    return trials_schema(fields)


def _history_rows(record: TrialRecord, row: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per step. A trial restored from a checkpoint (after a lost node or a killed
    driver) reports the steps after that checkpoint again: the latest report of a step wins."""
    latest = {r.get("step"): r for r in record.reports if not r.get(INFEASIBLE_KEY)}
    return [
        {
            "trial_id": row["trial_id"],
            "step": _int(r.get("step")),
            "tokens_seen": _int(r.get("tokens_seen")),
            "train_loss": number_or_none(r.get("train_loss")),
            "val_loss": number_or_none(r.get("val_loss")),
            "val_loss_raw": number_or_none(r.get("val_loss_raw", r.get("val_loss"))),
            "lr": number_or_none(r.get("lr")),
            "tokens_per_s": number_or_none(r.get("tokens_per_s")),
            "elapsed_s": number_or_none(r.get("elapsed_s")),
            "time_total_s": number_or_none(r.get("time_total_s")),
            "projections": _int(r.get("projections")),
        }
        for r in latest.values()
    ]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _flops(config: dict[str, Any], n_params: int | None, tokens: int | None) -> float | None:
    if not config.get("model") or n_params is None or tokens is None:
        return None
    try:
        model = ModelConfig(**config["model"])
    except (TypeError, ConfigError):
        return None
    return tokens * flops_per_token(model, n_params)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) else None


def _time(value: Any) -> dt.datetime | None:
    """A UTC datetime from an ISO string or a Unix timestamp."""
    if value is None:
        return None
    try:
        if isinstance(value, (int, float)):
            return dt.datetime.fromtimestamp(float(value), tz=dt.timezone.utc)
        parsed = dt.datetime.fromisoformat(str(value))
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
