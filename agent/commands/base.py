"""What several ``airlock-agent`` commands share: ROOT from the options, the notifier, a line.

    layout = layout_of(args)                     # --root, else $AIRLOCK_ROOT, else /var/lib/airlock
    mutate(layout, work, notify=tell)            # prints "airlock-agent: recovered: …" lines

A command whose result is a library's JSON object (``agent.install``,
``agent.observe.status``, ``agent.fsck`` …) subclasses
:class:`airlock.command.Reported`, as the host's commands do.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.layout import Layout, root_from_env
from airlock.console import say

__all__ = ["inputs_line", "layout_of", "tell"]


def layout_of(args: argparse.Namespace) -> Layout:
    """ROOT as the common ``--root`` option, ``$AIRLOCK_ROOT`` or the default name it."""
    return Layout(root_from_env(getattr(args, "root", None)))


def tell(kind: str, message: str) -> None:
    """The :data:`agent.operations.Notify` of commands: one ``airlock-agent: KIND: …`` line."""
    say("airlock-agent", kind, message)


def inputs_line(model: str, seen: dict[str, Any]) -> str:
    """``inputs    classifier: 12 contract violation(s) in 960 rows of 3 file(s): x max 12``."""
    broken = ", ".join(f"{name} {rule} {n}" for name, rules in seen["violations"].items()
                       for rule, n in rules.items())
    line = (f"inputs    {model}: {seen['total']} contract violation(s) in {seen['rows']} rows of "
            f"{seen['files']} sample file(s) in {seen['folder']}" + (f": {broken}" if broken else ""))
    if seen["unreadable"]:
        line += f"; {len(seen['unreadable'])} unreadable (first: {seen['unreadable'][0]})"
    return line
