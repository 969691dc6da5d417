"""``airlock join``: reassemble a split bundle into one file, checking every part.

    airlock join vision-1.2.0.airlock.part001 -o vision-1.2.0.airlock
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.console import human_size, json_option, progress

__all__ = ["DESCRIPTION", "EXAMPLES", "Joined", "add_arguments", "run"]

EXAMPLES = ("airlock join vision-1.2.0.airlock.part001 -o vision-1.2.0.airlock",)
DESCRIPTION = None


@dataclass(frozen=True)
class Joined:
    """The parts read (``Parts.to_dict()``) and the bundle written from them."""

    parts: dict[str, Any]
    output: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.parts, "output": self.output}

    def text(self) -> str:
        return (f"joined {len(self.parts['parts'])} part(s) into {self.output} "
                f"({human_size(self.parts['size'])}), every sha256 checked")


def add_arguments(j: argparse.ArgumentParser) -> None:
    j.add_argument("part", type=Path, help="BUNDLE.part001, BUNDLE.parts.json or their directory")
    j.add_argument("-o", "--output", type=Path, metavar="BUNDLE",
                   help="where the joined bundle is written (default: the bundle's own name, "
                   "from its parts list, in the current directory)")
    json_option(j)


def run(a: argparse.Namespace) -> Joined:
    from bundler.sneakernet.split import join_parts

    with progress(0, "joining") as tick:
        parts, output = join_parts(a.part, a.output, tick)
    return Joined(parts.to_dict(), str(output))
