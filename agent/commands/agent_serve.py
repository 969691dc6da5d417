"""``airlock-agent serve``: run until stopped: /metrics, drop-folder installs, scheduled checks.

    airlock-agent serve --listen 127.0.0.1:9400 --watch /media/usb --check-every 15m

The loop is ``agent.observe.serve``; a dropped bundle goes through the same
door as ``install`` (``agent.operations.install_run``). ``--registry`` also
serves the kept releases as a read-only site relay (``agent.observe.relay``):
the OCI pull API for runtimes, ``/bundles/RELEASE-ID.airlock`` for devices.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from agent.commands.base import layout_of
from airlock.errors import UsageError

if TYPE_CHECKING:
    from agent.observe.relay import RelayOptions

EXAMPLES = ("airlock-agent serve --listen 127.0.0.1:9400 --watch /media/usb --check-every 15m",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="127.0.0.1:9400", metavar="HOST:PORT",
                   help="where /metrics, /healthz and /status answer")
    p.add_argument("--watch", type=Path, action="append", default=[], metavar="DIR",
                   help="drop folder: install bundles that appear here (repeatable)")
    p.add_argument("--check-every", default="15m", metavar="DURATION",
                   help="re-check the active release this often (e.g. 30s, 15m, 1h; 0 = never)")
    p.add_argument("--revert-on-failed-check", action="store_true",
                   help="roll back when a scheduled check fails")
    p.add_argument("--settle", type=float, default=2.0, metavar="SECONDS",
                   help="a dropped file must stay unchanged this long before it is read")
    p.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                   help="how often drop folders and samples are looked at")
    p.add_argument("--shadow-every", default="0", metavar="DURATION",
                   help="compare the staged challenger (install --no-switch) with the running "
                        "model on fresh samples this often (e.g. 1h; 0 = never, the default)")
    p.add_argument("--auto-promote", type=int, default=0, metavar="K",
                   help="promote the staged challenger once its last K shadow runs all met "
                        "its spec's thresholds (needs --shadow-every)")
    p.add_argument("--log", type=Path, metavar="FILE",
                   help="append one JSON line per event here (default: stderr)")
    p.add_argument("--registry", nargs="?", const="127.0.0.1:9401", metavar="HOST:PORT",
                   help="also serve the kept releases as a read-only OCI registry and "
                        "/bundles/ (site relay) on its own listener (default 127.0.0.1:9401)")
    p.add_argument("--tls-cert", type=Path, metavar="PEM",
                   help="the relay answers HTTPS with this certificate (with --tls-key)")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's key")
    p.add_argument("--read-token-file", type=Path, metavar="FILE",
                   help="the relay asks every client for the token in FILE "
                        "(Authorization: Bearer, or Basic with it as the password)")


def run(args: argparse.Namespace) -> None:
    from agent.observe.serve import ServeOptions, serve

    layout = layout_of(args)
    layout.require_initialised()
    options = ServeOptions.from_args(args.listen, args.watch, args.check_every,
                                     args.revert_on_failed_check, args.settle, args.poll,
                                     args.log, args.shadow_every, args.auto_promote)
    if args.registry is not None:
        options.relay = relay_options(args)
    elif args.tls_cert or args.tls_key or args.read_token_file:
        raise UsageError("--tls-cert, --tls-key and --read-token-file are the relay's: "
                         "add --registry")
    serve(layout, options)


def relay_options(args: argparse.Namespace) -> RelayOptions:
    """``--registry HOST:PORT`` and its TLS and token options, checked."""
    from agent.observe.relay import RelayOptions
    from airlock.files import read_bounded

    host, sep, port = str(args.registry).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--registry {args.registry!r} must be HOST:PORT, e.g. 127.0.0.1:9401")
    token = None
    if args.read_token_file is not None:
        try:
            token = read_bounded(args.read_token_file, 4096).decode().strip()
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read --read-token-file {args.read_token_file}: {e}") from None
        if not token:
            raise UsageError(f"--read-token-file {args.read_token_file} is empty")
    return RelayOptions(host.strip("[]") or "127.0.0.1", int(port), token,
                        args.tls_cert, args.tls_key)
