"""``airlock-agent rollback``: switch back to the previous release at once.

    airlock-agent rollback
    airlock-agent rollback --check --json
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from agent.commands.base import layout_of, tell
from airlock.command import Reported
from airlock.console import json_option

EXAMPLES = ("airlock-agent rollback", "airlock-agent rollback --check --json")
DESCRIPTION = (
    "Switch back to the previous release, run its post-switch hook and probe. Its\n"
    "model health check is not run again: it passed when the release was installed,\n"
    "and its files are the same content-addressed blobs (checked with stat, so a\n"
    "rollback takes as long for a 10 GiB model as for a 1 MiB one). --check runs it\n"
    "again before the switch, e.g. after 'config --providers' changed how models run.\n"
    "The release left is marked: 'serve' never installs it again from a drop folder;\n"
    "only an explicit 'airlock-agent install' of it brings it back.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true",
                   help="health-check the release before switching to it; if it fails, try "
                   "the other installed releases, newest first")
    json_option(p)


@dataclass(frozen=True)
class RolledBack(Reported):
    def text(self) -> str:
        d = self.data
        # Releases named as status names them: NAME VERSION (sequence N). A second
        # rollback returns to the newer release the first one left: not "back" in time.
        newer = d.get("from_sequence") is not None and d["sequence"] > d["from_sequence"]
        verb = "switched back" if newer else "rolled back"
        done = (f"{verb} from {d.get('from_release') or d['from']} to {d['name']} "
                f"{d['version']} (sequence {d['sequence']})")
        if d.get("checked"):
            why = "" if d.get("check_reason") == "asked to" else f"; {d.get('check_reason')}"
            return done + f"\nhealth check passed just now ({d['health_s']} s{why})"
        return done + (f"\nhealth check passed at {d.get('health_time')} and its files "
                       "are unchanged: not re-run ('rollback --check' re-runs it first)")


def run(args: argparse.Namespace) -> RolledBack:
    from agent.operations import mutate
    from agent.rollback import rollback

    layout = layout_of(args)
    return RolledBack(mutate(layout, lambda: rollback(layout, check=args.check,
                                                        operator=True), notify=tell))
