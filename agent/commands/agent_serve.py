"""``airlock-agent serve``: run until stopped: /metrics, drop-folder installs, scheduled checks.

    airlock-agent serve --listen 127.0.0.1:9400 --watch /media/usb --check-every 15m

The loop is ``agent.observe.serve``; a dropped bundle goes through the same
door as ``install`` (``agent.operations.install_run``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.commands.base import layout_of

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


def run(args: argparse.Namespace) -> None:
    from agent.observe.serve import ServeOptions, serve

    layout = layout_of(args)
    layout.require_initialised()
    serve(layout, ServeOptions.from_args(args.listen, args.watch, args.check_every,
                                         args.revert_on_failed_check, args.settle, args.poll,
                                         args.log, args.shadow_every, args.auto_promote))
