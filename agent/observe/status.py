"""What the device runs and in what state: the data behind ``airlock-agent status``.

::

    info = status(layout)
    info["active"]     # {"id", "name", "version", "sequence", "installed_at", "health"} or None
    info["previous"]   # same, or None
    info["state"]      # "idle", "busy" (another command holds the lock) or "interrupted"
    info["drift"]      # agent.observe.sample_drift.release_drift: PSI per model of the active release
    info["damage"]     # ["releases: a file where a directory belongs; ...", ...] or []
    info["inputs"]     # agent.observe.input_contract: contract violations in dropped samples, per model
    info["challenger"] # the staged challenger (install --no-switch) and its last shadow run, or None
    info["facts"]      # agent.facts: facts.json as last probed (labels, stated facts), or None
    info["active"]["variants"]  # the variant of each model this device runs ({} without variants)

Status only reads, so it answers on any ROOT that was initialised: damaged
(each flaw of ``agent.shape`` is listed, and ``fsck --repair`` is the cure),
busy, or mounted read-only (``read_only``).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from agent.facts import load_facts
from agent.journal import Journal
from agent.layout import Layout
from agent.lock import lock_holder
from agent.observe.sample_drift import release_drift
from agent.self.identity import identity
from agent.shape import find_flaws, is_read_only
from agent.store import ContentStore
from agent.switch import Transaction, read_link
from airlock.errors import AirlockError
from airlock.files import read_json

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
    installed, health = _record(rdir / "installed.json") or {}, _record(rdir / "health.json")
    info.update({
        "name": release.name, "version": release.version, "sequence": release.sequence,
        "installed_at": installed.get("installed_at"), "expires": release.expires.isoformat(),
        "models": [m.name for m in release.models], "images": [i.ref for i in release.images],
        "variants": release.variants(),
        "budgets": {m.name: {"max_p95_ms": m.health.max_p95_ms,
                             "max_memory_mb": m.health.max_memory_mb} for m in release.models},
        "flags": release.flags,
        "health": None if health is None else {
            k: health.get(k) for k in ("ok", "reason", "time", "seconds", "report")},
        "metrics": _metrics(health),
    })
    return info


def _metrics(health: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per model, the evaluation metrics of its last check and the ones thresholds name first.

    ``{"classifier": {"accuracy": 0.953, ..., "checked": ["accuracy", "f1_macro"]}}``; a
    model without an evaluation is absent.
    """
    report = (health or {}).get("report")
    models = report.get("models") if isinstance(report, dict) else None
    out: dict[str, dict[str, Any]] = {}
    for m in models if isinstance(models, list) else []:
        ev = m.get("evaluation") if isinstance(m, dict) else None
        if not isinstance(ev, dict) or not isinstance(ev.get("metrics"), dict):
            continue
        values = {k: v for k, v in ev["metrics"].items() if isinstance(v, int | float)}
        checks = ev.get("checks")
        checks = checks if isinstance(checks, list) else []
        checked = list(dict.fromkeys(c.get("metric") for c in checks if isinstance(c, dict)))
        out[str(m.get("name"))] = {**values, "samples": ev.get("samples"), "checked": checked}
    return out


def _inputs(layout: Layout, current: str | None) -> dict[str, Any]:
    from agent.observe.input_contract import sample_violations

    try:
        release = layout.load_release(current) if current else None
    except AirlockError:
        return {}  # reported with the active release
    return sample_violations(layout, release)


def _record(path: Path) -> dict[str, Any] | None:
    """A small JSON object the agent wrote, or None when it is absent or damaged."""
    try:
        raw = read_json(path)
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def status(layout: Layout, *, serving: bool | None = None) -> dict[str, Any]:
    """What the device is doing; ``serving``: asked by ``serve`` itself (it reverts holds)."""
    from agent.challenger import summary as challenger_summary
    from agent.hold import pending_hold

    damage = [f"{layout.rel(f.path)}: {f.describe()}" for f in find_flaws(layout)]
    device_id: str | None = None
    ring: str | None = None
    with contextlib.suppress(AirlockError):  # a damaged config is listed in damage
        config = layout.load_config()
        device_id, ring = config.device_id, config.ring
    holder = lock_holder(layout.lock)
    try:
        tx = Transaction.pending(layout)
    except Exception:
        tx = None
    # A pending transaction with no lock holder is a crash that recovery has not seen yet.
    state = "busy" if holder else "idle" if tx is None else "interrupted"
    count, size = ContentStore(layout).usage()
    # shutil's statvfs gives what psutil.disk_usage does, without psutil's ~15 ms import.
    disk = shutil.disk_usage(layout.root)
    percent = round(100 * disk.used / (disk.used + disk.free), 1) if disk.used + disk.free else 0.0
    last_event = None
    try:
        for entry in Journal(layout.journal).entries():
            if isinstance(entry, dict) and entry.get("event") in _NOTABLE:
                last_event = entry
    except (AirlockError, OSError):
        pass  # listed in damage
    current, previous = read_link(layout, "current"), read_link(layout, "previous")
    return {
        "inputs": _inputs(layout, current),
        "root": str(layout.root),
        "device_id": device_id,
        "ring": ring,
        "agent": identity(),  # which kit a site needs: version, platform, Python
        "facts": load_facts(layout),  # what model variants select by
        "state": state,
        "read_only": is_read_only(layout),
        "damage": damage,
        "lock_holder": holder,
        "operation": tx.to_dict() if tx else None,
        "active": release_info(layout, current),
        "previous": release_info(layout, previous),
        "releases": layout.release_ids(),
        "store": {"blobs": count, "bytes": size},
        "disk": {"total": disk.total, "used": disk.used, "free": disk.free,
                 "percent": percent},
        "last_notable_event": None if last_event is None else {
            k: last_event.get(k) for k in ("time", "event", "release", "reason", "active")},
        "drift": release_drift(layout, current),
        "hold": pending_hold(layout, serving=serving),
        "challenger": challenger_summary(layout),
        "clock": _clock(layout),
        "directed": _directed(layout),
    }


def _directed(layout: Layout) -> dict[str, Any] | None:
    """A directed device's last visit followed (agent.directed); None when not directed."""
    from agent.directed import load_record

    try:
        return load_record(layout)
    except AirlockError as e:
        return {"directed": True, "error": str(e)}


def _clock(layout: Layout) -> dict[str, Any] | None:
    """The clock against the time floor (agent.timefloor); None when the record is damaged."""
    from agent.timefloor import judge_now

    try:
        return judge_now(layout).to_dict()
    except AirlockError:
        return None
