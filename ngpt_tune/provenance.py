"""Where a result came from: git commit, package versions, host and hardware, and what a
trial was given (the GPUs Ray assigned, the device its loop trained on)."""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("ngpt-tune", "torch", "ray", "optuna", "numpy", "tiktoken", "pyarrow", "pandas")
REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def git_commit(root: str = str(REPO_ROOT)) -> str | None:
    """The commit of the source tree (with ``-dirty`` when it has changes), None outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )
        dirty = "-dirty" if status.stdout.strip() else ""
        return commit.stdout.strip() + dirty
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    try:
        import torch  # torch only where a trial records itself: start-up

        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpu"] = torch.cuda.get_device_name()
            info["gpu_count"] = torch.cuda.device_count()
    except ImportError:  # pragma: no cover - torch is a dependency
        info["cuda"] = False
    return info


def placement(*, device: Any, accelerator_ids: dict[str, list[str]] | None = None,
              resources: dict[str, float] | None = None, node_id: str | None = None
              ) -> dict[str, Any]:
    """What one trial actually got: the resources and accelerator ids Ray granted its worker
    (``ray.get_runtime_context()``'s ``get_assigned_resources()``, ``get_accelerator_ids()``,
    ``get_node_id()``, passed in by the trainable), ``CUDA_VISIBLE_DEVICES`` as Ray set it, and
    the device the training loop used with its name.

    A trial can hold a GPU and still train on the CPU (``train.device: cpu``); the record shows
    both, and compute accounting counts the GPU it held (``resources["GPU"]``).
    """
    import torch  # torch only where a trial records itself: start-up

    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {
        "device": str(device),
        "device_name": name,
        "accelerator_ids": {k: [str(i) for i in v] for k, v in (accelerator_ids or {}).items()
                            if v},  # Ray lists every accelerator type it knows, most empty
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "resources": dict(resources or {}),
        "node_id": node_id,
        "started_at_unix": dt.datetime.now(dt.timezone.utc).timestamp(),
    }


def provenance(**extra: Any) -> dict[str, Any]:
    """A JSON-ready record of the code, packages, machine and time, plus ``extra``."""
    return {
        "git_commit": git_commit(),
        "packages": package_versions(),
        "hardware": hardware(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
