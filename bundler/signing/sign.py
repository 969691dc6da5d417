"""Sign a bundle that is already built: one signature more, not one blob touched.

A release team's keys never meet. ``airlock build`` signs with what it has
(or nothing, ``--unsigned``); each signer then adds theirs to the bundle,
or sends a detached signature that a coordinator merges::

    with SigningSession.open(Path("vision-1.2.0.airlock")) as s:   # locked; a crashed sign finished
        shown = s.describe()                        # what the command line shows before asking
        sig = s.doc.sign(signer)                    # the token, the KMS or the key file signs
        result = s.save([sig])                      # in place, crash-safe (bundler.signing.slot_rewrite)
    sig_file = s.doc.detach(sig, signer.public_key) # or: SIG.json for a coordinator, bundle untouched
    with SigningSession.open(path) as s:
        s.save([s.doc.check(DetachedSignature.from_bytes(sig_file))])   # refused if for other metadata

Only the metadata is read (the blobs' digests are in it and the signature
covers them; ``airlock verify`` hashes the blobs). ``save`` rewrites the
metadata slot in place when the new metadata fits it, else, or with an
``output``, copies the bundle around a new slot and renames the copy into
place. The release is read strictly (``keys.release``) before anyone is
asked to sign it: a release a device would refuse is exit 3 here too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from securesystemslib.signer import Signature

from airlock.console import Progress, no_progress
from airlock.errors import UsageError
from airlock.files import PartialFile
from airlock.format.bundle import BundleHead, BundleReader
from airlock.format.parts import PartSet, PartsReader, resolve_media
from airlock.format.slot import SlotFullError
from bundler.build.output import check_output, is_bundle_file
from bundler.signing.slot_rewrite import copy_around_slot, locked_bundle, rewrite_in_place
from keys.release import Release
from keys.signatures import Signable

__all__ = ["SaveResult", "SigningSession", "describe_release"]


@dataclass
class SaveResult:
    path: Path
    in_place: bool  # only the metadata slot's bytes were rewritten
    written: int  # bytes written: the slot, or the whole copy
    signers: list[str] = field(default_factory=list)


def describe_release(release: Release, doc: Signable) -> dict[str, Any]:
    """What a signer is shown before signing: everything a device will act on."""
    return {
        "name": release.name,
        "version": release.version,
        "sequence": release.sequence,
        "expires": release.expires.isoformat(),
        "models": [{"name": m.name, "file": m.file_name, "size": m.size, "blob": m.blob,
                    "golden": m.health.inputs is not None} for m in release.models],
        "images": [{"ref": i.ref, "platform": i.platform, "manifest": i.manifest}
                   for i in release.images],
        "hooks": {"post_switch": release.hooks.post_switch, "probe": release.hooks.probe},
        "rings": list(release.rings),
        "flags": dict(release.flags),
        "delta_base": release.delta.base_sequence if release.delta else None,
        "files": len(release.files),
        "size": sum(i.length for i in release.files.values()),
        "signed_sha256": doc.signed_sha256,
        "signers": doc.signers,
    }


class SigningSession:
    """A bundle open for signing: its metadata parsed, the file locked when writable."""

    def __init__(self, path: Path, f: BinaryIO, head: BundleHead, *, writable: bool) -> None:
        self.path, self._f, self.head, self.writable = path, f, head, writable
        self.doc = Signable.from_bytes(head.release_json, "release")
        self.release = Release.from_metadata(self.doc.md)

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path, *, write: bool = True,
             whole: bool = True) -> Iterator[SigningSession]:
        """Open ``path``; ``write=False`` reads it only (a detached signature, a copy).

        A split bundle (``NAME.partNNN``, ``NAME.parts.json``) is read through its
        parts for a detached signature (``whole=False``); it is refused for a
        signature saved into it or into a copy, since its parts and
        ``parts.json`` would no longer agree.
        """
        found = None if path.is_dir() else resolve_media(path)
        if isinstance(found, PartSet):
            if whole:
                raise UsageError(
                    f"{path} is part of a split bundle ({len(found.parts)} parts): sign the "
                    "bundle before 'airlock split' (build it without --max-size), or 'airlock "
                    "join' it, sign it and split it again; --detached signs the parts as they are")
            with PartsReader(found) as parts:
                stream = cast(BinaryIO, parts)  # a RawIOBase is a binary IO
                yield cls(path, stream, _head(stream), writable=False)
            return
        if write:
            with locked_bundle(path) as f:
                yield cls(path, f, _head(f), writable=True)
            return
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as e:
            raise UsageError(f"cannot open bundle {path}: {e.strerror}") from None
        with f:
            yield cls(path, f, _head(f), writable=False)

    def describe(self) -> dict[str, Any]:
        return describe_release(self.release, self.doc)

    def save(self, signatures: Sequence[Signature], output: Path | None = None, *,
             force: bool = False, inputs: Sequence[Path] = (),
             progress: Progress = no_progress) -> SaveResult:
        """Write the metadata with ``signatures`` added: in place, or to ``output``.

        In place needs the session opened for writing; a slot without room
        for the new metadata turns it into a copy renamed over the bundle.
        ``output`` is never one of ``inputs`` (keys, signature files) and
        replaces only a bundle unless ``force``.
        """
        new_json = self.doc.with_signatures(list(signatures))
        signers = list(Signable.from_bytes(new_json, "release").signers)
        target = output or self.path
        if output is None:
            if not self.writable:
                raise UsageError(f"{self.path} is open read-only; give -o to write a copy")
            try:
                rewrite_in_place(self.path, self._f, self.head, new_json)
                return SaveResult(self.path, True, self.head.slot_size, signers)
            except SlotFullError:
                pass  # copy around a bigger slot, renamed over the bundle
        else:
            check_output(output, [self.path, *inputs], force=force, kind="an Airlock bundle",
                         is_ours=is_bundle_file)
        total = os.fstat(self._f.fileno()).st_size

        def tick(n: int) -> None:
            progress("copying", n, total)

        with PartialFile(target, parents=True) as partial:
            written = copy_around_slot(self._f, self.head, new_json, partial.file, tick)
            partial.publish()
        return SaveResult(target, False, written, signers)


def _head(f: BinaryIO) -> BundleHead:
    f.seek(0)
    return BundleReader(f).head()
