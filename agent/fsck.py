"""Consistency check of an agent root, and its repair: ``airlock-agent fsck [--repair]``.

What a device must look like after anything, a power cut included:

* every path has its kind and every record reads (``agent.shape``: no file
  where a directory belongs, no directory where a link belongs, no symbolic
  link where a state directory belongs, a ``sequences.json`` that parses);
* every blob in ``blobs/sha256/`` hashes to its name (and nothing else lives there);
* every release directory has readable metadata, every blob it needs is in
  the store, and each model file is a hard link to its store blob;
* ``current`` and ``previous`` are absent or point at an installed release
  (``current`` is set whenever a release is installed);
* the journal's hash chain verifies;
* no operation is left pending (``transaction.json``) and ``staging/`` is empty.

``--repair`` first restores the shape (``agent.shape.repair_shape``; what
needs a person, such as a lost trust root or a store behind a symbolic link,
is reported with what to do and blocks the rest, so nothing is ever followed
out of ROOT), then runs the normal recovery (undo an unfinished operation,
empty staging, cut a torn journal line, repoint a dangling link), then
removes corrupt or foreign files from the store and release directories
that can no longer work (a release whose only loss is store blobs is kept:
installing the same bundle again restores it, so a rollback target survives
one bad blob; ``incomplete`` lists those), switches a broken ``current`` back
to a working ``previous``, says what it did, records it in the journal, and checks again. What it cannot repair
(a broken active release, a broken journal chain) stays reported: reinstall
the bundle, or keep the journal as evidence::

    report = fsck(layout, repair=False)
    report["ok"], report["problems"]   # [{"kind", "path", "detail"}]

Exit codes of the command: 0 consistent, 3 inconsistencies remain, 5 another
agent command holds the lock.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.journal import Journal
from agent.layout import Layout
from agent.shape import find_flaws, repair_shape
from agent.switch import Transaction, read_link, set_link
from airlock.errors import AirlockError
from airlock.files import fsync_dir, remove_tree
from airlock.format.oci import hash_file

if TYPE_CHECKING:
    from keys.release import Release

__all__ = ["Problem", "fsck"]

@dataclass(frozen=True)
class Problem:
    kind: str  # wrong-type | bad-record | corrupt-blob | foreign-file | broken-release
    #            | dangling-link | journal | pending-operation | staging-leftover
    path: str  # relative to ROOT
    detail: str


class _Scan:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.problems: list[Problem] = []
        self.blobs = 0
        self.releases = 0
        self.journal_lines = 0
        self.bad_blobs: set[str] = set()
        self.bad_releases: set[str] = set()
        # Releases that are whole but for store blobs: the same bundle installed again
        # restores them, so they are kept (a rollback target is not debris) and named.
        self.incomplete: dict[str, str] = {}
        self.restorable: set[str] = set()  # the incomplete ones and a restorable active one
        self.foreign: list[Path] = []
        self.flawed: set[Path] = set()

    def add(self, kind: str, path: Path, detail: str) -> None:
        rel = os.path.relpath(path, self.layout.root)
        self.problems.append(Problem(kind, rel, detail))

    def run(self) -> None:
        self._shape()
        self._blobs()
        self._releases()
        self._links()
        self._journal()
        self._work_in_progress()

    def _shape(self) -> None:
        """Kinds and records first; nothing below a flawed path is looked into (or followed)."""
        for flaw in find_flaws(self.layout):
            self.flawed.add(flaw.path)
            self.add(flaw.kind, flaw.path, flaw.describe())

    def _sound(self, *paths: Path) -> bool:
        return not self.flawed.intersection(paths)

    def _blobs(self) -> None:
        blobs = self.layout.blobs
        if not self._sound(blobs.parent, blobs):
            return
        for p in sorted(blobs.iterdir()):
            if p in self.flawed:
                continue
            if p.is_symlink() or not p.is_file() or len(p.name) != 64 or not all(
                    c in "0123456789abcdef" for c in p.name):
                self.foreign.append(p)
                self.add("foreign-file", p, "not a blob (the store holds only sha256-named files)")
                continue
            self.blobs += 1
            try:
                actual = hash_file(p)[0]
            except OSError as e:
                actual = f"unreadable ({e.strerror})"
            if actual != p.name:
                self.bad_blobs.add(p.name)
                self.add("corrupt-blob", p, f"content hashes to {actual[:16]}…, not its name")

    def _releases(self) -> None:
        layout = self.layout
        if not self._sound(layout.releases):
            return
        for rdir in sorted(layout.releases.iterdir()):
            if rdir in self.flawed:
                continue
            rid = rdir.name
            try:
                layout.release_dir(rid)
            except AirlockError:
                self.foreign.append(rdir)
                self.add("foreign-file", rdir, "not a release directory (NAME-SEQUENCE)")
                continue
            self.releases += 1
            why, restorable = self._release_problem(rid)
            if why is None:
                continue
            active = rid == read_link(layout, "current")
            if restorable:
                self.restorable.add(rid)
            if restorable and not active:
                self.incomplete[rid] = f"{why}; {reinstall_hint(rid)}"
                continue
            self.bad_releases.add(rid)
            if active:
                why += (f"; it is the active release: {reinstall_hint(rid)}" if restorable
                        else "; it is the active release: install a bundle with a higher "
                        "sequence, or roll back")
            self.add("broken-release", rdir, why)

    def _release_problem(self, rid: str) -> tuple[str | None, bool]:
        """What is wrong with release ``rid``, and whether its own bundle can restore it."""
        layout = self.layout
        try:
            release = layout.load_release(rid)
        except AirlockError as e:
            return f"release metadata unreadable: {e}", False
        if release.id != rid:
            return f"holds the metadata of {release.id}", False
        return self._files_problem(rid, release), True

    def _files_problem(self, rid: str, release: Release) -> str | None:
        layout = self.layout
        for digest in release.all_digests():
            blob = layout.blob(digest)
            if not blob.is_file():
                return f"needs blob {digest[:23]}…, which is not in the store"
            if digest[7:] in self.bad_blobs:
                return f"needs blob {digest[:23]}…, which is corrupt"
        for m in release.models:
            mdir = layout.release_dir(rid) / "models" / m.name
            for name, digest in m.linked_files():
                f = mdir / name
                try:
                    st = os.lstat(f)
                    same = st.st_ino == os.stat(layout.blob(digest)).st_ino
                except OSError:
                    return f"model file models/{m.name}/{name} is missing"
                if not stat.S_ISREG(st.st_mode):
                    return f"model file models/{m.name}/{name} is not a file"
                if not same and hash_file(f)[0] != digest[7:]:
                    return f"model file models/{m.name}/{name} differs from its blob"
        return None

    def _links(self) -> None:
        layout = self.layout
        for which in ("current", "previous"):
            link = layout.link(which)
            if not os.path.lexists(link) or link in self.flawed:
                continue
            rid = read_link(layout, which)
            if rid is None:
                target = os.readlink(link) if link.is_symlink() else "a non-link"
                self.add("dangling-link", link, f"points at {target}, not an installed release")
            elif rid in self.bad_releases:
                self.add("dangling-link", link, f"points at {rid}, which is broken; " + (
                    reinstall_hint(rid) if rid in self.restorable
                    else "install a newer bundle or roll back"))
        if self.releases and read_link(layout, "current") is None:
            self.add("dangling-link", layout.current, "releases are installed but none is active")

    def _journal(self) -> None:
        if not self._sound(self.layout.journal):
            return
        journal = Journal(self.layout.journal)
        try:
            self.journal_lines = journal.verify()
        except AirlockError as e:
            self.add("journal", self.layout.journal, str(e))
            return
        try:
            size = self.layout.journal.stat().st_size
            with self.layout.journal.open("rb") as f:
                f.seek(max(0, size - 1))
                torn = size > 0 and f.read(1) != b"\n"
        except FileNotFoundError:
            torn = False
        if torn:
            self.add("journal", self.layout.journal, "the last line is torn (a power cut mid-write)")

    def _work_in_progress(self) -> None:
        layout = self.layout
        tx = Transaction.pending(layout) if self._sound(layout.transaction) else None
        if tx is not None and tx.unreadable:
            self.add("pending-operation", layout.transaction,
                     f"not a transaction record ({tx.unreadable}); --repair drops it and keeps "
                     "current and previous as they are")
        elif tx is not None:
            self.add("pending-operation", layout.transaction,
                     "an operation was interrupted and not yet undone")
        if self._sound(layout.staging):
            for p in sorted(layout.staging.iterdir()):
                self.add("staging-leftover", p, "unfinished work left in staging/")

    def report(self) -> dict[str, Any]:
        return {
            "ok": not self.problems,
            "problems": [asdict(p) for p in self.problems],
            "incomplete": [{"release": rid, "detail": why}
                           for rid, why in sorted(self.incomplete.items())],
            "checked": {"blobs": self.blobs, "releases": self.releases,
                        "journal_lines": self.journal_lines},
        }


def reinstall_hint(rid: str) -> str:
    """What restores a release whose store blobs went missing: its own bundle, first."""
    return (f"install the same bundle again ({rid}; 'airlock-agent install' restores a release "
            "the device knows), or one with a higher sequence")


def _repair(layout: Layout, scan: _Scan) -> list[str]:
    from agent.recovery import lost_current, recover

    done = list(recover(layout))
    pinned = {read_link(layout, "current"), read_link(layout, "previous")} - {None}
    for p in scan.foreign:
        if p.is_dir() and not p.is_symlink():
            remove_tree(p, layout.staging)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        done.append(f"removed {os.path.relpath(p, layout.root)} (not part of the layout)")
    for name in sorted(scan.bad_blobs):
        with contextlib.suppress(FileNotFoundError):
            (layout.blobs / name).unlink()
        done.append(f"removed corrupt blob sha256:{name[:16]}…")
    if scan.foreign or scan.bad_blobs:
        fsync_dir(layout.blobs)
    for rid in sorted(scan.bad_releases - pinned - scan.restorable):
        remove_tree(layout.release_dir(rid), layout.staging)
        done.append(f"removed broken release {rid}")
    bad = scan.bad_releases
    current, previous = read_link(layout, "current"), read_link(layout, "previous")
    unusable = bad | set(scan.incomplete)
    if current in bad and previous is not None and previous not in unusable:
        # A broken active release cannot run; the previous one can.
        set_link(layout, "previous", None)
        set_link(layout, "current", previous)
        done.append(f"switched current from broken {current} back to {previous}")
        if current in scan.restorable:
            done.append(f"kept {current} (a store blob it needs is gone): "
                        f"{reinstall_hint(current)}")
        else:
            remove_tree(layout.release_dir(current), layout.staging)
            done.append(f"removed broken release {current}")
        current, previous = previous, None
    elif previous in bad and previous != current:
        # Rollback would only fail its health check on it: it is no fallback, just debris.
        set_link(layout, "previous", None)
        remove_tree(layout.release_dir(previous), layout.staging)
        done.append(f"unset previous and removed broken release {previous}")
        previous = None
    if current is None and layout.release_ids():
        # Releases installed but none active: the link was lost (debris where it stood).
        # The journal says which release was active last; failing that, the newest one
        # that is not the rollback target, and the rollback target last.
        fallback = lost_current(layout, exclude=unusable)
        if fallback is not None:
            if fallback == previous:
                set_link(layout, "previous", None)
            set_link(layout, "current", fallback)
            done.append(f"no release was active; now {fallback} is (the journal's last active "
                        "release, else previous, else the newest); run 'airlock-agent check'")
    if current in bad:
        done.append(f"cannot repair {current}: it is the active release and no other can "
                    f"take over; {reinstall_hint(current)}")
    for rid in sorted(scan.incomplete):
        done.append(f"kept {rid} (a store blob it needs is gone): {reinstall_hint(rid)}")
    # What was moved to staging on the way out goes now.
    done += [f"then: {a}" for a in recover(layout)]
    return done


def fsck(layout: Layout, repair: bool = False, done_before: list[str] | None = None
         ) -> dict[str, Any]:
    """Check ROOT (the caller holds the lock); with ``repair``, fix what can be fixed.

    ``done_before``: repairs the caller made before it could take the lock (a lock file
    that was not a file), journaled with the rest.
    """
    scan = _Scan(layout)
    scan.run()
    done = list(done_before or [])
    if not repair or (scan.report()["ok"] and not done):
        return {**scan.report(), "repaired": done}
    shaped, left = repair_shape(layout)
    done += shaped
    if not any(f.blocking for f in left):
        # Only a sound shape is recovered and cleaned: never a store or staging behind a link.
        rescan = _Scan(layout)
        rescan.run()
        if not rescan.report()["ok"]:
            done += _repair(layout, rescan)
    Journal(layout.journal).append("fsck-repair", actions=done)
    again = _Scan(layout)
    again.run()
    return {**again.report(), "repaired": done, "found": scan.report()["problems"]}
