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

A file written in a stream (a bundle, a part, a downloaded blob) is written
to an exclusive partial file beside its target and published whole, for the
host and the device alike::

    with PartialFile(Path("out/vision-1.2.0.airlock")) as partial:   # .NAME.RANDOM.partial
        write_bundle(partial.file, release_json, files)
        partial.publish()          # fsync, rename over the target, fsync the directory
    # left without publish(): the partial is gone, the target untouched

The partial is created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` relative to a
descriptor of the target's directory, so a link planted at its name is never
written through and a rename of the directory's path meanwhile cannot move
the writes elsewhere. A fixed name (``name=".NAME.partial"``, which a crash
may leave behind) is unlinked first, never opened: whatever was there, a link
included, is replaced by a new file of ours.

Media Airlock did not create (a stick, a returned reports folder) are read
only through :func:`open_on_medium`: a regular file directly in the folder,
opened with ``O_NOFOLLOW`` relative to the folder's descriptor, checked with
``fstat`` on what was opened (a regular file, on the folder's own file
system) and read to a bound, so a link to ``ROOT/device.key``, ``/dev/zero``
or a FIFO is refused, never read::

    data = read_on_medium(Path("/media/usb"), "x.airlock.parts.json", 1024 * 1024)
    reports = open_dir_on_medium(stick_fd, "airlock-reports")   # a link there: MediumError
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from airlock.limits import MAX_STATE_FILE_BYTES

__all__ = ["MediumError", "PartialFile", "fsync_dir", "kind_of", "open_dir_on_medium",
           "open_on_medium", "read_bounded", "read_json", "read_on_medium", "remove_entry",
           "remove_tree", "replace_symlink", "write_atomic", "write_json"]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """``data`` to ``path`` whole, or not at all: through ``.NAME.tmp`` (``Layout.temp_of``)."""
    tmp = path.with_name(f".{path.name}.tmp")
    # A directory at our temporary name is debris that would make every later write
    # fail; anything else there is unlinked by PartialFile, never followed.
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp)
    with PartialFile(path, name=tmp.name, mode=mode) as partial:
        partial.file.write(data)
        partial.publish()


class PartialFile:
    """A new file beside ``target``, written through ``file`` and published over it whole.

    ``name`` is the partial's file name in the target's directory: by default a
    fresh ``.NAME.RANDOM.partial`` (created exclusively, retried on a clash); a
    fixed name is unlinked first and then created exclusively, so what a crash
    (or anyone) left there is never followed. ``dir_fd`` lends a descriptor of
    the target's directory, for a writer of many partials (split parts); it is
    not closed here. ``parents=True`` makes the target's missing directories
    first (a bundler ``-o`` into a new folder). Leaving the ``with`` block
    without :meth:`publish` removes the partial.
    """

    def __init__(self, target: Path, *, name: str | None = None, mode: int = 0o644,
                 dir_fd: int | None = None, parents: bool = False) -> None:
        self.target = target
        if parents:
            target.parent.mkdir(parents=True, exist_ok=True)
        self._own_dir = dir_fd is None
        self._dir = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) \
            if dir_fd is None else dir_fd
        try:
            self.name, fd = self._create(name, mode)
        except BaseException:
            self._close_dir()
            raise
        self.path = target.with_name(self.name)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.published = False

    def _create(self, name: str | None, mode: int) -> tuple[str, int]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        if name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self._dir)  # a link is removed, not followed
            return name, os.open(name, flags, mode, dir_fd=self._dir)
        while True:
            fresh = f".{self.target.name}.{secrets.token_hex(4)}.partial"
            try:
                return fresh, os.open(fresh, flags, mode, dir_fd=self._dir)
            except FileExistsError:
                continue

    def seal(self) -> None:
        """Flush, fsync and close the file (idempotent); :meth:`publish` does it first."""
        if not self.file.closed:
            try:
                self.file.flush()
                os.fsync(self.file.fileno())
            finally:
                self.file.close()

    def publish(self) -> None:
        """Make the partial the target: fsync it, rename it over the target, fsync the directory."""
        self.seal()
        os.replace(self.name, self.target.name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
        self.published = True
        os.fsync(self._dir)
        self._close_dir()

    def discard(self) -> None:
        """Close and remove the partial unless it was published (idempotent)."""
        with contextlib.suppress(OSError):
            self.file.close()
        if not self.published and self._dir >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.name, dir_fd=self._dir)
        self._close_dir()

    def _close_dir(self) -> None:
        if self._own_dir and self._dir >= 0:
            os.close(self._dir)
        self._dir = -1

    def __enter__(self) -> PartialFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.discard()


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


class MediumError(ValueError):
    """A name on a medium that is not a regular file (or folder) of that medium.

    Its text names the file and what it is, never a byte of it.
    """


def _folder_fd(directory: Path | int) -> tuple[int, bool]:
    if isinstance(directory, int):
        return directory, False
    return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), True


def _open_entry(dir_fd: int, name: str, flags: int, what: str) -> int:
    """``name`` opened relative to ``dir_fd`` without following a link (ELOOP: it is one)."""
    if not name or "/" in name or "\x00" in name or name in (".", ".."):
        raise MediumError(f"{name[:80]!r} is not a plain file name")
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                       dir_fd=dir_fd)
    except OSError as e:
        # O_NOFOLLOW met a link (ELOOP; ENOTDIR with O_DIRECTORY): never followed, only named.
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        raise MediumError(f"{name} is a {kind_of(mode)}, not a {what}"
                          + (" (links on media are never followed)" if stat.S_ISLNK(mode)
                             else "")) from None


def _check_opened(fd: int, dir_fd: int, name: str, want: Callable[[int], bool],
                  what: str) -> os.stat_result:
    st = os.fstat(fd)
    if not want(st.st_mode):
        raise MediumError(f"{name} is a {kind_of(st.st_mode)}, not a {what}")
    if st.st_dev != os.fstat(dir_fd).st_dev:
        # A bind or a mount point on the stick: not the medium's own file.
        raise MediumError(f"{name} is on another file system than the folder it is in")
    return st


def open_on_medium(directory: Path | int, name: str, max_bytes: int | None = None) -> io.FileIO:
    """The regular file ``name`` directly in ``directory`` (a path or a descriptor), opened
    for reading without following a link, as an unbuffered file.

    MediumError when it is a link, a FIFO, a device, a directory, on another
    file system, or larger than ``max_bytes``; FileNotFoundError when absent.
    Opening never blocks (a FIFO is opened non-blocking, then refused).
    """
    dir_fd, own = _folder_fd(directory)
    try:
        fd = _open_entry(dir_fd, name, os.O_RDONLY, "regular file")
        try:
            st = _check_opened(fd, dir_fd, name, stat.S_ISREG, "regular file")
            if max_bytes is not None and st.st_size > max_bytes:
                raise MediumError(f"{name} is {st.st_size} bytes, more than {max_bytes}")
            os.set_blocking(fd, True)
            return io.FileIO(fd, "rb", closefd=True)
        except BaseException:
            os.close(fd)
            raise
    finally:
        if own:
            os.close(dir_fd)


def read_on_medium(directory: Path | int, name: str, max_bytes: int) -> bytes:
    """The bytes of :func:`open_on_medium`, at most ``max_bytes`` (a file growing past the
    bound while it is read is refused too, never read on)."""
    with open_on_medium(directory, name, max_bytes) as f:
        chunks, got = [], 0
        while got <= max_bytes and (chunk := f.read(min(1024 * 1024, max_bytes + 1 - got))):
            chunks.append(chunk)
            got += len(chunk)
    if got > max_bytes:
        raise MediumError(f"{name} is more than {max_bytes} bytes")
    return b"".join(chunks)


def open_dir_on_medium(directory: Path | int, name: str, *, create: bool = False) -> int:
    """A descriptor of the folder ``name`` directly in ``directory``, never through a link,
    on the same file system (``create``: made first when absent). The caller closes it;
    :class:`PartialFile` writes into it with ``dir_fd=``."""
    dir_fd, own = _folder_fd(directory)
    try:
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=dir_fd)
        fd = _open_entry(dir_fd, name, os.O_RDONLY | os.O_DIRECTORY, "directory")
        try:
            _check_opened(fd, dir_fd, name, stat.S_ISDIR, "directory")
        except BaseException:
            os.close(fd)
            raise
        return fd
    finally:
        if own:
            os.close(dir_fd)
