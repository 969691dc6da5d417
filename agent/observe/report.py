"""Signed device reports: what a device runs, did and holds, carried home on the stick.

A report is a DSSE envelope (``keys.device``, payload type ``REPORT_TYPE``)
signed with the device key made at ``init``. Headquarters enrolls the key
(``airlock report enroll``) and ``airlock report ingest`` refuses any report
whose signature does not verify against it::

    data = signed_report(layout)               # since the last report; remembers where it ended
    Path("/media/usb/airlock-reports/cam-7.report.json").write_bytes(data)

What it says (the payload)::

    device_id, ring, agent {version, platform}, time
    status      the ``status --json`` document: active and previous release with
                their last health check (p95, peak memory, duration per model),
                state, store, disk, drift per model
    counts      installs by outcome, rejected bundles by reason, rollbacks (agent.observe.tally)
    journal     entries since the last report (``--since``): from_line, to_line,
                head (sha256 of the last line, to check continuity), dropped,
                entries with long text fields cut to their tail (hook and probe output)
    inventory   the signed inventory (agent.observe.inventory), a DSSE envelope of its own,
                so the host can hand it to ``airlock build --delta-from`` as it is

Bounds: at most ``MAX_REPORT_JOURNAL_ENTRIES`` entries (the newest; the rest
are counted in ``dropped``) and ``MAX_REPORT_FIELD_CHARS`` characters per
text field, so a report stays a few KiB to a few hundred KiB.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.journal import Journal
from agent.layout import Layout
from agent.observe.inventory import inventory
from agent.observe.status import status
from agent.observe.tally import JournalTally
from airlock.errors import AirlockError, UsageError
from airlock.files import read_json, write_json
from airlock.limits import MAX_REPORT_FIELD_CHARS, MAX_REPORT_JOURNAL_ENTRIES
from keys.device import INVENTORY_TYPE, REPORT_TYPE, sign_document, verify_document
from keys.keyfile import load_signer

__all__ = ["report_body", "signed_report"]

_MAX_LIST_ITEMS = 100


def _trim(value: Any) -> Any:
    """Long strings keep their tail (where an error is); long lists their head."""
    if isinstance(value, str):
        if len(value) <= MAX_REPORT_FIELD_CHARS:
            return value
        return "…" + value[-(MAX_REPORT_FIELD_CHARS - 1):]
    if isinstance(value, dict):
        return {k: _trim(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trim(v) for v in value[:_MAX_LIST_ITEMS]]
    return value


def _start(layout: Layout, since: str, lines: list[bytes], base: int = 1) -> tuple[int, str]:
    """The journal line a report starts after, and how that was decided."""
    if since == "all":
        return 0, "all"
    if since == "last":
        last = read_json(layout.last_report) if layout.last_report.exists() else None
        if not isinstance(last, dict) or not isinstance(last.get("line"), int):
            return 0, "all (no earlier report)"
        return _after(lines, last["line"], last.get("head"), "the last report", base)
    path = Path(since)
    if path.is_file():
        key = load_signer(layout.device_key).public_key
        try:
            doc = verify_document(path.read_bytes(), REPORT_TYPE, key=key)
        except (AirlockError, OSError) as e:
            raise UsageError(f"--since {since}: not a report of this device: {e}") from None
        j = doc.body.get("journal") or {}
        return _after(lines, int(j.get("to_line") or 0), j.get("head"), f"report {path.name}",
                      base)
    try:
        when = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {since!r}: give 'last', 'all', an ISO time "
                         "or an earlier report file") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    for n, raw in enumerate(lines):
        try:
            t = datetime.fromisoformat(str(json.loads(raw).get("time")).replace("Z", "+00:00"))
        except (ValueError, AttributeError):
            continue
        if t >= when:
            return n, f"time {when.isoformat()}"
    return len(lines), f"time {when.isoformat()}"


def _after(lines: list[bytes], line: int, head: object, what: str,
           base: int = 1) -> tuple[int, str]:
    """The index after journal line ``line`` (numbered from the first line ever; ``lines[0]``
    is line ``base``) when that line is still the one whose hash is ``head``."""
    i = line - base
    if 0 <= i < len(lines) and hashlib.sha256(lines[i]).hexdigest() == head:
        return i + 1, what
    # The journal was replaced or cut since, or the line is in a dropped segment:
    # send all that is kept rather than a gap.
    return 0, f"all ({what} does not match this journal)"


def report_body(layout: Layout, since: str = "last") -> tuple[dict[str, Any], dict[str, Any]]:
    """The unsigned report, and where its journal span ended (for the next ``--since last``)."""
    config = layout.load_config()
    journal = Journal(layout.journal)
    numbered = list(journal.numbered_lines())
    base = numbered[0][0] if numbered else 1  # older segments dropped: numbers go on
    lines = [raw for _, raw in numbered]
    start, since_text = _start(layout, since, lines, base)
    span = lines[start:]
    dropped = max(0, len(span) - MAX_REPORT_JOURNAL_ENTRIES)
    entries = []
    for raw in span[dropped:]:
        try:
            entries.append(_trim(json.loads(raw)))
        except ValueError:
            entries.append({"event": "unreadable"})
    head = hashlib.sha256(lines[-1]).hexdigest() if lines else None
    tally = JournalTally(layout.journal)
    tally.update()
    inv = inventory(layout)
    signed_inv = json.loads(sign_document(inv, INVENTORY_TYPE, load_signer(layout.device_key)))
    body = {
        "kind": "report",
        "device_id": config.device_id,
        "ring": config.ring,
        "agent": inv["agent"],
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": _trim(status(layout)),
        "counts": {
            "installs": dict(tally.installs),
            "rejected": dict(tally.rejected),
            "rollbacks": [{"result": r, "trigger": t, "count": n}
                          for (r, t), n in sorted(tally.rollbacks.items())],
        },
        "journal": {"since": since_text, "from_line": base + start, "to_line": base + len(lines) - 1,
                    "head": head, "dropped": dropped, "entries": entries},
        "inventory": signed_inv,
    }
    return body, {"line": base + len(lines) - 1, "head": head, "time": body["time"]}


def signed_report(layout: Layout, since: str = "last", *, remember: bool = True) -> bytes:
    """The report signed with the device key; with ``remember`` the next ``since="last"``
    starts after it (serve's reports on a stick do not move that mark)."""
    body, end = report_body(layout, since)
    data = sign_document(body, REPORT_TYPE, load_signer(layout.device_key))
    if remember:
        # A read-only ROOT still reports; the next report then repeats these entries.
        with contextlib.suppress(OSError):
            write_json(layout.last_report, end)
    return data
