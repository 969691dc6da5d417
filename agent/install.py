"""Install a bundle in one streaming pass: verify, store, build, check, switch, probe.

::

    with AgentLock(layout.lock):
        recover(layout)
        with open("vision-3.airlock", "rb") as f:
            result = install(layout, f, size=os.path.getsize("vision-3.airlock"))

The order is what makes it safe:

1. the signed metadata at the front of the tar is verified (signature,
   threshold, expiry, ring, anti-rollback) before any blob is read;
2. the free space for the blobs not yet in the store is checked;
3. every blob is hashed while it is written to ``staging/`` and fsynced (on
   the reader's threads, several blobs at once); blobs already stored are
   only read past; once the whole bundle has been read and every
   blob matched, the staged blobs are renamed into the store (a rejected or
   truncated bundle leaves ROOT as it was, journal aside);
4. the release directory is built in ``staging/`` (hard links into the
   store) and renamed into ``releases/``;
5. its models are health-checked; images go to the image sink;
6. ``current`` is switched atomically, the post-switch hook runs and the
   probe is polled; on failure the links are put back (exit 4);
7. the accepted sequence (and a rotated trust root) is persisted and the
   transaction committed.

A bundle of the release that is already active is still read whole: exit 0
only when it is intact, and any damaged store blob is restored from it
(``agent.repair``).

A crash anywhere before the commit leaves a transaction record that recovery
uses to put the old release back; see ``agent.recovery``. Any error before
the commit is undone the same way before it reaches the user.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from agent.activation import activate, health_check
from agent.decrypt import open_release
from agent.faults import crash_point
from agent.feature_flags import apply_flags, effective, flags_bytes, plain
from agent.hold import arm, disarm
from agent.journal import Journal
from agent.layout import Layout
from agent.recovery import undo
from agent.release_needs import (
    check_references,
    check_variant_blobs,
    pick_variants,
)
from agent.repair import relink, reverify, store_copy_intact
from agent.self.from_release import check_release_kit
from agent.store import ContentStore
from agent.switch import Transaction, read_link
from agent.timefloor import explain_expired, judge_now, raise_floor
from airlock.console import human_size
from airlock.errors import (
    AirlockError,
    ExpiredError,
    HealthCheckError,
    NoSpaceError,
    PreconditionError,
    RejectedError,
    RollbackError,
    UpstreamSignatureError,
)
from airlock.files import fsync_dir, remove_tree, write_atomic, write_json
from airlock.format.bundle import BundleHead, BundleReader
from airlock.format.oci import BLOB_PREFIX
from airlock.format.ocicrypt import BlobOpener
from airlock.format.parts import explain
from airlock.limits import MAX_EVIDENCE_BLOB_BYTES
from keys.release import Release
from keys.signatures import same_signed
from keys.trust import TrustRoot

__all__ = ["install", "load_sequences"]


def load_sequences(layout: Layout) -> dict[str, int]:
    """Strict (``Layout.load_sequences``): damage is exit 5, never "nothing accepted yet"."""
    return layout.load_sequences()


def _peak_rss_mb() -> float | None:
    """This process's RSS high-water mark (VmHWM; ru_maxrss would include a parent's, as
    Linux carries it across fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _verify_head(layout: Layout, reader: BundleReader, ring: str | None,
                 store: ContentStore) -> tuple[BundleHead, TrustRoot, TrustRoot, Any]:
    trust = layout.load_trust()
    head = reader.head()
    judged = judge_now(layout)  # expiry at max(clock, time floor): a reset clock lets nothing stale in
    try:
        new_trust, verified = trust.verify_head(head.release_json, head.root_json, ring=ring,
                                                now=judged.now)
    except ExpiredError as e:
        raise explain_expired(e, judged) from None
    release = verified.release
    have = load_sequences(layout).get(release.name)
    new_trust.check_sequence(release, have)
    check_release_kit(layout, release)  # an older agent kit is refused like an older sequence
    check_references(release, store, have)
    return head, trust, new_trust, verified


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _build_release_dir(staged: Path, release: Release, head: BundleHead,
                       meta: dict[str, bytes], store: ContentStore, info: dict[str, Any],
                       flags: dict[str, Any]) -> None:
    with contextlib.suppress(FileNotFoundError):
        remove_tree(staged, staged.parent)
    staged.mkdir()
    models = staged / "models"
    models.mkdir()
    for m in release.models:
        mdir = models / m.name
        # The model, its external data and golden data: plain, distinct names (keys.signed_fields).
        for name, digest in m.linked_files():
            store.link(digest, mdir / name)
        fsync_dir(mdir)
    fsync_dir(models)
    _write_file(staged / "release.json", head.release_json)
    if release.has_variants():  # which variant of each model this device runs
        _write_file(staged / "variants.json",
                    (json.dumps(release.variants(), indent=2, sort_keys=True) + "\n").encode())
    _write_file(staged / "flags.json",
                (json.dumps(flags, indent=2, sort_keys=True) + "\n").encode())
    _write_file(staged / "installed.json", (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
    if "index.json" in meta:
        _write_file(staged / "index.json", meta["index.json"])
    fsync_dir(staged)


def install(layout: Layout, stream: IO[bytes], *, label: str = "-", switch: bool = True,
            progress: Callable[[int], None] | None = None,
            hold: float | None = None, unattended: bool = False,
            gate: Callable[[Release], None] | None = None) -> dict[str, Any]:
    """Install the bundle read from ``stream``; the caller holds the lock and has recovered.

    ``hold`` (seconds) switches but keeps the previous release armed until
    ``airlock-agent commit`` (``agent.hold``). The steps are the module
    docstring's, one function each. ``unattended`` (the drop folder) refuses a
    release an operator rolled back, once its signed metadata is verified; an
    attended install of it (the ``install`` command) clears that mark
    (``agent.operator_rollbacks``). ``gate(release)`` (a directed device's visit,
    ``agent.directed``) may refuse the verified release before anything changes.
    """
    started = time.monotonic()
    config = layout.load_config()
    journal = Journal(layout.journal)
    store = ContentStore(layout)
    reader, front = _read_front(layout, stream, label, config.ring, store, journal)
    if isinstance(front, bytes):
        # A flags bundle: applied on its own; models, images and links are not touched.
        return apply_flags(layout, front, label)
    head, trust, new_trust, verified = front
    if gate is not None:  # a directed device: only what its signed visit names
        try:
            gate(verified.release)
        except RejectedError as e:
            journal.append("rejected", release=verified.release.id, bundle=label, reason=str(e),
                           error=type(e).__name__)
            raise
    # One variant per model, picked by this device's facts before anything changes (exit 3).
    release: Release = pick_variants(layout, journal, verified.release, label)
    if release.has_variants():
        try:
            check_references(release, store, load_sequences(layout).get(release.name),
                              picked=True)
        except RejectedError as e:
            journal.append("rejected", release=release.id, bundle=label, reason=str(e),
                           error=type(e).__name__)
            raise
        check_variant_blobs(journal, store, release, label)
    crash_point("after-head-verified")
    # An encrypted release: every blob key unwrapped now, before anything is read or changed.
    openers = open_release(layout, release)

    active = read_link(layout, "current")
    if active != release.id:
        _operator_decision(layout, journal, release, label, unattended)
    if hold is not None and active is None and switch:
        raise PreconditionError("--hold needs a release to go back to; none is active yet")
    if active == release.id:
        return _again(layout, journal, store, release, head, reader, stream, label, progress,
                      openers)
    need = _require_space(layout, journal, store, release, config.reserve_bytes)

    tx = Transaction.begin(layout, "install", release.id)
    journal.append("install-started", release=release.id, name=release.name,
                   version=release.version, sequence=release.sequence, bundle=label,
                   role=verified.role, signers=list(verified.signers), bytes_needed=need)
    job = _Job(layout, journal, store, tx, release, head, label, verified.role,
               list(verified.signers), active, hold, openers)
    result = _run_job(job, reader, stream, switch, progress, trust, new_trust)
    result.update({
        "installed": True, "release": release.id, "name": release.name,
        "version": release.version, "sequence": release.sequence,
        "active": read_link(layout, "current"), "previous": read_link(layout, "previous"),
        "switched": switch, "seconds": round(time.monotonic() - started, 3),
        "held_until": _held_until(layout, release.id) if hold is not None else None,
        # The agent's own high-water mark; the health child is measured in "health".
        "agent_peak_rss_mb": _peak_rss_mb(),
    })
    return result


def _operator_decision(layout: Layout, journal: Journal, release: Release, label: str,
                       unattended: bool) -> None:
    """An operator's rollback of ``release`` stands against an unattended install (the
    verified release id decides, whatever the bytes of the copy); an attended one lifts it."""
    from agent.operator_rollbacks import OperatorRolledBackError, clear, marked

    if not unattended:
        if clear(layout, release.id):
            journal.append("operator-rollback-cleared", release=release.id, bundle=label)
        return
    mark = marked(layout).get(release.id)
    if mark is None:
        return
    e = OperatorRolledBackError(
        f"{release.id} was rolled back by an operator on {mark.get('time')} "
        "('airlock-agent rollback'): the drop folder does not install it again; "
        "'airlock-agent install' of it brings it back")
    journal.append("rejected", release=release.id, bundle=label, reason=str(e),
                   error=type(e).__name__)
    raise e


def _read_front(layout: Layout, stream: IO[bytes], label: str, ring: str | None,
                store: ContentStore, journal: Journal,
                ) -> tuple[BundleReader, bytes | tuple[BundleHead, TrustRoot, TrustRoot, Any]]:
    """Step 1: the reader, and a flags bundle's bytes or the verified head (head, trust,
    new trust, verified); a rejection is journaled, naming a split bundle's bad part."""
    try:
        reader = BundleReader(stream)
        flags_data = flags_bytes(reader)
        if flags_data is not None:
            return reader, flags_data
        return reader, _verify_head(layout, reader, ring, store)
    except RejectedError as e:
        why = explain(stream, e)
        journal.append("rejected", bundle=label, reason=str(why), error=type(why).__name__)
        raise why from None


def _again(layout: Layout, journal: Journal, store: ContentStore, release: Release,
           head: BundleHead, reader: BundleReader, stream: IO[bytes], label: str,
           progress: Callable[[int], None] | None,
           openers: dict[str, BlobOpener] | None = None) -> dict[str, Any]:
    """The active release's bundle again: still read it all, say whether it is intact,
    restore damaged store blobs from it."""
    if not same_signed((layout.release_dir(release.id) / "release.json").read_bytes(),
                       head.release_json):
        e2 = RollbackError(f"a different release already claims {release.id}; "
                           "bump the sequence and rebuild")
        journal.append("rejected", bundle=label, reason=str(e2), error=type(e2).__name__)
        raise e2
    try:
        again = reverify(layout, journal, store, release, reader, label, progress, openers)
    except RejectedError as e:
        why = explain(stream, e)
        journal.append("rejected", release=release.id, bundle=label, reason=str(why))
        raise why from None
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise NoSpaceError(f"{layout.root} ran out of space while restoring blobs of "
                           f"{release.id} from the bundle; nothing changed") from None
    again["message"] = again["message"].replace("already installed", "already active")
    return {**again, "release": release.id, "name": release.name,
            "version": release.version, "sequence": release.sequence, "active": release.id}


def _require_space(layout: Layout, journal: Journal, store: ContentStore, release: Release,
                   reserve: int) -> int:
    """Step 2: the bytes the blobs not stored yet need, or NoSpaceError before anything."""
    need = sum(info.length for path, info in release.shipped.items()
               if not (path.startswith(BLOB_PREFIX) and store.has(f"sha256:{info.sha256}")))
    free = shutil.disk_usage(layout.root).free
    if need + reserve > free:
        journal.append("refused", release=release.id, reason="no space", need=need, free=free)
        raise NoSpaceError(
            f"installing {release.id} needs {human_size(need)} (+{human_size(reserve)} "
            f"reserve) but {layout.root} has {human_size(free)} free; run 'airlock-agent gc' "
            "or free space, then retry"
        )
    return need


def _run_job(job: _Job, reader: BundleReader, stream: IO[bytes], switch: bool,
             progress: Callable[[int], None] | None, trust: TrustRoot,
             new_trust: TrustRoot) -> dict[str, Any]:
    """Steps 3-7 in the transaction; any failure leaves ROOT as the install found it."""
    layout, journal, tx, release = job.layout, job.journal, job.tx, job.release
    try:
        result = job.run(reader, switch, progress)
        _commit(layout, journal, tx, release, trust, new_trust, switch, result)
    except BaseException as error:
        # A split bundle's corrupt part is named instead of the blob it broke.
        failure = explain(stream, error) if isinstance(error, RejectedError) else error
        if not tx.done:  # a failure nobody handled: leave ROOT as the install found it
            undo(layout, journal, tx)
            journal.append("rejected" if isinstance(failure, RejectedError) else "install-failed",
                           release=release.id, bundle=job.label,
                           reason=str(failure) or type(failure).__name__,
                           error=type(failure).__name__,
                           active=read_link(layout, "current"))
        job.drop_staged()
        if isinstance(failure, OSError) and failure.errno == errno.ENOSPC:
            raise NoSpaceError(f"{layout.root} ran out of space while installing "
                               f"{release.id}; nothing changed; run 'airlock-agent gc' "
                               "or free space, then retry") from None
        if failure is not error:
            raise failure from None
        raise
    return result


def _held_until(layout: Layout, release_id: str) -> str | None:
    from agent.hold import held

    h = held(layout)
    if h is None or h["release"] != release_id:
        return None
    return datetime.fromtimestamp(h["deadline"], timezone.utc).isoformat(timespec="seconds")


def _commit(layout: Layout, journal: Journal, tx: Transaction, release: Release,
            trust: TrustRoot, new_trust: TrustRoot, switch: bool, result: dict[str, Any]) -> None:
    """Remember the sequence (and a rotated root), then commit: from here on it stays."""
    sequences = load_sequences(layout)
    sequences[release.name] = max(sequences.get(release.name, 0), release.sequence)
    write_json(layout.sequences, sequences)
    if new_trust is not trust:
        write_atomic(layout.trust_root, new_trust.to_bytes())
        journal.append("trust-rotated", version=new_trust.version)
        result["trust_rotated"] = _rotation(trust, new_trust)
    # The release's signed build time raises the time floor (agent.timefloor), journaled
    # before "installed": the install's last line stays its verdict.
    if raise_floor(layout, release.issued, f"release {release.id}"):
        journal.append("time-floor", release=release.id, floor=str(release.issued))
    crash_point("before-commit")
    journal.append("installed", release=release.id, version=release.version,
                   sequence=release.sequence, active=read_link(layout, "current"),
                   switched=switch, blobs_stored=result["blobs_stored"],
                   blobs_skipped=result["blobs_skipped"], bytes=result["bytes_written"])
    tx.commit()
    crash_point("after-commit")


def _rotation(old: TrustRoot, new: TrustRoot) -> dict[str, Any]:
    """What a rotated trust root changed, for the install's result: the person at the
    device learns it here, not from the journal."""

    def keys(root: TrustRoot, role: str) -> set[str]:
        return set(root.md.signed.roles[role].keyids)

    changed = {}
    for role, label in (("root", "root_keys"), ("targets", "release_keys")):
        was, now = keys(old, role), keys(new, role)
        changed[label] = {"added": len(now - was), "removed": len(was - now)}
    return {"from_version": old.version, "to_version": new.version,
            "expires": new.expires.isoformat(timespec="seconds"), **changed}


class _Job:
    """The part of an install that runs inside its transaction."""

    def __init__(self, layout: Layout, journal: Journal, store: ContentStore, tx: Transaction,
                 release: Release, head: BundleHead, label: str, role: str,
                 signers: list[str], active: str | None, hold: float | None = None,
                 openers: dict[str, BlobOpener] | None = None) -> None:
        self.layout, self.journal, self.store, self.tx = layout, journal, store, tx
        self.openers = openers or {}
        self.hold = hold
        self.release, self.head, self.label = release, head, label
        self.role, self.signers, self.active = role, signers, active
        self.staged: dict[str, Path] = {}
        self.created = False

    def drop_staged(self) -> None:
        for path in self.staged.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def fail(self, reason: str, error: AirlockError) -> AirlockError:
        rdir = self.layout.release_dir(self.release.id)
        if self.created:
            remove_tree(rdir, self.layout.staging)
        self.tx.commit()
        self.journal.append("install-failed", release=self.release.id, reason=reason,
                            active=read_link(self.layout, "current"))
        return error

    def _small_blob(self, digest: str) -> bytes | None:
        """A stored blob's bytes when it is small enough to be evidence (a signature)."""
        if not self.store.has(digest):
            return None
        path = self.store.path(digest)
        if path.stat().st_size > MAX_EVIDENCE_BLOB_BYTES:
            return None
        return path.read_bytes()

    def receive(self, reader: BundleReader,
                progress: Callable[[int], None] | None) -> tuple[dict[str, bytes], int, int]:
        """Read every member; stage new blobs; nothing enters the store until all matched."""
        skipped = written = 0
        meta: dict[str, bytes] = {}
        # Installing a release the device already has (re-activating it): store copies are
        # hashed too, and a damaged one is replaced from the bundle like a missing one.
        again = self.layout.release_dir(self.release.id).exists()
        # Blobs are hashed, written and fsynced on the reader's threads while it reads on;
        # the loop ends once every one has matched. closing(): a failure stops those
        # threads before the staged files are dropped.
        with contextlib.closing(reader.files(self.release.files,
                                             self.release.not_carried())) as members:
            for member in members:
                opener = self.openers.get(member.digest)
                if member.digest in self.release.unused:
                    member.verify(progress)  # another variant's: read past, not kept
                elif opener is not None:  # held as its plaintext; decrypted while it streams
                    plain = opener.plain_digest
                    if self.store.has(plain) and not again:
                        member.verify(progress)
                        skipped += 1
                    else:
                        self.staged[plain] = self.store.stage(member, progress, opener.stream(),
                                                              plain)
                        written += member.info.length
                elif member.path.startswith(BLOB_PREFIX):
                    if self.store.has(member.digest) and (not again or store_copy_intact(
                            self.store, member.digest, member.info.length)):
                        member.verify(progress)
                        skipped += 1
                    else:
                        self.staged[member.digest] = self.store.stage(member, progress)
                        written += member.info.length
                else:
                    meta[member.path] = member.read_all()
                    if progress:
                        progress(len(meta[member.path]))
        self.store.commit(self.staged)
        if again:
            relink(self.layout, self.store, self.staged)
        for digest in self.staged:
            self.journal.append("blob-stored", release=self.release.id, digest=digest,
                                size=self.store.path(digest).stat().st_size)
        self.staged = {}
        return meta, skipped, written

    def run(self, reader: BundleReader, switch: bool,
            progress: Callable[[int], None] | None) -> dict[str, Any]:
        release, layout, journal, active = self.release, self.layout, self.journal, self.active
        stored_count = sum(1 for p in release.shipped if p.startswith(BLOB_PREFIX))
        meta, skipped, written = self.receive(reader, progress)
        stored = stored_count - skipped
        sc = release.supply_chain
        if sc is not None and sc.enforce_on_device:
            # The upstream signatures the bundle carries, checked here against the keys
            # and policy the release records (keys.upstream_signatures): exit 3, undone.
            from keys.upstream_signatures import recheck

            problems = recheck(release, self._small_blob)
            if problems:
                raise UpstreamSignatureError("; ".join(problems) + "; nothing installed")

        rdir = layout.release_dir(release.id)
        if rdir.exists():
            if not same_signed((rdir / "release.json").read_bytes(), self.head.release_json):
                raise RollbackError(f"a different release already claims {release.id}; "
                                    "bump the sequence and rebuild")
        else:
            staged = layout.staged_release(release.id)
            info = {"installed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "bundle": self.label, "role": self.role, "signers": self.signers}
            # The release's defaults with the flags sets already applied here (agent.feature_flags).
            flags = plain(effective(layout, release.flags))
            _build_release_dir(staged, release, self.head, meta, self.store, info, flags)
            crash_point("before-release-rename")
            self.tx.step("renaming", created=True)
            self.created = True
            os.rename(staged, rdir)
            fsync_dir(layout.releases)
            crash_point("after-release-rename")

        self.tx.step("health")
        health_start = time.monotonic()
        # A staged challenger (--no-switch) is compared, not judged, by its shadow check.
        report = health_check(layout, journal, release, replacing=active, shadow=True,
                              judge_shadow=switch)
        health_s = time.monotonic() - health_start
        if not report.ok:
            still = active or "no release"
            raise self.fail(report.reason or "failed", HealthCheckError(
                f"{release.id} not installed: {report.reason}; {still} stays active"))
        crash_point("after-health-check")

        if release.images:
            from agent.sinks import make_sink

            config = layout.load_config()
            try:
                make_sink(config.sink, layout.images).deliver(release, self.store.path)
            except AirlockError as e:
                raise self.fail(f"image sink: {e}", e) from None
            journal.append("images-delivered", release=release.id, images=len(release.images),
                           sink=config.sink.get("type", "oci-dir"))

        outcome = None
        if switch:
            crash_point("before-switch")
            # Armed before the switch: a crash after it still finds the hold (agent.hold).
            if self.hold is not None:
                arm(layout, journal, release.id, active, self.hold)
            else:
                disarm(layout)
            outcome = activate(layout, journal, self.tx, release, previous=active)
            if not outcome.ok:
                disarm(layout)
                raise self.fail(outcome.reason, HealthCheckError(
                    f"{release.id} failed after the switch: {outcome.reason}; "
                    f"{active or 'no release'} is active again"))
        return {"blobs_stored": stored, "blobs_skipped": skipped, "bytes_written": written,
                "health": report.to_dict(), "health_s": round(health_s, 3),
                "activation": outcome.to_dict() if outcome else None}
