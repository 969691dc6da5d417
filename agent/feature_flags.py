"""Feature flags on the device: signed flags sets applied, shown, rolled back; models untouched.

::

    airlock-agent install site-flags.airlock        # a flags bundle: applied, no health check
    airlock-agent flags apply site-flags.airlock    # the same
    airlock-agent flags --json                      # each flag: value and where it comes from
    airlock-agent flags rollback site               # back to the set's previously applied sequence

A flags bundle is a bundle whose metadata is a flags set (``keys.flags``):
verified like a release (signatures, threshold, expiry, ring policy) and
refused (exit 3) with an older sequence than the highest this device
accepted for that set's name. Each applied set is kept, byte for byte, in
``ROOT/flags/history/NAME.SEQ.json``; ``ROOT/flags/state.json`` says which
sequence of each set is applied and the highest accepted.

Effective flags: the active release's own ``flags`` are the defaults; each
applied set (by name) overrides them for the flags it names, unless it has
expired, or it is partial (``percent`` < 100) and this device's bucket for
that flag (``keys.flags.in_bucket``) is outside it. Applications read the
values from ``ROOT/current/flags.json``: a JSON object of flag name to value,
rewritten atomically in every installed release directory whenever a set is
applied or rolled back, and written with the applied sets when a release is
installed, so a switch or a rollback never shows stale flags.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from agent.journal import Journal
from agent.layout import Layout, is_real_dir
from agent.switch import read_link
from airlock.errors import FormatError, PreconditionError, RejectedError, RollbackError
from airlock.files import read_bounded, read_json, write_atomic, write_json
from airlock.format.bundle import BundleReader
from keys.flags import FlagSet, in_bucket, verify_flags

__all__ = ["apply_flags", "effective", "flags_bytes", "plain", "rollback_flags", "show_flags",
           "write_effective"]


def flags_bytes(reader: BundleReader) -> bytes | None:
    """The flags metadata of a bundle, or None when it is a release; nothing may follow it."""
    from keys.metadata import bundle_kind

    head = reader.head()
    if not bundle_kind(head.release_json).is_flags():
        return None
    if head.root_json is not None:
        raise FormatError("a flags bundle cannot carry a trust root; rotate it with a release")
    for _ in reader.files({}):
        pass  # refuses any member: a flags bundle is its metadata alone
    return head.release_json


def _state(layout: Layout) -> dict[str, Any]:
    # Never write through a link out of ROOT or over a stray file (as agent.shape does).
    for d in (layout.flags_dir, layout.flags_dir / "history"):
        if (d.exists() or d.is_symlink()) and not is_real_dir(d):
            raise PreconditionError(f"{layout.rel(d)} is not a directory of ROOT; remove it "
                                    "and apply the flags again")
    try:
        raw = read_json(layout.flags_state)
    except FileNotFoundError:
        return {"applied": {}, "highest": {}}
    except (OSError, ValueError) as e:
        raise PreconditionError(f"{layout.rel(layout.flags_state)} is damaged ({e}); "
                                "remove it and apply the flags again") from None
    if raw is None:
        return {"applied": {}, "highest": {}}
    if not (isinstance(raw, dict) and isinstance(raw.get("applied"), dict)
            and isinstance(raw.get("highest"), dict)):
        raise PreconditionError(f"{layout.rel(layout.flags_state)} is damaged; remove it and "
                                "apply the flags again")
    return raw


def _history(layout: Layout, name: str, sequence: int) -> Any:
    return layout.flags_dir / "history" / f"{name}.{sequence}.json"


def _load(layout: Layout, name: str, sequence: int) -> FlagSet:
    from keys.flags import FLAGS_FIELD

    raw = json.loads(read_bounded(_history(layout, name, sequence)))
    body = raw["signed"][FLAGS_FIELD]
    expires = datetime.fromisoformat(raw["signed"]["expires"].replace("Z", "+00:00"))
    return FlagSet(body["name"], body["flags"], sequence, expires, body.get("percent", 100),
                   tuple(body.get("rings", [])))


def apply_flags(layout: Layout, data: bytes, label: str = "-") -> dict[str, Any]:
    """Verify and apply a flags set (the caller holds the lock)."""
    config = layout.load_config()
    journal = Journal(layout.journal)
    try:
        flags, role = verify_flags(layout.load_trust(), data, config.ring)
        state = _state(layout)
        highest = state["highest"].get(flags.name)
        if highest is not None and flags.sequence < highest:
            raise RollbackError(f"flags {flags.name} sequence {flags.sequence} is older than "
                                f"sequence {highest} already accepted on this device")
        kept = _history(layout, flags.name, flags.sequence)
        if highest == flags.sequence and kept.exists() and kept.read_bytes() != data:
            raise RollbackError(f"a different flags set claims {flags.name} sequence "
                                f"{flags.sequence}; bump the sequence")
    except RejectedError as e:
        journal.append("rejected", flags=label, reason=str(e), error=type(e).__name__)
        raise
    kept.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(kept, data)
    state["applied"][flags.name] = flags.sequence
    state["highest"][flags.name] = max(highest or 0, flags.sequence)
    write_json(layout.flags_state, state)
    write_effective(layout)
    journal.append("flags-applied", name=flags.name, sequence=flags.sequence, role=role,
                   percent=flags.percent, flags=sorted(flags.flags))
    return {"applied": True, "name": flags.name, "sequence": flags.sequence, "role": role,
            "percent": flags.percent, "flags": show_flags(layout)["flags"],
            "active": read_link(layout, "current")}


def rollback_flags(layout: Layout, name: str) -> dict[str, Any]:
    """Apply the sequence of ``name`` applied before the current one (or none at all)."""
    state = _state(layout)
    current = state["applied"].get(name)
    if current is None:
        raise PreconditionError(f"no flags set {name!r} is applied")
    older = sorted(int(p.name.rsplit(".", 2)[1]) for p in
                   (layout.flags_dir / "history").glob(f"{name}.*.json")
                   if p.name.rsplit(".", 2)[1].isdigit())
    before = [s for s in older if s < current]
    if before:
        state["applied"][name] = before[-1]
    else:
        del state["applied"][name]
    write_json(layout.flags_state, state)
    write_effective(layout)
    to = before[-1] if before else None
    Journal(layout.journal).append("flags-rolled-back", name=name, sequence=current, to=to)
    return {"name": name, "from": current, "to": to, "flags": show_flags(layout)["flags"]}


def effective(layout: Layout, defaults: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each flag's value and source, for release defaults ``defaults`` on this device."""
    device_id = layout.load_config().device_id
    now = datetime.now(timezone.utc)
    out = {k: {"value": v, "source": "release"} for k, v in sorted(defaults.items())}
    for name, sequence in sorted(_state(layout)["applied"].items()):
        s = _load(layout, name, sequence)
        where = f"flags {name} #{sequence}"
        for flag, value in sorted(s.flags.items()):
            if s.expires <= now:
                out.setdefault(flag, {"value": None, "source": "unset"})["note"] = \
                    f"{where} expired {s.expires.isoformat()}"
            elif s.percent >= 100 or in_bucket(device_id, flag, s.percent):
                out[flag] = {"value": value, "source": where if s.percent >= 100 else
                             f"{where}, bucket in {s.percent:g}%"}
            else:
                out.setdefault(flag, {"value": None, "source": "unset"})["note"] = \
                    f"{where}: bucket outside {s.percent:g}%"
    return out


def plain(flags: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {k: v["value"] for k, v in flags.items() if v["source"] != "unset"}


def write_effective(layout: Layout) -> None:
    """Rewrite ``flags.json`` of every installed release with the applied sets (atomic)."""
    for rid in layout.release_ids():
        try:
            defaults = layout.load_release(rid).flags
        except Exception:
            continue  # a damaged release is fsck's business
        values = plain(effective(layout, defaults))
        write_atomic(layout.release_dir(rid) / "flags.json",
                     (json.dumps(values, indent=2, sort_keys=True) + "\n").encode())


def show_flags(layout: Layout) -> dict[str, Any]:
    current = read_link(layout, "current")
    defaults = layout.load_release(current).flags if current else {}
    state = _state(layout)
    return {"active": current, "applied": state["applied"], "highest": state["highest"],
            "flags": effective(layout, defaults)}
