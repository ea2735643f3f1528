"""Fetch modded-nanogpt's GPT-2-tokenized FineWeb10B shards from the Hugging Face Hub.

``python -m ngpt_tune download-fineweb --shards N --out DIR`` gets ``fineweb_val_000000.bin``
and ``fineweb_train_000001.bin`` .. ``fineweb_train_{N:06d}.bin`` (about 100M tokens, 200 MB
each) from the dataset repo that modded-nanogpt's ``data/cached_fineweb10B.py`` uses.
"""

from __future__ import annotations

import types
from pathlib import Path

from ngpt_tune.errors import ConfigError, DataError, first_sentence
from ngpt_tune.shards import is_valid_shard, read_header

REPO_ID = "kjj0/fineweb10B-gpt2"
MAX_TRAIN_SHARDS = 103  # the whole FineWeb10B


def fineweb_filenames(shards: int) -> list[str]:
    """The val shard, then train shards 1..``shards``."""
    return ["fineweb_val_000000.bin"] + [f"fineweb_train_{i:06d}.bin" for i in range(1, shards + 1)]


def download_fineweb(shards: int, out: str | Path) -> list[Path]:
    """Download the val shard and the first ``shards`` train shards into ``out``.

    Shards already in ``out`` with a valid header are kept; every downloaded one is checked.

    Args:
        shards: how many train shards, 1..103 (each ~100M tokens).
        out: the folder to fill (created if missing).

    Returns:
        The absolute paths of the val shard and the train shards, in that order.

    Raises:
        DataError: huggingface_hub is not installed, a download failed (offline, say), or a
            downloaded file is not a valid shard. One line, naming the repo and the file.
        ConfigError: ``shards`` out of range.
    """
    if not 1 <= shards <= MAX_TRAIN_SHARDS:
        raise ConfigError(f"must be in 1..{MAX_TRAIN_SHARDS}, got {shards}", key="shards")
    try:
        import huggingface_hub  # the optional [hub] extra
    except ImportError:
        raise DataError(
            f"downloading from {REPO_ID} needs huggingface_hub: pip install 'ngpt-tune[hub]'"
        ) from None
    out = Path(out).expanduser().resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{out}: cannot create the folder ({err.strerror or err})") from None
    paths = []
    for name in fineweb_filenames(shards):
        path = out / name
        if not is_valid_shard(path):
            _fetch(huggingface_hub, name, out, force=path.exists())
            read_header(path)
        paths.append(path)
    return paths


def _fetch(hub: types.ModuleType, name: str, out: Path, *, force: bool) -> None:
    try:
        hub.hf_hub_download(
            repo_id=REPO_ID,
            filename=name,
            repo_type="dataset",
            local_dir=out,
            force_download=force,
        )
    except Exception as err:  # network, HTTP, disk: all end as one line
        raise DataError(
            f"could not download {name} from huggingface.co/datasets/{REPO_ID} into {out} "
            f"(offline?): {_short_reason(err)}"
        ) from None


def _short_reason(err: BaseException) -> str:
    """``Type: first sentence``, or ``Type (RootType: first sentence)`` for a chained error."""
    chain: list[BaseException] = [err]
    while len(chain) < 10:
        cause = chain[-1].__cause__ or chain[-1].__context__
        if cause is None or cause in chain:
            break
        chain.append(cause)
    root = chain[-1]
    reason = type(root).__name__ + (f": {first_sentence(root)}" if str(root).strip() else "")
    return reason if len(chain) == 1 else f"{type(err).__name__} ({reason})"
