"""``serve --registry``: the device's kept releases served as a read-only site relay.

What is served is what this device verified when it installed it: each kept
release's signed ``release.json`` and ``index.json``, and blobs from the
content store (``airlock.relay`` has the routes and the bundle re-assembly).
The catalog is built again when the set of kept releases changes, so a
release installed from a drop folder is served from the next request on, and
one collected by ``gc`` stops being served::

    httpd = start_relay(layout, RelayOptions("127.0.0.1", 9401))
    ...
    httpd.shutdown(); httpd.server_close()
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from agent.layout import Layout
from airlock.errors import AirlockError, PreconditionError
from airlock.relay.catalog import Catalog, HeldRelease
from airlock.relay.handler import relay_server
from airlock.relay.listener import BoundedHTTPServer

__all__ = ["RelayOptions", "held_releases", "start_relay"]

#: ``airlock-agent serve --registry`` with no address.
DEFAULT_RELAY = "127.0.0.1:9401"


@dataclass(frozen=True)
class RelayOptions:
    host: str
    port: int
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


def held_releases(layout: Layout) -> list[HeldRelease]:
    """Every kept release, the active one last (it wins a tag two releases share)."""
    from agent.switch import read_link

    active = read_link(layout, "current")
    ids = sorted(layout.release_ids(), key=lambda r: (r == active, r))
    held = []
    for rid in ids:
        rdir = layout.release_dir(rid)
        try:
            release = layout.load_release(rid)
            release_json = (rdir / "release.json").read_bytes()
            index = rdir / "index.json"
            index_json = index.read_bytes() if index.is_file() else None
        except (OSError, AirlockError):
            continue  # a damaged release is not served; fsck names it
        if release.encryption is not None:
            # Held decrypted: its signed (ciphertext) blobs are not here to pass on as they
            # came, and its plaintext must never be served. Such releases travel by stick.
            continue
        files = {p: (i.length, i.sha256) for p, i in release.shipped.items()}
        held.append(HeldRelease(rid, release_json, index_json, files))
    return held


class _LiveCatalog:
    """The catalog of the releases kept now: rebuilt when that set changes."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._lock = threading.Lock()
        self._key: tuple[tuple[str, ...], str | None] | None = None
        self._catalog: Catalog | None = None

    def __call__(self) -> Catalog:
        from agent.switch import read_link

        key = (tuple(self.layout.release_ids()), read_link(self.layout, "current"))
        with self._lock:
            if self._catalog is None or key != self._key:
                layout = self.layout
                self._catalog = Catalog(held_releases(layout),
                                        blob_file=lambda hex_: layout.blob("sha256:" + hex_))
                self._key = key
            return self._catalog


def start_relay(layout: Layout, options: RelayOptions) -> BoundedHTTPServer:
    """The relay's listener, answering on its own threads; the caller shuts it down."""
    try:
        httpd = relay_server((options.host, options.port), _LiveCatalog(layout),
                             token=options.token, tls_cert=options.tls_cert,
                             tls_key=options.tls_key)
    except OSError as e:
        raise PreconditionError(f"cannot listen on {options.host}:{options.port} for the "
                                f"relay: {e.strerror}") from None
    threading.Thread(target=httpd.serve_forever, name="relay", daemon=True).start()
    return httpd
