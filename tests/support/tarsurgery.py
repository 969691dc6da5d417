"""Tar streams written by hand, header by header, so the reader (not tarfile's writer) must refuse them.

    ti = tarinfo("blobs/sha256/" + digest, 1 << 30)            # a header that lies about the size
    evil = bundle(kit.release_json, kit.files[:1]).removesuffix(END) + member(ti, data) + END
    signed = kit.signed(); set_target(signed, "index.json", new_index)
    resigned = bundle(sign_dict(signed, [kit.release]), files)  # as an attacker holding a key

``member`` uses ``TarInfo.tobuf``; raw byte surgery on a header goes through
``fix_checksum`` (and ``header_offset`` finds one) so tarfile still parses it.
``sign_dict`` signs a mutated signed part exactly as Airlock does, with any key.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Sequence
from typing import Any

from securesystemslib.signer import Signer

BLOCK = 512


def tarinfo(name: str, size: int, type: bytes = tarfile.REGTYPE, **kw: Any) -> tarfile.TarInfo:
    """A header for ``name`` claiming ``size`` bytes (mode 0644, mtime 0); ``kw`` sets any field."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.type, ti.mode, ti.mtime = size, type, 0o644, 0
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def member(ti: tarfile.TarInfo, data: bytes = b"", fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """Header(s) for ``ti`` then ``data`` padded to a block; the header may lie about the size."""
    head = ti.tobuf(fmt, "utf-8", "surrogateescape")
    return head + data + b"\0" * (-len(data) % BLOCK)


def regular(name: str, data: bytes) -> bytes:
    """An honest regular-file member."""
    return member(tarinfo(name, len(data)), data)


END = b"\0" * (2 * BLOCK)


def fix_checksum(block: bytes) -> bytes:
    """Recompute a ustar header's checksum so tarfile accepts our surgery."""
    b = bytearray(block[:BLOCK])
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\0 " % sum(b)
    return bytes(b) + block[BLOCK:]


def header_offset(tar: bytes, name: str) -> int:
    """Offset of the ustar header block whose name field starts with ``name``."""
    key = name.encode()[:100]
    for at in range(0, len(tar), BLOCK):
        if tar[at : at + len(key)] == key:
            return at
    raise AssertionError(f"{name} has no header")


def bundle(release_json: bytes, files: Sequence[tuple[str, bytes]], *,
           root_json: bytes | None = None, end: bytes = END) -> bytes:
    """A bundle from its parts: ``airlock/root.json`` (if given), release.json, files, ``end``."""
    out = b""
    if root_json is not None:
        out += regular("airlock/root.json", root_json)
    out += regular("airlock/release.json", release_json)
    for name, data in files:
        out += regular(name, data)
    return out + end


def sign_dict(signed: dict[str, Any], signers: Sequence[Signer], *,
              release_form: bool = True) -> bytes:
    """Sign a (mutated) signed part exactly as Airlock does; any key, any content."""
    if release_form:
        payload = json.dumps(signed, sort_keys=True, separators=(",", ":"),
                             ensure_ascii=False, allow_nan=False).encode()
    else:
        from securesystemslib.formats import encode_canonical

        payload = encode_canonical(signed).encode()
    sigs = [s.sign(payload).to_dict() for s in signers]
    return json.dumps({"signed": signed, "signatures": sigs}).encode()


def set_target(signed: dict[str, Any], path: str, data: bytes | None) -> None:
    """Point the signed list at ``data`` for ``path`` (or drop it)."""
    if data is None:
        signed["targets"].pop(path, None)
    else:
        signed["targets"][path] = {"length": len(data),
                                   "hashes": {"sha256": hashlib.sha256(data).hexdigest()}}
