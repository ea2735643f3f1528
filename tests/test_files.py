"""The shared atomic write: shards, checkpoints and summaries never end up half-written."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from ngpt_tune.files import atomic_write, is_remote, local_path
from ngpt_tune.runner import resolve_storage
from ngpt_tune.shards import read_shard, write_shard


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_crash_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    path = tmp_path / "trials.parquet"
    path.write_bytes(b"old")

    def half_then_crash(tmp):
        tmp.write_bytes(b"half a fi")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, half_then_crash)
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]


def test_written_files_are_readable_by_others(tmp_path):
    # results and shards on a shared disk must not come out private (mkstemp's 0600)
    path = atomic_write(tmp_path / "sub" / "summary.json", lambda tmp: tmp.write_text("{}"))
    assert path.read_text() == "{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    shard = tmp_path / "train_000001.bin"
    write_shard(shard, np.arange(10))
    assert stat.S_IMODE(shard.stat().st_mode) == 0o644
    assert read_shard(shard).tolist() == list(range(10))


def test_file_uris_are_local_paths_and_object_stores_are_remote(tmp_path, monkeypatch):
    assert not is_remote(tmp_path) and not is_remote(f"file://{tmp_path}")
    assert is_remote("s3://bucket/ngpt_results") and is_remote("gs://bucket/x")
    assert local_path(f"file://{tmp_path}/my%20runs") == tmp_path / "my runs"
    monkeypatch.chdir(tmp_path)
    assert local_path("results") == tmp_path / "results"
    # `run --storage file:///...` stores where the URI says, not in ./file:
    assert resolve_storage(f"file://{tmp_path}/runs") == str(tmp_path / "runs")
    assert resolve_storage("s3://bucket/runs") == "s3://bucket/runs"


@pytest.mark.parametrize("remote", [False, True])
def test_campaign_record_round_trip_local_and_remote(tmp_path, monkeypatch, remote):
    """campaign.json is written and read through one module, for folders and URIs alike
    (``remote``: pyarrow's filesystem code path, on a file:// URI)."""
    import ngpt_tune.files
    from ngpt_tune.errors import NgptTuneError
    from ngpt_tune.experiment import CAMPAIGN_FILE, read_campaign, write_campaign

    if remote:
        monkeypatch.setattr(ngpt_tune.files, "is_remote", lambda path: True)
    folder = tmp_path / "e"
    where = folder.as_uri() if remote else str(folder)
    write_campaign(where, {"name": "x", "request": {"smoke": True}})
    assert json.loads((folder / CAMPAIGN_FILE).read_text())["request"] == {"smoke": True}
    assert read_campaign(where)["name"] == "x"
    with pytest.raises(NgptTuneError, match="not an ngpt-tune experiment folder"):
        read_campaign(tmp_path.as_uri() + "/nope" if remote else tmp_path / "nope")
