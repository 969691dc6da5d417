"""How every signed document writes a time: whole seconds, UTC, ``2026-12-08T00:38:27Z``.

    from keys.signed_time import format_time, parse_time

    parse_time(format_time(now), "visit field 'airlock_visit.issued'")

Its own module (keys.release re-exports both) so that readers of small signed
documents (directed visits) do not load the release reader with them: that
kept ``airlock-agent status`` ~30 ms slower (tests/test_startup.py).
"""

from __future__ import annotations

from datetime import datetime, timezone

from airlock.errors import FormatError

__all__ = ["format_time", "parse_time"]


def format_time(when: datetime) -> str:
    """``2026-12-08T00:38:27Z``: how signed times are written (whole seconds, UTC)."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(raw: str, what: str) -> datetime:
    """A signed time as :func:`format_time` writes it; anything else is a FormatError."""
    try:
        return datetime.strptime(raw, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise FormatError(f"{what} {raw[:40]!r} is not a time like 2026-12-08T00:38:27Z") from None
