"""``airlock direct``: a signed visit saying which device takes which release (a Director).

    airlock direct --key keys/director.key --inventories cam-1.inventory.json \\
        --release vision-3.airlock -o /media/usb/cam-1.visit.json
    airlock direct --key keys/director.key --inventories cam-2.inventory.json --stay -o stay.visit.json

Signed by a director signer the trust root names (``airlock keys init|rotate
--director-signer NAME:KEY.pub``), never by a release key (``keys.visit``).
A device initialised with ``--directed`` installs only what such a visit
names for its own id (``agent.directed``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from airlock.command import Reported
from airlock.console import json_option
from airlock.durations import parse_duration
from airlock.errors import UsageError
from airlock.files import write_atomic
from bundler.build.output import check_output
from bundler.commands.options import add_key_args, secrets_from, signer_for
from keys.signers import key_files

if TYPE_CHECKING:
    from bundler.sneakernet.device_inventories import Inventory
    from keys.release import Release
    from keys.visit import Instruction

__all__ = ["DESCRIPTION", "EXAMPLES", "VisitWritten", "add_arguments", "run"]

EXAMPLES = ("airlock direct --key keys/director.key --inventories cam-1.inventory.json "
            "--release vision-3.airlock -o cam-1.visit.json",
            "airlock direct --key keys/director.key --inventories cam-2.inventory.json "
            "--rollback-to 2 -o cam-2.visit.json")
DESCRIPTION = """\
Write a signed visit: for each device whose signed inventory is given
('airlock-agent inventory -o FILE'), the one thing it may do: install the
release of --release, --stay (install nothing), or --rollback-to N (a release
of the active release's name, with sequence N, that the device still holds;
its anti-rollback record goes down to N). The visit expires soon (--valid-for)
and carries a sequence (default: this host's time in seconds): a device
refuses a visit older than the last one it followed. Put it on the stick
beside the bundles as visit.json or NAME.visit.json; a device initialised with
'airlock-agent init --directed' installs only what a visit names for it.
For two devices that take different releases, make one visit each.
"""


@dataclass(frozen=True)
class VisitWritten(Reported):
    """The visit written: its sequence, expiry and each device's instruction."""

    def text(self) -> str:
        d = self.data
        lines = [f"wrote {d['output']}: visit {d['sequence']}, valid until {d['expires']}"]
        lines += [f"  {dev}: {ins['action']}" + (f" {ins['release']}" if ins.get("release")
                                                  else "") for dev, ins in d["devices"].items()]
        return "\n".join(lines)


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--key", action="append", required=True, metavar="KEY",
                    help="a director signer's key: a key file, a recorded .pub or a URI; repeat "
                    "for a threshold")
    sp.add_argument("--inventories", nargs="+", type=Path, required=True, metavar="INV",
                    help="the signed inventories of the devices this visit directs")
    what = sp.add_mutually_exclusive_group(required=True)
    what.add_argument("--release", type=Path, metavar="BUNDLE",
                      help="the bundle (or its parts) these devices may install")
    what.add_argument("--stay", action="store_true",
                      help="these devices install nothing (a freeze) until a newer visit")
    what.add_argument("--rollback-to", type=int, metavar="N",
                      help="these devices go back to sequence N of their active release's "
                      "name, which they must still hold")
    sp.add_argument("--valid-for", default="2d", metavar="DURATION",
                    help="how long the visit is valid (default 2d)")
    sp.add_argument("--sequence", type=int, metavar="N",
                    help="the visit's sequence (default: this host's time in seconds)")
    add_key_args(sp)
    sp.add_argument("-o", "--output", type=Path, required=True, metavar="VISIT.json",
                    help="where the visit is written")
    json_option(sp)


def run(a: argparse.Namespace) -> VisitWritten:
    from bundler.sneakernet.device_inventories import load_inventory
    from keys.release import format_time
    from keys.visit import Instruction, Visit, make_visit

    secrets = secrets_from(a)
    signers = [signer_for(k, secrets, a) for k in a.key]
    inventories: list[Inventory] = [load_inventory(p) for p in a.inventories]
    devices: dict[str, Instruction] = {}
    release = _release(a.release) if a.release is not None else None
    for inv in inventories:
        if inv.device_id in devices:
            raise UsageError(f"two inventories are for device {inv.device_id}: give each once")
        if release is not None:
            devices[inv.device_id] = Instruction("install", release.id, release.sequence)
        elif a.stay:
            devices[inv.device_id] = Instruction("stay")
        else:
            devices[inv.device_id] = _rollback(inv, a.rollback_to)
    check_output(a.output, [*key_files(a.key), *a.inventories], force=False, kind="a visit",
                 is_ours=_is_visit)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    valid_for = parse_duration(a.valid_for)
    data = make_visit(signers, devices, now=now, valid_for=valid_for, sequence=a.sequence)
    write_atomic(a.output, data)
    seq = a.sequence if a.sequence is not None else int(now.timestamp())
    shown = Visit(seq, now, now + valid_for, devices).summary()
    return VisitWritten({"output": str(a.output), "sequence": seq,
                         "expires": format_time(now + valid_for), "devices": shown["devices"]})


def _release(path: Path) -> Release:
    from airlock.format.bundle import BundleReader
    from airlock.format.parts import open_media
    from keys.release import Release

    stream, _ = open_media(str(path))
    with stream:
        head = BundleReader(stream).head()
    return Release.from_bytes(head.release_json)


def _rollback(inv: Inventory, sequence: int) -> Instruction:
    """Sequence ``sequence`` of the device's active release's name, which it must hold."""
    from keys.visit import Instruction

    active = inv.active_release()
    if active is None:
        raise UsageError(f"device {inv.device_id} has no active release to roll back "
                         f"({inv.path})")
    held = [r for r in inv.body.get("releases", []) if isinstance(r, dict)
            and r.get("name") == active["name"] and r.get("sequence") == sequence]
    if not held:
        raise UsageError(f"device {inv.device_id} no longer holds {active['name']} sequence "
                         f"{sequence} ({inv.path}): a rollback visit cannot bring it back; "
                         "direct it to install that release's bundle instead")
    return Instruction("rollback", str(held[0]["id"]), sequence)


def _is_visit(path: Path) -> bool:
    from keys.visit import is_visit

    try:
        return is_visit(path.read_bytes())
    except OSError:
        return False
