"""Ansible's INI inventory and its host patterns, for the built-in inventory reader.

``cam[01:03].north`` names three hosts, and an INI file groups them::

    expand_hosts("cam[01:03].north:2222", 100)
    # -> (["cam01.north", "cam02.north", "cam03.north"], 2222)
    graph = InventoryGraph()
    read_ini(Path("site.ini"), text, graph)

The INI rules are Ansible's: ``[group]`` lists hosts, one a line, each
optionally followed by ``key=value`` variables; ``[group:vars]`` holds the
group's variables and ``[group:children]`` its child groups; hosts before any
section are ungrouped. Values are Python literals where they parse as one
(``23``, ``[1, 2]``), strings otherwise, as ``ansible-inventory`` reads them.
"""

from __future__ import annotations

import ast
import re
import shlex
import string
from pathlib import Path
from typing import Any

from airlock.errors import UsageError
from bundler.fleet.inventory_graph import InventoryGraph

__all__ = ["expand_hosts", "parse_value", "read_ini"]

_RANGE = re.compile(r"^(.*?)\[([^\]:]+):([^\]:]+)(?::(\d+))?\](.*)$")


def expand_hosts(pattern: str, budget: int) -> tuple[list[str], int | None]:
    """The host names of ``pattern`` and its ``:port``; never more than ``budget`` names."""
    port = None
    head, sep, tail = pattern.rpartition(":")
    # The port follows the last ':' outside a range (cam[01:20].north:2222), not an IPv6 '::'.
    if sep and tail.isdigit() and head.count("[") == head.count("]") and not head.endswith(":"):
        pattern, port = head, int(tail)
    names = _expand(pattern, budget)
    return names, port


def _expand(pattern: str, budget: int) -> list[str]:
    m = _RANGE.match(pattern)
    if not m:
        return [pattern]
    head, start, end, step, tail = m.groups()
    stride = int(step) if step else 1
    if stride < 1:
        raise UsageError(f"host range {pattern}: the step must be 1 or more")
    if start.isdigit() and end.isdigit():
        # A leading zero fixes the width, as Ansible: [01:20] -> 01 … 20.
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        lo, hi = int(start), int(end)
        if hi < lo:
            raise UsageError(f"host range {pattern}: {start} is after {end}")
        if (hi - lo) // stride + 1 > budget:
            raise UsageError(f"host range {pattern} names more than {budget} hosts")
        middles = [str(i).zfill(width) for i in range(lo, hi + 1, stride)]
    elif len(start) == len(end) == 1 and start in string.ascii_letters and end in string.ascii_letters:
        if ord(end) < ord(start):
            raise UsageError(f"host range {pattern}: {start} is after {end}")
        middles = [chr(c) for c in range(ord(start), ord(end) + 1, stride)]
    else:
        raise UsageError(f"host range {pattern}: bounds must be numbers or single letters")
    names: list[str] = []
    for middle in middles:
        # A pattern may hold more than one range: cam[1:2]-[a:b].
        names.extend(_expand(head + middle + tail, budget - len(names)))
        if len(names) > budget:
            raise UsageError(f"host range {pattern} names more than {budget} hosts")
    return names


def parse_value(text: str) -> Any:
    """``23`` -> 23, ``[1,2]`` -> [1, 2], anything else the string itself (as Ansible's INI)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _pairs(path: Path, lineno: int, words: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise UsageError(f"{path}:{lineno}: expected key=value, not {word!r}")
        found[key] = parse_value(value)
    return found


def read_ini(path: Path, text: str, graph: InventoryGraph) -> None:
    """Adds the groups, hosts and variables of the INI inventory ``text`` to ``graph``."""
    group, kind = "ungrouped", "hosts"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise UsageError(f"{path}:{lineno}: unclosed section {line!r}")
            group, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children") or not group:
                raise UsageError(f"{path}:{lineno}: unknown section {line!r}")
            graph.add_group(group)
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            raise UsageError(f"{path}:{lineno}: {e}") from None
        if not words:
            continue
        if kind == "vars":
            key, eq, value = line.partition("=")
            if not eq or not key.strip():
                raise UsageError(f"{path}:{lineno}: expected key=value in [{group}:vars]")
            graph.group_vars(group).update(_pairs(path, lineno, [f"{key.strip()}={value.strip()}"]))
        elif kind == "children":
            graph.add_child(group, words[0])
        else:
            own = _pairs(path, lineno, words[1:])
            names, port = expand_hosts(words[0], graph.budget())
            if port is not None:
                own = {"ansible_port": port, **own}
            for name in names:
                graph.add_host(group, name, own)
