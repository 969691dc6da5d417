"""An ``.npz`` of samples read a batch of rows at a time: memory stays flat whatever its size.

Evaluation sets, their labels and sample files are ``.npz`` archives of
arrays that share their first dimension, one row per sample. This module
reads their headers without reading their data, then streams them::

    with NpzRows(Path("eval_data.npz")) as rows:
        rows.arrays["x"]         # ArrayHeader(name='x', dtype=float32, shape=(10000, 16))
        rows.count               # 10000: rows every array has
        for start, batch in rows.batches(32, limit=5000, max_batch_bytes=64 << 20):
            batch["x"].shape     # (32, 16); the last batch may be shorter

The format it requires, and why:

* written by ``numpy.savez`` (stored) or ``numpy.savez_compressed``
  (deflated): each array is a zip member ``NAME.npy`` read front to back
  through :mod:`zipfile`, a batch at a time, so a deflated set streams too;
  stored members cost no CPU to read. (``numpy.load(mmap_mode=...)`` ignores
  the mode for ``.npz``; and a memory map would count every page it touched
  in the reader's resident set, which the health budget measures.)
* C order (``numpy.ascontiguousarray``), so a batch of rows is one
  contiguous run of bytes; at least one dimension; no Python objects
  (nothing is unpickled); any byte order (read as native).
* every array has the same number of rows.

Imports only the standard library and numpy: the health child loads it by
absolute path (it runs ``python -I`` and imports nothing of ours by name),
and the bundler imports it to check the same files at build. Bounds come
from the caller (``airlock.limits``), for the same reason.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

__all__ = ["ArrayHeader", "NpzRows", "NpzRowsError"]


class NpzRowsError(ValueError):
    """The file cannot be streamed as samples; the message says why, in one line."""


@dataclass(frozen=True)
class ArrayHeader:
    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    @property
    def row_bytes(self) -> int:
        n = self.dtype.itemsize
        for d in self.shape[1:]:
            n *= d
        return n


class NpzRows:
    """The arrays of one ``.npz``: headers at once, rows on demand (see the module docstring)."""

    def __init__(self, source: Path | IO[bytes]) -> None:
        try:
            self._zip = zipfile.ZipFile(source)
        except (OSError, zipfile.BadZipFile, ValueError, RuntimeError) as e:
            raise NpzRowsError(f"is not an .npz archive: {_first_line(e)}") from None
        try:
            self._members: dict[str, zipfile.ZipInfo] = {}
            self.arrays: dict[str, ArrayHeader] = {}
            for info in self._zip.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                try:
                    with self._zip.open(info) as member:
                        self.arrays[name] = _header(name, member)
                except (RuntimeError, NotImplementedError) as e:  # encrypted, unknown compression
                    raise NpzRowsError(f"member {name!r} cannot be read: {_first_line(e)}") from None
                self._members[name] = info
            counts = {a.shape[0] for a in self.arrays.values()}
            if len(counts) > 1:
                shapes = ", ".join(f"{a.name!r} {a.shape[0]}" for a in self.arrays.values())
                raise NpzRowsError(f"arrays have different numbers of rows ({shapes})")
            self.count = counts.pop() if counts else 0
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> NpzRows:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None,
                                    TracebackType | None]) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def batches(self, size: int, *, limit: int | None = None, max_batch_bytes: int,
                names: list[str] | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(first row, {name: rows})`` for consecutive batches of ``size`` rows.

        At most ``limit`` rows in all; ``names`` picks arrays (default all).
        A batch of all picked arrays may not exceed ``max_batch_bytes``.
        """
        picked = [self.arrays[n] for n in (names if names is not None else list(self.arrays))]
        per_row = sum(a.row_bytes for a in picked)
        if size < 1:
            raise NpzRowsError("a batch needs at least one row")
        if per_row * size > max_batch_bytes:
            raise NpzRowsError(
                f"a batch of {size} rows is {per_row * size} bytes, more than "
                f"{max_batch_bytes}; use a smaller batch"
            )
        total = self.count if limit is None else min(self.count, limit)
        streams = {}
        try:
            for a in picked:
                stream = self._zip.open(self._members[a.name])
                streams[a.name] = stream
                _header(a.name, stream)  # positions the stream at the first row
            start = 0
            while start < total:
                n = min(size, total - start)
                batch = {}
                for a in picked:
                    want = n * a.row_bytes
                    data = _read_exactly(streams[a.name], want)
                    if len(data) != want:
                        raise NpzRowsError(
                            f"array {a.name!r} ends at row {start + len(data) // max(1, a.row_bytes)}"
                            f" of the {a.shape[0]} its header promises"
                        )
                    rows = np.frombuffer(data, dtype=a.dtype).reshape((n, *a.shape[1:]))
                    batch[a.name] = rows if a.dtype.isnative else rows.astype(
                        a.dtype.newbyteorder("="))
                yield start, batch
                start += n
        except (OSError, EOFError, zipfile.BadZipFile, RuntimeError, NotImplementedError) as e:
            raise NpzRowsError(f"cannot be read: {_first_line(e)}") from None
        finally:
            for stream in streams.values():
                stream.close()


def _header(name: str, member: IO[bytes]) -> ArrayHeader:
    try:
        version = np.lib.format.read_magic(member)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(member)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise NpzRowsError(f"member {name!r} is not a numpy array: {_first_line(e)}") from None
    if dtype.hasobject:
        raise NpzRowsError(f"array {name!r} holds Python objects, which are never unpickled; "
                           "save plain numeric arrays")
    if not shape:
        raise NpzRowsError(f"array {name!r} is a scalar; samples need one row per sample")
    if fortran and len(shape) > 1:
        raise NpzRowsError(f"array {name!r} is in Fortran order; save it with "
                           "numpy.ascontiguousarray so rows can be streamed")
    return ArrayHeader(name, dtype, tuple(int(d) for d in shape))


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    parts = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]
