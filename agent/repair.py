"""The same stick twice: a bundle of a release the device already has is read whole,
checked, and used to repair the store.

Installing the active release again proves the copy on the stick is intact
(every member hashed against the signed metadata, exit 3 otherwise) and
restores from it any store blob that ``fsck`` would find missing or
corrupt; release files that were hard links to a damaged blob are linked to
the restored one::

    result = reverify(layout, journal, store, release, reader, label="/media/usb/v2.airlock")
    result["repaired"]   # ["sha256:…"]: blobs restored from the bundle

Nothing enters the store until the whole bundle has been read and matched:
a corrupt copy changes nothing. Each restored blob and relinked file is
renamed into place atomically, so a crash leaves every file old or new,
never half (recovery empties ``staging/``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agent.journal import Journal
from agent.layout import Layout
from agent.store import ContentStore
from airlock.errors import AirlockError
from airlock.files import fsync_dir
from airlock.format.bundle import BundleReader
from airlock.format.oci import BLOB_PREFIX, hash_file
from airlock.format.ocicrypt import BlobOpener
from keys.release import Release

__all__ = ["relink", "reverify", "store_copy_intact"]


def store_copy_intact(store: ContentStore, digest: str, size: int) -> bool:
    """Whether the store holds ``digest`` whole and correct (hashed, as ``fsck`` does)."""
    path = store.path(digest)
    try:
        if path.stat().st_size != size:
            return False
        return hash_file(path)[0] == digest[7:]
    except OSError:
        return False


def reverify(layout: Layout, journal: Journal, store: ContentStore, release: Release,
             reader: BundleReader, label: str,
             progress: Callable[[int], None] | None = None,
             openers: dict[str, BlobOpener] | None = None) -> dict[str, Any]:
    """Read the whole bundle of the installed ``release``; restore damaged store blobs from it.

    ``openers`` (an encrypted release, ``agent.decrypt``): a blob is held as its
    plaintext, so that copy is checked, and restored by decrypting.
    """
    openers = openers or {}
    staged: dict[str, Path] = {}
    checked = 0
    expects = release.not_carried()
    try:
        # closing(): a failure stops the reader's threads before staged files are dropped.
        with contextlib.closing(reader.files(release.files, expects)) as members:
            for member in members:
                checked += 1
                opener = openers.get(member.digest)
                if member.digest in release.unused:  # another variant's: read past, not kept
                    member.verify(progress)
                elif opener is not None:
                    plain = opener.plain_digest
                    if store_copy_intact(store, plain, member.info.length):
                        member.verify(progress)
                    else:
                        staged[plain] = store.stage(member, progress, opener.stream(), plain)
                elif member.path.startswith(BLOB_PREFIX) and not store_copy_intact(
                        store, member.digest, member.info.length):
                    staged[member.digest] = store.stage(member, progress)
                else:
                    member.verify(progress)
    except BaseException:
        for path in staged.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise
    store.commit(staged)
    relinked = relink(layout, store, staged)
    repaired = sorted(staged)
    journal.append("reinstall-verified", release=release.id, bundle=label, files=checked,
                   repaired=repaired, relinked=relinked)
    what = (f"restored {len(repaired)} store blob(s) from it" if repaired
            else "the store already matched it")
    return {"installed": False, "verified": True, "repaired": repaired, "relinked": relinked,
            "files_checked": checked,
            "message": f"{release.id} (version {release.version}) is already installed; the "
                       f"bundle is intact ({checked} files checked) and {what}"}


def relink(layout: Layout, store: ContentStore, digests: Iterable[str]) -> list[str]:
    """Point every release file made from one of ``digests`` at its (restored) store blob.

    A hard link shares the damaged blob's inode, so restoring the store alone
    would leave the release reading the old bytes.
    """
    wanted = set(digests)
    done: list[str] = []
    if not wanted:
        return done
    for rid in layout.release_ids():
        try:
            release = layout.load_release(rid)
        except AirlockError:
            continue  # fsck reports a broken release; this repair is about blobs
        for m in release.models:
            mdir = layout.release_dir(rid) / "models" / m.name
            if not mdir.is_dir():
                continue
            for name, digest in m.linked_files():
                if digest in wanted:
                    tmp = layout.staging / f"relink-{rid}-{m.name}-{name}"
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
                    os.link(store.path(digest), tmp)
                    os.replace(tmp, mdir / name)
                    done.append(f"{rid}/models/{m.name}/{name}")
            fsync_dir(mdir)
    return done
