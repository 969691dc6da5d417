"""Deterministic crash points, so tests can kill the agent at a named instant.

A test sets ``AIRLOCK_CRASH_AT=<point>`` (or ``<point>:<n>`` for the n-th time
the point is reached) and the agent sends itself SIGKILL there: no cleanup,
no ``finally`` blocks, no flushed buffers — the same as a power cut as far as
the agent's own code is concerned::

    AIRLOCK_CRASH_AT=after-switch airlock-agent install v2.airlock   # dies, exit -9
    airlock-agent status                                              # recovers

``CRASH_POINTS`` lists every point, in the order an install, a rollback and a
gc reach them, so a test can iterate over all of them.
"""

from __future__ import annotations

import os
import signal

__all__ = ["AGENT_UPDATE_POINTS", "CRASH_POINTS", "JOURNAL_POINTS", "POINTS_BY_COMMAND", "crash_point"]

CRASH_POINTS: tuple[str, ...] = (
    # install
    "after-head-verified",
    "mid-blob",  # first chunk of a new blob written to staging
    "after-blob-stored",
    "before-release-rename",
    "after-release-rename",
    "mid-health-check",  # after the health check started, before its result is recorded
    "after-health-check",
    "before-switch",
    "before-previous-update",
    "after-previous-update",
    "after-switch",
    "after-post-switch-hook",
    "before-commit",
    "after-commit",
    # automatic rollback after a failed probe
    "mid-auto-rollback",
    # manual rollback
    "rollback-before-switch",
    "mid-rollback",
    "rollback-after-switch",
    # gc
    "gc-mid-delete",
    "gc-after-releases",
    # recovery itself can be interrupted too
    "mid-recovery",
)

#: The agent updating itself (agent.self.selfupdate), after the release's own commit.
#: Kept apart from CRASH_POINTS: they need a device whose agent came from a kit,
#: and tests/kit/test_selfupdate.py kills the agent at each of them.
AGENT_UPDATE_POINTS: tuple[str, ...] = (
    "agent-update-started",
    "agent-kit-unpacked",
    "agent-mid-venv",  # venv made, the kit's wheels not installed yet
    "agent-venv-built",
    "agent-before-switch",
    "agent-after-switch",
    "agent-before-commit",
    "agent-after-commit",
)

#: The journal sealing a full segment (agent.journal), reached by whatever command
#: appends the line that fills it: between the rename and the new segment's first line.
JOURNAL_POINTS: tuple[str, ...] = ("journal-mid-rotation",)

#: Which command reaches which point. ``install`` reaches "mid-auto-rollback" only when
#: the probe or hook fails; "mid-recovery" is reached by any command (``status``
#: included) that starts after a crash left a transaction behind. ``rollback`` re-runs
#: the health check only as ``rollback --check`` (``rollback-check`` here).
POINTS_BY_COMMAND: dict[str, tuple[str, ...]] = {
    "install": CRASH_POINTS[: CRASH_POINTS.index("mid-auto-rollback") + 1],
    "rollback": ("rollback-before-switch", "mid-rollback", "rollback-after-switch",
                 "after-post-switch-hook"),
    "rollback-check": ("mid-health-check", "rollback-before-switch", "mid-rollback",
                       "rollback-after-switch", "after-post-switch-hook"),
    "check": ("mid-health-check",),
    "gc": ("gc-mid-delete", "gc-after-releases"),
    "recovery": ("mid-recovery",),
}

_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process if ``AIRLOCK_CRASH_AT`` names ``name`` (and its count)."""
    assert name in CRASH_POINTS or name in AGENT_UPDATE_POINTS or name in JOURNAL_POINTS, name
    wanted = os.environ.get("AIRLOCK_CRASH_AT")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
