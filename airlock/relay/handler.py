"""The relay's HTTP routes: the OCI pull API, ``/bundles/``, and writes refused.

::

    GET|HEAD /v2/                                   200 {} (the API is here)
    GET|HEAD /v2/NAME/manifests/TAG|DIGEST          a held manifest, its media type and digest
    GET|HEAD /v2/NAME/blobs/DIGEST                  a held blob; ``Range: bytes=A-B`` gives 206
    GET      /v2/NAME/tags/list[?n=&last=]          {"name", "tags"}
    GET      /v2/NAME/referrers/DIGEST              an OCI index of manifests whose subject it is
    GET|HEAD /bundles/RELEASE-ID.airlock            the release as its bundle file; Range too
    POST|PUT|PATCH|DELETE                           405 UNSUPPORTED: the relay is read-only

With a read token every request needs ``Authorization: Bearer TOKEN`` (or
Basic with TOKEN as the password: ``skopeo --src-creds relay:TOKEN``), else
401. Each response closes its connection, so a handler is never held by an idle
client (``airlock.relay.listener``)::

    httpd = relay_server(("127.0.0.1", 9401), lambda: catalog, token="s3cret")
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import re
import socket
import ssl
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs

from airlock.errors import UsageError
from airlock.format.oci import OCI_INDEX, is_digest
from airlock.limits import HTTP_REQUEST_TIMEOUT_S, MAX_RELAY_HANDLERS
from airlock.relay.bundle_image import BundleImage
from airlock.relay.catalog import Catalog
from airlock.relay.listener import BoundedHTTPServer

__all__ = ["relay_server"]

_API = re.compile(r"^/v2/(?P<name>[a-z0-9][a-z0-9._/-]{0,254})/"
                  r"(?P<kind>manifests|blobs|tags|referrers)/(?P<ref>[A-Za-z0-9_.:+-]{1,128})$")
_BUNDLE = re.compile(r"^/bundles/(?P<id>[A-Za-z0-9][A-Za-z0-9._-]{0,200})\.airlock$")
_SEND_BUFFER = 4 * 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, count) for one satisfiable range; None for none (or many: served whole);
    ``"unsatisfiable"`` for a range outside the file."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m[1] and not m[2]):
        return None
    if not m[1]:  # the last N bytes
        n = min(int(m[2]), size)
        return (size - n, n) if n else "unsatisfiable"
    start = int(m[1])
    end = min(int(m[2]), size - 1) if m[2] else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end - start + 1


class _RelayHandler(BaseHTTPRequestHandler):
    server_version = "airlock-relay"
    protocol_version = "HTTP/1.1"
    catalog: Callable[[], Catalog]
    token: str | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every blob of every pull would drown serve's event log

    # -- answers ---------------------------------------------------------------
    def _head(self, code: int, size: int, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(size))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Connection", "close")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _json(self, code: int, doc: Any, extra: dict[str, str] | None = None,
              ctype: str = "application/json") -> None:
        body = (json.dumps(doc, sort_keys=True) + "\n").encode()
        self._head(code, len(body), ctype, extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code: int, err: str, message: str,
               extra: dict[str, str] | None = None) -> None:
        self._json(code, {"errors": [{"code": err, "message": message, "detail": None}]}, extra)

    # -- methods ---------------------------------------------------------------
    def do_GET(self) -> None:
        if not self._authorised():
            self._error(401, "UNAUTHORIZED", "a read token is required",
                        {"WWW-Authenticate": 'Basic realm="airlock-relay"'})
            return
        path, _, query = self.path.partition("?")
        if path in ("/v2", "/v2/"):
            self._json(200, {})
            return
        bundle = _BUNDLE.match(path)
        if bundle:
            self._bundle(bundle["id"])
            return
        m = _API.match(path)
        if m is None:
            self._error(404, "NAME_UNKNOWN", "no such path on this relay")
            return
        catalog = self.catalog()
        name, kind, ref = m["name"], m["kind"], m["ref"]
        if kind == "manifests":
            self._manifest(catalog, name, ref)
        elif kind == "blobs":
            self._blob(catalog, name, ref)
        elif kind == "tags" and ref == "list":
            self._tags(catalog, name, parse_qs(query))
        elif kind == "referrers" and is_digest(ref):
            self._referrers(catalog, ref, parse_qs(query))
        else:
            self._error(404, "NAME_UNKNOWN", "no such path on this relay")

    do_HEAD = do_GET

    def _refuse_write(self) -> None:
        self._error(405, "UNSUPPORTED", "this relay is read-only: it serves verified releases "
                    "and takes no uploads", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse_write

    def _authorised(self) -> bool:
        if self.token is None:
            return True
        got = self.headers.get("Authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() == "basic":
            try:
                value = base64.b64decode(value, validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return False
        elif scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.encode(), self.token.encode())

    # -- routes ----------------------------------------------------------------
    def _manifest(self, catalog: Catalog, name: str, ref: str) -> None:
        found = catalog.manifest(name, ref)
        if found is None:
            self._error(404, "MANIFEST_UNKNOWN", f"{name}:{ref} is not held here")
            return
        f = catalog.blobs.open(found.digest[7:])
        if f is None:
            self._error(404, "MANIFEST_UNKNOWN", f"{found.digest}: the stored copy failed its check")
            return
        with f:
            body = f.read(found.size)
        self._head(200, len(body), found.media_type,
                   {"Docker-Content-Digest": found.digest, "ETag": f'"{found.digest}"'})
        if self.command != "HEAD":
            self.wfile.write(body)

    def _blob(self, catalog: Catalog, name: str, digest: str) -> None:
        size = catalog.blob_size(digest)
        if size is None or name not in catalog.tags:
            self._error(404, "BLOB_UNKNOWN", f"{digest} is not held here")
            return
        f = catalog.blobs.open(digest[7:])
        if f is None:
            self._error(404, "BLOB_UNKNOWN", f"{digest}: the stored copy failed its check")
            return
        with f:
            self._ranged(size, {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'},
                         lambda start, count: self._send_file(f, start, count),
                         "application/octet-stream")

    def _bundle(self, release_id: str) -> None:
        image = self.catalog().bundles.get(release_id)
        if image is None:
            self._error(404, "NAME_UNKNOWN", f"no release {release_id} is held here")
            return
        etag = f'"{release_id}-{image.size}"'
        self._ranged(image.size, {"ETag": etag},
                     lambda start, count: self._send_image(image, start, count),
                     "application/octet-stream")

    def _ranged(self, size: int, extra: dict[str, str], send: Callable[[int, int], None],
                ctype: str) -> None:
        wanted = _parse_range(self.headers.get("Range"), size)
        if_range = self.headers.get("If-Range")
        if if_range and if_range != extra.get("ETag"):
            wanted = None  # the client holds another version: the whole of this one
        extra = {**extra, "Accept-Ranges": "bytes"}
        if wanted == "unsatisfiable":
            self._error(416, "BLOB_UNKNOWN", "range not satisfiable",
                        {"Content-Range": f"bytes */{size}"})
            return
        if isinstance(wanted, tuple):
            start, count = wanted
            self._head(206, count, ctype,
                       {**extra, "Content-Range": f"bytes {start}-{start + count - 1}/{size}"})
        else:
            start, count = 0, size
            self._head(200, size, ctype, extra)
        if self.command != "HEAD" and count:
            send(start, count)

    def _send_file(self, f: IO[bytes], start: int, count: int) -> None:
        self.wfile.flush()
        # A larger send buffer: fewer wake-ups of this thread per blob (each holds the GIL).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        self.connection.sendfile(f, start, count)  # in the kernel where it can

    def _send_image(self, image: BundleImage, start: int, count: int) -> None:
        catalog = self.catalog()
        for piece, at, n in image.slices(start, count):
            if piece.data is not None:
                self.wfile.write(piece.data[at:at + n])
                continue
            assert piece.blob is not None
            f = catalog.blobs.open(piece.blob)
            if f is None:  # never serve what failed its check: the client sees a short body
                raise ConnectionAbortedError(f"sha256:{piece.blob} failed its check")
            with f:
                self._send_file(f, at, n)

    def _tags(self, catalog: Catalog, name: str, query: dict[str, list[str]]) -> None:
        tags = catalog.tag_list(name)
        if tags is None:
            self._error(404, "NAME_UNKNOWN", f"no repository {name} here")
            return
        last = (query.get("last") or [""])[0]
        tags = [t for t in tags if t > last] if last else tags
        n = (query.get("n") or [""])[0]
        if n.isdigit():
            tags = tags[: int(n)]
        self._json(200, {"name": name, "tags": tags})

    def _referrers(self, catalog: Catalog, digest: str, query: dict[str, list[str]]) -> None:
        found = list(catalog.subjects.get(digest, []))
        extra = {}
        kind = (query.get("artifactType") or [""])[0]
        if kind:
            found = [d for d in found if d.get("artifactType") == kind]
            extra["OCI-Filters-Applied"] = "artifactType"
        self._json(200, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found},
                   extra, ctype=OCI_INDEX)


class _TlsRelayServer(BoundedHTTPServer):
    """TLS: the head cannot be peeked at through encryption, so a connection goes straight to
    a (bounded) handler, which shakes hands within ``HTTP_REQUEST_TIMEOUT_S``."""

    tls: ssl.SSLContext

    def process_request(self, request: Any, client_address: Any) -> None:
        self._start(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HTTP_REQUEST_TIMEOUT_S)
        wrapped = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(wrapped, client_address)


def relay_server(address: tuple[str, int], catalog: Callable[[], Catalog], *,
                 token: str | None = None, tls_cert: Path | None = None,
                 tls_key: Path | None = None) -> BoundedHTTPServer:
    """A listener answering the relay's routes (not started: call ``serve_forever``)."""
    handler = type("RelayHandler", (_RelayHandler,), {"catalog": staticmethod(catalog),
                                                      "token": token})
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if tls_cert is None:
        return BoundedHTTPServer(address, handler, handlers=MAX_RELAY_HANDLERS)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(tls_cert), str(tls_key))
    except (OSError, ssl.SSLError) as e:
        raise UsageError(f"cannot load --tls-cert/--tls-key: {e}") from None
    server = _TlsRelayServer(address, handler, handlers=MAX_RELAY_HANDLERS)
    server.tls = context
    return server


