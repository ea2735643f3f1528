"""Where an experiment lives: a local folder, or a pyarrow-filesystem URI copied locally.

Remote experiments (``s3://``, ``gs://``, ``hdfs://``... anything
``pyarrow.fs.FileSystem.from_uri`` opens) are copied to a temporary folder, trial checkpoints
excluded, and analysed there; :func:`upload` copies the outputs back next to the experiment.
The temporary copy is left for the caller (it holds the outputs until they are uploaded).
"""

from __future__ import annotations

import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ngpt_tune.experiment import CHECKPOINT_PREFIX
from ngpt_tune.files import download_tree, is_remote, join, local_path, write_file


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


def output_path(exp: Any, name: str) -> str:
    """Where output ``name`` of the experiment ``exp`` ends up: next to a remote experiment's
    URI, else in its local folder (absolute)."""
    if exp.location is not None and exp.location.uri:
        return f"{exp.location.uri}/{name}"
    return str(Path(os.path.abspath(exp.path)) / name)


def train_command(config_path: str) -> str:
    """The command that re-runs the configuration saved at ``config_path`` alone."""
    return f"python -m ngpt_tune train {shlex.quote(config_path)}"


def fetch(uri: str, destination: str | os.PathLike | None = None) -> Path:
    """Copy the experiment at ``uri`` (without checkpoint folders) into a local folder."""
    local = Path(destination or tempfile.mkdtemp(prefix="ngpt-analysis-"))
    try:
        return download_tree(uri, local, skip=_in_checkpoint)
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri}: no experiment folder there") from None


def upload(location: Location, paths: list[Path]) -> list[str]:
    """Copy ``paths`` (inside ``location.local``) to the same places under ``location.uri``."""
    if location.uri is None:
        return [str(p) for p in paths]
    uploaded = []
    for path in paths:
        target = join(location.uri, path.relative_to(location.local).as_posix())
        write_file(target, path.read_bytes())
        uploaded.append(target)
    return uploaded


def _in_checkpoint(relative: str) -> bool:
    return any(part.startswith(CHECKPOINT_PREFIX) for part in relative.split("/")[:-1])
