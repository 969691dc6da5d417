"""``serve --log FILE``: a line log that rotates itself and follows logrotate.

Once FILE reaches ``MAX_SERVE_LOG_BYTES`` it becomes FILE.1 (FILE.1 becomes
FILE.2, …, only ``MAX_SERVE_LOG_FILES`` are kept) and a new FILE starts. When
something else moved FILE away (logrotate without ``copytruncate``), the next
line opens a new FILE instead of writing into the moved one::

    log = RotatingLog(Path("/var/log/airlock/serve.jsonl"))
    log.write('{"event":"serve-started"}\\n'); log.flush(); log.close()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from airlock.limits import MAX_SERVE_LOG_BYTES, MAX_SERVE_LOG_FILES

__all__ = ["RotatingLog"]


class RotatingLog:
    """Append-only text lines to ``path``, bounded to ``keep`` old files of ``max_bytes``."""

    def __init__(self, path: Path, *, max_bytes: int = MAX_SERVE_LOG_BYTES,
                 keep: int = MAX_SERVE_LOG_FILES) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self._out = self._open()

    def _open(self) -> IO[str]:
        return open(self.path, "a", encoding="utf-8", buffering=1)

    def _moved(self) -> bool:
        try:
            return os.stat(self.path).st_ino != os.fstat(self._out.fileno()).st_ino
        except FileNotFoundError:
            return True

    def write(self, text: str) -> int:
        if self._moved():
            self._out.close()
            self._out = self._open()
        elif self._out.tell() + len(text) > self.max_bytes and self._out.tell() > 0:
            self._out.close()
            self._shift()
            self._out = self._open()
        return self._out.write(text)

    def _shift(self) -> None:
        """FILE -> FILE.1 -> FILE.2 …; the oldest beyond ``keep`` is dropped."""
        old = Path(f"{self.path}.{self.keep}")
        old.unlink(missing_ok=True)
        for n in range(self.keep - 1, 0, -1):
            src = Path(f"{self.path}.{n}")
            if src.exists():
                src.rename(f"{self.path}.{n + 1}")
        if self.keep > 0:
            self.path.rename(f"{self.path}.1")
        else:
            self.path.unlink(missing_ok=True)

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self._out.close()
