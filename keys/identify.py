"""What a file handed to Airlock actually is, in words a user recognises.

When a command wants a trust root and is given a public key, a private key,
a bundle or a spec, the right answer is one line naming both the file's kind
and the kind expected, never a JSON decoder's message::

    describe(Path("keys/release.pub").read_bytes())   # "an Airlock public key (key id a7409c7d…)"
    describe(b"\\x00\\x01")                             # "binary data, not text"

Bytes in, words out: it decides nothing. :func:`misplaced` reads the first
bytes of a file that failed to open as a bundle, to say what it is instead::

    misplaced("keys/release.pub")   # "keys/release.pub is an Airlock public key (key id …), not a bundle"
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

__all__ = ["describe", "misplaced"]

# TUF's role names, as a user of Airlock calls them.
_ROLE_WORDS = {
    "root": "a trust root",
    "targets": "signed release metadata (release.json)",
    "snapshot": "TUF snapshot metadata",
    "timestamp": "TUF timestamp metadata",
}
_TAR_MAGIC_OFFSET = 257


def describe(data: bytes) -> str:
    """A few words naming what ``data`` is (a key, a bundle, a spec, JSON, binary data...)."""
    if not data.strip():
        return "an empty file"
    head = data[:4096]
    if head.lstrip().startswith(b"-----BEGIN"):
        if b"PRIVATE KEY" in head:
            return "a private key (PEM)"
        if b"PUBLIC KEY" in head:
            return "a public key (PEM)"
        return "a PEM file"
    if len(data) >= 512 and data[_TAR_MAGIC_OFFSET:_TAR_MAGIC_OFFSET + 5] == b"ustar":
        name = data[:100].split(b"\0", 1)[0]
        if name in (b"airlock/release.json", b"airlock/root.json"):
            return "an Airlock bundle"
        return "a tar archive"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data, not text"
    try:
        doc = json.loads(text)
    except ValueError:
        return _text_kind(text)
    return _json_kind(doc)


def misplaced(path: str, expected: str = "a bundle") -> str | None:
    """"PATH is <what it is>, not a bundle" for a regular file that is plainly something
    else (a key, a trust root, a spec, JSON, text); None when it may be a damaged bundle
    (a tar archive, binary data) or cannot be read, so the caller's own error stands."""
    try:
        # No link followed, no FIFO waited on: this only names a file already refused.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        head = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    kind = describe(head)
    if kind in ("a tar archive", "an Airlock bundle", "binary data, not text"):
        return None
    return f"{path} is {kind}, not {expected}"


def _json_kind(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "JSON that is not an object"
    if {"keytype", "keyval"} <= doc.keys():
        keyid = doc.get("keyid")
        return ("an Airlock public key" + (f" (key id {keyid[:8]}…)" if isinstance(keyid, str)
                                            else ""))
    signed = doc.get("signed")
    if isinstance(signed, dict) and "signatures" in doc:
        role = signed.get("_type")
        return _ROLE_WORDS.get(str(role), f"TUF metadata of type {str(role)[:40]!r}")
    if "signatures" in doc or "signed" in doc:
        return "damaged TUF metadata"
    return "JSON that is not TUF metadata"


def _text_kind(text: str) -> str:
    first = {line.split(":", 1)[0].strip() for line in text.splitlines()[:200] if ":" in line}
    if {"name", "version"} <= first and ("models" in first or "images" in first):
        return "a release spec (airlock.yaml)"
    if "sink" in first or "device_id" in first:
        return "an agent configuration (agent.yaml)"
    return "text that is not JSON"
