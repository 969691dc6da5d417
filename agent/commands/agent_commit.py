"""``airlock-agent commit``: make a held install (``install --hold``) final.

    airlock-agent commit --json
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from agent.commands.base import layout_of, tell
from airlock.command import Reported
from airlock.console import json_option

EXAMPLES = ("airlock-agent commit --json",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    json_option(p)


@dataclass(frozen=True)
class Committed(Reported):
    def text(self) -> str:
        d = self.data
        return (f"committed {d['committed']}: it is final; "
                f"{d['previous'] or 'no release'} is no longer armed to come back")


def run(args: argparse.Namespace) -> Committed:
    from agent.hold import commit
    from agent.operations import mutate

    layout = layout_of(args)
    return Committed(mutate(layout, lambda: commit(layout), notify=tell))
