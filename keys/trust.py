"""The trust root and every trust decision Airlock makes.

A device is provisioned with a trust root, a TUF ``root`` document naming the
keys and thresholds of the roles:

* ``root``: signs trust roots. A new root must carry the threshold of both
  the old and the new root's ``root`` role (TUF root rotation).
* ``targets``: the *release* role; may deploy a release to any ring.
* delegated signers, kept under ``x-airlock-delegations`` as TUF
  ``Delegations``: each is limited to the rings listed in its ``rings`` field
  (e.g. a "canary" signer can only deploy to devices in the canary ring).

Where a release may land: a ring signer's release must name rings, all
within the signer's; a device in ring R takes a release that names R or
names no ring; a device in no ring takes only a release that names no ring,
which only the release role can sign. The host checks a bundle for the rings
it names (``any_ring=True``), or for one device's ring.

Everything that decides whether a signature, an expiry, a version or a ring is
acceptable lives in :meth:`TrustRoot.verify_release` and
:meth:`TrustRoot.rotate`; other modules ask, they never decide::

    root = TrustRoot.from_bytes(Path("root.json").read_bytes())   # callers do the I/O
    verified = root.verify_release(release_json_bytes, ring="canary")   # a canary device
    root.verify_release(release_json_bytes, ring=None)     # a device in no ring
    root.verify_release(release_json_bytes, any_ring=True) # the host: for the rings it names
    print(verified.release.name, verified.role, verified.rings)
    print(root.tally(release_json_bytes))                  # 2 of 3 signatures for role 'release'

Messages call TUF's ``targets`` role what it is here, the *release* role
(:func:`role_label`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, Role, Root, Targets
from tuf.api.serialization import SerializationError

from airlock.errors import (
    ExpiredError,
    FormatError,
    PolicyError,
    RollbackError,
    SignatureError,
    UsageError,
)
from keys.identify import describe
from keys.metadata import ReleaseSerializer, parse_metadata
from keys.purpose_signers import PurposeSigner, set_purpose_signers
from keys.purpose_signers import purpose_signers as named_purposes

if TYPE_CHECKING:
    # keys.release (the release reader, ~30 ms) loads where a release is read:
    # ``airlock-agent status`` verifies only the trust root (tests/test_startup.py).
    from keys.release import Release

__all__ = [
    "RELEASE_ROLE",
    "RingSigner",
    "Tally",
    "TrustRoot",
    "VerifiedRelease",
    "check_rings",
    "create_root",
    "role_label",
    "rotate_root",
]

RELEASE_ROLE = "targets"
#: What users call that role, in every message: they made a "release" key for it.
RELEASE_ROLE_WORD = "release"
_DELEGATIONS = "x-airlock-delegations"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def role_label(role: str) -> str:
    """The name people read for a role: TUF's ``targets`` is Airlock's release role."""
    return "release" if role == RELEASE_ROLE else role


def _release_payload(md: Metadata[Any]) -> bytes:
    try:
        return ReleaseSerializer().serialize(md.signed)
    except SerializationError as e:
        raise FormatError(f"release metadata cannot be signed as JSON: {e}") from None


@dataclass(frozen=True)
class Tally:
    """Valid signatures of one role over some metadata, against its threshold."""

    role: str
    valid: tuple[str, ...]  # key ids whose signatures verify
    threshold: int
    rings: tuple[str, ...] | None  # a ring signer's rings; None for the release role

    @property
    def complete(self) -> bool:
        return len(self.valid) >= self.threshold

    def __str__(self) -> str:
        return (f"{len(self.valid)} of {self.threshold} signatures required for role "
                f"'{role_label(self.role)}'")


@dataclass(frozen=True)
class RingSigner:
    """A delegated release signer limited to some rings."""

    name: str
    keys: tuple[Key, ...]
    rings: tuple[str, ...]
    threshold: int = 1


@dataclass(frozen=True)
class VerifiedRelease:
    """A release whose signatures, expiry and ring policy have been checked."""

    release: Release
    role: str  # "release" (TUF's targets role) or the delegated signer's name
    signers: tuple[str, ...]  # key ids whose valid signatures counted
    rings: tuple[str, ...] | None  # rings it may land on; None = any
    threshold: int = 1  # of the role that signed


def create_root(
    root_signers: Sequence[Signer],
    release_keys: Sequence[Key],
    *,
    root_threshold: int = 1,
    release_threshold: int = 1,
    expires: timedelta = timedelta(days=365),
    ring_signers: Sequence[RingSigner] = (),
    version: int = 1,
    now: datetime | None = None,
    root_keys: Sequence[Key] = (),
    purpose_signers: Sequence[PurposeSigner] = (),
) -> Metadata[Root]:
    """A new trust root signed by every given root signer.

    ``purpose_signers`` sign something other than releases (time tokens:
    ``keys.purpose_signers``).

    ``root_keys`` are root keys that do not sign here: their holders add
    their signatures later, one at a time (``keys.signatures``), as in a root
    ceremony whose keys are on separate offline machines.
    """
    # The same key twice is one key: count distinct keys, or a threshold of 2 over one
    # key given twice would write a root no release (or rotation) can ever satisfy.
    root_keys = _unique([s.public_key for s in root_signers] + list(root_keys))
    release_keys = _unique(list(release_keys))
    _check_threshold("root", root_threshold, len(root_keys))
    _check_threshold("release", release_threshold, len(release_keys))
    root = Root(version=version, expires=(now or _utc_now()) + expires, consistent_snapshot=False)
    for key in root_keys:
        root.add_key(key, "root")
    for key in release_keys:
        root.add_key(key, RELEASE_ROLE)
    root.roles["root"].threshold = root_threshold
    root.roles[RELEASE_ROLE].threshold = release_threshold
    # Timestamp and snapshot roles are part of TUF's model but unused offline:
    # bundles carry one self-contained release. Give them the release keys so
    # the document stays a valid TUF root.
    for role in ("snapshot", "timestamp"):
        root.roles[role] = Role(list(root.roles[RELEASE_ROLE].keyids), release_threshold)
    _set_ring_signers(root, ring_signers)
    set_purpose_signers(root, purpose_signers)
    md = Metadata(root)
    for signer in root_signers:
        md.sign(signer, append=True)
    return md


def _unique(keys: Sequence[Key]) -> list[Key]:
    seen: dict[str, Key] = {}
    for k in keys:
        seen.setdefault(k.keyid, k)
    return list(seen.values())


def _check_threshold(role: str, threshold: int, keys: int) -> None:
    if threshold < 1 or threshold > keys:
        raise UsageError(f"{role} threshold {threshold} needs between 1 and {keys} distinct "
                         f"key(s); the same key given twice counts once")


def _set_ring_signers(root: Root, ring_signers: Sequence[RingSigner]) -> None:
    if not ring_signers:
        root.unrecognized_fields.pop(_DELEGATIONS, None)
        return
    keys: dict[str, Key] = {}
    roles: dict[str, DelegatedRole] = {}
    for rs in ring_signers:
        if rs.name in (RELEASE_ROLE, RELEASE_ROLE_WORD, "root", "snapshot", "timestamp") or not rs.rings:
            raise UsageError(f"ring signer {rs.name!r} needs a new name and at least one ring")
        ring_keys = _unique(list(rs.keys))  # distinct keys, as for the roles above
        _check_threshold(f"ring signer {rs.name}", rs.threshold, len(ring_keys))
        for k in ring_keys:
            keys[k.keyid] = k
        roles[rs.name] = DelegatedRole(
            rs.name,
            [k.keyid for k in ring_keys],
            rs.threshold,
            terminating=True,
            paths=["*"],
            unrecognized_fields={"rings": list(rs.rings)},
        )
    root.unrecognized_fields[_DELEGATIONS] = Delegations(keys, roles).to_dict()


class TrustRoot:
    """A verified TUF root as a device or operator holds it."""

    def __init__(self, md: Metadata[Root]) -> None:
        self.md = md
        self._delegator = _delegator(md.signed)

    # -- loading ---------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes, *, check_self_signed: bool = True) -> TrustRoot:
        md = _parse_root(data)
        if check_self_signed:
            _verify_threshold(md.signed, "root", md, "trust root")
        return cls(md)

    @classmethod
    def given(cls, data: bytes, name: str) -> TrustRoot:
        """A trust root a user named on the command line (``--trust FILE``).

        A file that is no trust root at all (a key, a bundle, a spec) is a usage
        error (exit 2) saying what it is instead; a trust root that fails its
        own checks (signatures, threshold) stays a rejection (exit 3).
        """
        kind = describe(data)
        if kind != "a trust root":
            raise UsageError(f"{name} is {kind}, not a trust root; give the root.json "
                             "that 'airlock keys init' wrote")
        return cls.from_bytes(data)

    def to_bytes(self) -> bytes:
        return self.md.to_bytes()

    @property
    def version(self) -> int:
        return self.md.signed.version

    @property
    def expires(self) -> datetime:
        return self.md.signed.expires

    def ring_signers(self) -> dict[str, tuple[str, ...]]:
        """Delegated signer name -> rings it may deploy to."""
        if self._delegator.delegations is None or self._delegator.delegations.roles is None:
            return {}
        return {
            name: tuple(role.unrecognized_fields.get("rings", []))
            for name, role in self._delegator.delegations.roles.items()
        }

    # -- decisions -------------------------------------------------------
    def rotate(self, new_root: bytes, *, now: datetime | None = None) -> TrustRoot:
        """Accept ``new_root`` only if the threshold of both old and new root signed it."""
        md = _parse_root(new_root)
        if md.signed.version < self.version:
            raise RollbackError(
                f"trust root version {md.signed.version} is older than the installed "
                f"version {self.version}"
            )
        if md.signed.version == self.version:
            if md.signed_bytes != self.md.signed_bytes:
                raise RollbackError(f"a different trust root claims version {self.version}")
            return self
        if md.signed.version != self.version + 1:
            raise RollbackError(
                f"trust root jumps from version {self.version} to {md.signed.version}; "
                "carry each intermediate root"
            )
        _verify_threshold(self.md.signed, "root", md, "new trust root (old root's keys)")
        _verify_threshold(md.signed, "root", md, "new trust root (its own keys)")
        return TrustRoot(md)

    def verify_release(
        self,
        data: bytes,
        *,
        ring: str | None = None,
        any_ring: bool = False,
        now: datetime | None = None,
    ) -> VerifiedRelease:
        """Check signatures, threshold, expiry and ring policy of release metadata.

        ``ring`` is the ring of the device that would install it; ``None`` is a
        device in no ring, the safe default: it takes only releases that name
        no ring. ``any_ring`` checks the signer's ring limits but no device's
        (``airlock verify`` without ``--ring``, ``airlock inspect``).
        """
        if any_ring and ring is not None:
            raise UsageError("check for one device ring or for any ring, not both")
        md, tally = self.verify_signed(data, "release metadata", now)
        from keys.release import Release

        release = Release.from_metadata(md)
        _check_rings(tally.role, tally.rings, release.rings, ring, device=not any_ring)
        return VerifiedRelease(release, tally.role, tally.valid, tally.rings, tally.threshold)

    def verify_signed(
        self, data: bytes, what: str, now: datetime | None = None
    ) -> tuple[Metadata[Any], Tally]:
        """Signatures, threshold and expiry of release-role metadata (a release or a flags set).

        Returns the metadata and the signing role's tally (its key ids and, for
        a ring signer, its rings); the caller reads the body and applies the ring policy
        (:func:`check_rings`).
        """
        now = now or datetime.now(timezone.utc)
        if self.md.signed.is_expired(now):
            raise ExpiredError(
                f"the trust root expired at {_fmt(self.expires)}; "
                "carry a bundle with a rotated root ('airlock keys rotate')"
            )
        md = parse_metadata(data, Targets, what)
        tally = self._signing_role(_release_payload(md), md)
        if md.signed.is_expired(now):
            raise ExpiredError(
                f"{what} (sequence {md.signed.version}) expired at "
                f"{_fmt(md.signed.expires)}; rebuild the bundle with a later 'expires'"
            )
        return md, tally

    def verify_head(
        self,
        release_json: bytes,
        root_json: bytes | None = None,
        *,
        ring: str | None = None,
        any_ring: bool = False,
        now: datetime | None = None,
    ) -> tuple[TrustRoot, VerifiedRelease]:
        """Verify a bundle's metadata; a root it carries is rotated to first.

        Takes the bytes the caller read (python-tuf's split: trust decides,
        callers do the I/O). Returns the trust root to use from now on
        (``self`` when the bundle carries none) and the verified release. The
        caller persists the new root only once the whole install has succeeded.
        """
        trust = self.rotate(root_json, now=now) if root_json is not None else self
        return trust, trust.verify_release(release_json, ring=ring, any_ring=any_ring, now=now)

    def check_sequence(self, release: Release, highest_seen: int | None) -> None:
        """Anti-rollback: refuse a sequence lower than one already accepted."""
        if highest_seen is not None and release.sequence < highest_seen:
            raise RollbackError(
                f"release {release.name} sequence {release.sequence} is older than "
                f"sequence {highest_seen} already accepted on this device"
            )

    def tally(self, release_json: bytes) -> Tally:
        """How far a release's signatures are from a role's threshold; decides nothing.

        The release role when it has its threshold, else the role (release or
        ring signer) that comes closest: what ``airlock sign`` reports after
        each signature ("2 of 3 signatures for role 'release'").
        """
        md = parse_metadata(release_json, Targets, "release metadata")
        return self._tally(_release_payload(md), md)

    def _tally(self, payload: bytes, md: Metadata[Any]) -> Tally:
        result = self.md.signed.get_verification_result(RELEASE_ROLE, payload, md.signatures)
        best = Tally(RELEASE_ROLE_WORD, tuple(sorted(result.signed)),
                     self.md.signed.roles[RELEASE_ROLE].threshold, None)
        if result.verified:
            return best
        for name, rings in self.ring_signers().items():
            sub = self._delegator.get_verification_result(name, payload, md.signatures)
            found = Tally(name, tuple(sorted(sub.signed)),
                          self._delegator.get_delegated_role(name).threshold, rings)
            if sub.verified:
                return found
            if len(found.valid) > len(best.valid):
                best = found
        return best

    def _signing_role(self, payload: bytes, md: Metadata[Any]) -> Tally:
        tally = self._tally(payload, md)
        if tally.complete:
            return tally
        unknown = [k for k in md.signatures if not self._knows_key(k)]
        hint = f"; signed by unknown key {unknown[0][:16]}" if unknown else ""
        raise SignatureError(f"release metadata has {tally}{hint}")

    def signs_releases(self, keyid: str) -> bool:
        """Whether ``keyid`` is a key of the release role or of a ring signer."""
        d = self._delegator.delegations
        return keyid in self.md.signed.roles[RELEASE_ROLE].keyids or (
            d is not None and any(keyid in r.keyids for r in (d.roles or {}).values()))

    def _knows_key(self, keyid: str) -> bool:
        d = self._delegator.delegations
        return keyid in self.md.signed.keys or (d is not None and keyid in d.keys)


def check_rings(role: str, signer_rings: tuple[str, ...] | None, targets: Sequence[str],
                ring: str | None, *, any_ring: bool = False) -> None:
    """The ring policy for something a device in ``ring`` would apply (a flags set).

    ``any_ring``: only the signer's limits (``airlock verify`` on the host without ``--ring``).
    """
    _check_rings(role, signer_rings, targets, ring, device=not any_ring)


def _check_rings(role: str, signer_rings: tuple[str, ...] | None, release_rings: Sequence[str],
                 ring: str | None, *, device: bool) -> None:
    """The ring policy (module docstring); ``device=False`` skips the device's part."""
    named = ", ".join(release_rings)
    if signer_rings is not None and (not release_rings
                                     or not set(release_rings) <= set(signer_rings)):
        raise PolicyError(
            f"signer '{role}' may deploy only to rings {', '.join(signer_rings)}, but the "
            f"release targets {named or 'all rings'}"
        )
    if not device:
        return
    if ring is None:
        # The hole this closes: a ring-limited signer reached every ringless device.
        if signer_rings is not None:
            raise PolicyError(
                f"signer '{role}' may deploy only to rings {', '.join(signer_rings)}; this "
                "device is in no ring"
            )
        if release_rings:
            raise PolicyError(
                f"release targets rings {named}; this device is in no ring and takes only "
                "releases for every ring"
            )
    elif release_rings and ring not in release_rings:
        raise PolicyError(f"release targets rings {named}; this device is in ring '{ring}'")


