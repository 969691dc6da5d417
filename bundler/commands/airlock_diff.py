"""``airlock diff``: what changed between two bundles, or between a device inventory and a bundle.

    airlock diff vision-1.2.0.airlock vision-1.3.0.airlock
    airlock diff cam-7.inventory.json vision-1.3.0.airlock --json

The comparison and its text are ``bundler.examine.diff``'s.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from airlock.command import Reported
from airlock.console import json_option

__all__ = ["DESCRIPTION", "EXAMPLES", "Difference", "add_arguments", "run"]

EXAMPLES = ("airlock diff cam-7.inventory.json vision-1.3.0.airlock --json",)
DESCRIPTION = None


@dataclass(frozen=True)
class Difference(Reported):
    """The comparison ``bundler.examine.diff.diff`` made."""

    def text(self) -> str:
        from bundler.examine.diff import diff_text

        return diff_text(self.data)


def add_arguments(df: argparse.ArgumentParser) -> None:
    df.add_argument("old", type=Path, help="bundle (or its parts) or device inventory")
    df.add_argument("new", type=Path, help="bundle (or its parts)")
    json_option(df)


def run(a: argparse.Namespace) -> Difference:
    from bundler.examine.diff import diff, load_side

    return Difference(diff(load_side(a.old), load_side(a.new)))
