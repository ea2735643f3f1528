"""Resuming from the newest checkpoint that can be read.

A node lost while a checkpoint was being written (or copied to shared storage) can leave a
truncated ``state.pt`` in the trial's latest ``checkpoint_00000N`` folder. Resuming from it would
fail on every retry and mark the trial errored; :func:`load_first` falls back to the previous
checkpoint instead, and logs which one it skipped and why.
"""

from __future__ import annotations

import pickle
import re
import sys
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# what torch.load and load_state_dict raise on a truncated, corrupt or incomplete file
UNREADABLE = (OSError, EOFError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError,
              zipfile.BadZipFile)
_NAME = re.compile(r"checkpoint_(\d+)$")


class NoReadableCheckpoint(RuntimeError):
    """Every candidate checkpoint failed to load."""


def load_first(load: Callable[[Path], None], candidates: Path | str | Iterable[Path | str], *,
               log: Callable[[str], None] | None = None) -> Path:
    """Call ``load`` on each candidate folder, newest first, until one loads; return it.

    ``candidates`` may be lazy (a generator that downloads each folder only when reached).
    A candidate that raises one of :data:`UNREADABLE` is skipped with a warning naming the
    folder and the error; if none loads, :class:`NoReadableCheckpoint` lists them all.
    """
    log = log or _to_stderr
    if isinstance(candidates, (str, Path)):
        candidates = [candidates]
    failures: list[str] = []
    for folder in candidates:
        folder = Path(folder)
        try:
            load(folder)
        except UNREADABLE as err:
            failures.append(f"{folder}: {type(err).__name__}: {err}")
            log(f"ngpt-tune: checkpoint {folder} could not be read ({type(err).__name__}: "
                f"{str(err)[:200]}); trying the previous one")
            continue
        if failures:
            log(f"ngpt-tune: resumed from {folder} after skipping {len(failures)} unreadable "
                "checkpoint(s)")
        return folder
    raise NoReadableCheckpoint("no checkpoint could be read:\n" + "\n".join(failures))


def _to_stderr(message: str) -> None:
    """The trial's log: a Ray worker's stderr goes to its log file and to the driver."""
    print(message, file=sys.stderr, flush=True)


def checkpoint_index(name: str) -> int | None:
    """N of a Tune checkpoint folder named ``checkpoint_00000N``, else None."""
    match = _NAME.search(name.rstrip("/"))
    return int(match.group(1)) if match else None


def older_checkpoints(path: str, filesystem: Any) -> list[str]:
    """The checkpoint folders in the same trial folder as the one at ``path``, older ones,
    newest first. ``filesystem`` is a pyarrow filesystem (a Tune checkpoint's), so this works
    on local folders and on s3:// or gs:// storage alike."""
    import pyarrow.fs  # pyarrow only where a trial resumes

    newest = checkpoint_index(path)
    if newest is None:
        return []
    parent = path.rstrip("/").rpartition("/")[0]
    try:
        infos = filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
    except OSError:
        return []
    older = [(checkpoint_index(info.base_name), info.path) for info in infos
             if info.type == pyarrow.fs.FileType.Directory]
    return [p for i, p in sorted(((i, p) for i, p in older if i is not None and i < newest),
                                 reverse=True)]
