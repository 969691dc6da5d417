"""Parsing before the signature check (issue 13, class 3): pathological pax headers and
metadata shapes, refused from their size before they cost time or memory.

Each case registers itself in ``tests.hostile.cases.catalogue.CASES``.
"""

from __future__ import annotations

import tarfile

from tests.hostile.cases.catalogue import case
from tests.support.kit import Kit
from tests.support.tarsurgery import (
    END,
    bundle,
    fix_checksum,
    member,
    regular,
    tarinfo,
)

# parsing before the signature check (issue 13, class 3) -----------------------------------------


def _extended(type: bytes, data: bytes, name: str = "././@PaxHeader") -> bytes:
    """One extended header (pax local or global, GNU long name) carrying ``data``."""
    fmt = tarfile.GNU_FORMAT if type == tarfile.GNUTYPE_LONGNAME else tarfile.PAX_FORMAT
    return member(tarinfo(name, len(data), type), data, fmt)


# The worst input for tarfile's pax parser on Python < 3.11.10 (CVE-2024-6232): a run of
# digits, which its hdrcharset search scans in quadratic time.
def _quadratic_pax(size: int) -> bytes:
    return b"1" * size


def _pax_comment(size: int) -> bytes:
    """One well-formed pax record of ``size`` bytes (``4096 comment=xxx…\\n``)."""
    head = f"{size} comment=".encode()
    return head + b"x" * (size - len(head) - 1) + b"\n"


@case("parse-pax-header-chain", "RES-parse", "extended tar headers in a row")
def _(kit: Kit) -> bytes:
    # tarfile recursed once per header: 5,000 crashed it with RecursionError (exit 1).
    chain = _extended(tarfile.XHDTYPE, b"29 path=airlock/release.json\n") * 5000
    return chain + bundle(kit.release_json, kit.files)


@case("parse-gnu-longname-chain", "RES-parse", "extended tar headers in a row")
def _(kit: Kit) -> bytes:
    link = _extended(tarfile.GNUTYPE_LONGNAME, b"airlock/release.json\0", "././@LongLink")
    return link * 5000 + bundle(kit.release_json, kit.files)


@case("parse-pax-header-chain-before-blob", "RES-parse", "extended tar headers in a row")
def _(kit: Kit) -> bytes:
    # After a good signed head, in the part of the tar the signature does not cover.
    path, _data = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        if p == path:
            out += _extended(tarfile.XHDTYPE, b"12 uid=1000\n") * 3
        out += regular(p, d)
    return out + END


@case("parse-pax-header-cve-2024-6232", "RES-parse", "extended tar header")
def _(kit: Kit) -> bytes:
    # Under the old 1 MiB cap: about 25 minutes of CPU on Python 3.11.7, holding the lock.
    return (_extended(tarfile.XHDTYPE, _quadratic_pax((1 << 20) - 512))
            + bundle(kit.release_json, kit.files))


@case("parse-pax-headers-on-every-member", "RES-parse", "bytes of extended tar headers")
def _(kit: Kit) -> bytes:
    # Each header within the cap, a global and a local one on every member: the whole
    # bundle's extended headers are bounded too.
    # Valid pax records (a long comment), so every Python's tarfile reads them and
    # the bound is what stops it: 3.11.2 refuses a garbage record at once instead.
    worst = _extended(tarfile.XGLTYPE, _pax_comment(4096)) + _extended(
        tarfile.XHDTYPE, _pax_comment(4096))
    out = worst + regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += worst + regular(p, d)
    return out + END


@case("parse-negative-size-header", "RES-parse", "negative size")
def _(kit: Kit) -> bytes:
    # A base-256 size of -1024 on a pax header: tarfile would read backwards.
    head = bytearray(tarinfo("././@PaxHeader", 0, tarfile.XHDTYPE).tobuf(tarfile.USTAR_FORMAT))
    head[124:136] = b"\xff" + ((-1024) & ((1 << 88) - 1)).to_bytes(11, "big")
    return fix_checksum(bytes(head)) + bundle(kit.release_json, kit.files)


def _empty_lists(size: int) -> bytes:
    """Unsigned metadata of ``size`` bytes, nearly all ``[]``: the most objects per byte."""
    head = b'{"signatures":[],"signed":{"_type":"targets","x":['
    return head + (b"[]," * ((size - len(head) - 2) // 3))[:-1] + b"]}}"


@case("parse-release-json-empty-lists", "RES-parse", "JSON values")
def _(kit: Kit) -> bytes:
    # 32 MiB of these made the agent allocate ~900 MiB before the signature check.
    return bundle(_empty_lists(3 << 20), kit.files)


@case("parse-root-json-empty-lists", "RES-parse", "JSON values")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, kit.files, root_json=_empty_lists(3 << 20))


@case("parse-release-json-32mib", "RES-parse", "larger than any metadata may be")
def _(kit: Kit) -> bytes:
    # The review's input: refused from its tar header, before a byte of it is read.
    return bundle(_empty_lists(32 << 20), kit.files)
