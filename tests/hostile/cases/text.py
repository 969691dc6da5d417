"""Text from the media reaches a terminal and the journal inert: control sequences,
undecodable and oversized text.

Each case registers itself in ``tests.hostile.cases.catalogue.CASES``.
"""

from __future__ import annotations

import json

from tests.hostile.cases.catalogue import case
from tests.support.kit import Kit
from tests.support.tarsurgery import (
    bundle,
)

# text: whatever the media says reaches a terminal and the journal inert -----------------------

# Clear the screen, set the window title, switch to red; then a right-to-left override.
HOSTILE_TEXT = "\x1b[2J\x1b]0;pwned\x07\x1b[31m\u202e\x9b"


def _with_member(kit: Kit, name: str) -> bytes:
    """The good bundle plus one unlisted member called ``name``, right after index.json."""
    junk = b"\xcc" * 16
    return bundle(kit.release_json, [*kit.files[:2], (name, junk), *kit.files[2:]])


@case("text-esc-in-member-name", "TXT-inert", "not listed in the signed metadata")
def _(kit: Kit) -> bytes:
    return _with_member(kit, "blobs/sha256/" + HOSTILE_TEXT)


@case("text-undecodable-member-name", "TXT-inert", "not listed in the signed metadata")
def _(kit: Kit) -> bytes:
    # Bytes that are not UTF-8 (tarfile hands them on as lone surrogates).
    return _with_member(kit, "blobs/sha256/\udcff\udcfe" + HOSTILE_TEXT)


@case("text-long-member-name", "TXT-inert", "not listed in the signed metadata")
def _(kit: Kit) -> bytes:
    # 1,500 characters in a pax path: longer than any message line may be, well inside
    # any bound on extended headers.
    return _with_member(kit, "blobs/sha256/" + HOSTILE_TEXT + "a" * 1500)


@case("text-esc-in-unsigned-metadata", "TXT-inert", "release metadata")
def _(kit: Kit) -> bytes:
    # Not signed by anyone: a version and a key id meant for the technician's terminal.
    d = json.loads(kit.release_json)
    d["signed"]["airlock"]["version"] = HOSTILE_TEXT + "1.0" + "v" * 20_000
    d["signatures"][0]["keyid"] = HOSTILE_TEXT + "ab" * 32
    return bundle(json.dumps(d).encode(), kit.files)


@case("text-surrogate-in-unsigned-metadata", "TXT-inert", "release metadata")
def _(kit: Kit) -> bytes:
    # A lone surrogate (legal as a JSON escape, not encodable as UTF-8) in every text.
    d = json.loads(kit.release_json)
    d["signed"]["airlock"]["version"] = "\udcff" + HOSTILE_TEXT
    d["signed"]["airlock"]["name"] = "vision\udcff"
    d["signatures"][0]["keyid"] = "\ud800" + "ab" * 32
    return bundle(json.dumps(d).encode(), kit.files)