def _fmt(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_root(data: bytes) -> Metadata[Root]:
    md = parse_metadata(data, Root, "trust root")
    try:
        md.signed_bytes  # noqa: B018 - the bytes signatures cover must exist
    except SerializationError as e:
        raise FormatError(
            f"trust root cannot be written as canonical JSON (no floats allowed): {str(e)[:200]}"
        ) from None
    _delegator(md.signed)  # validate the delegations now, not at first use
    named_purposes(md.signed)  # and the purpose signers
    return md


def _delegator(root: Root) -> Targets:
    """The ring signers as a TUF Targets delegator, so TUF counts their signatures."""
    raw = root.unrecognized_fields.get(_DELEGATIONS)
    if raw is None:
        return Targets(delegations=None)
    if not isinstance(raw, dict):
        raise FormatError(f"trust root has malformed ring signers: {_DELEGATIONS} is not an object")
    try:
        delegations = Delegations.from_dict(copy.deepcopy(raw))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        # AttributeError: TUF calls dict methods on whatever the JSON holds.
        raise FormatError(f"trust root has malformed ring signers: {e}") from None
    for name, role in (delegations.roles or {}).items():
        rings = role.unrecognized_fields.get("rings")
        if not isinstance(rings, list) or not rings or not all(
                isinstance(r, str) and r for r in rings):
            raise FormatError(f"trust root has malformed ring signers: '{name}' needs a list "
                              "of ring names")
    return Targets(delegations=delegations)


def _verify_threshold(delegator: Root, role: str, md: Metadata[Any], what: str) -> None:
    try:
        delegator.verify_delegate(role, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as e:
        raise SignatureError(f"{what} is not signed by the threshold of root keys: {e}") from None


def rotate_root(
    old: TrustRoot,
    old_signers: Sequence[Signer],
    new_signers: Sequence[Signer] = (),
    *,
    root_threshold: int | None = None,
    release_keys: Sequence[Key] | None = None,
    release_threshold: int | None = None,
    ring_signers: Sequence[RingSigner] | None = None,
    expires: timedelta = timedelta(days=365),
    now: datetime | None = None,
    new_root_keys: Sequence[Key] = (),
    complete: bool = True,
    purpose_signers: Sequence[PurposeSigner] | None = None,
) -> Metadata[Root]:
    """The next root version; signed by ``old_signers`` and ``new_signers``.

    Without ``new_signers`` or ``new_root_keys`` (new root keys that sign
    later) the root role keeps its keys; release keys and ring signers are
    kept unless replaced. ``complete=False`` allows a root still short of
    signatures, which a ceremony collects one at a time; by default a root
    a device would refuse is refused here.
    """
    new = copy.deepcopy(old.md.signed)
    new.version += 1
    new.expires = (now or _utc_now()) + expires
    if new_signers or new_root_keys:
        for keyid in list(new.roles["root"].keyids):
            new.revoke_key(keyid, "root")
        for key in _unique([s.public_key for s in new_signers] + list(new_root_keys)):
            new.add_key(key, "root")
    if root_threshold is not None:
        new.roles["root"].threshold = root_threshold
    _check_threshold("root", new.roles["root"].threshold, len(new.roles["root"].keyids))
    if release_keys is not None:
        for role in (RELEASE_ROLE, "snapshot", "timestamp"):
            for keyid in list(new.roles[role].keyids):
                new.revoke_key(keyid, role)
            for key in release_keys:
                new.add_key(key, role)
    if release_threshold is not None:
        for role in (RELEASE_ROLE, "snapshot", "timestamp"):
            new.roles[role].threshold = release_threshold
    _check_threshold(
        "release", new.roles[RELEASE_ROLE].threshold, len(new.roles[RELEASE_ROLE].keyids)
    )
    if ring_signers is not None:
        _set_ring_signers(new, ring_signers)
    if purpose_signers is not None:  # kept unless replaced, like ring signers
        set_purpose_signers(new, purpose_signers)
    md = Metadata(new)
    seen: set[str] = set()
    for s in [*old_signers, *new_signers]:
        if s.public_key.keyid not in seen:
            md.sign(s, append=True)
            seen.add(s.public_key.keyid)
    if complete:
        old.rotate(md.to_bytes())  # refuse to write a root a device would reject
    return md
