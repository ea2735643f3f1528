"""Turn your own text into token shards: ``python -m ngpt_tune prepare-data INPUT... --out DIR``.

Inputs are ``.txt`` (the whole file is one document), ``.jsonl`` (one JSON object per line,
its ``text`` field a document) and ``.parquet`` (the ``text`` column, streamed in batches).
Every document is GPT-2 tokenized and preceded by EOT. As in modded-nanogpt's FineWeb10B, the
first documents go to the val split (``fineweb_val_000000.bin``, ...) and the rest to
``fineweb_train_*.bin`` shards of at most ``shard_tokens`` tokens, numbered after the val ones.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ngpt_tune.errors import ConfigError, DataError, first_sentence
from ngpt_tune.shards import MAX_SHARD_TOKENS, write_shard
from ngpt_tune.tokenizer import encode_documents

if TYPE_CHECKING:
    import pyarrow.parquet as pq  # pyarrow only for .parquet inputs: start-up

SUFFIXES = (".txt", ".jsonl", ".parquet")
ENCODE_BATCH = 512  # documents tokenized per call
PARQUET_ROWS = 1024


@dataclass(frozen=True)
class PrepareSummary:
    """What :func:`prepare_data` wrote."""

    documents: int
    tokens: int
    train_shards: int
    val_shards: int
    paths: tuple[Path, ...]  # every shard written, val first
    out: Path

    def __str__(self) -> str:
        return (
            f"{self.documents} documents, {self.tokens} tokens -> {self.train_shards} train + "
            f"{self.val_shards} val shards in {self.out}"
        )


def prepare_data(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    val_fraction: float = 0.01,
    shard_tokens: int = 100_000_000,
    show_progress: bool = True,
    overwrite: bool = False,
) -> PrepareSummary:
    """Tokenize text files into train/val token shards.

    Args:
        inputs: ``.txt``, ``.jsonl`` or ``.parquet`` files, read in the order given.
        out: the folder for the shards (created if missing).
        val_fraction: the share of documents, taken from the start, that form the val split
            (at least one document, and at least one left for training). modded-nanogpt's
            FineWeb10B holds out 1%.
        shard_tokens: the most tokens per shard; documents may straddle two shards.
        show_progress: draw a progress bar on stderr.
        overwrite: delete ``fineweb_*.bin`` shards already in ``out`` instead of refusing.

    Returns:
        The counts and paths; ``str(summary)`` is the one-line report.

    Raises:
        DataError: a missing file, an unknown extension, a malformed jsonl line, a parquet file
            without a ``text`` column, too few documents, or ``out`` already holding shards.
        ConfigError: ``val_fraction`` or ``shard_tokens`` out of range.

    Example::

        summary = prepare_data([Path("/data/books.jsonl")], Path("/data/shards"))
        print(summary)  # 1200 documents, 3456789 tokens -> 1 train + 1 val shards in /data/shards
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"must be in (0, 1), got {val_fraction}", key="val_fraction")
    if not 0 < shard_tokens <= MAX_SHARD_TOKENS:
        raise ConfigError(
            f"must be in [1, {MAX_SHARD_TOKENS}], got {shard_tokens}", key="shard_tokens"
        )
    paths = [Path(p).expanduser().resolve() for p in inputs]
    if not paths:
        raise DataError("prepare-data: no input files given")
    n_docs = sum(_count_documents(p) for p in paths)
    if n_docs < 2:
        raise DataError(
            f"{paths[0]}: {n_docs} document(s) in all; need at least 2 (one for val, one for "
            "train); a .txt file is one document, so give several or use .jsonl"
        )
    n_val = min(max(1, math.ceil(val_fraction * n_docs)), n_docs - 1)
    out = _prepare_out(Path(out).expanduser().resolve(), overwrite=overwrite)

    val = _ShardWriter(out, "val", first_index=0, shard_tokens=shard_tokens)
    train: _ShardWriter | None = None
    done = 0
    with _progress(n_docs, show_progress) as bar:
        for batch in _batched(_documents(paths), ENCODE_BATCH):
            for tokens in encode_documents(batch):
                if done < n_val:
                    val.add(tokens)
                else:
                    if train is None:
                        val.close()
                        train = _ShardWriter(
                            out, "train", first_index=len(val.paths), shard_tokens=shard_tokens
                        )
                    train.add(tokens)
                done += 1
            bar.update(len(batch))
    if train is None:  # only if an input changed while we read it
        raise DataError(f"{out}: no documents left for the train split")
    train.close()
    return PrepareSummary(
        documents=done,
        tokens=val.tokens + train.tokens,
        train_shards=len(train.paths),
        val_shards=len(val.paths),
        paths=tuple(val.paths + train.paths),
        out=out,
    )


