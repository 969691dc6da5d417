"""A bundle pulled over HTTP (a site relay's ``/bundles/``), read as one stream, resumed with Range.

``airlock-agent install http://relay:9401/bundles/vision-7.airlock`` reads the
bundle through this stream, so it is verified exactly as from a stick
(``agent.operations.install_run``): nothing the relay says is trusted. Only
the standard library: ``requests`` is not in ``[agent]``. When the connection
drops mid-body, the stream reconnects and asks for the rest (``Range:
bytes=N-``, ``If-Range`` with the first answer's ETag); a relay that answers
with anything but exactly those bytes' place is refused::

    with HttpBundle("http://relay:9401/bundles/vision-7.airlock") as stream:
        install_run(layout, stream, label=stream.url)
    stream.stats()    # {"bytes_total", "bytes_received", "resumes", "resumed_at"}
"""

from __future__ import annotations

import http.client
import io
import ssl
import time
import urllib.parse
from typing import Any

from airlock.errors import FormatError, UnreachableError, UsageError
from airlock.limits import HTTP_PULL_RESUMES, HTTP_PULL_RETRY_S, HTTP_PULL_TIMEOUT_S

__all__ = ["HttpBundle", "is_url"]

_RETRY_STEP_S = 0.5


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


class HttpBundle(io.RawIOBase):
    """A read-only stream of the bundle at ``url``; no fileno, so it is read forward once."""

    def __init__(self, url: str, *, token: str | None = None, cafile: str | None = None) -> None:
        super().__init__()
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{url!r} is not an http(s) URL of a bundle")
        self.url, self._parts, self._token = url, parts, token
        self._tls = ssl.create_default_context(cafile=cafile) if parts.scheme == "https" else None
        self.size = 0
        self.position = 0
        self.received = 0
        self.resumes = 0
        self.resumed_at: list[int] = []
        self._etag: str | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._response: http.client.HTTPResponse | None = None
        self._open(0)

    # -- the connection ---------------------------------------------------------
    def _connect(self) -> http.client.HTTPConnection:
        host, port = self._parts.hostname or "", self._parts.port
        if self._tls is not None:
            return http.client.HTTPSConnection(host, port, timeout=HTTP_PULL_TIMEOUT_S,
                                               context=self._tls)
        return http.client.HTTPConnection(host, port, timeout=HTTP_PULL_TIMEOUT_S)

    def _open(self, offset: int) -> None:
        """Ask for the bytes from ``offset`` on, retrying a relay that is away for a while."""
        deadline = time.monotonic() + HTTP_PULL_RETRY_S
        path = self._parts.path + (f"?{self._parts.query}" if self._parts.query else "")
        headers = {"User-Agent": "airlock-agent", "Accept-Encoding": "identity"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self._etag:
                headers["If-Range"] = self._etag
        while True:
            self._close_connection()
            conn = self._connect()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                break
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if time.monotonic() >= deadline:
                    raise UnreachableError(f"cannot fetch {self.url}: {e}") from None
                time.sleep(_RETRY_STEP_S)
        self._conn, self._response = conn, response
        self._check(response, offset)

    def _check(self, response: http.client.HTTPResponse, offset: int) -> None:
        code = response.status
        if not offset:
            if code != 200:
                raise UnreachableError(f"{self.url}: the relay answered {code} {response.reason}")
            self.size = int(response.getheader("Content-Length") or 0)
            self._etag = response.getheader("ETag")
            return
        want = f"bytes {offset}-{self.size - 1}/{self.size}"
        if code != 206 or response.getheader("Content-Range") != want \
                or response.getheader("ETag") != self._etag:
            raise FormatError(f"{self.url}: resuming at byte {offset}, the relay answered "
                              f"{code} {response.getheader('Content-Range') or ''} (another "
                              "file, or not the rest of this one); nothing was changed")

    def _close_connection(self) -> None:
        if self._response is not None:
            self._response.close()
        if self._conn is not None:
            self._conn.close()
        self._conn = self._response = None

    # -- reading ---------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        while True:
            if self.size and self.position >= self.size:
                return 0
            assert self._response is not None
            try:
                n = self._response.readinto(view)
            except (OSError, http.client.HTTPException):
                n = -1
            if n > 0:
                self.position += n
                self.received += n
                return n
            if self.size and self.position >= self.size:
                return 0
            # The body ended early, or the connection dropped: ask for the rest.
            if self.resumes >= HTTP_PULL_RESUMES:
                raise UnreachableError(f"{self.url}: the connection dropped {self.resumes + 1} "
                                       f"times (at byte {self.position} of {self.size})")
            self.resumes += 1
            self.resumed_at.append(self.position)
            self._open(self.position)

    def close(self) -> None:
        self._close_connection()
        super().close()

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "bytes_total": self.size, "bytes_received": self.received,
                "resumes": self.resumes, "resumed_at": self.resumed_at}
