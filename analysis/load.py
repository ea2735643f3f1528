"""Read an experiment folder into two DataFrames, without Ray and without a GPU.

An experiment folder is Tune's ``storage_path/name``: ``campaign.json`` (written by the runner)
and one folder per trial holding ``params.json``, ``result.json`` (JSON lines, one per report),
``provenance.json`` and, when the trial failed, ``error.txt``. Tune's own state files are not
read. The status of a trial:

- ``errored``: ``error.txt`` exists (unless a retry then finished: ``completed``, error kept);
- ``diverged``: the last report has ``diverged: true``;
- ``completed``: the last report has ``finished: true`` (``step == max_steps``);
- ``stopped``: reported but never finished, i.e. stopped early by the scheduler (its budget
  is ``budget_fraction = steps / max_steps`` and ``tokens_seen``);
- ``unfinished``: Tune's latest saved state has it running or pending (the campaign was
  interrupted, or is still running): ``resume`` continues it;
- ``pending``: no report and no error.

Only Tune's newest ``experiment_state-*.json`` is read, for that last distinction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
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
from ngpt_tune.flops import flops_per_token

CAMPAIGN_FILE = "campaign.json"
DEFAULT_METRIC, DEFAULT_MODE, DEFAULT_SEED_KEY = "val_loss", "min", "train.seed"
IGNORED_PARAMS = ("__trial_index__",)
_TUNE_TRIAL_ID = re.compile(r"(?:^|_)([0-9a-f]{5}_[0-9]{5})(?=_|$)")
_RUNNER_TRIAL_ID = re.compile(r"^trial_([0-9A-Za-z_]+)$")


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
        return str(self.campaign.get("metric") or DEFAULT_METRIC)

    @property
    def mode(self) -> str:
        return str(self.campaign.get("mode") or DEFAULT_MODE)

    @property
    def seed_key(self) -> str:
        return str(self.campaign.get("seed_key") or DEFAULT_SEED_KEY)

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
    live = live_trial_folders(root)
    records = [read_trial(folder, live=folder.name in live) for folder in trial_folders(root)]
    if campaign.get("search_keys") is None:  # no campaign.json: what Tune varied
        keys = sorted({k for r in records for k in r.params})
        campaign["search_keys"] = keys
    seed_key = campaign.get("seed_key") or DEFAULT_SEED_KEY
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


def read_campaign(root: Path) -> dict[str, Any]:
    """``campaign.json``, or a minimal stand-in named after the folder when it is missing."""
    path = root / CAMPAIGN_FILE
    if path.is_file():
        campaign = json.loads(path.read_text())
    else:
        campaign = {"name": root.name, "search_keys": None, "compare": None}
    campaign.setdefault("name", root.name)
    campaign.setdefault("metric", DEFAULT_METRIC)
    campaign.setdefault("mode", DEFAULT_MODE)
    campaign.setdefault("seed_key", DEFAULT_SEED_KEY)
    campaign.setdefault("compare", None)
    campaign.setdefault("search_keys", None)
    return campaign


def trial_folders(root: Path) -> list[Path]:
    """Sub-folders holding ``params.json`` or ``result.json``, by name."""
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and ((d / "params.json").is_file() or (d / "result.json").is_file())
    )


@dataclass
class TrialRecord:
    """What one trial folder holds, as read from disk."""

    folder: Path
    params: dict[str, Any]
    reports: list[dict[str, Any]]
    provenance: dict[str, Any]
    error: str | None
    live: bool = False  # Tune's saved state has it running or pending

    @property
    def config(self) -> dict[str, Any]:
        return self.provenance.get("config") or {}


def live_trial_folders(root: Path) -> set[str]:
    """Folders of the trials that Tune's newest saved state has RUNNING, PENDING or PAUSED."""
    states = sorted(root.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return set()
    try:
        data = json.loads(states[-1].read_text())
        trials = [json.loads(t[0]) if isinstance(t[0], str) else t[0] for t in data["trial_data"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return set()  # a format this version does not know: no trial is called unfinished
    return {str(t.get("relative_logdir")) for t in trials
            if t.get("status") in ("RUNNING", "PENDING", "PAUSED")}


def read_trial(folder: Path, *, live: bool = False) -> TrialRecord:
    reports = read_reports(folder / "result.json")
    params = _read_json(folder / "params.json")
    provenance = _read_json(folder / "provenance.json")
    if not params:  # Tune repeats the config in every result line; the trainable records it
        params = (
            (reports[-1].get("config") if reports else None) or provenance.get("searched") or {}
        )
    params = {k: v for k, v in flatten_dotted(params).items() if k not in IGNORED_PARAMS}
    error_file = folder / "error.txt"
    error = None
    if error_file.is_file():
        lines = [line.strip() for line in error_file.read_text(errors="replace").splitlines()]
        error = next((line for line in reversed(lines) if line), "error.txt is empty")
    return TrialRecord(folder, params, reports, provenance, error, live)


def read_reports(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``result.json``; a line cut short by a crash is skipped."""
    if not path.is_file():
        return []
    reports = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            report = json.loads(line)  # accepts NaN / Infinity, as Python's json writes them
        except json.JSONDecodeError:
            continue
        if isinstance(report, dict):
            reports.append(report)
    return reports




def trial_status(record: TrialRecord) -> str:
    last = record.reports[-1] if record.reports else None
    if record.error is not None and not (last and last.get("finished")):
        return "errored"
    if last is None:
        return "unfinished" if record.live else "pending"
    if last.get("diverged"):
        return "diverged"
    if last.get("finished"):
        return "completed"
    return "unfinished" if record.live else "stopped"


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
    val_losses = [_float(r.get("val_loss")) for r in reports]
    finite = [v for v in val_losses if v is not None and math.isfinite(v)]
    steps, max_steps = _int(last.get("step")), _int(last.get("max_steps"))
    if max_steps is None:
        max_steps = _int(values.get("train.steps"))
    tokens = _int(last.get("tokens_seen"))
    n_params = _int(last.get("n_params", prov.get("n_params")))
    speeds = [s for s in (_float(r.get("tokens_per_s")) for r in reports) if s is not None]
    wall = _float(last.get("time_total_s", last.get("elapsed_s")))
    trial_id = str(
        last.get("trial_id") or prov.get("trial_id") or _id_from_dirname(record.folder.name)
    )
    row = {
        "trial_id": trial_id,
        "trial_dir": record.folder.name,
        "status": trial_status(record),
        "variant": None if variant is None else str(variant),
        "seed": _int(seed),
        "final_val_loss": val_losses[-1] if val_losses else None,
        "best_val_loss": min(finite) if finite else None,
        "final_train_loss": _float(last.get("train_loss")),
        "steps": steps,
        "max_steps": max_steps,
        "budget_fraction": steps / max_steps if steps is not None and max_steps else None,
        "tokens_seen": tokens,
        "tokens_per_s": statistics.median(speeds) if speeds else None,
        "wall_time_s": wall,
        "n_params": n_params,
        "flops": _flops(record.config, n_params, tokens),
        "device": _device(prov),
        "n_reports": len(reports),
        "started_at": _time(prov.get("created_at"))
        or _time(reports[0].get("timestamp") if reports else None),
        "ended_at": _time(last.get("timestamp")),
        "error": record.error,
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
    return [
        {
            "trial_id": row["trial_id"],
            "step": _int(r.get("step")),
            "tokens_seen": _int(r.get("tokens_seen")),
            "train_loss": _float(r.get("train_loss")),
            "val_loss": _float(r.get("val_loss")),
            "lr": _float(r.get("lr")),
            "tokens_per_s": _float(r.get("tokens_per_s")),
            "elapsed_s": _float(r.get("elapsed_s")),
            "time_total_s": _float(r.get("time_total_s")),
            "projections": _int(r.get("projections")),
        }
        for r in record.reports
    ]


def _id_from_dirname(name: str) -> str:
    """The trial id in a folder name: the runner's ``trial_{id}``, or Tune's default
    ``{trainable}_{id}_{index}_{tag}`` with ids like ``3f2a1_00004``; else the name itself."""
    match = _TUNE_TRIAL_ID.search(name) or _RUNNER_TRIAL_ID.match(name)
    return match.group(1) if match else name


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _device(prov: dict[str, Any]) -> str | None:
    """``provenance["device"]``, else what ``train.device`` resolved to on the trial's host."""
    if prov.get("device"):
        return str(prov["device"])
    wanted = (prov.get("config") or {}).get("train", {}).get("device")
    if wanted == "auto":
        return "cuda" if (prov.get("hardware") or {}).get("cuda") else "cpu"
    return wanted


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


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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
