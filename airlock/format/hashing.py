"""Hashing a bundle's blobs as they are read: pipelined, and on several threads at once.

A blob of ``PIPELINE_MIN_BYTES`` or more is hashed on a thread beside the one
that reads (and writes) it, over ``PIPELINE_BUFFERS`` fixed chunks: both
cores work and memory stays flat. From a regular file, blobs are read with
positioned reads (:class:`PreadWindow`, no shared file offset) and handed to
one of ``HASH_THREADS`` threads (:class:`HashJobs`), whose verdicts are taken
in archive order::

    reading = hashed_chunks(PreadWindow(fd, offset, size).readinto, size)
    for chunk in reading: ...              # StopIteration.value: (bytes read, sha256 hex)
    jobs = HashJobs(fd); jobs.submit(job); jobs.drain()   # first failure in archive order
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Protocol

from airlock.limits import (
    CHUNK,
    HASH_JOBS_IN_FLIGHT,
    HASH_THREADS,
    PIPELINE_BUFFERS,
    PIPELINE_MIN_BYTES,
)

__all__ = ["Abandoned", "HashJobs", "PreadWindow", "Readable", "Window", "hashed_chunks"]


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class Window:
    """At most ``size`` bytes of ``stream`` from its current position."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self.stream, self.left = stream, size

    def readinto(self, buffer: memoryview) -> int:
        n = self.stream.readinto(buffer[: self.left])  # type: ignore[attr-defined]
        self.left -= n or 0
        return int(n or 0)


class PreadWindow:
    """``size`` bytes of a file descriptor from ``offset``, read with ``preadv``.

    Positioned reads share no file offset, so blobs of one bundle file are
    read by several threads at once while the reader walks the tar headers.
    """

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.fd, self.at, self.left = fd, offset, size

    def readinto(self, buffer: memoryview) -> int:
        n = os.preadv(self.fd, [buffer[: self.left]], self.at)
        self.at += n
        self.left -= n
        return n


def hashed_chunks(readinto: Callable[[memoryview], int | None], length: int,
                   stop: threading.Event | None = None) -> Generator[memoryview, None, tuple[int, str]]:
    """Yield up to ``length`` bytes read by ``readinto``; return (bytes read, sha256 hex).

    From ``PIPELINE_MIN_BYTES`` on, a second thread hashes each chunk while
    the next one is read and the caller writes this one (reads, writes and
    hashlib's updates all release the GIL), over ``PIPELINE_BUFFERS`` chunks
    of ``CHUNK`` bytes: memory is flat however large the blob. A yielded view
    stays valid until the next one is asked for.
    """
    h = hashlib.sha256()
    seen = 0
    if length < PIPELINE_MIN_BYTES:
        view = memoryview(bytearray(max(1, min(CHUNK, length))))
        while seen < length:
            n = readinto(view[: min(CHUNK, length - seen)])
            if not n:
                break
            seen += n
            h.update(view[:n])
            yield view[:n]
        return seen, h.hexdigest()
    free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
    todo: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
    for _ in range(PIPELINE_BUFFERS):
        free.put(memoryview(bytearray(CHUNK)))

    def hash_loop() -> None:
        while (item := todo.get()) is not None:
            whole, n = item
            h.update(whole[:n])
            free.put(whole)

    hasher = threading.Thread(target=hash_loop, name="airlock-hash", daemon=True)
    hasher.start()
    try:
        while seen < length:
            if stop is not None and stop.is_set():
                raise Abandoned
            whole = free.get()
            n = readinto(whole[: min(CHUNK, length - seen)])
            if not n:
                break
            seen += n
            todo.put((whole, n))
            yield whole[:n]
    finally:
        todo.put(None)
        hasher.join()
    return seen, h.hexdigest()


class Abandoned(Exception):
    """A background read stopped because the loop that started it was left."""


class HashJobs:
    """Blobs of one bundle file hashed (and written) on ``HASH_THREADS`` threads.

    Their verdicts are taken in archive order: the first failing member is
    the one reported, as a one-thread read would report it, and a failure
    the reader finds further on (a bad header, truncation) is raised only
    after every member before it has been settled.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stop = threading.Event()
        self.progress_lock = threading.Lock()  # callbacks one at a time, as from one thread
        self._pool = ThreadPoolExecutor(max_workers=HASH_THREADS,
                                        thread_name_prefix="airlock-blob")
        self._pending: deque[Future[None]] = deque()

    def submit(self, job: Callable[[], None]) -> None:
        while len(self._pending) >= HASH_JOBS_IN_FLIGHT:
            self._settle_oldest()
        self._pending.append(self._pool.submit(job))

    def reap(self) -> None:
        """Raise the error of the oldest finished members, if any failed."""
        while self._pending and self._pending[0].done():
            self._settle_oldest()

    def drain(self) -> None:
        """Wait for every member handed out; raise the first failure in archive order."""
        while self._pending:
            self._settle_oldest()

    def _settle_oldest(self) -> None:
        future = self._pending.popleft()
        try:
            future.result()
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Stop and wait for every member still running: no thread writes after this."""
        self.stop.set()
        while self._pending:
            with contextlib.suppress(BaseException):
                self._pending.popleft().result()

    def close(self) -> None:
        self.abandon()
        self._pool.shutdown(wait=True)
