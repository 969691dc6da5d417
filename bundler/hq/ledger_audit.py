"""The ledger's audit log: every write appended with who did it, each entry hashing the one before.

    append(conn, "ingest", "cam-7", {"sha256": "…"})   # inside the writer's transaction
    problems = verify_chain(conn)                      # [] when no entry was touched

Entry ``n`` stores ``hash = sha256(canonical JSON of seq, time, actor, action,
subject, detail, prev)`` where ``prev`` is entry ``n-1``'s hash (64 zeros for
the first), and the one-row ``audit_head`` holds the newest sequence and
hash. A hand edit of any entry's field breaks its own hash; deleting or
reordering entries breaks the ``prev`` links or the sequence; cutting entries
off the end no longer matches the head. Appending locks the head row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
holds the database), so concurrent writers form one line, never a fork.

Who: ``user@host`` of the process (``$AIRLOCK_ACTOR`` overrides, for a
service account acting for a person).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, select, update

from bundler.hq.ledger_schema import audit, audit_head

__all__ = ["Chain", "ChainProblem", "actor", "append", "entry_hash", "utc", "verify_chain"]

GENESIS = "0" * 64


def actor() -> str:
    """Who is writing: ``$AIRLOCK_ACTOR``, else ``user@host``."""
    named = os.environ.get("AIRLOCK_ACTOR")
    if named:
        return named[:256]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"[:256]


def utc(t: datetime) -> datetime:
    """``t`` in UTC; a naive time (SQLite hands those back) is taken as UTC."""
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def entry_hash(seq: int, at: datetime, who: str, action: str, subject: str, detail: str,
               prev: str) -> str:
    fields = [seq, utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), who, action, subject, detail, prev]
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()


class Chain:
    """The chain's tip, locked for one transaction: entries added in order, the head saved once.

    ``with Chain(conn) as chain: chain.add("ingest", "cam-7", {...})``
    """

    def __init__(self, conn: Connection, who: str | None = None) -> None:
        self.conn = conn
        self.who = who or actor()
        head = conn.execute(select(audit_head.c.seq, audit_head.c.hash)
                            .where(audit_head.c.id == 1).with_for_update()).one()
        self.seq, self.hash = int(head.seq), str(head.hash)
        self._start = self.seq
        self._rows: list[dict[str, Any]] = []  # written together when the block ends

    def add(self, action: str, subject: str, detail: dict[str, Any]) -> int:
        at = datetime.now(timezone.utc)
        text = json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)
        seq, subject = self.seq + 1, subject[:256]
        digest = entry_hash(seq, at, self.who, action, subject, text, self.hash)
        self._rows.append({"seq": seq, "at": at, "actor": self.who, "action": action,
                           "subject": subject, "detail": text, "prev": self.hash,
                           "hash": digest})
        self.seq, self.hash = seq, digest
        return seq

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None and self.seq != self._start:
            self.conn.execute(audit.insert(), self._rows)
            self.conn.execute(update(audit_head).where(audit_head.c.id == 1)
                              .values(seq=self.seq, hash=self.hash))


def append(conn: Connection, action: str, subject: str, detail: dict[str, Any],
           who: str | None = None) -> int:
    """Add one entry in ``conn``'s transaction; its sequence number."""
    with Chain(conn, who) as chain:
        return chain.add(action, subject, detail)


@dataclass(frozen=True)
class ChainProblem:
    """One place the chain does not hold: the entry's sequence and what is wrong."""

    seq: int
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "problem": self.problem}


def _rows(conn: Connection) -> Iterator[Any]:
    result = conn.execution_options(yield_per=2000).execute(select(audit).order_by(audit.c.seq))
    yield from result


def verify_chain(conn: Connection, limit: int = 20) -> list[ChainProblem]:
    """Every entry recomputed and linked, oldest first; the first ``limit`` problems found."""
    problems: list[ChainProblem] = []
    prev, expected = GENESIS, 1
    for r in _rows(conn):
        if r.seq != expected:
            problems.append(ChainProblem(r.seq, f"entry {expected} is missing (next is "
                                                f"{r.seq}): entries were deleted"))
        if r.prev != prev:
            problems.append(ChainProblem(r.seq, "does not link to the entry before it "
                                                "(entries deleted, reordered or rewritten)"))
        if entry_hash(r.seq, r.at, r.actor, r.action, r.subject, r.detail, r.prev) != r.hash:
            problems.append(ChainProblem(r.seq, f"{r.action} {r.subject}: its fields no longer "
                                                "match its hash (edited by hand)"))
        prev, expected = r.hash, r.seq + 1
        if len(problems) >= limit:
            return problems[:limit]
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash)
                        .where(audit_head.c.id == 1)).one()
    if (head.seq, head.hash) != (expected - 1, prev):
        problems.append(ChainProblem(int(head.seq), f"the chain's head names entry {head.seq}, "
                                     f"the log ends at {expected - 1}: entries were cut off "
                                     "the end or the head was edited"))
    return problems[:limit]
