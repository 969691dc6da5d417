"""Recovery: run under the lock at the start of every agent command.

After a crash or power cut at any instant the device must come back with the
old or the new release active and working, a consistent store and a journal
that says what happened. Recovery, in order:

1. cuts a torn last journal line (a power cut mid-append);
2. undoes an operation that did not commit (``transaction.json``): puts
   ``current``/``previous`` back as they were, removes the release directory
   the operation created, re-runs the old release's post-switch hook if the
   links had been switched — a release whose health check or probe never
   finished is treated as failed; a record that is not one of ours is
   dropped and the links are kept as found;
3. empties ``staging/`` (half-written blobs, half-built release directories,
   directories that were being deleted);
4. repairs a link left pointing at nothing, outside ROOT or at something
   that is not an installed release: ``current`` goes to the release the
   journal last recorded as active, else ``previous``, else the newest one;
5. undoes an agent self-update that did not commit (``agent.self.selfupdate``):
   the agent's own links are put back and the half-made agent removed.

Every step is idempotent, so a crash during recovery is repaired by the next
start. Recovery assumes ROOT has the right shape (``agent.shape``): callers
check that first, so it never empties or follows a link where ``staging/``
or the store should be::

    with AgentLock(layout.lock):
        actions = recover(layout)      # [] when there was nothing to do
"""

from __future__ import annotations

import contextlib
import os
import shutil

from agent.activation import rerun_hook
from agent.faults import crash_point
from agent.journal import Journal
from agent.layout import Layout
from agent.switch import Transaction, read_link, set_link
from airlock.errors import AirlockError
from airlock.files import fsync_dir, remove_entry, remove_tree

__all__ = ["last_active", "lost_current", "needs_recovery", "newest_release", "recover", "undo"]


def _clear_staging(layout: Layout) -> int:
    layout.staging.mkdir(exist_ok=True)
    removed = 0
    for entry in layout.staging.iterdir():
        removed += 1
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
    if removed:
        fsync_dir(layout.staging)
    return removed


def newest_release(layout: Layout, exclude: set[str | None]) -> str | None:
    best: tuple[int, str] | None = None
    for rid in layout.release_ids():
        if rid in exclude:
            continue
        try:
            seq = layout.load_release(rid).sequence
        except Exception:
            continue
        if best is None or seq > best[0]:
            best = (seq, rid)
    return best[1] if best else None


def last_active(layout: Layout) -> str | None:
    """The release the journal last recorded as active (None if it cannot say)."""
    active: object = None
    with contextlib.suppress(AirlockError, OSError):
        for e in Journal(layout.journal).entries():
            if not isinstance(e, dict):
                continue
            event = e.get("event")
            if event == "switched":
                active = e.get("release")
            elif event == "rolled-back":
                active = e.get("to")
            elif event in ("installed", "install-failed", "recovered") and "active" in e:
                active = e.get("active")
    return active if isinstance(active, str) else None


def lost_current(layout: Layout, exclude: set[str]) -> str | None:
    """What ``current`` should name once its link is lost (pointing out of ROOT, at a
    non-release, or debris that was removed): the release the journal last recorded as
    active, else ``previous``, else the newest installed; never one in ``exclude``."""
    usable = set(layout.release_ids()) - exclude
    for candidate in (last_active(layout), read_link(layout, "previous")):
        if candidate in usable:
            return candidate
    return newest_release(layout, exclude=set(exclude))


def needs_recovery(layout: Layout) -> bool:
    """A cheap look, without the lock: would ``recover`` have anything to do?"""
    if layout.transaction.exists() or any(layout.staging.iterdir()):
        return True
    if any(os.path.lexists(p) for p in layout.temp_files()):
        return True
    for which in ("current", "previous"):
        if os.path.lexists(layout.link(which)) and read_link(layout, which) is None:
            return True
    from agent.self.identity import agent_home

    if agent_home() is not None:  # only a kit-installed agent switches itself
        from agent.self.selfupdate import agent_update_pending

        if agent_update_pending():
            return True
    try:
        with layout.journal.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
                return f.read(1) != b"\n"
    except FileNotFoundError:
        pass
    return False


def undo(layout: Layout, journal: Journal, tx: Transaction) -> None:
    """Put the links back as ``tx`` found them and drop what it created; then commit it."""
    switched = tx.phase in ("switching", "probing")
    tx.restore()
    if tx.created and tx.release and tx.release not in (tx.restore_current, tx.restore_previous):
        with contextlib.suppress(Exception):
            remove_tree(layout.release_dir(tx.release), layout.staging)
    if switched:
        rerun_hook(layout, journal, tx.restore_current)
    tx.commit()


def recover(layout: Layout) -> list[str]:
    """Bring ROOT back to a consistent state; returns what was done (also journaled)."""
    journal = Journal(layout.journal)
    actions: list[str] = []
    if journal.repair_tail():
        actions.append("cut a torn last line off the journal")

    tx = Transaction.pending(layout)
    if tx is not None:
        crash_point("mid-recovery")
        undo(layout, journal, tx)
        if tx.unreadable:
            what = (f"dropped {layout.rel(layout.transaction)}, which was not a transaction "
                    f"record ({tx.unreadable}); the links were kept as found: "
                    f"{tx.restore_current or 'no release'} is active")
        else:
            what = (f"{tx.op} of {tx.release} was interrupted in phase '{tx.phase}'; "
                    f"its health check never finished, so it counts as failed; "
                    f"{tx.restore_current or 'no release'} is active")
        journal.append("recovered", op=tx.op, release=tx.release, phase=tx.phase,
                       active=tx.restore_current, reason=what)
        if tx.release and tx.op == "install":
            journal.append("install-failed", release=tx.release, reason="interrupted",
                           active=tx.restore_current)
        actions.append(what)

    if _clear_staging(layout):
        actions.append("discarded unfinished work in staging/")
    for tmp in layout.temp_files():
        if os.path.lexists(tmp):
            remove_entry(tmp, layout.staging)
            actions.append(f"removed the unfinished {tmp.name}")

    for which in ("current", "previous"):
        link = layout.link(which)
        if os.path.lexists(link) and read_link(layout, which) is None:
            fallback = lost_current(layout, set()) if which == "current" else None
            try:
                target = f"pointed at {os.readlink(link)}, not an installed release"
            except OSError:
                target = "was not a link"
            if fallback is not None and fallback == read_link(layout, "previous"):
                set_link(layout, "previous", None)  # no rollback target is better than itself
            set_link(layout, which, fallback)
            what = f"'{which}' {target}; now {fallback or 'unset'}"
            journal.append("recovered", op="repair-link", link=which, active=fallback,
                           reason=what)
            actions.append(what)
    from agent.self.identity import agent_home

    if agent_home() is not None:  # only a kit-installed agent switches itself
        from agent.self.selfupdate import recover_agent

        actions += recover_agent(layout)
    return actions
