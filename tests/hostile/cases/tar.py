"""The tar attacks: traversal, links, special files, duplicates and order, sparse and
oversized members, corrupt archives (written header by header, tests/support/tarsurgery.py).

Each case registers itself in ``tests.hostile.cases.catalogue.CASES``.
"""

from __future__ import annotations

import tarfile
from typing import Any

from tests.hostile.cases.catalogue import _swap_file, case
from tests.support.kit import Kit
from tests.support.tarsurgery import (
    BLOCK,
    END,
    bundle,
    fix_checksum,
    header_offset,
    member,
    regular,
    tarinfo,
)

# tar: traversal, absolute paths -------------------------------------------------------


def _renamed(kit: Kit, which: str, name: str, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    path, _data = kit.blob(which)
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(name, len(d)), d, fmt) if p == path else regular(p, d)
    return out + END


@case("tar-dotdot", "TAR-traversal", "unsafe path")
def _(kit: Kit) -> bytes:
    return _renamed(kit, "model", "../../../../tmp/airlock-pwned")


@case("tar-dotdot-inside-layout", "TAR-traversal", "unsafe path")
def _(kit: Kit) -> bytes:
    return _renamed(kit, "model", "blobs/sha256/../../../etc/cron.d/x")


@case("tar-absolute", "TAR-traversal", "unsafe path")
def _(kit: Kit) -> bytes:
    return _renamed(kit, "model", "/etc/cron.d/airlock")


@case("tar-backslash", "TAR-traversal", "unsafe path")
def _(kit: Kit) -> bytes:
    return _renamed(kit, "model", "blobs\\sha256\\..\\..\\x")


@case("tar-dot-prefix", "TAR-traversal", "unsafe path")
def _(kit: Kit) -> bytes:
    return _renamed(kit, "index", "./index.json")


@case("tar-pax-path-override", "TAR-pax", "unsafe path")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    ti = tarinfo(path, len(data))
    ti.pax_headers = {"path": "../../../root/.ssh/authorized_keys"}
    return bundle(kit.release_json, []).removesuffix(END) + b"".join(
        member(ti, d) if p == path else regular(p, d) for p, d in kit.files) + END


@case("tar-pax-nul-in-path", "TAR-pax", "unsafe path")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    ti = tarinfo(path, len(data))
    ti.pax_headers = {"path": path + "\x00../../x"}
    return bundle(kit.release_json, []).removesuffix(END) + b"".join(
        member(ti, d) if p == path else regular(p, d) for p, d in kit.files) + END


# tar: links ----------------------------------------------------------------------------


@case("tar-symlink-blob", "TAR-links", "is a link")
def _(kit: Kit) -> bytes:
    path, _ = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(p, 0, tarfile.SYMTYPE, linkname="/etc/shadow")) if p == path else regular(p, d)
    return out + END


@case("tar-hardlink-blob", "TAR-links", "is a link")
def _(kit: Kit) -> bytes:
    path, _ = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(p, 0, tarfile.LNKTYPE, linkname="/etc/passwd")) if p == path else regular(p, d)
    return out + END


@case("tar-symlink-then-write-through", "TAR-links", "is a link")
def _(kit: Kit) -> bytes:
    # Classic: a link named like a directory, then a file "inside" it.
    return (regular("airlock/release.json", kit.release_json)
            + member(tarinfo("blobs/sha256", 0, tarfile.SYMTYPE, linkname="/tmp"))
            + b"".join(regular(p, d) for p, d in kit.files) + END)


# tar: special files ----------------------------------------------------------------------


def _special(kit: Kit, type: bytes, **kw: Any) -> bytes:
    path, _ = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(p, 0, type, **kw)) if p == path else regular(p, d)
    return out + END


@case("tar-char-device", "TAR-special", "special file")
def _(kit: Kit) -> bytes:
    return _special(kit, tarfile.CHRTYPE, devmajor=1, devminor=3)


@case("tar-block-device", "TAR-special", "special file")
def _(kit: Kit) -> bytes:
    return _special(kit, tarfile.BLKTYPE, devmajor=8, devminor=0)


@case("tar-fifo", "TAR-special", "special file")
def _(kit: Kit) -> bytes:
    return _special(kit, tarfile.FIFOTYPE)


@case("tar-directory", "TAR-special", "is a directory")
def _(kit: Kit) -> bytes:
    return (regular("airlock/release.json", kit.release_json)
            + member(tarinfo("blobs/sha256", 0, tarfile.DIRTYPE, mode=0o777))
            + b"".join(regular(p, d) for p, d in kit.files) + END)


@case("tar-contiguous-type", "TAR-special", "special file")
def _(kit: Kit) -> bytes:
    path, _data = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(p, len(d), tarfile.CONTTYPE), d) if p == path else regular(p, d)
    return out + END


# tar: duplicates and order ------------------------------------------------------------------


@case("tar-duplicate-blob", "TAR-duplicate", "appears twice")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    evil = bytes(len(data))
    return bundle(kit.release_json, [*kit.files, (path, evil)])


@case("tar-duplicate-release", "TAR-duplicate", "appears twice")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, [("airlock/release.json", kit.other_release_json), *kit.files])


@case("tar-release-not-first", "TAR-duplicate", "must start with airlock/release.json")
def _(kit: Kit) -> bytes:
    return b"".join(regular(p, d) for p, d in kit.files[:1]) + bundle(kit.release_json, kit.files[1:])


