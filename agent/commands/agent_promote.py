"""``airlock-agent promote``: switch to the challenger staged with ``install --no-switch``.

    airlock-agent promote
    airlock-agent promote --hold 600      # then 'airlock-agent commit', or it reverts

Through the install envelope (``agent.operations.promote_run``): the
challenger is health-checked again against what runs now, then switched to as
an install is. Exit 4 when its check, hook or probe fails (the running
release stays, the challenger stays staged), exit 5 when nothing is staged.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from agent.commands.base import layout_of, tell
from airlock.command import Reported
from airlock.console import json_option

EXAMPLES = ("airlock-agent promote --hold 600",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hold", type=float, metavar="SECONDS",
                   help="keep the running release armed to come back unless "
                        "'airlock-agent commit' runs within SECONDS")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for the lock instead of exiting 5")
    json_option(p)


@dataclass(frozen=True)
class Promoted(Reported):
    def text(self) -> str:
        d = self.data
        line = (f"promoted {d['name']} {d['version']} (sequence {d['sequence']}), active; "
                f"{d['previous'] or 'no release'} is previous")
        if d.get("held_until"):
            line += (f"; held until {d['held_until']} ('airlock-agent commit' makes it final, "
                     "else it reverts)")
        return line


def run(args: argparse.Namespace) -> Promoted:
    from agent.operations import promote_run

    layout = layout_of(args)
    return Promoted(promote_run(layout, hold=args.hold, wait=args.wait, notify=tell))
