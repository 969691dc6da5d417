"""``airlock-agent fsck``: check the store, releases, links and journal; ``--repair`` fixes.

    airlock-agent fsck --repair --json
    airlock-agent fsck --read-only      # a new agent's self-check beside the running one

The work and its lock are ``agent.operations.fsck_run``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from agent.commands.base import layout_of
from airlock.command import Reported
from airlock.console import fail_with, json_option
from airlock.errors import RejectedError, UsageError

EXAMPLES = ("airlock-agent fsck --repair --json",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repair", action="store_true",
                   help="undo unfinished work, remove corrupt blobs and broken releases")
    p.add_argument("--read-only", action="store_true",
                   help="check without taking the lock and never repair (a new agent's "
                        "self-check while the running one holds the lock)")
    json_option(p)


@dataclass(frozen=True)
class Checked(Reported):
    def text(self) -> str:
        d = self.data
        c = d["checked"]
        out = [f"repaired: {line}" for line in d["repaired"]]
        out += [f"{p['kind']}: {p['path']}: {p['detail']}" for p in d["problems"]]
        out += [f"incomplete: releases/{r['release']}: {r['detail']}"
                for r in d.get("incomplete", [])]
        out.append(f"{'consistent' if d['ok'] else 'INCONSISTENT'}: {c['blobs']} blob(s), "
                   f"{c['releases']} release(s), {c['journal_lines']} journal line(s) checked")
        return "\n".join(out)


def run(args: argparse.Namespace) -> Checked:
    from agent.operations import fsck_run

    if args.read_only and args.repair:
        layout_of(args).require_initialised()
        raise UsageError("--read-only and --repair exclude each other")
    result = Checked(fsck_run(layout_of(args), repair=args.repair, read_only=args.read_only))
    if not result.data["ok"]:
        # The report goes to stdout, the verdict to stderr with exit 3.
        first = result.data["problems"][0]
        hint = "" if args.repair else "; run 'airlock-agent fsck --repair'"
        n = len(result.data["problems"])
        fail_with(result, RejectedError(
            f"{n} inconsistenc{'y remains' if n == 1 else 'ies remain'} "
            f"(first: {first['path']}: {first['detail']}){hint}"))
    return result
