"""download_fineweb, with the Hub replaced by fakes: no real network in tests."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest

from ngpt_tune.download import REPO_ID, download_fineweb, fineweb_filenames
from ngpt_tune.errors import ConfigError, DataError
from ngpt_tune.shards import write_shard


def test_filenames():
    assert fineweb_filenames(2) == [
        "fineweb_val_000000.bin",
        "fineweb_train_000001.bin",
        "fineweb_train_000002.bin",
    ]


def test_offline_is_one_line_naming_repo_and_file(tmp_path, monkeypatch):
    def offline(**kwargs):
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except OSError as err:
            raise ConnectionError("could not reach huggingface.co") from err

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(DataError) as info:
        download_fineweb(1, tmp_path)
    message = str(info.value)
    assert REPO_ID in message and "fineweb_val_000000.bin" in message and "offline" in message
    assert "Name or service not known" in message and "\n" not in message


def test_downloads_and_validates(tmp_path, monkeypatch):
    calls = []

    def fake(*, repo_id, filename, repo_type, local_dir, force_download=False):
        assert (repo_id, repo_type) == (REPO_ID, "dataset")
        calls.append(filename)
        write_shard(Path(local_dir) / filename, np.arange(16))
        return str(Path(local_dir) / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    paths = download_fineweb(2, tmp_path / "fw")
    assert [p.name for p in paths] == fineweb_filenames(2)
    assert all(p.is_absolute() and p.is_file() for p in paths)
    assert calls == fineweb_filenames(2)
    download_fineweb(2, tmp_path / "fw")  # valid shards already there: nothing fetched
    assert len(calls) == 3


def test_corrupt_download_is_rejected(tmp_path, monkeypatch):
    def fake(*, local_dir, filename, **kwargs):
        (Path(local_dir) / filename).write_bytes(b"<html>not a shard</html>")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    with pytest.raises(DataError, match="fineweb_val_000000.bin: .*too short"):
        download_fineweb(1, tmp_path)


def test_missing_hub_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(DataError, match=r"pip install 'ngpt-tune\[hub\]'"):
        download_fineweb(1, tmp_path)


def test_shard_count_range(tmp_path):
    with pytest.raises(ConfigError, match="shards"):
        download_fineweb(0, tmp_path)


def test_corrupt_local_shard_is_fetched_again(tmp_path, monkeypatch):
    forced = {}

    def fake(*, local_dir, filename, force_download=False, **kwargs):
        forced[filename] = force_download
        write_shard(Path(local_dir) / filename, np.arange(4))

    (tmp_path / "fineweb_val_000000.bin").write_bytes(b"partial")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    download_fineweb(1, tmp_path)
    assert forced == {"fineweb_val_000000.bin": True, "fineweb_train_000001.bin": False}
