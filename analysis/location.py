"""Where an experiment lives: a local folder, or a pyarrow-filesystem URI copied locally.

Remote experiments (``s3://``, ``gs://``, ``hdfs://``... anything
``pyarrow.fs.FileSystem.from_uri`` opens) are copied to a temporary folder, trial checkpoints
excluded, and analysed there; :func:`upload` copies the outputs back next to the experiment.
The temporary copy is left for the caller (it holds the outputs until they are uploaded).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ngpt_tune.files import is_remote, local_path


@dataclass(frozen=True)
class Location:
    """``local`` is the folder to read; ``uri`` is the original address when it was remote."""

    local: Path
    uri: str | None = None

    @property
    def display(self) -> str:
        return self.uri or str(self.local)


def locate(path: str | os.PathLike) -> Location:
    """A local folder for ``path``: itself, a ``file://`` URI's path, or a fresh local copy."""
    text = os.fspath(path)
    if not is_remote(text):
        return Location(local_path(text))
    return Location(fetch(text), uri=text.rstrip("/"))


def fetch(uri: str, destination: str | os.PathLike | None = None) -> Path:
    """Copy the experiment at ``uri`` (without checkpoint folders) into a local folder."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(uri)
    root = root.rstrip("/")
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{uri}: no experiment folder there")
    local = Path(destination or tempfile.mkdtemp(prefix="ngpt-analysis-"))
    for entry in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        relative = entry.path[len(root) + 1 :]
        if entry.type != pafs.FileType.File or _in_checkpoint(relative):
            continue
        target = local / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(entry.path) as source, open(target, "wb") as sink:
            sink.write(source.read())
    return local


def upload(location: Location, paths: list[Path]) -> list[str]:
    """Copy ``paths`` (inside ``location.local``) to the same places under ``location.uri``."""
    if location.uri is None:
        return [str(p) for p in paths]
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(location.uri)
    uploaded = []
    for path in paths:
        relative = path.relative_to(location.local).as_posix()
        target = f"{root.rstrip('/')}/{relative}"
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(target) as sink:  # object stores replace whole objects
            sink.write(path.read_bytes())
        uploaded.append(f"{location.uri}/{relative}")
    return uploaded


def _in_checkpoint(relative: str) -> bool:
    return any(part.startswith("checkpoint_") for part in relative.split("/")[:-1])
