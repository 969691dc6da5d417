"""``airlock-agent check``: re-run the health check of the active release.

    airlock-agent check --rollback-on-failure
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from agent.commands.base import inputs_line, layout_of, tell
from airlock.command import Reported
from airlock.console import json_option

EXAMPLES = ("airlock-agent check --rollback-on-failure",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rollback-on-failure", action="store_true",
                   help="roll back when the check fails")
    json_option(p)


@dataclass(frozen=True)
class Checked(Reported):
    def text(self) -> str:
        d = self.data
        return "\n".join([f"{d['release']}: health check ok",
                          *(inputs_line(m, seen) for m, seen in d["inputs"].items())])


def run(args: argparse.Namespace) -> Checked:
    from agent.operations import mutate
    from agent.rollback import check

    layout = layout_of(args)
    return Checked(mutate(layout, lambda: check(layout,
                                                rollback_on_failure=args.rollback_on_failure),
                          notify=tell))
