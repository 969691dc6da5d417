"""``airlock split``: cut a bundle into parts for FAT32 media (BUNDLE.part001… and BUNDLE.parts.json).

    airlock split vision-1.2.0.airlock --max-size 4000MiB
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from airlock.command import Reported
from airlock.console import human_size, json_option, progress
from airlock.format.parts import parse_size
from bundler.commands.airlock_build import parts_lines

__all__ = ["DESCRIPTION", "EXAMPLES", "SplitDone", "add_arguments", "run"]

EXAMPLES = ("airlock split vision-1.2.0.airlock --max-size 4000MiB",
            "airlock split vision-1.2.0.airlock -o /media/usb")
DESCRIPTION = None


@dataclass(frozen=True)
class SplitDone(Reported):
    """The parts written and the manifest naming them (``Parts.to_dict()``)."""

    def text(self) -> str:
        d = self.data
        return "\n".join([f"split {d['bundle']} ({human_size(d['size'])}) into "
                          f"{len(d['parts'])} part(s), listed in {d['manifest']}:",
                          *parts_lines(d["parts"])])


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("bundle", type=Path, metavar="BUNDLE", help="the bundle file to cut")
    sp.add_argument("--max-size", default=None, metavar="SIZE",
                    help="largest part: bytes or K/M/G (1000s) or KiB/MiB/GiB (1024s); "
                         "default 4000MiB")
    sp.add_argument("-o", "--output-dir", type=Path, metavar="DIR",
                    help="write the parts and BUNDLE.parts.json into DIR, e.g. straight onto "
                    "the stick (default: beside the bundle)")
    json_option(sp)


def run(a: argparse.Namespace) -> SplitDone:
    from bundler.sneakernet.split import DEFAULT_MAX_SIZE, split_bundle

    max_size = parse_size(a.max_size or DEFAULT_MAX_SIZE)
    total = a.bundle.stat().st_size if a.bundle.is_file() else 0
    with progress(total, "splitting") as tick:
        parts = split_bundle(a.bundle, max_size, tick, a.output_dir)
    return SplitDone(parts.to_dict())
