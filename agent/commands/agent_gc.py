"""``airlock-agent gc``: remove old releases and unused blobs (never current or previous).

    airlock-agent gc --keep 2
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from agent.commands.base import layout_of, tell
from airlock.command import Reported
from airlock.console import human_size, json_option

EXAMPLES = ("airlock-agent gc --keep 2",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep", type=int, default=2, metavar="N",
                   help="installed releases to keep besides current and previous")
    json_option(p)


@dataclass(frozen=True)
class Collected(Reported):
    def text(self) -> str:
        d = self.data
        return (f"removed {len(d['releases_removed'])} release(s) and {d['blobs_removed']} "
                f"blob(s), freed {human_size(d['bytes_freed'])}")


def run(args: argparse.Namespace) -> Collected:
    from agent.gc import gc
    from agent.operations import mutate

    layout = layout_of(args)
    return Collected(mutate(layout, lambda: gc(layout, keep=args.keep), notify=tell))
