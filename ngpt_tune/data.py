"""Token shards in modded-nanogpt's FineWeb10B format, and the batches a run trains on.

A shard is a header of 256 little-endian int32 (``[MAGIC, VERSION, n_tokens, 0, ...]``)
followed by ``n_tokens`` uint16 GPT-2 ids. Shards are memory-mapped, never read whole.

:func:`resolve_shards` finds and checks a run's shards; :class:`TokenLoader` streams training
batches through them in order; :func:`val_batches` cuts the fixed validation set.
``data.dir: builtin`` is a small corpus made from CPython's own documentation
(:func:`builtin_corpus_dir`), so that a smoke run needs no download.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ngpt_tune.config import BUILTIN_DATA, FINEWEB_HINT, DataConfig
from ngpt_tune.errors import DataError
from ngpt_tune.files import atomic_write
from ngpt_tune.tokenizer import RANKS_SHA256, encode_documents

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_SHARD_TOKENS = 2**31 - 1  # the count is an int32
CACHE_ENV = "NGPT_TUNE_CACHE"
BUILTIN_VAL_FRACTION = 0.1  # share of documents (the last ones) held out for validation
BUILTIN_MIN_VAL_TOKENS = 8192
_BUILTIN_LAYOUT = 1  # bump when the built-in corpus recipe changes


# --------------------------------------------------------------------------- shard files


def write_shard(path: str | os.PathLike, tokens: np.ndarray) -> None:
    """Write ``tokens`` as one shard, atomically (a temp file, then ``os.replace``).

    Args:
        path: the shard to write; its folder must exist.
        tokens: a 1-D array of ids in ``[0, 65535]``.

    Raises:
        DataError: the tokens are not 1-D, do not fit uint16, or are too many for one shard.
    """
    path = Path(path).absolute()
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise DataError(f"{path}: tokens must be a 1-D array, got shape {tokens.shape}")
    if len(tokens) > MAX_SHARD_TOKENS:
        raise DataError(f"{path}: {len(tokens)} tokens exceed one shard's {MAX_SHARD_TOKENS}")
    if tokens.dtype != np.uint16:
        if len(tokens) and (tokens.min() < 0 or tokens.max() > np.iinfo(np.uint16).max):
            raise DataError(f"{path}: token ids must fit uint16 (0..65535)")
        tokens = tokens.astype(np.uint16)
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (MAGIC, VERSION, len(tokens))
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(header.tobytes())
            f.write(tokens.astype("<u2", copy=False).tobytes())

    atomic_write(path, write)


def read_header(path: str | os.PathLike) -> int:
    """Check a shard's header and size without reading its tokens; return its token count.

    Raises:
        DataError: missing or unreadable file, wrong magic or version, or a size that does not
            match the count (a truncated download, say). The message names the file.
    """
    path = Path(path).absolute()
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if len(raw) < HEADER_BYTES:
        raise DataError(
            f"{path}: {size} bytes, too short for the {HEADER_BYTES}-byte header; "
            "not a modded-nanogpt token shard"
        )
    magic, version, count = (int(v) for v in np.frombuffer(raw, dtype="<i4", count=3))
    if magic != MAGIC:
        raise DataError(
            f"{path}: wrong magic number {magic} (expected {MAGIC}); "
            "not a modded-nanogpt token shard"
        )
    if version != VERSION:
        raise DataError(f"{path}: unsupported shard version {version} (expected {VERSION})")
    if count < 0:
        raise DataError(f"{path}: negative token count {count} in the header")
    expected = HEADER_BYTES + 2 * count
    if size != expected:
        what = "truncated" if size < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {what}: expected {expected} bytes ({HEADER_BYTES}-byte header + "
            f"2 x {count} tokens), found {size}"
        )
    return count


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """The tokens of a shard as a read-only, memory-mapped uint16 array (validated first)."""
    path = Path(path).absolute()
    count = read_header(path)
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(count,))


# --------------------------------------------------------------------------- finding shards


def resolve_shards(data: DataConfig) -> tuple[list[Path], list[Path]]:
    """The run's ``(train_files, val_files)``: sorted, absolute, every header checked.

    ``data.dir == "builtin"`` builds (once) and uses the built-in corpus; any other folder is
    globbed with ``data.train_pattern`` and ``data.val_pattern``.

    Raises:
        DataError: a missing folder, a pattern matching nothing, a file matching both
            patterns, or a corrupt shard.
    """
    folder = builtin_corpus_dir() if data.dir == BUILTIN_DATA else Path(data.dir)
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder does not exist; {FINEWEB_HINT}")
    train = _glob(folder, data.train_pattern, "train")
    val = _glob(folder, data.val_pattern, "val")
    both = sorted(set(train) & set(val))
    if both:
        raise DataError(
            f"{both[0]}: matches both train_pattern '{data.train_pattern}' and "
            f"val_pattern '{data.val_pattern}'; the splits must not overlap"
        )
    for path in train + val:
        read_header(path)
    return train, val


def _glob(folder: Path, pattern: str, split: str) -> list[Path]:
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise DataError(f"{folder}: no {split} shards matching '{pattern}'; {FINEWEB_HINT}")
    return files


# --------------------------------------------------------------------------- training batches


class TokenLoader:
    """Training batches streamed through the shards in order, modded-nanogpt style.

    Each batch takes ``batch_size * block_size + 1`` contiguous tokens of one shard; the next
    starts ``batch_size * block_size`` later. A shard whose rest is too short is left for the
    next one; after the last shard the loader wraps to the first (``epoch`` counts the wraps).
    ``seed`` picks the starting offset inside the first shard, so different seeds see different
    batches and the same seed the same ones. :meth:`state_dict` / :meth:`load_state_dict`
    resume with exactly the batch that would have come next.

    Example::

        loader = TokenLoader(train_files, batch_size=8, block_size=128, seed=1)
        x, y = loader.next_batch()  # (8, 128) int64 each; y is x shifted by one token
    """

    def __init__(
        self, files: Sequence[str | os.PathLike], *, batch_size: int, block_size: int, seed: int = 0
    ) -> None:
        if batch_size <= 0 or block_size <= 0:
            raise ValueError(
                f"batch_size and block_size must be > 0, got {batch_size}, {block_size}"
            )
        self.files = [Path(f).absolute() for f in files]
        if not self.files:
            raise DataError("TokenLoader: no training shards given")
        self.batch_size = batch_size
        self.block_size = block_size
        self.seed = seed
        self.lengths = [read_header(f) for f in self.files]
        need = self._span + 1
        if max(self.lengths) < need:
            raise DataError(
                f"{self.files[0].parent}: the largest train shard holds {max(self.lengths)} "
                f"tokens, fewer than one batch needs (batch_size {batch_size} x block_size "
                f"{block_size} + 1 = {need}); lower data.batch_size or model.block_size"
            )
        first = self.lengths[0]
        start = (
            int(np.random.default_rng(seed).integers(0, first - need + 1)) if first >= need else 0
        )
        self.shard, self.pos, self.epoch = 0, start, 0
        self._tokens: np.ndarray | None = None
        self._tokens_shard = -1

    @property
    def _span(self) -> int:
        return self.batch_size * self.block_size

    def next_batch(
        self, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``(x, y)``, int64 of shape (batch_size, block_size), ``y[:, t] = x[:, t+1]``.

        Args:
            device: where to put the batch; CPU when None. On CUDA the batch goes through
                pinned memory with a non-blocking copy.
        """
        need = self._span + 1
        while self.pos + need > self.lengths[self.shard]:
            self.shard += 1
            self.pos = 0
            if self.shard == len(self.files):
                self.shard = 0
                self.epoch += 1
        buf = torch.from_numpy(self._shard_tokens()[self.pos : self.pos + need].astype(np.int64))
        self.pos += self._span
        device = torch.device(device) if device is not None else None
        if device is not None and device.type == "cuda" and torch.cuda.is_available():
            buf = buf.pin_memory().to(device, non_blocking=True)
        elif device is not None:
            buf = buf.to(device)
        x = buf[:-1].view(self.batch_size, self.block_size)
        y = buf[1:].view(self.batch_size, self.block_size)
        return x, y

    def release(self) -> None:
        """Drop the shard held in memory (the position is kept)."""
        self._tokens, self._tokens_shard = None, -1

    def _shard_tokens(self) -> np.ndarray:
        if self._tokens_shard != self.shard:
            self._tokens = read_shard(self.files[self.shard])
            self._tokens_shard = self.shard
        assert self._tokens is not None
        return self._tokens

    def state_dict(self) -> dict[str, int]:
        """Where the loader stands, as plain ints (JSON- and checkpoint-safe)."""
        return {"shard": self.shard, "pos": self.pos, "epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output: the next batch is the one it would give.

        Raises:
            DataError: the state points outside the current shards (the data changed).
        """
        try:
            shard, pos, epoch = int(state["shard"]), int(state["pos"]), int(state["epoch"])
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"TokenLoader state is malformed ({err!r}): {state!r}") from None
        if not 0 <= shard < len(self.files) or not 0 <= pos <= self.lengths[shard]:
            raise DataError(
                f"{self.files[0].parent}: loader state (shard {shard}, pos {pos}) does not fit "
                f"the {len(self.files)} train shards; did the data change since the checkpoint?"
            )
        self.shard, self.pos, self.epoch = shard, pos, epoch
        self.seed = int(state.get("seed", self.seed))


# --------------------------------------------------------------------------- validation set


def val_batches(
    files: Sequence[str | os.PathLike], *, n_tokens: int, batch_size: int, block_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation set: the first ``n_tokens`` tokens of the val shards, as batches.

    ``n_tokens`` is rounded down to whole (batch_size x block_size) batches, at least one. If
    the val split is shorter, it is used whole and the last batch has fewer rows. The result
    depends only on the arguments, so every evaluation sees the same tokens.

    Returns:
        A list of ``(x, y)`` int64 CPU tensors of shape (rows, block_size), rows <= batch_size.

    Raises:
        DataError: the val split holds less than one sequence (block_size + 1 tokens).
    """
    if batch_size <= 0 or block_size <= 0:
        raise ValueError(f"batch_size and block_size must be > 0, got {batch_size}, {block_size}")
    paths = [Path(f).absolute() for f in files]
    if not paths:
        raise DataError("val_batches: no validation shards given")
    n_batches = max(1, n_tokens // (batch_size * block_size))
    want = n_batches * batch_size * block_size + 1
    parts, have = [], 0
    for path in paths:
        if have >= want:
            break
        tokens = read_shard(path)[: want - have]
        parts.append(np.asarray(tokens, dtype=np.int64))
        have += len(tokens)
    rows = (have - 1) // block_size if have else 0
    if rows < 1:
        raise DataError(
            f"{paths[0].parent}: the val split holds {have} tokens, fewer than one sequence "
            f"needs (block_size {block_size} + 1)"
        )
    stream = torch.from_numpy(np.concatenate(parts)[: rows * block_size + 1])
    x = stream[:-1].view(rows, block_size)
    y = stream[1:].view(rows, block_size)
    return [(xb.clone(), yb.clone()) for xb, yb in zip(x.split(batch_size), y.split(batch_size))]


# --------------------------------------------------------------------------- built-in corpus


def builtin_corpus_dir() -> Path:
    """The folder of the built-in corpus, made on first use (~139K tokens of CPython docs).

    The corpus is the text of ``pydoc_data.topics.topics`` (the reference-manual topics that
    ``help()`` shows), each topic preceded by EOT, sorted by name; the last ~10% of topics
    (at least 8192 tokens) are the val split. It lives in ``$NGPT_TUNE_CACHE/builtin-<hash>``
    (default cache ``~/.cache/ngpt_tune``), the hash covering the Python version and tokenizer.
    Concurrent first uses are safe: each writes whole files and renames them into place.

    Raises:
        DataError: the cache folder cannot be created or written.
    """
    folder = _cache_root() / f"builtin-{_builtin_key()}"
    train = folder / "fineweb_train_000000.bin"
    val = folder / "fineweb_val_000000.bin"
    if is_valid_shard(train) and is_valid_shard(val):
        return folder
    train_tokens, val_tokens = builtin_corpus_tokens()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_shard(train, train_tokens)
        write_shard(val, val_tokens)
    except OSError as err:
        raise DataError(
            f"{folder}: cannot write the built-in corpus ({err.strerror or err}); "
            f"set {CACHE_ENV} to a writable folder"
        ) from None
    return folder


def builtin_corpus_tokens() -> tuple[np.ndarray, np.ndarray]:
    """Tokenize the built-in corpus: ``(train, val)`` uint16 arrays, documents EOT-prefixed."""
    from pydoc_data.topics import topics  # the stdlib's copy of the reference-manual topics

    docs = encode_documents([topics[name] for name in sorted(topics)])
    n_val = max(1, round(BUILTIN_VAL_FRACTION * len(docs)))
    while n_val < len(docs) - 1 and sum(map(len, docs[-n_val:])) < BUILTIN_MIN_VAL_TOKENS:
        n_val += 1
    return np.concatenate(docs[:-n_val]), np.concatenate(docs[-n_val:])


def _cache_root() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "ngpt_tune"
    )
    return Path(root).expanduser().resolve()


def _builtin_key() -> str:
    recipe = f"{platform.python_version()}|{RANKS_SHA256}|{_BUILTIN_LAYOUT}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:10]


def is_valid_shard(path: Path) -> bool:
    """Whether ``path`` is a file with a readable shard header."""
    if not path.is_file():
        return False
    try:
        read_header(path)
    except DataError:
        return False
    return True
