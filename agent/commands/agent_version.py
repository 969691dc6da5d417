"""``airlock-agent --version``: this agent's version, platform, Python, and kit or pip.

    airlock-agent --version --json

Not a subcommand: ``agent.cli`` runs it when ``--version`` comes alone.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from airlock.command import Reported

EXAMPLES = ("airlock-agent --version --json",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """None: ``--version`` and ``--json`` are the tool's own options."""


@dataclass(frozen=True)
class Version(Reported):
    def text(self) -> str:
        d = self.data
        where = (f"kit {d['kit']} in {d['home']}" if d["kit"] else "installed with pip")
        return (f"airlock-agent {d['version']} ({d['platform']}, Python "
                f"{d['python_full']}; {where})")


def run(args: argparse.Namespace | None = None) -> Version:
    from agent.self.identity import identity

    return Version(identity())
