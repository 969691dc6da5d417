"""``airlock inventory show``: check a device inventory's signature and show what the device holds.

    airlock inventory show cam-7.inventory.json --device-key keys/cam-7.pub
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.console import json_option
from bundler.commands.options import subcommands
from keys.keyfile import load_public_key

__all__ = ["DESCRIPTION", "EXAMPLES", "InventoryShown", "add_arguments", "run"]

EXAMPLES = ("airlock inventory show cam-7.inventory.json",)
DESCRIPTION = None


@dataclass(frozen=True)
class InventoryShown:
    """A device inventory whose signature checked out, and what it says."""

    file: str
    sha256: str
    keyid: str
    verified_with: list[str] | str
    inventory: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "keyid": self.keyid,
                "verified_with": self.verified_with, "inventory": self.inventory}

    def text(self) -> str:
        from bundler.sneakernet.device_inventories import inventory_text

        return inventory_text(self.to_dict())


def add_arguments(p: argparse.ArgumentParser) -> None:
    add = subcommands(p, "inventory_cmd")
    ish = add("show", "check a device inventory's signature and show what the device holds",
              "airlock inventory show cam-7.inventory.json --device-key keys/cam-7.pub")
    ish.add_argument("file", type=Path, metavar="INVENTORY",
                     help="a device's signed inventory (airlock-agent inventory -o)")
    ish.add_argument("--device-key", type=Path, action="append", default=[], metavar="PUB",
                     help="it must be signed by this device key (repeatable: one of these)")
    json_option(ish)


def run(a: argparse.Namespace) -> InventoryShown:
    from bundler.sneakernet.device_inventories import load_inventory

    inv = load_inventory(a.file, [load_public_key(p) for p in a.device_key])
    return InventoryShown(
        file=str(a.file), sha256=inv.sha256, keyid=inv.keyid,
        verified_with=[str(p) for p in a.device_key] if inv.pinned else "embedded key",
        inventory=inv.body)
