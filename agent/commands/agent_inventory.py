"""``airlock-agent inventory``: what this device holds, signed with its device key.

    airlock-agent inventory -o /media/usb/cam-7.inventory.json
    airlock-agent inventory -o -        # the signed document alone, on standard output

It reads only: no lock, so it never waits for an install.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.commands.base import layout_of
from airlock.console import human_size, json_option

EXAMPLES = ("airlock-agent inventory -o /media/usb/cam-7.inventory.json",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the signed inventory to FILE ('-' for standard output)")
    json_option(p)


@dataclass(frozen=True)
class Inventory:
    output: str | None
    keyid: str
    inventory: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        inv = self.inventory
        size = sum(b["size"] for b in inv["blobs"])
        lines = [f"device    {inv['device_id']}" + (f" (ring {inv['ring']})" if inv["ring"]
                                                    else "") + f", key {self.keyid[:16]}…",
                 f"active    {inv['active'] or 'none'}; previous {inv['previous'] or 'none'}"]
        lines += [f"release   {r['id']}: " + (r.get("error") or
                                              f"{r['name']} {r['version']} (sequence "
                                              f"{r['sequence']})") for r in inv["releases"]]
        lines.append("accepted  " + (", ".join(f"{k} up to sequence {v}" for k, v in
                                               sorted(inv["sequences"].items())) or "nothing"))
        lines.append(f"store     {len(inv['blobs'])} blobs, {human_size(size)}")
        if self.output:
            lines.append(f"signed inventory written to {self.output}; carry it to the host "
                         "for 'airlock build --delta-from'")
        return "\n".join(lines)


def run(args: argparse.Namespace) -> Inventory | None:
    from agent.observe.inventory import inventory, write_inventory
    from keys.keyfile import load_public_key

    layout = layout_of(args)
    layout.require_initialised()
    if args.output == "-":
        from keys.device import INVENTORY_TYPE, sign_document
        from keys.keyfile import load_signer

        body = inventory(layout)
        sys.stdout.buffer.write(sign_document(body, INVENTORY_TYPE,
                                              load_signer(layout.device_key)))
        sys.stdout.flush()
        return None  # standard output holds the signed document and nothing else
    if args.output:
        _, body = write_inventory(layout, Path(args.output))
    else:
        body = inventory(layout)
    return Inventory(args.output, load_public_key(layout.device_pub).keyid, body)
