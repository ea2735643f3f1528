"""Files: atomic writes (shards, checkpoints, campaign records, analysis outputs), telling a
local path from a remote URI, and every read and write of a remote experiment (pyarrow's
filesystems: ``s3://``, ``gs://``, ``hdfs://``...), for the runner and ``analysis/`` alike.

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


# ---- local folders and remote URIs alike (pyarrow's filesystems: s3://, gs://, hdfs://...) ---
def join(base: str, relative: str) -> str:
    """``base/relative`` for a local folder or a URI (``file://`` included)."""
    return f"{base.rstrip('/')}/{relative}" if "://" in base else str(Path(base) / relative)


def _filesystem(uri: str):
    import pyarrow.fs  # pyarrow only for remote storage: start-up

    fs, root = pyarrow.fs.FileSystem.from_uri(uri)
    return fs, root.rstrip("/")


def write_file(target: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to a local path (atomically) or a URI (object stores replace whole
    objects), creating the parent folders."""
    data = data.encode() if isinstance(data, str) else data
    if not is_remote(target):
        atomic_write(local_path(target), lambda tmp: tmp.write_bytes(data))
        return
    fs, path = _filesystem(os.fspath(target))
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(data)


def read_file(target: str | os.PathLike) -> bytes:
    """The bytes at a local path or a URI; FileNotFoundError when there is none."""
    if not is_remote(target):
        return local_path(target).read_bytes()
    import pyarrow.fs  # pyarrow only for remote storage: start-up

    fs, path = _filesystem(os.fspath(target))
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        raise FileNotFoundError(os.fspath(target))
    with fs.open_input_stream(path) as stream:
        return stream.read()


def list_folders(base: str | os.PathLike) -> list[str]:
    """The names of the folders directly inside a local folder or a URI ([] if it is none)."""
    if not is_remote(base):
        folder = local_path(base)
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    import pyarrow.fs  # pyarrow only for remote storage: start-up

    fs, root = _filesystem(os.fspath(base))
    if fs.get_file_info(root).type != pyarrow.fs.FileType.Directory:
        return []
    entries = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=False))
    return sorted(e.base_name for e in entries if e.type == pyarrow.fs.FileType.Directory)


def download_tree(uri: str, destination: Path, *, skip: Callable[[str], bool]) -> Path:
    """Copy the folder at ``uri`` into ``destination``, leaving out the relative paths that
    ``skip`` names; FileNotFoundError when ``uri`` is not a folder."""
    import pyarrow.fs  # pyarrow only for remote storage: start-up

    fs, root = _filesystem(uri)
    if fs.get_file_info(root).type != pyarrow.fs.FileType.Directory:
        raise FileNotFoundError(uri)
    for entry in fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True)):
        relative = entry.path[len(root) + 1:]
        if entry.type != pyarrow.fs.FileType.File or skip(relative):
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(entry.path) as source, open(target, "wb") as sink:
            sink.write(source.read())
    return destination