@case("tar-root-after-release", "TAR-duplicate", "must come first")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, [("airlock/root.json", kit.trust_path.read_bytes()), *kit.files])


@case("tar-missing-blob", "TAR-duplicate", "listed in the signed metadata")
def _(kit: Kit) -> bytes:
    path, _ = kit.blob("model")
    return bundle(kit.release_json, _swap_file(kit, path, None))


# tar: sparse and oversized -----------------------------------------------------------------


@case("tar-gnu-sparse", "TAR-sparse", "only regular files")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    ti = tarinfo(path, len(data), tarfile.GNUTYPE_SPARSE)
    ti.sparse = [(0, len(data))]
    buf = bytearray(ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
    # GNU sparse map: one (offset, numbytes) entry and the real size, octal.
    buf[386:398] = b"%011o\0" % 0
    buf[398:410] = b"%011o\0" % len(data)
    buf[483:495] = b"%011o\0" % (1 << 40)  # realsize: a 1 TiB file
    head = fix_checksum(bytes(buf))
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += head + d + b"\0" * (-len(d) % BLOCK) if p == path else regular(p, d)
    return out + END


@case("tar-pax-sparse", "TAR-sparse", "only regular files")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    ti = tarinfo(path, len(data))
    ti.pax_headers = {"GNU.sparse.size": str(1 << 40), "GNU.sparse.map": f"0,{len(data)}"}
    return bundle(kit.release_json, []).removesuffix(END) + b"".join(
        member(ti, d) if p == path else regular(p, d) for p, d in kit.files) + END


@case("tar-size-smaller-than-signed", "TAR-sparse", "signed metadata says")
def _(kit: Kit) -> bytes:
    path, _data = kit.blob("model")
    out = regular("airlock/release.json", kit.release_json)
    for p, d in kit.files:
        out += member(tarinfo(p, len(d) // 2), d[: len(d) // 2]) if p == path else regular(p, d)
    return out + END


@case("tar-pax-size-override", "TAR-pax", "signed metadata says")
def _(kit: Kit) -> bytes:
    path, data = kit.blob("model")
    ti = tarinfo(path, len(data))
    ti.pax_headers = {"size": str(1 << 33)}
    return bundle(kit.release_json, []).removesuffix(END) + b"".join(
        member(ti, d) if p == path else regular(p, d) for p, d in kit.files) + END


@case("tar-pax-huge-extended-header", "TAR-pax", "extended tar header")
def _(kit: Kit) -> bytes:
    # A pax header that claims 1 GiB of records: read whole into memory by a naive reader.
    head = tarinfo("././@PaxHeader", 1 << 30, tarfile.XHDTYPE)
    return (member(head, b"30 path=airlock/release.json\n") + b"x" * 4096)


@case("tar-gnu-huge-longname", "TAR-pax", "extended tar header")
def _(kit: Kit) -> bytes:
    head = tarinfo("././@LongLink", 1 << 30, tarfile.GNUTYPE_LONGNAME)
    return member(head, b"airlock/release.json\0", tarfile.GNU_FORMAT) + b"y" * 4096


@case("tar-pax-sparse-map-unterminated", "TAR-pax", "not a bundle")
def _(kit: Kit) -> bytes:
    # A pax 1.0 sparse map that never ends: tarfile's parser raised ValueError (exit 1).
    ti = tarinfo("airlock/release.json", BLOCK)
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                      "GNU.sparse.realsize": str(1 << 40)}
    return member(ti, b"1000\n" + b"7" * (BLOCK - 5))


@case("tar-pax-sparse-map-garbage", "TAR-pax", "not a bundle")
def _(kit: Kit) -> bytes:
    ti = tarinfo("airlock/release.json", BLOCK)
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    return member(ti, b"lots\n" + b"\0" * (BLOCK - 5)) + END


# tar: corrupt -----------------------------------------------------------------------------------


@case("tar-bad-header-checksum", "TAR-corrupt", "not a bundle")
def _(kit: Kit) -> bytes:
    b = bytearray(kit.good)
    b[0] ^= 0x01  # first header's name changes; its checksum no longer matches
    return bytes(b)


@case("tar-corrupt-later-header", "TAR-corrupt", "lacks")
def _(kit: Kit) -> bytes:
    hdr = header_offset(kit.good, kit.blob("model")[0])
    b = bytearray(kit.good)
    b[hdr + 148] = ord("9")  # checksum field garbage
    return bytes(b)


@case("tar-truncated-in-blob", "TAR-corrupt", "truncated")
def _(kit: Kit) -> bytes:
    _path, data = kit.blob("model")
    start = kit.good.find(data)
    return kit.good[: start + len(data) // 2]


@case("tar-truncated-in-header", "TAR-corrupt", "lacks")
def _(kit: Kit) -> bytes:
    return kit.good[: header_offset(kit.good, kit.blob("model")[0]) + 100]


@case("tar-truncated-after-metadata", "TAR-corrupt", "listed in the signed metadata")
def _(kit: Kit) -> bytes:
    return bundle(kit.release_json, [])


@case("tar-release-not-json", "TAR-corrupt", "not valid TUF metadata")
def _(kit: Kit) -> bytes:
    return bundle(b"\xff\xfe not json at all", kit.files)
