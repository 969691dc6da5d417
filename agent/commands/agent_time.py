"""``airlock-agent time``: the clock against the time floor; ``time apply`` takes a signed time token.

    airlock-agent time
    airlock-agent time apply /media/usb/time.json
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from agent.commands.base import layout_of, tell
from airlock.command import Reported
from airlock.console import json_option
from airlock.errors import UsageError

EXAMPLES = ("airlock-agent time", "airlock-agent time apply /media/usb/time.json")
DESCRIPTION = """\
Show this device's clock, its time floor (the newest signed time it has seen:
release 'issued' times and time tokens) and the time expiry is judged at.
'time apply FILE' takes a time token made by 'airlock time-token': the cure
for a clock that reset (1970) or runs far ahead. A token not newer than the
floor changes nothing.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("show", "apply"), default="show",
                   help="show the clock and floor (default), or apply a time token")
    p.add_argument("token", nargs="?", metavar="FILE", help="the time token to apply")
    json_option(p)


@dataclass(frozen=True)
class TimeShown(Reported):
    """The clock (``Judged.to_dict()``), under ``clock`` when a token was applied."""

    def text(self) -> str:
        d = self.data
        c = d["clock"] if "applied" in d else d  # apply nests the clock; show is the clock
        lines = []
        if "applied" in d:
            lines.append(f"time token {d['time']} (signer {d['signer']}) applied" if d["applied"]
                         else f"time token {d['time']}: {d['note']}")
        lines += [f"clock    {c['clock']} ({c['state']})",
                  f"floor    {c['floor'] or 'none yet'}"
                  + (f" from {c['floor_source']}" if c.get("floor_source") else ""),
                  f"judged   {c['judged']}: expiry is judged at this time"]
        return "\n".join(lines)


def run(args: argparse.Namespace) -> TimeShown:
    from agent.timefloor import apply_token, judge_now

    layout = layout_of(args)
    layout.require_initialised()
    if args.action == "show":
        return TimeShown(judge_now(layout).to_dict())
    if not args.token:
        raise UsageError("time apply needs a FILE: the time token from 'airlock time-token'")
    from agent.operations import mutate
    from airlock.files import read_bounded
    from airlock.limits import MAX_METADATA_BYTES

    try:
        data = read_bounded(Path(args.token), MAX_METADATA_BYTES)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {args.token}: {getattr(e, 'strerror', None) or e}") from None
    return TimeShown(mutate(layout, lambda: apply_token(layout, data, str(args.token)),
                            notify=tell))
