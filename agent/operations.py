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
from pathlib import Path
from typing import IO, Any, TypeVar

from agent.layout import Layout
from agent.lock import AgentLock
from airlock.console import Progress, no_progress
from airlock.errors import LockedError, PreconditionError

__all__ = ["Notify", "envelope", "fsck_run", "install_run", "mutate", "promote_run", "quiet",
           "stick_tokens"]

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
                unattended: bool = False, stick: Path | None = None,
                visit: Path | None = None) -> dict[str, Any]:
    """Install the bundle on ``stream`` in the envelope, then the agent kit it carries.

    The agent updates itself only once the release is committed: active, and
    not held (a held install may still go back). A flags bundle is applied as
    ``agent.install.install`` does; it carries no agent. A failed update of the
    agent raises (exit 4) after the release stands. ``begin()`` is called once the
    envelope is done (lock held, ROOT recovered), before the bundle is read.
    ``unattended`` (the drop folder): a release an operator rolled back is refused.
    ``stick``: the folder the bundle came from; time tokens there are applied
    first, and a directed device takes its visit from there (or from ``visit``).
    """
    from agent.install import install

    def work() -> dict[str, Any]:
        if begin is not None:
            begin()
        tokens = stick_tokens(layout, stick, notify) if stick is not None else []
        directed = _directed(layout, stick, visit)
        result = install(layout, stream, label=label, switch=switch, progress=progress,
                         hold=hold, unattended=unattended,
                         gate=directed[0] if directed else None)
        if directed:
            from agent.directed import follow

            follow(layout, *directed[1])
            result["visit"] = directed[1][0].sequence
        if tokens:
            result["time_tokens"] = tokens
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


def stick_tokens(layout: Layout, folder: Path, notify: Notify) -> list[dict[str, Any]]:
    """Apply the time tokens on the stick (``time.json``, ``*.time.json`` in ``folder``); the
    caller holds the lock. A bad or replayed token changes nothing and stops nothing."""
    from agent.timefloor import apply_token
    from airlock.errors import AirlockError
    from airlock.files import read_bounded
    from airlock.limits import MAX_METADATA_BYTES

    done = []
    try:
        names = sorted(p for p in folder.iterdir()
                       if p.name == "time.json" or p.name.endswith(".time.json"))
    except OSError:  # not a folder we may list: no tokens from it
        names = []
    for path in names:
        try:
            result = apply_token(layout, read_bounded(path, MAX_METADATA_BYTES), str(path))
        except (AirlockError, OSError, ValueError) as e:
            notify("note", f"time token {path} not applied: {e}")
            continue
        done.append({"token": str(path), "applied": result["applied"], "time": result["time"]})
        if result["applied"]:
            notify("note", f"time token {path} applied: the time floor is {result['time']}")
    return done


def _directed(layout: Layout, stick: Path | None, visit: Path | None) -> Any:
    """For a directed device: (gate, (visit, instruction, label)), from its chosen visit;
    None for a device that is not directed (then ``visit`` is a usage error)."""
    from agent.directed import choose, gate, load_record, stick_visits
    from airlock.errors import UsageError

    if load_record(layout) is None:
        if visit is not None:
            raise UsageError("--visit: this device is not directed ('airlock-agent init "
                             "--directed'); install without it")
        return None
    chosen = choose(layout, stick_visits(stick, visit))
    return gate(*chosen), chosen


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
