"""Garbage collection: remove old releases and the blobs nobody uses.

Never removes ``current``, ``previous``, the release a held install would
go back to, or the staged challenger (``install --no-switch``, ``agent.challenger``). Keeps the ``keep`` newest releases (by sequence) besides; then deletes every stored blob that no remaining
release lists and that has no hard link left (a second check, so a blob a
release directory still links to is never lost)::

    gc(layout, keep=2)   # {"releases_removed": [...], "blobs_removed": 3, "bytes_freed": ...}

After every good install the agent collects on its own with the device's
``keep_releases`` (``airlock-agent config --keep-releases N``, default 3);
``automatic=True`` does nothing, and journals nothing, when nothing is beyond it::

    gc(layout, keep=3, automatic=True)
"""

from __future__ import annotations

import contextlib
from typing import Any

from agent.challenger import staged
from agent.faults import crash_point
from agent.hold import held
from agent.journal import Journal
from agent.layout import Layout
from agent.store import ContentStore
from agent.switch import read_link
from airlock.errors import UsageError
from airlock.files import remove_tree

__all__ = ["gc"]


def gc(layout: Layout, keep: int = 2, *, automatic: bool = False) -> dict[str, Any]:
    if keep < 0:
        raise UsageError("--keep must be 0 or more")
    journal = Journal(layout.journal)
    store = ContentStore(layout)
    hold = held(layout) or {}
    fallback = hold.get("previous") if isinstance(hold.get("previous"), str) else None
    challenger = (staged(layout) or {}).get("release")
    pinned = {read_link(layout, "current"), read_link(layout, "previous"), fallback,
              challenger} - {None}
    ranked: list[tuple[int, str]] = []
    for rid in layout.release_ids():
        try:
            ranked.append((layout.load_release(rid).sequence, rid))
        except Exception:
            ranked.append((-1, rid))
    ranked.sort(reverse=True)
    kept = set(pinned) | {rid for _, rid in ranked[:keep]}
    removed = [rid for _, rid in ranked if rid not in kept]
    if automatic and not removed:
        return {"releases_removed": [], "releases_kept": sorted(kept), "blobs_removed": 0,
                "bytes_freed": 0}
    for rid in removed:
        remove_tree(layout.release_dir(rid), layout.staging)
        crash_point("gc-mid-delete")
    crash_point("gc-after-releases")
    wanted: set[str] = set()
    for rid in layout.release_ids():
        # An unreadable release keeps its blobs through their hard links, below.
        with contextlib.suppress(Exception):
            wanted.update(layout.load_release(rid).all_digests())
    wanted.update(d for d in store.digests() if store.path(d).stat().st_nlink > 1)
    blobs, freed = store.gc(wanted)
    journal.append("gc", releases_removed=removed, blobs_removed=blobs, bytes_freed=freed,
                   **({"automatic": True, "keep": keep} if automatic else {}))
    return {"releases_removed": removed, "releases_kept": sorted(kept), "blobs_removed": blobs,
            "bytes_freed": freed}
