"""Durable file operations: what survives a power cut and what does not.

A file is durable once its bytes *and* the directory entry naming it are on
disk, so every helper fsyncs both. Replacing a file is atomic: write a
temporary file beside it, fsync it, ``os.replace`` it over the old one,
fsync the directory::

    write_json(layout.config, {"device_id": "cam-7"})   # old or new, never half
    read_json(layout.transaction)                       # None, a value, or ValueError

Reading is as careful as writing: the agent's records are read only from
regular files, without blocking, at most ``MAX_STATE_FILE_BYTES``; removal
never follows a symbolic link (``remove_entry``, ``remove_tree``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from airlock.limits import MAX_STATE_FILE_BYTES

__all__ = ["fsync_dir", "kind_of", "read_bounded", "read_json", "remove_entry", "remove_tree",
           "replace_symlink", "write_atomic", "write_json"]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # = Layout.temp_of(path)
    # Whatever is at the temporary name goes first, so that a link left there is never
    # followed (O_EXCL) and a directory there cannot make every later write fail.
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp)
    else:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
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
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp)  # our temporary name; a directory there is debris (as write_atomic)
    else:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def kind_of(mode: int) -> str:
    """What an ``st_mode`` is, in the words error messages use."""
    for test, word in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO (named pipe)"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return word
    return "special file"


def read_bounded(path: Path, limit: int = MAX_STATE_FILE_BYTES) -> bytes:
    """The bytes of the regular file at ``path`` (links followed), at most ``limit``.

    ValueError when it is something else (a directory, a FIFO: opened without
    blocking, never read) or larger; FileNotFoundError when it is absent.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"a {kind_of(mode)}, not a file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def read_json(path: Path) -> Any:
    """The parsed file, or None when it does not exist; ValueError when it is not a small
    regular file of JSON (nesting too deep for the parser counts as not JSON)."""
    try:
        data = read_bounded(path)
    except FileNotFoundError:
        return None
    try:
        return json.loads(data.decode())  # UTF-8, as we write them; never a guessed encoding
    except RecursionError:
        raise ValueError("nested too deeply to be a record of ours") from None


def remove_entry(path: Path, trash: Path) -> None:
    """Remove whatever is at ``path`` without following a link: a real directory through
    :func:`remove_tree`, anything else (file, symbolic link, FIFO, device node) unlinked."""
    if path.is_dir() and not path.is_symlink():
        remove_tree(path, trash)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_tree(path: Path, trash: Path) -> None:
    """Remove a directory so that a crash leaves it either whole or in ``trash``.

    The rename is atomic; what lands in ``trash`` (the staging directory) is
    discarded by recovery if the ``rmtree`` does not finish. A symbolic link
    is unlinked, never followed: what it points at is not ours.
    """
    if path.is_symlink():
        path.unlink()
        return
    if not path.exists():
        return
    trash.mkdir(parents=True, exist_ok=True)
    target = trash / f"trash-{path.name}-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(target)
    os.rename(path, target)
    fsync_dir(path.parent)
    shutil.rmtree(target, ignore_errors=True)
