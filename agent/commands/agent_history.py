"""``airlock-agent history``: the journal of every action, and a check of its hash chain.

    airlock-agent history --verify
    airlock-agent history --last 20 --json
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from agent.commands.base import layout_of
from airlock.console import json_option

EXAMPLES = ("airlock-agent history --verify",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verify", action="store_true", help="check the journal's hash chain")
    p.add_argument("--last", type=int, default=0, metavar="N",
                   help="only the last N entries (0: all)")
    json_option(p)


@dataclass(frozen=True)
class History:
    entries: list[dict[str, Any]]
    verified: bool
    lines: int | None  # journal lines the hash chain covers, when verified
    segments: list[str]  # the files the journal spans, oldest first
    first_line: int  # the oldest line kept (older segments were dropped by the bound)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        out = []
        for e in self.entries:
            extra = {k: v for k, v in e.items()
                     if k not in ("time", "event", "prev", "report", "counts") and v is not None}
            out.append(f"{e.get('time', '?')}  {e.get('event', '?'):<16} "
                       + " ".join(f"{k}={v}" for k, v in sorted(extra.items())))
        if self.verified:
            span = (f" in {len(self.segments)} segments" if len(self.segments) > 1 else "")
            since = (f", from line {self.first_line} (older segments dropped)"
                     if self.first_line > 1 else "")
            out.append(f"journal hash chain verified: {self.lines} lines{span}{since}")
        return "\n".join(out)


def run(args: argparse.Namespace) -> History:
    from agent.journal import Journal

    layout = layout_of(args)
    layout.require_initialised()
    journal = Journal(layout.journal)
    verified = journal.verify() if args.verify else None
    entries = list(journal.entries())
    if args.last:
        entries = entries[-args.last :]
    return History(entries, verified is not None, verified,
                   [p.name for _, p in journal.segments()], journal.first_line())
