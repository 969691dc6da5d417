"""Durations as people write them on a command line or in a spec: ``30d``, ``12h``, ``90m``, ``1y``.

Used for expiries (``airlock build``, ``airlock flags set``, ``expires:`` in a
spec), validity margins and the agent's re-check interval::

    parse_duration("30d")    # timedelta(days=30)
    parse_duration("1y")     # 365 days
    parse_duration("soon")   # UsageError (exit 2)
"""

from __future__ import annotations

from datetime import timedelta

from airlock.errors import UsageError

__all__ = ["parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``1y`` -> a timedelta (UsageError otherwise)."""
    text = str(text).strip()
    if len(text) < 2 or text[-1] not in _UNITS or not text[:-1].isdigit():
        raise UsageError(f"duration {text!r} must look like 30d, 12h, 90m or 1y")
    return timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