class _ShardWriter:
    """Collects documents' tokens and writes ``fineweb_{split}_{i:06d}.bin`` shards when full."""

    def __init__(self, out: Path, split: str, *, first_index: int, shard_tokens: int) -> None:
        self.out, self.split, self.index, self.shard_tokens = out, split, first_index, shard_tokens
        self.parts: list[np.ndarray] = []
        self.pending = 0
        self.tokens = 0
        self.paths: list[Path] = []

    def add(self, tokens: np.ndarray) -> None:
        self.parts.append(tokens)
        self.pending += len(tokens)
        self.tokens += len(tokens)
        while self.pending >= self.shard_tokens:
            stream = np.concatenate(self.parts)
            self._write(stream[: self.shard_tokens])
            rest = stream[self.shard_tokens :]
            self.parts, self.pending = [rest], len(rest)

    def close(self) -> None:
        if self.pending or not self.paths:
            self._write(np.concatenate(self.parts) if self.parts else np.empty(0, np.uint16))
        self.parts, self.pending = [], 0

    def _write(self, tokens: np.ndarray) -> None:
        path = self.out / f"fineweb_{self.split}_{self.index:06d}.bin"
        write_shard(path, tokens)
        self.paths.append(path)
        self.index += 1


def _prepare_out(out: Path, *, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    old = sorted(out.glob("fineweb_*.bin"))
    if old and not overwrite:
        raise DataError(
            f"{out}: already holds {len(old)} fineweb_*.bin shards; choose an empty folder "
            "or overwrite them"
        )
    for path in old:
        path.unlink()
    return out


# --------------------------------------------------------------------------- reading inputs


def _count_documents(path: Path) -> int:
    """Check that ``path`` is a readable input and count its documents (cheap: no tokenizing)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return 1
    if suffix == ".jsonl":
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    if suffix == ".parquet":
        return _parquet_file(path).metadata.num_rows
    raise DataError(
        f"{path}: unknown input type '{path.suffix}'; expected one of {', '.join(SUFFIXES)}"
    )


def _documents(paths: Sequence[Path]) -> Iterator[str]:
    for path in paths:
        suffix = path.suffix.lower()
        if suffix == ".txt":
            yield _read_text(path)
        elif suffix == ".jsonl":
            yield from _jsonl_texts(path)
        else:
            yield from _parquet_texts(path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start})") from None


def _jsonl_texts(path: Path) -> Iterator[str]:
    with open(path, "rb") as f:  # bytes: the same line splitting as _count_documents
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
            except UnicodeDecodeError:
                raise DataError(f"{path}:{line_no}: not UTF-8 text") from None
            text = record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise DataError(f"{path}:{line_no}: no string 'text' field")
            yield text


def _parquet_file(path: Path) -> pq.ParquetFile:
    import pyarrow.parquet as pq  # pyarrow only for .parquet inputs: start-up

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ...
        raise DataError(f"{path}: not a readable parquet file ({first_sentence(err)})") from None
    names = parquet.schema_arrow.names
    if "text" not in names:
        raise DataError(f"{path}: no 'text' column (columns: {', '.join(names) or 'none'})")
    return parquet


def _parquet_texts(path: Path) -> Iterator[str]:
    row = 0
    for batch in _parquet_file(path).iter_batches(batch_size=PARQUET_ROWS, columns=["text"]):
        for text in batch.column(0).to_pylist():
            if not isinstance(text, str):
                raise DataError(f"{path}: row {row}: 'text' is {text!r}, not a string")
            row += 1
            yield text


def _batched(items: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _progress(total: int, enabled: bool):
    from tqdm import tqdm  # tqdm only for the progress bar: start-up

    return tqdm(total=total, unit="doc", desc="tokenizing", file=sys.stderr, disable=not enabled)
