"""The GPT-2 tokenizer, built offline from the ranks file shipped with the package.

``tiktoken.get_encoding("gpt2")`` downloads its files on first use; machines without internet
cannot do that. ``assets/r50k_base.tiktoken`` is byte-identical to tiktoken's ``r50k_base``
ranks (the same merges as ``gpt2``), so the encoding built here gives the same ids::

    >>> gpt2_encoding().encode_ordinary("Hello world")
    [15496, 995]
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tiktoken
import tiktoken.load

from ngpt_tune.errors import DataError

EOT = 50256  # <|endoftext|>, the document separator
N_VOCAB = 50257
RANKS_PATH = Path(__file__).resolve().parent / "assets" / "r50k_base.tiktoken"
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# tiktoken's r50k_base pattern (tiktoken_ext/openai_public.py): the GPT-2 release pattern
# r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""" in a
# faster, equivalent form.
PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


@functools.cache
def gpt2_encoding() -> tiktoken.Encoding:
    """The GPT-2 encoding (50,257 ids, ``<|endoftext|>`` = 50256), built once per process.

    Raises:
        DataError: the ranks file is missing or its sha256 is not the expected one.
    """
    path = RANKS_PATH
    check_sha256(path, RANKS_SHA256)
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=PAT_STR,
        mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(path), expected_hash=RANKS_SHA256),
        special_tokens={"<|endoftext|>": EOT},
        explicit_n_vocab=N_VOCAB,
    )


def check_sha256(path: Path, expected: str) -> None:
    """Raise a one-line :class:`DataError` unless the file at ``path`` hashes to ``expected``."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as err:
        raise DataError(f"{path}: cannot read the GPT-2 ranks file ({err.strerror})") from None
    if digest != expected:
        raise DataError(
            f"{path}: sha256 {digest} does not match the expected {expected}; "
            "the GPT-2 ranks file is corrupt, reinstall ngpt-tune"
        )


def encode_documents(texts: Sequence[str], *, num_threads: int | None = None) -> list[np.ndarray]:
    """Tokenize documents, each as a uint16 array that starts with :data:`EOT`.

    Special-token text inside a document (a literal ``<|endoftext|>``) is encoded as ordinary
    text, so documents cannot inject separators.

    Args:
        texts: the documents.
        num_threads: tiktoken's worker threads; default ``min(8, cpu count)``.

    Returns:
        One array per document: ``[EOT, *encode_ordinary(text)]``.
    """
    threads = num_threads or min(8, os.cpu_count() or 1)
    ids = gpt2_encoding().encode_ordinary_batch(list(texts), num_threads=threads)
    out = []
    for doc in ids:
        arr = np.empty(len(doc) + 1, dtype=np.uint16)
        arr[0] = EOT
        arr[1:] = doc
        out.append(arr)
    return out
