"""One mutating agent command at a time: an flock(2) on ROOT/lock.

The kernel drops the lock when the holder dies, even by kill -9, so a crash
never leaves a stale lock behind::

    with AgentLock(layout.lock):          # LockedError (exit 5) if held
        recover(layout)
        install(...)

``AgentLock(path, wait=30)`` waits up to 30 s for the holder instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from pathlib import Path
from types import TracebackType

from airlock.errors import DamagedRootError, LockedError, PreconditionError

__all__ = ["AgentLock", "lock_holder"]


def lock_holder(path: Path) -> int | None:
    """The pid written by the current holder, or None if the lock is free (or unusable)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        # flock(2) needs no write access: a read-only ROOT still says who holds its lock.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class AgentLock:
    def __init__(self, path: Path, wait: float = 0.0) -> None:
        self.path, self.wait = path, wait
        self._fd: int | None = None

    def __enter__(self) -> AgentLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as e:
            if e.errno == errno.EROFS:
                raise PreconditionError(
                    f"{self.path.parent} is on a read-only filesystem; 'status' and 'fsck' "
                    "still answer; remount it read-write to change anything") from None
            if e.errno in (errno.EISDIR, errno.ELOOP):  # a directory or a link stands there
                raise DamagedRootError(f"cannot open the agent lock {self.path}: {e.strerror}; "
                                       "run 'airlock-agent fsck --repair'") from None
            raise PreconditionError(f"cannot open the agent lock {self.path}: {e.strerror}"
                                    ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise DamagedRootError(f"the agent lock {self.path} is not a file; "
                                   "run 'airlock-agent fsck --repair'")
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    os.close(fd)
                    who = f"process {text}" if text.isdigit() else "another process"
                    raise LockedError(
                        f"{who} holds the agent lock {self.path}; wait for it to finish "
                        "and retry"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
