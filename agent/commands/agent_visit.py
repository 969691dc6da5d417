"""``airlock-agent visit``: what a directed device last followed; ``visit apply`` follows a visit.

    airlock-agent visit
    airlock-agent visit apply /media/usb/visit.json

An install visit goes with its bundle (``airlock-agent install BUNDLE``, which
finds ``visit.json`` beside it, or ``--visit FILE``); ``visit apply`` follows
a visit that says "stay" or "roll back to R" (``agent.directed``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from agent.commands.base import layout_of, tell
from airlock.command import Reported
from airlock.console import json_option
from airlock.errors import UsageError

EXAMPLES = ("airlock-agent visit", "airlock-agent visit apply /media/usb/visit.json")
DESCRIPTION = """\
A directed device ('airlock-agent init --directed') installs only what a
signed visit ('airlock direct') names for its own id. 'visit' shows the last
visit it followed; 'visit apply FILE' follows a visit that says 'stay' (a
freeze: nothing installs until a newer visit) or 'roll back to R' (a release
the device still holds; its anti-rollback record goes down to R's sequence).
An expired visit, one for another device or one older than the last followed
is refused (exit 3) and nothing changes.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("show", "apply"), default="show",
                   help="show the last visit followed (default), or follow a visit")
    p.add_argument("visit", nargs="?", type=Path, metavar="FILE", help="the visit to follow")
    json_option(p)


@dataclass(frozen=True)
class VisitShown(Reported):
    """The visit record (``show``), or what following a visit did (``apply``)."""

    def text(self) -> str:
        d = self.data
        if "instruction" not in d:
            if not d.get("directed"):
                return "this device is not directed: it follows no visits"
            last = d.get("followed")
            return (f"directed; last visit followed: {d['sequence'] or 'none yet'}"
                    + (f" ({last['action']}" + (f" {last['release']}" if last.get("release")
                                                 else "") + ")" if last else ""))
        ins = d["instruction"]
        line = f"visit {d['visit']['sequence']}: {ins['action']}"
        if d.get("rollback"):
            rb = d["rollback"]
            line += (f" -> {rb['active']} active; anti-rollback record {rb['sequence_was']} -> "
                     f"{rb['sequence_now']}")
        return line + ("" if d["followed"] else " (already followed)")


def run(args: argparse.Namespace) -> VisitShown:
    from agent.directed import apply_visit, load_record

    layout = layout_of(args)
    layout.require_initialised()
    if args.action == "show":
        return VisitShown(load_record(layout) or {"directed": False})
    if args.visit is None:
        raise UsageError("visit apply needs a FILE: the visit from 'airlock direct'")
    from agent.operations import mutate

    return VisitShown(mutate(layout, lambda: apply_visit(layout, args.visit), notify=tell))
