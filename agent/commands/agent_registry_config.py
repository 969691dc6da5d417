"""``airlock-agent registry-config``: point containerd, k3s, RKE2 or Docker at a site relay.

    airlock-agent registry-config --for containerd --relay http://relay:9401
    airlock-agent registry-config --for k3s --relay http://relay:9401 --write

Prints the mirror configuration (``agent.mirror_config``) for the registries
the kept releases' images come from; ``--write`` merges it into the runtime's
file, keeping the old one as ``NAME.airlock-backup``: the one documented
exception to "nothing outside ROOT is written".
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from agent.commands.base import layout_of
from airlock.command import Reported
from airlock.console import json_option

EXAMPLES = ("airlock-agent registry-config --for containerd --relay http://relay:9401",
            "airlock-agent registry-config --for k3s --relay http://relay:9401 --write")
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--for", dest="runtime", required=True,
                   choices=("containerd", "k3s", "rke2", "docker"),
                   help="the runtime whose mirror configuration to make")
    p.add_argument("--relay", default="http://127.0.0.1:9401", metavar="URL",
                   help="the relay (airlock-agent serve --registry), default %(default)s")
    p.add_argument("--registry", action="append", default=[], metavar="HOST",
                   help="mirror this registry too (default: those the kept releases name)")
    p.add_argument("--path", type=Path, metavar="PATH",
                   help="the file (containerd: the certs.d directory) instead of the "
                        "runtime's own")
    p.add_argument("--write", action="store_true",
                   help="merge into the file(s), keeping NAME.airlock-backup")
    json_option(p)


@dataclass(frozen=True)
class MirrorConfig(Reported):
    def text(self) -> str:
        d = self.data
        if d["written"] is not None:
            return "\n".join(d["written"]) or "already configured; nothing written"
        return "\n".join(f"# {f['path']}\n{f['text']}" for f in d["files"])


def run(args: argparse.Namespace) -> MirrorConfig:
    from agent.mirror_config import mirror_files, write_files
    from agent.observe.relay import held_releases
    from airlock.relay.catalog import registries_named

    layout = layout_of(args)
    layout.require_initialised()
    registries = sorted(set(args.registry) | set(registries_named(held_releases(layout))))
    files = mirror_files(args.runtime, args.relay, registries, args.path)
    written = write_files(files) if args.write else None
    return MirrorConfig({"runtime": args.runtime, "relay": args.relay, "registries": registries,
                         "files": [{"path": str(f.path), "text": f.text, "changed": f.changed}
                                   for f in files], "written": written})
