"""The shared atomic write: shards, checkpoints and summaries never end up half-written."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from ngpt_tune.data import read_shard, write_shard
from ngpt_tune.files import atomic_write


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
