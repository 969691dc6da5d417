"""The one door of every change to ROOT: the envelope, and "install, then update the agent".

Every command that changes ROOT (install, commit, rollback, check, flags
apply and rollback, gc, config changes) and the drop folder of ``serve`` go
through :func:`mutate` or :func:`install_run`, as RAUC's front ends all call
one ``install_run()``. The envelope, in order:

1. ROOT is initialised (``Layout.require_initialised``);
2. ROOT's shape is sound (``agent.shape.require_sound``): before the lock and
   before recovery, which empties staging/ and repoints links and must never
   do so through a link out of ROOT or over a stray directory (exit 5);
3. ROOT's format is one this agent reads (``agent.rootformat.check_format``);
4. the agent lock, waiting up to ``wait`` seconds (exit 5 when still held);
5. recovery of whatever a crash left behind (``agent.recovery``);
6. ROOT's format migrated forward, by the agent installed as current only;
7. a held install past its deadline reverted (``agent.rollback.enforce_hold``).

Library code prints nothing: what the envelope did arrives at ``notify(kind,
message)`` (``recovered``, ``reverted``, ``note``), which a command prints and
``serve`` logs::

    result = mutate(layout, lambda: gc(layout, keep=2), notify=tell)
    result = install_run(layout, stream, label="vision-1.3.0.airlock", wait=5.0,
                         progress=tick, phases=bars, notify=tell)
    result = promote_run(layout, hold=600, notify=tell)     # the staged challenger

``fsck --repair`` is the one change that cannot wait for a sound shape (it is
what repairs the shape): :func:`fsck_run` is its door.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

from agent.layout import Layout
from agent.lock import AgentLock
from airlock.console import Progress, no_progress
from airlock.errors import LockedError, PreconditionError

__all__ = ["Notify", "envelope", "fsck_run", "install_run", "mutate", "promote_run", "quiet"]

T = TypeVar("T")

#: ``notify(kind, message)``: one thing the envelope did (kind: recovered, reverted, note).
Notify = Callable[[str, str], None]


def quiet(kind: str, message: str) -> None:
    """The default :data:`Notify`: tell nobody."""


@contextlib.contextmanager
def envelope(layout: Layout, *, wait: float = 0.0, notify: Notify = quiet,
             revert_hold: bool = True) -> Iterator[None]:
    """Steps 1-7 of the module docstring; the body runs under the lock.

    ``revert_hold=False`` leaves step 7 to the body (serve's hold watch, which
    reports what it reverted in its own words).
    """
    from agent.recovery import recover
    from agent.rollback import enforce_hold
    from agent.rootformat import check_format
    from agent.shape import require_sound

    layout.require_initialised()
    require_sound(layout)
    check_format(layout)
    with AgentLock(layout.lock, wait=wait):
        for line in recover(layout):
            notify("recovered", line)
        _migrate(layout, notify)
        from agent.decrypt import ensure_key

        if ensure_key(layout):  # a device initialised before encryption: its key, once
            notify("key", f"made the device's encryption key {layout.encryption_pub}")
        reverted = enforce_hold(layout) if revert_hold else None
        if reverted is not None:
            notify("reverted", reverted["reason"])
        yield


def mutate(layout: Layout, work: Callable[[], T], *, wait: float = 0.0,
           notify: Notify = quiet) -> T:
    """``work()`` inside the envelope; its result."""
    with envelope(layout, wait=wait, notify=notify):
        return work()


def _migrate(layout: Layout, notify: Notify) -> None:
    from agent.journal import Journal
    from agent.rootformat import ROOT_FORMAT, migrate, root_format

    if root_format(layout) >= ROOT_FORMAT:
        return  # nothing to migrate, so no need to import selfupdate to ask who may
    from agent.self.selfupdate import may_migrate

    if may_migrate():
        for line in migrate(layout, Journal(layout.journal)):
            notify("note", line)


def install_run(layout: Layout, stream: IO[bytes], *, label: str, switch: bool = True,
                hold: float | None = None, wait: float = 0.0,
                progress: Callable[[int], None] | None = None, phases: Progress = no_progress,
                notify: Notify = quiet, begin: Callable[[], None] | None = None,
                unattended: bool = False) -> dict[str, Any]:
    """Install the bundle on ``stream`` in the envelope, then the agent kit it carries.

    The agent updates itself only once the release is committed: active, and
    not held (a held install may still go back). A flags bundle is applied as
    ``agent.install.install`` does; it carries no agent. A failed update of the
    agent raises (exit 4) after the release stands. ``begin()`` is called once the
    envelope is done (lock held, ROOT recovered), before the bundle is read.
    ``unattended`` (the drop folder): a release an operator rolled back is refused.
    """
    from agent.install import install

    def work() -> dict[str, Any]:
        if begin is not None:
            begin()
        result = install(layout, stream, label=label, switch=switch, progress=progress,
                         hold=hold, unattended=unattended)
        if result.get("installed") and result.get("active") == result.get("release"):
            from agent.gc import gc

            # Nothing grows forever: the releases beyond the device's keep go now.
            keep = layout.load_config().keep_releases
            result["collected"] = gc(layout, keep, automatic=True)
        if not switch and result.get("installed") and result.get("active") != result.get(
                "release"):
            from agent.challenger import stage

            result["challenger"] = stage(layout, result)
        if (result.get("release") and result.get("active") == result["release"]
                and not result.get("held_until")):
            from agent.self.from_release import update_from_release

            result["agent"] = update_from_release(layout, result["release"], progress=phases)
        return result

    return mutate(layout, work, wait=wait, notify=notify)


def promote_run(layout: Layout, *, hold: float | None = None, wait: float = 0.0,
                notify: Notify = quiet, reason: str = "operator") -> dict[str, Any]:
    """Switch to the staged challenger in the envelope, then collect and update the agent
    as :func:`install_run` does after a switch (``agent.promote``)."""
    from agent.promote import promote

    def work() -> dict[str, Any]:
        result = promote(layout, hold=hold, reason=reason)
        from agent.gc import gc

        result["collected"] = gc(layout, layout.load_config().keep_releases, automatic=True)
        if not result.get("held_until"):
            from agent.self.from_release import update_from_release

            result["agent"] = update_from_release(layout, result["release"])
        return result

    return mutate(layout, work, wait=wait, notify=notify)


def fsck_run(layout: Layout, *, repair: bool, read_only: bool) -> dict[str, Any]:
    """``fsck``: read-only without the lock, else under it; ``repair`` fixes the shape first.

    Not the whole envelope: a damaged shape is what ``--repair`` is for, and
    ``fsck`` does its own recovery. A check without ``--repair`` goes on
    without the lock when ROOT is read-only or the lock is not a file.
    """
    from agent.fsck import fsck
    from agent.shape import lock_is_debris, repair_shape

    layout.require_initialised()
    if read_only:
        # A new agent's self-check while the running agent holds the lock: no lock, no repair.
        return fsck(layout, repair=False)
    before: list[str] = []
    if repair and lock_is_debris(layout):
        # No command can hold a lock that is not a file, so this one step goes unlocked.
        before = repair_shape(layout, only=[layout.lock])[0]
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(AgentLock(layout.lock))
        except LockedError:
            raise
        except PreconditionError:
            if repair:
                raise
        return fsck(layout, repair=repair, done_before=before)
