"""prepare_data: text, jsonl and parquet inputs become shards that decode back to the texts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ngpt_tune.config import DataConfig
from ngpt_tune.data import resolve_shards
from ngpt_tune.errors import ConfigError, DataError
from ngpt_tune.prepare import PrepareSummary, prepare_data
from ngpt_tune.shards import read_shard
from ngpt_tune.tokenizer import EOT, gpt2_encoding

TEXTS = [f"Document number {i}: the sphere is where nGPT lives. " * (i + 1) for i in range(12)]


def decode_all(paths) -> str:
    tokens = np.concatenate([np.asarray(read_shard(p)) for p in paths])
    return gpt2_encoding().decode(tokens.tolist())


def joined(texts) -> str:
    return "".join("<|endoftext|>" + t for t in texts)


def write_jsonl(path: Path, texts) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def write_parquet(path: Path, texts, column: str = "text") -> Path:
    pq.write_table(pa.table({column: texts, "n": list(range(len(texts)))}), path, row_group_size=5)
    return path


def test_jsonl_round_trip_and_summary(tmp_path):
    src = write_jsonl(tmp_path / "docs.jsonl", TEXTS)
    summary = prepare_data([src], tmp_path / "out", val_fraction=0.2, show_progress=False)
    out = (tmp_path / "out").resolve()
    assert isinstance(summary, PrepareSummary)
    assert (summary.documents, summary.train_shards, summary.val_shards) == (12, 1, 1)
    n_val = 3  # ceil(0.2 * 12) first documents
    val, train = summary.paths
    assert val.name == "fineweb_val_000000.bin" and train.name == "fineweb_train_000001.bin"
    assert decode_all([val]) == joined(TEXTS[:n_val])
    assert decode_all([train]) == joined(TEXTS[n_val:])
    assert summary.tokens == sum(len(read_shard(p)) for p in summary.paths)
    assert (
        str(summary) == f"12 documents, {summary.tokens} tokens -> 1 train + 1 val shards in {out}"
    )
    found_train, found_val = resolve_shards(DataConfig(dir=str(out)))
    assert (found_train, found_val) == ([train], [val])


def test_txt_files_are_one_document_each(tmp_path, capsys):
    paths = []
    for i, text in enumerate(TEXTS[:3]):
        paths.append(tmp_path / f"{i}.txt")
        paths[-1].write_text(text + "\nsecond line\n")
    summary = prepare_data(paths, tmp_path / "out", val_fraction=0.3)
    assert summary.documents == 3
    assert "tokenizing" in capsys.readouterr().err  # the progress bar
    texts = [t + "\nsecond line\n" for t in TEXTS[:3]]
    assert decode_all(summary.paths) == joined(texts)
    assert read_shard(summary.paths[0]).tolist().count(EOT) == 1


def test_parquet_and_mixed_inputs_with_small_shards(tmp_path):
    pq_path = write_parquet(tmp_path / "docs.parquet", TEXTS[:8])
    jsonl = write_jsonl(tmp_path / "more.jsonl", TEXTS[8:])
    summary = prepare_data(
        [pq_path, jsonl], tmp_path / "out", val_fraction=0.1, shard_tokens=100, show_progress=False
    )
    assert summary.documents == 12 and summary.val_shards >= 1 and summary.train_shards > 2
    assert decode_all(summary.paths) == joined(TEXTS)
    sizes = [len(read_shard(p)) for p in summary.paths]
    assert max(sizes) == 100 and sum(sizes) == summary.tokens
    names = [p.name for p in summary.paths]
    assert names[0] == "fineweb_val_000000.bin"
    assert names[summary.val_shards] == f"fineweb_train_{summary.val_shards:06d}.bin"


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("notes.md", "hi", "unknown input type '.md'"),
        ("bad.jsonl", '{"text": "ok"}\n{"title": "no text"}\n', r"bad.jsonl:2: no string 'text'"),
        ("broken.jsonl", '{"text": "ok"}\n\n{"text": \n', r"broken.jsonl:3: not valid JSON"),
    ],
)
def test_bad_inputs(tmp_path, name, content, match):
    src = tmp_path / name
    src.write_text(content)
    other = write_jsonl(tmp_path / "good.jsonl", TEXTS[:3])
    with pytest.raises(DataError, match=match) as info:
        prepare_data([other, src], tmp_path / "out", show_progress=False)
    assert str(src) in str(info.value) and "\n" not in str(info.value)


def test_parquet_without_text_column(tmp_path):
    src = write_parquet(tmp_path / "x.parquet", TEXTS[:3], column="content")
    with pytest.raises(DataError, match="no 'text' column") as info:
        prepare_data([src], tmp_path / "out", show_progress=False)
    assert str(src) in str(info.value) and "content" in str(info.value)


def test_missing_input_and_too_few_documents(tmp_path):
    with pytest.raises(DataError, match="no such file") as info:
        prepare_data([tmp_path / "absent.txt"], tmp_path / "out", show_progress=False)
    assert "absent.txt" in str(info.value)
    one = tmp_path / "one.txt"
    one.write_text("just one document")
    with pytest.raises(DataError, match="at least 2"):
        prepare_data([one], tmp_path / "out", show_progress=False)


def test_refuses_to_mix_with_existing_shards(tmp_path):
    src = write_jsonl(tmp_path / "docs.jsonl", TEXTS)
    prepare_data([src], tmp_path / "out", show_progress=False)
    with pytest.raises(DataError, match="already holds"):
        prepare_data([src], tmp_path / "out", show_progress=False)
    again = prepare_data([src], tmp_path / "out", show_progress=False, overwrite=True)
    assert sorted((tmp_path / "out").glob("*.bin")) == sorted(again.paths)


def test_bad_arguments(tmp_path):
    src = write_jsonl(tmp_path / "docs.jsonl", TEXTS)
    with pytest.raises(ConfigError, match="val_fraction"):
        prepare_data([src], tmp_path / "out", val_fraction=1.0, show_progress=False)
    with pytest.raises(ConfigError, match="shard_tokens"):
        prepare_data([src], tmp_path / "out", shard_tokens=0, show_progress=False)
