"""What a device's ``airlock-agent status --json`` says, read into one typed object before use.

The gateway reaches devices it does not control: an agent of another
version, a patched one, or a host that is no agent at all may answer with
any JSON. A rollout reads that answer here, so an odd one costs that
device's row (failed, exit 3, naming the field), never the whole rollout::

    s = device_status({"active": {"id": "vision-3", "name": "vision", "sequence": 3},
                       "ring": "canary", "disk": {"free": 10**9}})
    s.release, s.sequence_of("vision"), s.ring, s.free_bytes, s.damage
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airlock.errors import FormatError
from keys.signed_fields import is_plain_name

__all__ = ["DeviceStatus", "device_status"]

_MAX_DAMAGE_TEXT = 300


@dataclass(frozen=True)
class DeviceStatus:
    """The fields of a device's status a rollout decides on."""

    release: str | None = None  # the active release id
    name: str | None = None
    sequence: int | None = None
    ring: str | None = None
    free_bytes: int | None = None
    damage: str | None = None  # the first damage the agent reports, one line

    def sequence_of(self, name: str) -> int | None:
        return self.sequence if self.name == name else None


def device_status(doc: dict[str, Any]) -> DeviceStatus:
    """``doc`` read by type; FormatError naming the first field that has the wrong one."""
    active = doc.get("active")
    if active is not None and not isinstance(active, dict):
        raise FormatError("the agent's status field 'active' is not an object")
    active = active or {}
    disk = doc.get("disk")
    if disk is not None and not isinstance(disk, dict):
        raise FormatError("the agent's status field 'disk' is not an object")
    damage = doc.get("damage")
    if damage and not (isinstance(damage, list) and all(isinstance(d, str) for d in damage)):
        raise FormatError("the agent's status field 'damage' is not a list of texts")
    first = damage[0] if damage else None
    return DeviceStatus(
        release=_name(active.get("id"), "active.id"),
        name=_name(active.get("name"), "active.name"),
        sequence=_count(active.get("sequence"), "active.sequence"),
        ring=_name(doc.get("ring"), "ring"),
        free_bytes=_count((disk or {}).get("free"), "disk.free"),
        damage=None if first is None else _one_line(first))


def _name(value: object, at: str) -> str | None:
    if value is None:
        return None
    if not is_plain_name(value):
        raise FormatError(f"the agent's status field '{at}' is not a plain name")
    return str(value)


def _count(value: object, at: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FormatError(f"the agent's status field '{at}' is not a whole number")
    return value


def _one_line(text: str) -> str:
    line = "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))
    return line[:_MAX_DAMAGE_TEXT]
