"""Atomic switching of ``current`` and ``previous``, and the record that undoes it.

A link is replaced by creating a temporary symlink and renaming it over the
old one (rename(2) is atomic), then fsyncing ROOT, so ``current`` always
names a release — the old or the new, never nothing::

    tx = Transaction.begin(layout, "install", "vision-3")  # remembers current/previous
    point_links(layout, current="vision-3", previous="vision-2")
    ...                                                      # hooks, probes
    tx.commit()                                              # crash before this = undo

Before any operation touches the links it writes ``transaction.json`` with
the links as they were; recovery puts them back if the operation did not
commit. The commit point is the removal of that file. A record that does not
read as one of ours (garbage, wrong types, a missing field, a name that is
not a release id) tells nothing about the links, so undoing it keeps them as
found rather than guessing; it never makes recovery fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from typing import Any

from agent.faults import crash_point
from agent.layout import Layout, is_real_dir
from airlock.files import fsync_dir, read_json, write_json

__all__ = ["Transaction", "point_links", "read_link", "set_link"]


def read_link(layout: Layout, which: str) -> str | None:
    """The release id ``current`` or ``previous`` points to (None if absent or dangling)."""
    path = layout.link(which)
    try:
        target = os.readlink(path)
    except (FileNotFoundError, OSError):
        return None
    rid = Layout.id_from_target(target)
    if rid is None or not is_real_dir(layout.releases) or not is_real_dir(layout.releases / rid):
        return None
    return rid


def set_link(layout: Layout, which: str, release_id: str | None) -> None:
    path = layout.link(which)
    if release_id is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        layout.release_dir(release_id)  # validates the id
        tmp = Layout.temp_of(path)
        if is_real_dir(tmp):
            shutil.rmtree(tmp)  # our temporary name; a directory there is debris
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(Layout.link_target(release_id), tmp)
        os.replace(tmp, path)
    fsync_dir(layout.root)


def point_links(layout: Layout, *, current: str | None, previous: str | None,
                points: tuple[str, str] | None = None) -> None:
    """Set both links: ``previous`` first, so ``current`` is never left behind by a crash."""
    if points:
        crash_point(points[0])
    if read_link(layout, "previous") != previous or previous is None:
        set_link(layout, "previous", previous)
    if points:
        crash_point(points[1])
    if read_link(layout, "current") != current:
        set_link(layout, "current", current)


@dataclass
class Transaction:
    """An operation on ROOT that recovery must undo if it does not commit."""

    layout: Layout
    op: str  # install | rollback | check
    release: str | None
    restore_current: str | None
    restore_previous: str | None
    created: bool = False  # the release directory was made by this operation
    phase: str = "started"
    done: bool = False
    unreadable: str | None = None  # why the record on disk was not a record, if it was not

    @classmethod
    def begin(cls, layout: Layout, op: str, release: str | None) -> Transaction:
        tx = cls(layout, op, release, read_link(layout, "current"), read_link(layout, "previous"))
        tx._save()
        return tx

    @classmethod
    def pending(cls, layout: Layout) -> Transaction | None:
        """The operation left unfinished, or None; a malformed record is phase "unreadable"."""
        why: str | None
        try:
            raw = read_json(layout.transaction)
        except (OSError, ValueError) as e:
            why = str(e) or type(e).__name__
        else:
            if raw is None:
                return None
            why = _record_problem(raw)
            if why is None:
                return cls(layout, raw["op"], raw["release"], raw["restore_current"],
                           raw["restore_previous"], raw["created"], raw["phase"])
        # Nothing in it can be trusted to say where the links were: keep them as they are.
        tx = cls(layout, "unknown", None, read_link(layout, "current"),
                 read_link(layout, "previous"), phase="unreadable")
        tx.unreadable = why
        return tx

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "op": self.op, "release": self.release, "restore_current": self.restore_current,
            "restore_previous": self.restore_previous, "created": self.created,
            "phase": self.phase}
        if self.unreadable:
            d["unreadable"] = self.unreadable
        return d

    def _save(self) -> None:
        write_json(self.layout.transaction, self.to_dict())

    def step(self, phase: str, *, created: bool | None = None) -> None:
        self.phase = phase
        if created is not None:
            self.created = created
        self._save()

    def restore(self) -> None:
        point_links(self.layout, current=self.restore_current, previous=self.restore_previous)

    def commit(self) -> None:
        self.done = True
        with contextlib.suppress(FileNotFoundError):
            self.layout.transaction.unlink()
        fsync_dir(self.layout.root)


_RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "op": (str,), "release": (str, type(None)), "restore_current": (str, type(None)),
    "restore_previous": (str, type(None)), "created": (bool,), "phase": (str,)}


def _record_problem(raw: Any) -> str | None:
    """Why ``raw`` is not a transaction record this agent wrote (None if it is one)."""
    if not isinstance(raw, dict):
        return f"a JSON {type(raw).__name__}, not a record"
    for name, types in _RECORD_FIELDS.items():
        if name not in raw:
            return f"field '{name}' is missing"
        if type(raw[name]) not in types:
            return f"field '{name}' is {type(raw[name]).__name__}"
    for name in ("release", "restore_current", "restore_previous"):
        if raw[name] is not None and not Layout.is_release_id(raw[name]):
            return f"field '{name}' is not a release id"
    return None
