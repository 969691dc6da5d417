"""Durations as people write them (airlock/durations.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airlock.durations import parse_duration
from airlock.errors import UsageError


@pytest.mark.parametrize(("text", "want"), [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)),
    ("1y", timedelta(days=365)), (" 2w ", timedelta(weeks=2)), ("45s", timedelta(seconds=45)),
])
def test_durations(text: str, want: timedelta) -> None:
    assert parse_duration(text) == want


@pytest.mark.parametrize("text", ["", "d", "30", "-1d", "1.5h", "3x", "1 d"])
def test_anything_else_is_a_usage_error_showing_the_form(text: str) -> None:
    with pytest.raises(UsageError, match="must look like 30d, 12h, 90m or 1y") as e:
        parse_duration(text)
    assert e.value.exit_code == 2
