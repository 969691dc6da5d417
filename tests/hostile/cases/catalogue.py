"""The catalogue of the hostile-media corpus: threat rows, the Case record, the registry.

Family modules (tuf, tar, resources, text, parsing, signed) register their
cases with :func:`case`; :data:`CASES` holds them in the order registered::

    @case("arbitrary-rogue-key", "TUF-arbitrary", "signed by unknown key")
    def _(kit: Kit) -> bytes:
        return _resigned(kit, lambda s: s["airlock"].update(version="evil"), [kit.rogue])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer

from tests.support.kit import Kit
from tests.support.tarsurgery import (
    bundle,
    sign_dict,
)

# Threat-model rows. The ids are the anchors of docs/THREAT_MODEL.md.
THREATS: dict[str, str] = {
    "TUF-arbitrary": "arbitrary software installation",
    "TUF-rollback": "rollback attack",
    "TUF-fastforward": "fast-forward attack",
    "TUF-freeze": "indefinite freeze attack",
    "TUF-endless": "endless data attack",
    "TUF-extraneous": "extraneous dependencies attack",
    "TUF-mixmatch": "mix-and-match attack",
    "TUF-wrong": "wrong software installation",
    "TUF-threshold": "key compromise below the threshold",
    "TAR-traversal": "path traversal and absolute paths",
    "TAR-links": "symbolic and hard links",
    "TAR-special": "device files, fifos, directories",
    "TAR-duplicate": "duplicate and misplaced members",
    "TAR-sparse": "sparse and oversized members",
    "TAR-pax": "pax and GNU header tricks",
    "TAR-corrupt": "corrupt or truncated archive",
    "RES-bomb": "decompression bombs",
    "RES-huge": "huge metadata, manifests and headers",
    "RES-deep": "deeply nested or pathological JSON",
    "RES-disk": "disk exhaustion",
    "TXT-inert": "terminal control sequences, undecodable and oversized text",
    "RES-parse": "unbounded parsing before the signature check",
    "SIGNED-text": "control characters in signed text",
    "SIGNED-values": "signed values outside what a device can use",
    "SIGNED-files": "colliding or escaping file names inside a model directory",
}


def _when(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the cases -------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad bundle and how it must be refused."""

    id: str
    threat: str  # a key of THREATS
    make: Callable[[Kit], bytes]
    error: str  # substring of the one-line error
    exit: int = 3
    ring: str | None = None  # the device's ring (verify --ring)
    device_seen: int | None = None  # highest sequence the device already accepted
    agent_exit: tuple[int, ...] = ()  # when the agent may answer differently (resources)
    agent_error: str | None = None

    def write(self, kit: Kit, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.id}.airlock"
        path.write_bytes(self.make(kit))
        return path


CASES: list[Case] = []


def case(id: str, threat: str, error: str, **kw: Any) -> Callable[[Callable[[Kit], bytes]], Callable[[Kit], bytes]]:
    assert threat in THREATS, threat

    def register(make: Callable[[Kit], bytes]) -> Callable[[Kit], bytes]:
        assert all(c.id != id for c in CASES), id
        CASES.append(Case(id, threat, make, error, **kw))
        return make

    return register


def _resigned(kit: Kit, mutate: Callable[[dict[str, Any]], None],
              signers: Sequence[Signer] | None = None,
              files: Sequence[tuple[str, bytes]] | None = None) -> bytes:
    s = kit.signed()
    mutate(s)
    return bundle(sign_dict(s, signers or [kit.release]), kit.files if files is None else files)


def _swap_file(kit: Kit, path: str, data: bytes | None) -> list[tuple[str, bytes]]:
    out = [(p, data if p == path else d) for p, d in kit.files]
    return [(p, d) for p, d in out if d is not None]
