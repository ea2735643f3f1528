"""Files: atomic writes (shards, checkpoints, campaign records, analysis outputs), and telling a
local path from a remote URI.

Each file is written under a temporary name in its own folder, flushed to disk, then renamed
over the final name (``os.replace``): a crash or an exception mid-write never leaves a half
file, and readers see the old file or the new one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path next to ``path``, then rename it to ``path``.

    The file ends up readable by everyone (0644), like a plain ``open(path, "w")`` under the
    usual umask, not private as ``mkstemp`` makes it. The temporary file is removed on failure.

    Example:
        >>> atomic_write(out / "x.txt", lambda tmp: tmp.write_text("hello"))  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:  # the bytes reach the disk before the name changes
            os.fchmod(handle.fileno(), 0o644)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URI for a remote filesystem (``s3://``, ``gs://``...); a plain
    path and a ``file://`` URI are local."""
    text = os.fspath(path)
    scheme = urlparse(text).scheme if "://" in text else ""
    return scheme not in ("", "file")


def local_path(path: str | os.PathLike) -> Path:
    """The absolute local path of a plain path or a ``file://`` URI (``~`` expanded)."""
    text = os.fspath(path)
    if text.startswith("file://"):
        text = unquote(urlparse(text).path)
    return Path(text).expanduser().resolve()
