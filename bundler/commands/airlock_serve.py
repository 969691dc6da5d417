"""``airlock serve``: a bundle (or a directory of them), verified at start, served as a site relay.

    airlock serve site-1.airlock --trust root.json --listen 0.0.0.0:9401

The read-only OCI pull API and ``/bundles/RELEASE-ID.airlock`` (``airlock.relay``),
from bundles whose signatures and every blob verified when the command started
(``bundler.sneakernet.relay_source``). A bundle that fails is exit 3 and nothing
is served. Runs until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

from airlock.console import read_input
from airlock.errors import PreconditionError, UsageError

EXAMPLES = ("airlock serve site-1.airlock --trust root.json --listen 0.0.0.0:9401",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", type=Path, metavar="BUNDLE|DIR",
                   help="the bundle to serve, or a directory of *.airlock bundles")
    p.add_argument("--trust", type=Path, required=True, metavar="ROOT.json",
                   help="the trust root the devices have: every bundle is verified against it")
    p.add_argument("--listen", default="127.0.0.1:9401", metavar="HOST:PORT",
                   help="where the relay answers (default %(default)s)")
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="answer HTTPS (with --tls-key)")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's key")
    p.add_argument("--read-token-file", type=Path, metavar="FILE",
                   help="every client must send the token in FILE")


def run(args: argparse.Namespace) -> None:
    from airlock.files import read_bounded
    from airlock.relay.catalog import Catalog
    from airlock.relay.handler import relay_server
    from bundler.sneakernet.relay_source import bundles_in, load_bundles
    from keys.trust import TrustRoot

    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {args.listen!r} must be HOST:PORT, e.g. 127.0.0.1:9401")
    token = None
    if args.read_token_file is not None:
        try:
            token = read_bounded(args.read_token_file, 4096).decode().strip() or None
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read --read-token-file: {e}") from None
    trust = TrustRoot.given(read_input(args.trust, "trust root"), f"--trust {args.trust}")
    with tempfile.TemporaryDirectory(prefix="airlock-serve-") as tmp:
        scratch = Path(tmp)
        held = load_bundles(bundles_in(args.bundle), trust, scratch)
        catalog = Catalog(held, blob_file=lambda hex_: scratch / hex_)
        try:
            httpd = relay_server((host.strip("[]") or "127.0.0.1", int(port)), lambda: catalog,
                                 token=token, tls_cert=args.tls_cert, tls_key=args.tls_key)
        except OSError as e:
            raise PreconditionError(f"cannot listen on {args.listen}: {e.strerror}") from None
        stop = threading.Event()
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, lambda *_: stop.set())
        threading.Thread(target=httpd.serve_forever, name="relay", daemon=True).start()
        scheme = "https" if args.tls_cert else "http"
        print(f"serving {', '.join(h.id for h in held)} at {scheme}://{host}:"
              f"{httpd.server_port} (/v2/, /bundles/); Ctrl-C stops", file=sys.stderr,
              flush=True)
        stop.wait()
        httpd.shutdown()
        httpd.server_close()
