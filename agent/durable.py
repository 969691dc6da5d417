"""Durable file operations: what survives a power cut and what does not.

A file is durable once its bytes *and* the directory entry naming it are on
disk, so every helper fsyncs both. Replacing a file is atomic: write a
temporary file beside it, fsync it, ``os.replace`` it over the old one,
fsync the directory::

    write_json(layout.config, {"device_id": "cam-7"})   # old or new, never half
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["fsync_dir", "read_json", "remove_tree", "replace_symlink", "write_atomic",
           "write_json"]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # = Layout.temp_of(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def replace_symlink(path: Path, target: str) -> None:
    """Point the symlink ``path`` at ``target``: a temporary link renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> Any:
    """The parsed file, or None when it does not exist."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None


def remove_tree(path: Path, trash: Path) -> None:
    """Remove a directory so that a crash leaves it either whole or in ``trash``.

    The rename is atomic; what lands in ``trash`` (the staging directory) is
    discarded by recovery if the ``rmtree`` does not finish.
    """
    if not path.exists():
        return
    trash.mkdir(parents=True, exist_ok=True)
    target = trash / f"trash-{path.name}-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(target)
    os.rename(path, target)
    fsync_dir(path.parent)
    shutil.rmtree(target, ignore_errors=True)
