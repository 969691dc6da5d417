"""The version of ROOT's on-disk format: newer agents migrate it forward, older ones refuse it.

An agent that updated itself may lay ROOT out differently from the one it
replaced. ``ROOT/format.json`` says which layout ROOT is in (absent: format
1, every ROOT made before formats were counted)::

    check_format(layout)          # PreconditionError (exit 5) if ROOT is newer than this agent
    migrate(layout, journal)      # under the lock: apply MIGRATIONS up to ROOT_FORMAT

Each migration step takes ROOT from format ``n`` to ``n + 1``, must be
idempotent (a crash mid-step runs it again) and writes nothing an agent of
format ``n`` could misread before ``format.json`` says ``n + 1``. Only the
agent installed as current migrates (``agent.self.selfupdate.may_migrate``): an
agent whose update is not committed yet must leave ROOT readable by the one
it may be rolled back to. Reading commands of a newer agent work on an older
ROOT without migrating it, which is what an update's self-check relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from agent.journal import Journal
from agent.layout import Layout
from airlock.errors import PreconditionError
from airlock.files import read_json, write_json

__all__ = ["MIGRATIONS", "ROOT_FORMAT", "check_format", "migrate", "root_format", "write_format"]

#: The newest ROOT format this agent reads and writes.
ROOT_FORMAT: Final = 1

#: ``n -> step`` taking ROOT from format n to n + 1. Format 1 is the first; none yet.
MIGRATIONS: dict[int, Callable[[Layout], None]] = {}


def root_format(layout: Layout) -> int:
    try:
        raw = read_json(layout.format_file)
    except (ValueError, OSError) as e:
        raise PreconditionError(f"cannot read {layout.format_file}: {e}; run "
                                "'airlock-agent fsck' with the newest agent you have") from None
    if raw is None:
        return 1
    fmt = raw.get("format") if isinstance(raw, dict) else None
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise PreconditionError(f"{layout.format_file} does not name a ROOT format")
    return fmt


def check_format(layout: Layout) -> int:
    """ROOT's format, or a one-line refusal when this agent is too old to read it."""
    fmt = root_format(layout)
    if fmt > ROOT_FORMAT:
        from agent.self.identity import agent_version

        raw = read_json(layout.format_file) or {}
        by = raw.get("written_by") if isinstance(raw, dict) else None
        raise PreconditionError(
            f"{layout.root} is in ROOT format {fmt}"
            + (f" (written by agent {by})" if by else "")
            + f"; this agent ({agent_version()}) understands format {ROOT_FORMAT} at most. "
            "Run the newer agent, or install a newer agent kit with install.sh")
    return fmt


def write_format(layout: Layout, fmt: int = ROOT_FORMAT) -> None:
    from agent.self.identity import agent_version

    write_json(layout.format_file, {"format": fmt, "written_by": agent_version()})


def migrate(layout: Layout, journal: Journal) -> list[str]:
    """Bring ROOT up to ROOT_FORMAT, one journaled step at a time; the caller holds the lock."""
    done: list[str] = []
    fmt = check_format(layout)
    while fmt < ROOT_FORMAT:
        step = MIGRATIONS.get(fmt)
        if step is None:
            raise PreconditionError(f"this agent cannot migrate ROOT format {fmt} to {fmt + 1}")
        step(layout)
        write_format(layout, fmt + 1)
        journal.append("root-migrated", from_format=fmt, to_format=fmt + 1)
        done.append(f"migrated ROOT from format {fmt} to {fmt + 1}")
        fmt += 1
    return done
