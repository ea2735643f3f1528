"""The columns of ``trials.parquet`` and ``history.parquet``: fixed names, fixed Arrow types.

``trials`` has the fixed columns below, in this order, then one column per configuration value
(dotted keys: ``model.alpha``, ``optim.lr``...), sorted; their types are inferred per column
(bool, int64, double, or string for anything else, lists as JSON). ``history`` is fixed.
Integer columns are pandas ``Int64`` (nullable) and strings ``string`` in memory, so
``pd.read_parquet`` returns exactly the frames :func:`analysis.load_experiment` builds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pandas as pd
import pyarrow as pa

SCHEMA_VERSION = 1
STATUSES = ("completed", "stopped", "diverged", "infeasible", "errored", "unfinished", "pending")
_TIME = pa.timestamp("ms", tz="UTC")

TRIAL_FIELDS = (
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("trial_dir", pa.string(), nullable=False),  # folder name inside the experiment
    pa.field("status", pa.string(), nullable=False),  # one of STATUSES
    pa.field("config_id", pa.string()),  # hash of the resolved config without the seed
    pa.field("group", pa.string()),  # the searched values without the seed, readable
    pa.field("variant", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("final_val_loss", pa.float64()),  # last report; inf when diverged or infeasible
    pa.field("best_val_loss", pa.float64()),  # lowest finite report
    pa.field("final_train_loss", pa.float64()),
    pa.field("steps", pa.int64()),  # last reported step
    pa.field("max_steps", pa.int64()),
    pa.field("budget_fraction", pa.float64()),  # steps / max_steps
    pa.field("tokens_seen", pa.int64()),
    pa.field("branch_tokens", pa.int64()),  # trained in cooled-rung branches (ngpt_tune.branches)
    pa.field("tokens_per_s", pa.float64()),  # median over reports (the first includes compile)
    pa.field("wall_time_s", pa.float64()),  # Tune's time_total_s of the last report
    pa.field("n_params", pa.int64()),
    pa.field("flops", pa.float64()),  # (tokens_seen + branch_tokens) * flops per token
    pa.field("device", pa.string()),
    pa.field("gpus", pa.float64()),  # GPUs Ray granted the trial (a share: 0.5), whatever device
    pa.field("n_reports", pa.int64()),
    pa.field("started_at", _TIME),
    pa.field("ended_at", _TIME),
    pa.field("error", pa.string()),  # last line of error.txt (the last failure), or the
    # allocator's line of an infeasible trial
    pa.field("failures", pa.int64()),  # how often Tune saw the trial crash, retries included
)

HISTORY_FIELDS = (
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("step", pa.int64()),
    pa.field("tokens_seen", pa.int64()),
    pa.field("train_loss", pa.float64()),
    pa.field("val_loss", pa.float64()),  # at a cooled rung: the branch's (what ASHA judged)
    pa.field("val_loss_raw", pa.float64()),  # the run's own, branch or not
    pa.field("lr", pa.float64()),
    pa.field("tokens_per_s", pa.float64()),
    pa.field("elapsed_s", pa.float64()),
    pa.field("time_total_s", pa.float64()),
    pa.field("projections", pa.int64()),
)

HISTORY_SCHEMA = pa.schema(
    HISTORY_FIELDS, metadata={"ngpt_tune.schema_version": str(SCHEMA_VERSION)}
)
FIXED_TRIAL_COLUMNS = tuple(f.name for f in TRIAL_FIELDS)

_PANDAS_TYPES = {
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
}


def trials_schema(config_fields: Iterable[pa.Field] = ()) -> pa.Schema:
    return pa.schema(
        [*TRIAL_FIELDS, *config_fields],
        metadata={"ngpt_tune.schema_version": str(SCHEMA_VERSION)},
    )


def config_column(name: str, values: list[Any]) -> tuple[pa.Field, list[Any]]:
    """An Arrow field for one configuration key and its values converted to fit it."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.field(name, pa.bool_()), values
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.field(name, pa.int64()), values
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.field(name, pa.float64()), [None if v is None else float(v) for v in values]
    return pa.field(name, pa.string()), [None if v is None else _as_text(v) for v in values]


def to_frame(rows: list[dict[str, Any]], schema: pa.Schema) -> pd.DataFrame:
    """Rows (dicts) -> a DataFrame whose dtypes are those a Parquet round trip gives back."""
    table = pa.Table.from_pylist(rows, schema=schema)
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


def to_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """A DataFrame -> Arrow table with ``schema`` (and pandas metadata for the dtypes)."""
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)
