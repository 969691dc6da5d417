"""A bundle's metadata slot rewritten: in place and crash-safe, or into a new file.

``airlock sign`` adds a signature by rewriting only the bytes of the
metadata slot (see ``airlock.format.slot``): the tar header before it and every
blob after it stay where they are, byte for byte::

    with locked_bundle(path) as f:               # one signer at a time; finishes a crashed one
        head = BundleReader(f).head()
        rewrite_in_place(path, f, head, new_json)    # SlotFullError when it does not fit
    with open(path, "rb") as f, PartialFile(out) as partial:   # airlock.files
        copy_around_slot(f, head, new_json, partial.file)   # the same members around a new slot
        partial.publish()

**In place, crash-safe.** The new slot is first written whole to an intent
record beside the bundle (``.NAME.sign-intent``), fsynced with its
directory; only then is the slot overwritten and the bundle fsynced; then the
record is removed. A crash (kill -9, power cut) before the record is whole
leaves the bundle untouched and a record that fails its own checksum; after
that, the next ``airlock sign`` of the bundle finds the record and writes the
slot again (roll forward) before it does anything else. So once a sign has
run, the bundle holds the old metadata or the new, never a mix; in between,
a torn slot fails its signature check (exit 3), it installs nowhere.

**A copy** (``-o``, or a slot too full for one more signature) writes a new
file: what comes before ``airlock/release.json`` (a carried root) verbatim, a
new header and a slot sized for the new metadata, then the rest of the
archive byte for byte with ``os.copy_file_range`` (the kernel copies; a
filesystem with reflinks shares the extents).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from airlock.errors import AirlockError, LockedError, UsageError
from airlock.files import fsync_dir
from airlock.format.bundle import BundleHead
from airlock.format.slot import JSON_SPACE, RELEASE_PATH, SLOT_BLOCK, SlotFullError, metadata_slot
from airlock.format.writer import member_header
from airlock.limits import CHUNK, MAX_METADATA_BYTES

__all__ = [
    "SlotFullError",
    "copy_around_slot",
    "finish_interrupted",
    "intent_path",
    "locked_bundle",
    "rewrite_in_place",
]


def intent_path(bundle: Path) -> Path:
    """Where an in-place rewrite of ``bundle`` records its intent."""
    return bundle.with_name(f".{bundle.name}.sign-intent")


@contextlib.contextmanager
def locked_bundle(path: Path) -> Iterator[BinaryIO]:
    """``path`` open for reading and writing, held against any other ``airlock sign``.

    An interrupted in-place rewrite is finished first. The lock is on the
    file itself; the path is checked again after locking, since a signer
    that copied the bundle around a full slot renamed a new file over it.
    """
    while True:
        try:
            f = open(path, "r+b")  # noqa: SIM115 - closed below, or handed to the caller
        except OSError as e:
            raise UsageError(f"cannot open bundle {path} for signing: {e.strerror}") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise LockedError(f"another 'airlock sign' is writing {path}; run again when it "
                              "is done") from None
        try:
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except OSError:
            same = False
        if same:
            break
        f.close()
    with f:
        finish_interrupted(path, f)
        yield f


def _record(offset: int, slot: bytes, inode: int) -> bytes:
    header = {"offset": offset, "size": len(slot), "inode": inode,
              "sha256": hashlib.sha256(slot).hexdigest()}
    return json.dumps(header, sort_keys=True).encode() + b"\n" + slot


def _read_record(data: bytes) -> tuple[int, bytes, int] | None:
    """A whole, self-consistent intent record, or None (torn: it never reached the bundle)."""
    line, sep, slot = data.partition(b"\n")
    try:
        header = json.loads(line) if sep else None
        if not isinstance(header, dict):
            return None
        offset, size, inode, digest = (header["offset"], header["size"], header["inode"],
                                       header["sha256"])
    except (ValueError, KeyError, RecursionError):
        return None
    if not (isinstance(offset, int) and isinstance(size, int) and isinstance(inode, int)):
        return None
    if len(slot) != size or hashlib.sha256(slot).hexdigest() != digest:
        return None
    return offset, slot, inode


def finish_interrupted(path: Path, f: BinaryIO) -> bool:
    """Complete an in-place rewrite a crash interrupted (True if there was one).

    The caller holds the lock (:func:`locked_bundle`).
    """
    intent = intent_path(path)
    try:
        with intent.open("rb") as r:
            data = r.read(MAX_METADATA_BYTES + 4096)
    except FileNotFoundError:
        return False
    record = _read_record(data)
    st = os.fstat(f.fileno())
    if record is not None and record[2] == st.st_ino and record[0] + len(record[1]) <= st.st_size:
        offset, slot, _ = record
        _only_signatures(path, intent, os.pread(f.fileno(), len(slot), offset), slot)
        os.pwrite(f.fileno(), slot, offset)
        os.fsync(f.fileno())
    intent.unlink()
    fsync_dir(intent.parent)
    return record is not None


def _only_signatures(path: Path, intent: Path, current: bytes, new: bytes) -> None:
    """Refuse a record that would change what the bundle signs.

    A record this tool wrote only ever adds signatures to the metadata already
    in the slot: rolling it forward changes no signed byte. A record planted
    beside the bundle (``.NAME.sign-intent`` holding other metadata, a root
    hook, say) is refused before anything is written or signed, ``--yes`` or
    not. Only a slot torn mid-write (unreadable) takes the record as it is:
    then what gets signed is what the signer is shown next, as for any bundle.
    """
    from keys.signatures import Signable, same_signed

    try:
        Signable.from_bytes(current.rstrip(JSON_SPACE), "release")
    except AirlockError:
        return  # torn: the record is the only whole metadata there is
    if not same_signed(current.rstrip(JSON_SPACE), new.rstrip(JSON_SPACE)):
        raise UsageError(f"{intent} would change what {path.name} signs, not only add "
                         "signatures: this tool did not write it; nothing signed. Remove it "
                         "if nobody was signing this bundle, then sign again")


def rewrite_in_place(path: Path, f: BinaryIO, head: BundleHead, release_json: bytes,
                     crash: Callable[[str], None] | None = None) -> None:
    """Overwrite the slot of the locked bundle ``f`` with ``release_json``, crash-safe.

    Raises SlotFullError (nothing written) when it does not fit the slot.
    ``crash(step)`` is called between the steps, for tests that stop there.
    """
    slot = metadata_slot(release_json, head.slot_size)
    fd = f.fileno()
    intent = intent_path(path)
    try:
        with open(intent, "xb") as r:
            r.write(_record(head.slot_offset, slot, os.fstat(fd).st_ino))
            r.flush()
            os.fsync(r.fileno())
        fsync_dir(intent.parent)
    except OSError as e:
        intent.unlink(missing_ok=True)
        raise UsageError(f"cannot write {intent.name} beside {path} ({e.strerror}): nothing "
                         "signed; sign a copy elsewhere with -o") from None
    if crash:
        crash("after-intent")
    os.pwrite(fd, slot, head.slot_offset)
    os.fsync(fd)
    if crash:
        crash("after-slot")
    intent.unlink()
    fsync_dir(intent.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy_range(src: int, dst: int, start: int, end: int,
                progress: Callable[[int], None] | None) -> None:
    """Bytes ``start:end`` of ``src`` appended to ``dst``: in the kernel when it can."""
    offset = start
    use_kernel = True
    while offset < end:
        n = 0
        if use_kernel:
            try:
                n = os.copy_file_range(src, dst, min(end - offset, 1 << 30), offset)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                use_kernel = False
                continue
        else:
            data = os.pread(src, min(end - offset, CHUNK), offset)
            n = len(data)
            _write_all(dst, data)
        if n == 0:
            raise UsageError("the bundle shrank while it was copied; sign it again")
        offset += n
        if progress:
            progress(n)


def copy_around_slot(src: BinaryIO, head: BundleHead, release_json: bytes, dst: BinaryIO,
                     progress: Callable[[int], None] | None = None) -> int:
    """Write to ``dst`` the bundle ``src`` with its metadata replaced by ``release_json``.

    Every other member's bytes are copied unchanged; returns the bytes written.
    """
    slot = metadata_slot(release_json)
    dst.flush()
    out, inp = dst.fileno(), src.fileno()
    end = os.fstat(inp).st_size
    _copy_range(inp, out, 0, head.slot_header, progress)
    _write_all(out, member_header(RELEASE_PATH, len(slot)) + slot)
    tail = head.slot_offset + -(-head.slot_size // SLOT_BLOCK) * SLOT_BLOCK
    _copy_range(inp, out, tail, end, progress)
    os.fsync(out)
    return os.fstat(out).st_size
