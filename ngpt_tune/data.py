"""The token shards a run trains on, and its batches.

:func:`resolve_shards` finds and checks a run's shards (``ngpt_tune.shards``: the file format;
``data.dir: builtin`` and ``builtin-compact``: ``ngpt_tune.builtin_corpus``);
:class:`TokenLoader` streams training batches through them in order; :func:`val_batches` cuts
the fixed validation set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ngpt_tune.builtin_corpus import builtin_corpus_dir
from ngpt_tune.config import BUILTIN_COMPACT_DATA, BUILTIN_CORPORA, FINEWEB_HINT, DataConfig
from ngpt_tune.errors import DataError
from ngpt_tune.shards import read_header, read_shard

# --------------------------------------------------------------------------- finding shards


def resolve_shards(data: DataConfig) -> tuple[list[Path], list[Path]]:
    """The run's ``(train_files, val_files)``: sorted, absolute, every header checked.

    ``data.dir`` ``builtin`` or ``builtin-compact`` builds (once) and uses the built-in corpus
    (in GPT-2's vocabulary or the compact one); any other folder is
    globbed with ``data.train_pattern`` and ``data.val_pattern``.

    Raises:
        DataError: a missing folder, a pattern matching nothing, a file matching both
            patterns, or a corrupt shard.
    """
    folder = (builtin_corpus_dir(compact=data.dir == BUILTIN_COMPACT_DATA)
              if data.dir in BUILTIN_CORPORA else Path(data.dir))
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
