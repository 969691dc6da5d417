"""``airlock-agent flags``: show effective feature flags; apply or roll back a signed flags set.

    airlock-agent flags
    airlock-agent flags apply /media/usb/site-flags.airlock
    airlock-agent flags rollback site-flags
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from agent.commands.base import layout_of, tell
from airlock.command import Reported
from airlock.console import json_option
from airlock.errors import UsageError

EXAMPLES = ("airlock-agent flags apply /media/usb/site-flags.airlock",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("show", "apply", "rollback"), default="show",
                   help="show the effective flags (default), apply a flags bundle, or go back "
                   "to the previous flags set of a name")
    p.add_argument("target", nargs="?", metavar="FILE|NAME",
                   help="flags bundle to apply, or the name of the set to roll back")
    json_option(p)


@dataclass(frozen=True)
class Flags(Reported):
    """The effective flags (``flags show``); the subclasses add what was done."""

    def head(self) -> str:
        return ""

    def text(self) -> str:
        d = self.data
        if "flags" not in d:
            return super().text()
        return self.head() + "\n".join(
            f"{k:<20} {json.dumps(v['value']):<12} {v['source']}"
            + (f" ({v['note']})" if v.get("note") else "") for k, v in d["flags"].items())


@dataclass(frozen=True)
class FlagsApplied(Flags):
    def head(self) -> str:
        return f"flags {self.data['name']} sequence {self.data['sequence']} applied\n"


@dataclass(frozen=True)
class FlagsRolledBack(Flags):
    def head(self) -> str:
        d = self.data
        return (f"flags {d['name']}: back from #{d['from']} to "
                f"{'#' + str(d['to']) if d['to'] else 'release defaults'}\n")


def run(args: argparse.Namespace) -> Flags:
    from agent.feature_flags import rollback_flags, show_flags
    from agent.operations import mutate

    layout = layout_of(args)
    layout.require_initialised()
    if args.action == "show":
        return Flags(show_flags(layout))
    if not args.target:
        raise UsageError(f"flags {args.action} needs a "
                         f"{'FILE' if args.action == 'apply' else 'NAME'}")
    if args.action == "rollback":
        return FlagsRolledBack(mutate(layout, lambda: rollback_flags(layout, args.target),
                                      notify=tell))
    from agent.feature_flags import apply_flags, flags_bytes
    from airlock.format.bundle import BundleReader
    from airlock.format.parts import open_media

    stream, _ = open_media(args.target)
    with stream:  # the reader bounds the metadata and refuses any member after it
        got = flags_bytes(BundleReader(stream))
    if got is None:
        raise UsageError(f"{args.target} is a release bundle, not flags; "
                         "use 'airlock-agent install'")
    return FlagsApplied(mutate(layout, lambda: apply_flags(layout, got, args.target),
                               notify=tell))
