"""Token shard files in modded-nanogpt's FineWeb10B format: write, check, read.

A shard is a header of 256 little-endian int32 (``[MAGIC, VERSION, n_tokens, 0, ...]``)
followed by ``n_tokens`` uint16 token ids. Shards are memory-mapped, never read whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ngpt_tune.errors import DataError
from ngpt_tune.files import atomic_write

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_SHARD_TOKENS = 2**31 - 1  # the count is an int32


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


def is_valid_shard(path: Path) -> bool:
    """Whether ``path`` is a file with a readable shard header."""
    if not path.is_file():
        return False
    try:
        read_header(path)
    except DataError:
        return False
    return True
