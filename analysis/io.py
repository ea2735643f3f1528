"""Atomic writes of the analysis outputs (JSON, YAML, Parquet), through
:func:`ngpt_tune.files.atomic_write`: a temporary name in the same folder, then ``os.replace``.

A crash or an exception while serialising or writing never leaves a half file under the final
name: readers see the old file or the new one, and the temporary file is removed on failure.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ngpt_tune.files import atomic_write

__all__ = ["atomic_write", "to_jsonable", "write_json", "write_parquet", "write_text", "write_yaml"]


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Strict JSON (non-finite floats become ``null``), serialised before any file is opened."""
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return write_text(path, text)


def write_yaml(path: str | os.PathLike, obj: Any) -> Path:
    text = yaml.safe_dump(to_jsonable(obj), sort_keys=False)
    return write_text(path, text)


def write_parquet(path: str | os.PathLike, table: Any) -> Path:
    """Write a ``pyarrow.Table`` (or a pandas DataFrame) as Parquet."""
    import pyarrow as pa  # lazy: pyarrow is slow to import (only Parquet writes need it)
    import pyarrow.parquet as pq  # pyarrow.parquet: only when a table is written

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def to_jsonable(obj: Any) -> Any:
    """Plain Python containers and scalars: numpy/pandas scalars unwrapped, NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    try:
        import pandas as pd  # lazy: JSON of plain values needs no pandas

        if obj is pd.NA or obj is pd.NaT:
            return None
        if isinstance(obj, pd.Timestamp):
            return obj.isoformat()
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    raise TypeError(f"cannot write {type(obj).__name__} as JSON: {obj!r}")
