"""Token shards, shard discovery, the training loader, the val set and the built-in corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ngpt_tune.builtin_corpus import builtin_corpus_dir, compact_ids
from ngpt_tune.config import BUILTIN_COMPACT_DATA, COMPACT_VOCAB, Config, DataConfig
from ngpt_tune.data import TokenLoader, resolve_shards, val_batches
from ngpt_tune.errors import ConfigError, DataError
from ngpt_tune.shards import (
    HEADER_BYTES,
    HEADER_INTS,
    MAGIC,
    VERSION,
    read_header,
    read_shard,
    write_shard,
)
from ngpt_tune.tokenizer import EOT, gpt2_encoding


def shard(path: Path, tokens) -> Path:
    write_shard(path, np.asarray(tokens))
    return path


def raw_shard(path: Path, header: list[int], n_tokens: int) -> Path:
    head = np.zeros(HEADER_INTS, dtype="<i4")
    head[: len(header)] = header
    path.write_bytes(head.tobytes() + np.arange(n_tokens, dtype="<u2").tobytes())
    return path


# --------------------------------------------------------------------------- shard files


def test_shard_round_trip(tmp_path):
    tokens = np.array([0, 1, EOT, 65535, 7], dtype=np.int64)
    path = shard(tmp_path / "a.bin", tokens)
    assert path.stat().st_size == HEADER_BYTES + 2 * len(tokens)
    header = np.fromfile(path, dtype="<i4", count=3)
    assert header.tolist() == [MAGIC, VERSION, 5]
    back = read_shard(path)
    assert isinstance(back, np.memmap) and back.dtype == np.uint16
    assert back.tolist() == tokens.tolist()
    assert read_header(path) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]  # no temp file left behind


def test_empty_shard_round_trip(tmp_path):
    assert len(read_shard(shard(tmp_path / "e.bin", np.array([], dtype=np.uint16)))) == 0


def test_write_rejects_ids_beyond_uint16(tmp_path):
    with pytest.raises(DataError, match="uint16"):
        write_shard(tmp_path / "big.bin", np.array([1, 70000]))
    assert not (tmp_path / "big.bin").exists()


def test_wrong_magic(tmp_path):
    path = raw_shard(tmp_path / "fineweb_val_000000.bin", [123, VERSION, 4], 4)
    with pytest.raises(DataError) as info:
        read_shard(path)
    assert str(info.value) == (
        f"{path}: wrong magic number 123 (expected {MAGIC}); not a modded-nanogpt token shard"
    )


def test_wrong_version(tmp_path):
    path = raw_shard(tmp_path / "v.bin", [MAGIC, 2, 4], 4)
    with pytest.raises(DataError, match="version 2") as info:
        read_shard(path)
    assert str(path) in str(info.value)


def test_truncated_shard_says_expected_and_actual_bytes(tmp_path):
    path = shard(tmp_path / "t.bin", np.arange(100))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="truncated") as info:
        read_shard(path)
    message = str(info.value)
    assert str(path) in message and "1224" in message and "1204" in message
    assert "\n" not in message


def test_short_header_and_missing_file(tmp_path):
    path = tmp_path / "tiny.bin"
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match="too short"):
        read_header(path)
    with pytest.raises(DataError, match="no such file"):
        read_header(tmp_path / "absent.bin")


# --------------------------------------------------------------------------- resolve_shards


def test_resolve_shards_sorted_absolute(tmp_path):
    for name in ["fineweb_train_000002.bin", "fineweb_train_000001.bin", "fineweb_val_000000.bin"]:
        shard(tmp_path / name, np.arange(10))
    (tmp_path / "notes.txt").write_text("not a shard")
    train, val = resolve_shards(DataConfig(dir=str(tmp_path)))
    assert [p.name for p in train] == ["fineweb_train_000001.bin", "fineweb_train_000002.bin"]
    assert [p.name for p in val] == ["fineweb_val_000000.bin"]
    assert all(p.is_absolute() for p in train + val)


def test_resolve_shards_missing_folder(tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    data = DataConfig(dir=str(folder))
    folder.rmdir()
    with pytest.raises(DataError, match="does not exist") as info:
        resolve_shards(data)
    assert str(folder) in str(info.value) and "download-fineweb" in str(info.value)


def test_resolve_shards_empty_folder(tmp_path):
    with pytest.raises(DataError) as info:
        resolve_shards(DataConfig(dir=str(tmp_path)))
    message = str(info.value)
    assert str(tmp_path) in message and "fineweb_train_*.bin" in message
    assert "download-fineweb --shards 2" in message and "--smoke" in message


def test_resolve_shards_checks_every_header(tmp_path):
    shard(tmp_path / "fineweb_train_000001.bin", np.arange(10))
    bad = raw_shard(tmp_path / "fineweb_val_000000.bin", [MAGIC, VERSION, 99], 4)
    with pytest.raises(DataError, match="truncated") as info:
        resolve_shards(DataConfig(dir=str(tmp_path)))
    assert str(bad) in str(info.value)


# --------------------------------------------------------------------------- TokenLoader


@pytest.fixture
def two_shards(tmp_path) -> list[Path]:
    return [
        shard(tmp_path / "fineweb_train_000001.bin", np.arange(0, 200)),
        shard(tmp_path / "fineweb_train_000002.bin", np.arange(1000, 1100)),
    ]


def test_loader_shapes_and_shift(two_shards):
    x, y = TokenLoader(two_shards, batch_size=3, block_size=8, seed=0).next_batch()
    assert x.shape == y.shape == (3, 8)
    assert x.dtype == y.dtype == torch.int64 and x.device.type == "cpu"
    assert torch.equal(x.flatten()[1:], y.flatten()[:-1])
    assert torch.equal(y, x + 1)  # arange tokens: every target is its input plus one


def test_loader_deterministic_and_seeds_differ(two_shards):
    def batches(seed: int) -> list[torch.Tensor]:
        loader = TokenLoader(two_shards, batch_size=2, block_size=4, seed=seed)
        return [loader.next_batch()[0] for _ in range(5)]

    first, again, other = batches(1), batches(1), batches(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_loader_is_sequential(two_shards):
    loader = TokenLoader(two_shards, batch_size=2, block_size=4, seed=0)
    x0, _ = loader.next_batch()
    x1, _ = loader.next_batch()
    assert x1[0, 0] == x0[0, 0] + 8  # advances by batch_size * block_size


def test_loader_moves_to_next_shard_and_wraps(two_shards):
    loader = TokenLoader(two_shards, batch_size=2, block_size=16, seed=0)
    loader.load_state_dict({"shard": 0, "pos": 0, "epoch": 0})
    starts = []
    for _ in range(10):
        starts.append((int(loader.next_batch()[0][0, 0]), loader.epoch))
    # shard 1: 200 tokens hold 6 batches of 32 (+1); shard 2: 100 tokens hold 3; then wrap
    assert starts == [
        (0, 0), (32, 0), (64, 0), (96, 0), (128, 0), (160, 0),
        (1000, 0), (1032, 0), (1064, 0),
        (0, 1),
    ]  # fmt: skip


def test_loader_state_dict_resumes_exactly(two_shards):
    loader = TokenLoader(two_shards, batch_size=2, block_size=16, seed=3)
    for _ in range(4):
        loader.next_batch()
    state = loader.state_dict()
    assert all(type(v) is int for v in state.values())
    expected = [loader.next_batch() for _ in range(8)]
    restored = TokenLoader(two_shards, batch_size=2, block_size=16, seed=99)
    restored.load_state_dict(state)
    for (x, y), (rx, ry) in zip(expected, [restored.next_batch() for _ in range(8)]):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    assert restored.state_dict() == loader.state_dict()


def test_loader_rejects_state_outside_the_shards(two_shards):
    loader = TokenLoader(two_shards, batch_size=2, block_size=4)
    with pytest.raises(DataError, match="shard 5"):
        loader.load_state_dict({"shard": 5, "pos": 0, "epoch": 0})


def test_loader_corpus_smaller_than_one_batch(tmp_path):
    path = shard(tmp_path / "fineweb_train_000001.bin", np.arange(50))
    with pytest.raises(DataError, match="fewer than one batch") as info:
        TokenLoader([path], batch_size=4, block_size=16)
    assert "65" in str(info.value) and str(tmp_path) in str(info.value)


# --------------------------------------------------------------------------- val_batches


def test_val_batches_fixed_prefix(tmp_path):
    path = shard(tmp_path / "fineweb_val_000000.bin", np.arange(1000))
    batches = val_batches([path], n_tokens=100, batch_size=2, block_size=16)
    assert len(batches) == 3  # 100 // 32 whole batches
    x0, y0 = batches[0]
    assert x0.shape == (2, 16) and x0.dtype == torch.int64
    assert x0[0].tolist() == list(range(16)) and torch.equal(y0, x0 + 1)
    stream = torch.cat([x.flatten() for x, _ in batches])
    assert stream.tolist() == list(range(96))
    again = val_batches([path], n_tokens=100, batch_size=2, block_size=16)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))


def test_val_batches_at_least_one_batch_and_short_split(tmp_path):
    path = shard(tmp_path / "fineweb_val_000000.bin", np.arange(60))
    assert len(val_batches([path], n_tokens=1, batch_size=2, block_size=8)) == 1
    batches = val_batches([path], n_tokens=10_000, batch_size=4, block_size=8)
    assert [x.shape[0] for x, _ in batches] == [4, 3]  # 59 // 8 = 7 sequences in all


def test_val_batches_span_several_shards(tmp_path):
    paths = [
        shard(tmp_path / "fineweb_val_000000.bin", np.arange(0, 10)),
        shard(tmp_path / "fineweb_val_000001.bin", np.arange(10, 40)),
    ]
    ((x, y),) = val_batches(paths, n_tokens=32, batch_size=2, block_size=16)
    assert x.flatten().tolist() == list(range(32)) and y[-1, -1] == 32


def test_val_batches_too_small(tmp_path):
    path = shard(tmp_path / "fineweb_val_000000.bin", np.arange(8))
    with pytest.raises(DataError, match="fewer than one sequence"):
        val_batches([path], n_tokens=64, batch_size=2, block_size=8)


# --------------------------------------------------------------------------- built-in corpus


@pytest.fixture(scope="module")
def builtin_dir(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NGPT_TUNE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield builtin_corpus_dir()


def test_builtin_corpus(builtin_dir):
    train, val = (builtin_dir / f"fineweb_{s}_000000.bin" for s in ("train", "val"))
    n_train, n_val = read_header(train), read_header(val)
    assert n_train + n_val > 100_000 and n_val >= 8192 and n_train > 5 * n_val
    tokens = read_shard(val)
    assert tokens[0] == EOT
    text = gpt2_encoding().decode(tokens[:2000].tolist())
    assert "<|endoftext|>" in text[1:]  # several documents, EOT-separated


def test_builtin_corpus_reused_and_repaired(builtin_dir, monkeypatch):
    monkeypatch.setenv("NGPT_TUNE_CACHE", str(builtin_dir.parent))
    train = builtin_dir / "fineweb_train_000000.bin"
    before = train.stat().st_mtime_ns
    assert builtin_corpus_dir() == builtin_dir
    assert train.stat().st_mtime_ns == before  # reused, not rebuilt
    good = train.read_bytes()
    train.write_bytes(good[:-2])
    assert builtin_corpus_dir() == builtin_dir
    assert train.read_bytes() == good  # a corrupt cache is rebuilt identically


def test_resolve_builtin(builtin_dir, monkeypatch):
    monkeypatch.setenv("NGPT_TUNE_CACHE", str(builtin_dir.parent))
    train, val = resolve_shards(DataConfig())
    assert [p.parent for p in train + val] == [builtin_dir, builtin_dir]
    loader = TokenLoader(train, batch_size=4, block_size=32, seed=0)
    assert loader.next_batch()[0].max() < 50257


def test_compact_ids_keep_the_most_frequent_tokens_and_fold_the_rest():
    train = np.array([7, 7, 7, 3, 3, 9, 9, 1], dtype=np.uint16)  # 9 and 3 tie: the lower id first
    val = np.array([7, 3, 1, 500], dtype=np.uint16)  # 500 is not in training
    small_train, small_val = compact_ids(train, val, vocab=4)
    assert small_train.tolist() == [0, 0, 0, 1, 1, 2, 2, 3]
    assert small_val.tolist() == [0, 1, 3, 3] and small_val.dtype == np.uint16


def test_builtin_compact_is_the_same_text_in_4096_ids(builtin_dir, monkeypatch):
    monkeypatch.setenv("NGPT_TUNE_CACHE", str(builtin_dir.parent))
    compact = builtin_corpus_dir(compact=True)
    assert compact != builtin_dir and compact.parent == builtin_dir.parent
    train, val = resolve_shards(DataConfig(dir=BUILTIN_COMPACT_DATA))
    assert [p.parent for p in train + val] == [compact, compact]
    full, small = read_shard(builtin_dir / "fineweb_train_000000.bin"), read_shard(train[0])
    assert len(small) == len(full) and small.max() == COMPACT_VOCAB - 1
    folded = small == COMPACT_VOCAB - 1
    assert 0.005 < folded.mean() < 0.01  # 99.3% of the tokens keep their identity
    # the same text: a kept token always stands for the same GPT-2 token
    pairs = np.unique(np.stack([small[~folded], full[~folded]]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1] == COMPACT_VOCAB - 1


def test_a_model_too_small_for_the_compact_corpus_is_one_line():
    with pytest.raises(ConfigError, match="key 'model.vocab_size': is 1000: data.dir "
                                          "builtin-compact has 4096 token ids"):
        Config.from_dict({"data": {"dir": BUILTIN_COMPACT_DATA}, "model": {"vocab_size": 1000}})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_to_cuda_matches_cpu(two_shards):
    cpu = TokenLoader(two_shards, batch_size=2, block_size=8, seed=5).next_batch()
    gpu = TokenLoader(two_shards, batch_size=2, block_size=8, seed=5).next_batch(device="cuda")
    assert gpu[0].device.type == "cuda" and gpu[0].dtype == torch.int64
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])
