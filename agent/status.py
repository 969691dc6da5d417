"""What the device runs and in what state: the data behind ``airlock-agent status``.

::

    info = status(layout)
    info["active"]     # {"id", "name", "version", "sequence", "installed_at", "health"} or None
    info["previous"]   # same, or None
    info["state"]      # "idle", "busy" (another command holds the lock) or "interrupted"
"""

from __future__ import annotations

from typing import Any

import psutil

from agent.durable import read_json
from agent.identity import identity
from agent.journal import Journal
from agent.layout import Layout
from agent.lock import lock_holder
from agent.store import ContentStore
from agent.switch import Transaction, read_link

__all__ = ["release_info", "status"]

_NOTABLE = {"install-failed", "rolled-back", "rejected", "recovered", "rollback-failed",
            "refused"}


def release_info(layout: Layout, release_id: str | None) -> dict[str, Any] | None:
    if release_id is None:
        return None
    rdir = layout.release_dir(release_id)
    info: dict[str, Any] = {"id": release_id}
    try:
        release = layout.load_release(release_id)
    except Exception as e:
        return {**info, "error": str(e)}
    installed = read_json(rdir / "installed.json") or {}
    try:
        health = read_json(rdir / "health.json")
    except ValueError:
        health = None
    info.update({
        "name": release.name, "version": release.version, "sequence": release.sequence,
        "installed_at": installed.get("installed_at"), "expires": release.expires.isoformat(),
        "models": [m.name for m in release.models], "images": [i.ref for i in release.images],
        "flags": release.flags,
        "health": None if health is None else {
            k: health.get(k) for k in ("ok", "reason", "time", "seconds", "report")},
    })
    return info


def status(layout: Layout) -> dict[str, Any]:
    config = layout.load_config()
    holder = lock_holder(layout.lock)
    try:
        tx = Transaction.pending(layout)
    except Exception:
        tx = None
    # A pending transaction with no lock holder is a crash that recovery has not seen yet.
    state = "busy" if holder else "idle" if tx is None else "interrupted"
    count, size = ContentStore(layout).usage()
    disk = psutil.disk_usage(str(layout.root))
    last_event = None
    for entry in Journal(layout.journal).entries():
        if entry.get("event") in _NOTABLE:
            last_event = entry
    current, previous = read_link(layout, "current"), read_link(layout, "previous")
    return {
        "root": str(layout.root),
        "device_id": config.device_id,
        "ring": config.ring,
        "agent": identity(),  # which kit a site needs: version, platform, Python
        "state": state,
        "lock_holder": holder,
        "operation": tx.to_dict() if tx else None,
        "active": release_info(layout, current),
        "previous": release_info(layout, previous),
        "releases": layout.release_ids(),
        "store": {"blobs": count, "bytes": size},
        "disk": {"total": disk.total, "used": disk.used, "free": disk.free,
                 "percent": disk.percent},
        "last_notable_event": None if last_event is None else {
            k: last_event.get(k) for k in ("time", "event", "release", "reason", "active")},
    }
