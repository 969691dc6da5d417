"""``airlock-agent samples export``: the device's samples that matter, signed, within a budget.

    airlock-agent samples export --budget 50MiB -o /media/usb/cam-7.samples
    airlock-agent samples export --budget 5MiB -o /media/usb/cam-7.samples --model classifier

Writes the chosen sample files and ``samples.manifest.json`` (signed with the
device key) into a new or empty directory; ``airlock report ingest`` takes the
directory in at headquarters. A model whose signed spec says
``samples: {export: false}`` is refused with exit 3. See
``agent.observe.sample_pack``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from agent.commands.base import layout_of
from airlock.command import Reported
from airlock.console import human_size, json_option

EXAMPLES = ("airlock-agent samples export --budget 50MiB -o /media/usb/cam-7.samples",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("export",), help="export: write a signed sample pack")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                   help="a new or empty directory for the pack")
    p.add_argument("--budget", default="50MiB", metavar="SIZE",
                   help="most bytes the pack may take, files and manifest (default 50MiB)")
    p.add_argument("--model", action="append", metavar="NAME",
                   help="only this model's samples (repeatable; default: every model)")
    json_option(p)


@dataclass(frozen=True)
class Exported(Reported):
    def text(self) -> str:
        d = self.data
        why: dict[str, int] = {}
        for f in d["files"]:
            why[f["why"]] = why.get(f["why"], 0) + 1
        reasons = ", ".join(f"{n} {w}" for w, n in why.items()) or "none"
        return (f"wrote {len(d['files'])} sample file(s), {human_size(d['bytes'])} of "
                f"{human_size(d['budget_bytes'])}, to {d['output']} ({reasons}); "
                f"{d['left_out']} left out for the budget; manifest signed by {d['device_id']}")


def run(args: argparse.Namespace) -> Exported:
    from agent.observe.sample_pack import export_pack
    from airlock.format.parts import parse_size

    layout = layout_of(args)
    layout.require_initialised()
    budget = parse_size(args.budget)
    body = export_pack(layout, args.output, budget, args.model)
    return Exported({**body, "output": str(args.output)})
