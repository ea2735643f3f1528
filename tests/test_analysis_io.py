"""analysis.io: a failed write leaves neither a half file nor a temporary one."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.io import to_jsonable, write_json, write_parquet, write_yaml


def test_json_is_strict_and_replaces_the_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text('{"old": true}')
    write_json(path, {"loss": math.inf, "n": np.int64(3), "x": np.float64(0.5), "na": pd.NA})
    assert json.loads(path.read_text()) == {"loss": None, "n": 3, "x": 0.5, "na": None}
    assert list(tmp_path.iterdir()) == [path]


def test_serialisation_error_leaves_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text('{"old": true}')
    with pytest.raises(TypeError, match="cannot write object"):
        write_json(path, {"bad": object()})
    assert path.read_text() == '{"old": true}'
    assert list(tmp_path.iterdir()) == [path]


def test_parquet_and_yaml(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    write_parquet(tmp_path / "f.parquet", frame)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f.parquet"), frame)
    write_yaml(tmp_path / "c.yaml", {"optim": {"betas": (0.9, 0.95)}})
    assert (tmp_path / "c.yaml").read_text() == "optim:\n  betas:\n  - 0.9\n  - 0.95\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "f.parquet"]


def test_to_jsonable_timestamps():
    assert to_jsonable(pd.Timestamp(0, unit="s", tz="UTC")) == "1970-01-01T00:00:00+00:00"
