"""The built-in corpus: CPython's own documentation as token shards, so that a smoke run
needs no download (``data.dir: builtin``), and the same text in a vocabulary of 4,096 ids
(``data.dir: builtin-compact``, :func:`compact_ids`) for tiny models on a CPU."""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import numpy as np

from ngpt_tune.config import COMPACT_VOCAB
from ngpt_tune.errors import DataError
from ngpt_tune.shards import is_valid_shard, write_shard
from ngpt_tune.tokenizer import RANKS_SHA256, encode_documents

CACHE_ENV = "NGPT_TUNE_CACHE"
BUILTIN_VAL_FRACTION = 0.1  # share of documents (the last ones) held out for validation
BUILTIN_MIN_VAL_TOKENS = 8192
_BUILTIN_LAYOUT = 1  # bump when the built-in corpus recipe changes


def builtin_corpus_dir(*, compact: bool = False) -> Path:
    """The folder of the built-in corpus, made on first use (~139K tokens of CPython docs);
    ``compact``: its tokens renumbered by :func:`compact_ids`.

    The corpus is the text of ``pydoc_data.topics.topics`` (the reference-manual topics that
    ``help()`` shows), each topic preceded by EOT, sorted by name; the last ~10% of topics
    (at least 8192 tokens) are the val split. It lives in ``$NGPT_TUNE_CACHE/builtin-<hash>``
    (default cache ``~/.cache/ngpt_tune``; ``builtin-compact-<hash>``), the hash covering the
    Python version and tokenizer.
    Concurrent first uses are safe: each writes whole files and renames them into place.

    Raises:
        DataError: the cache folder cannot be created or written.
    """
    folder = _cache_root() / f"builtin-{'compact-' if compact else ''}{_builtin_key()}"
    train = folder / "fineweb_train_000000.bin"
    val = folder / "fineweb_val_000000.bin"
    if is_valid_shard(train) and is_valid_shard(val):
        return folder
    train_tokens, val_tokens = builtin_corpus_tokens()
    if compact:
        train_tokens, val_tokens = compact_ids(train_tokens, val_tokens)
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


def compact_ids(train: np.ndarray, val: np.ndarray,
                vocab: int = COMPACT_VOCAB) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` renumbered into ``vocab`` ids: the ``vocab - 1`` most frequent training
    tokens get ids 0, 1, ... by frequency (ties by GPT-2 id), every other token ``vocab - 1``.
    On the built-in corpus this keeps 99.3% of the training tokens' identities."""
    ids, counts = np.unique(train, return_counts=True)
    kept = ids[np.lexsort((ids, -counts))][: vocab - 1]
    table = np.full(int(max(train.max(), val.max())) + 1, vocab - 1, dtype=np.uint16)
    table[kept] = np.arange(len(kept), dtype=np.uint16)
    return table[train], table[val]


def _cache_root() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "ngpt_tune"
    )
    return Path(root).expanduser().resolve()


def _builtin_key() -> str:
    recipe = f"{platform.python_version()}|{RANKS_SHA256}|{_BUILTIN_LAYOUT}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:10]
