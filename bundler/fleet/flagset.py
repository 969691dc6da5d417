"""``airlock flags set``: a tiny signed flags bundle, to change behaviour without shipping a model.

::

    airlock flags set night_mode=true threshold=0.4 --name site --sequence 3 --percent 10 \\
        --ring canary --expires 30d --key keys/release.key -o site-flags-3.airlock

A value is read as JSON when it parses (``true``, ``0.4``, ``"text"``,
``[1,2]``) and as a plain string otherwise. The bundle is the bundle format
with nothing but its metadata: a flags set (``keys.flags``) signed like a
release, with its own name, sequence (anti-rollback per name on each device)
and expiry. Devices apply it with ``airlock-agent install FILE`` or
``airlock-agent flags apply FILE``; ``airlock fleet rollout`` carries it too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer

from airlock.errors import UsageError
from airlock.files import PartialFile
from airlock.format.writer import write_bundle
from keys.flags import FlagSet, sign_flags

__all__ = ["build_flags", "parse_assignments"]


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` items as a mapping; a VALUE that is JSON is read as JSON."""
    flags: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{item!r} is not NAME=VALUE")
        if name in flags:
            raise UsageError(f"flag {name} is set twice")
        try:
            flags[name] = json.loads(text)
        except ValueError:
            flags[name] = text
    return flags


def build_flags(flags: dict[str, Any], *, name: str, sequence: int, expires: timedelta,
                percent: float, rings: Sequence[str], signers: Sequence[Signer],
                output: Path) -> dict[str, Any]:
    """Sign the flags set and write it as a bundle to ``output``; what was written."""
    fs = FlagSet(name, flags, sequence, datetime.now(timezone.utc).replace(microsecond=0) + expires,
                 percent, tuple(rings))
    data = sign_flags(fs, list(signers))
    with PartialFile(output, parents=True) as partial:
        write_bundle(partial.file, data, [])
        partial.publish()
    return {**fs.to_dict(), "bundle": str(output), "size": output.stat().st_size}
