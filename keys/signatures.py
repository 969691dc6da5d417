"""Signatures collected one at a time: add one, detach one, merge detached ones.

A release (a bundle's ``airlock/release.json``) or a trust root is signed
by several people whose keys never meet. Every signature covers the *signed
part*; its sha256, the **signed digest**, is what each signer is shown and
what a detached signature names, so a signature made over other metadata is
refused with both digests::

    doc = Signable.from_bytes(release_json, "release")     # or a root.json, "root"
    print(doc.signed_sha256, doc.signers)                  # what is signed, who signed already
    sig = doc.sign(signer)                                 # checked against the signer's key
    new_json = doc.with_signatures([sig])                  # the same metadata, one signature more
    sig_file = doc.detach(sig, signer.public_key)          # SIG.json, for a coordinator
    sig = doc.check(DetachedSignature.from_bytes(sig_file))   # SignatureError if not for doc

Whose signatures count and how many are needed is decided elsewhere
(``keys.trust``: ``TrustRoot.tally`` for a release, :func:`root_tallies`
here for a root, through the root's own rules). Bytes in, bytes out: the
callers read and write the files.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
from securesystemslib.signer import Key, Signature, Signer
from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization import SerializationError

from airlock.errors import FormatError, SignatureError, UsageError
from airlock.limits import MAX_DETACHED_SIGNATURE_BYTES
from keys.keyfile import key_from_document
from keys.metadata import ReleaseSerializer, parse_metadata
from keys.signers import sign_checked
from keys.trust import Tally, TrustRoot

__all__ = [
    "DETACHED_TYPE",
    "DetachedSignature",
    "Kind",
    "Signable",
    "check_root_signer",
    "root_tallies",
    "same_signed",
]

Kind = Literal["release", "root"]
DETACHED_TYPE = "application/vnd.airlock.detached-signature.v1+json"


@dataclass(frozen=True)
class DetachedSignature:
    """One signature made on one machine, for a coordinator to merge."""

    kind: Kind
    signed_sha256: str  # hex: the signed part it covers
    subject: dict[str, Any]  # what was signed, for people: name, version, sequence
    signature: Signature
    key: Key  # the signer's public key, to check the signature on arrival

    def to_bytes(self) -> bytes:
        doc = {
            "type": DETACHED_TYPE,
            "kind": self.kind,
            "signed_sha256": self.signed_sha256,
            "subject": self.subject,
            "signature": self.signature.to_dict(),
            "key": {"keyid": self.key.keyid, **self.key.to_dict()},
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "detached signature") -> DetachedSignature:
        """Read a detached signature strictly; a FormatError (exit 3) names what is wrong."""
        if len(data) > MAX_DETACHED_SIGNATURE_BYTES:
            raise FormatError(f"{what} is {len(data)} bytes; a detached signature is at most "
                              f"{MAX_DETACHED_SIGNATURE_BYTES}")
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("type") != DETACHED_TYPE:
                raise ValueError("not an Airlock detached signature")
            kind = doc["kind"]
            digest = doc["signed_sha256"]
            subject = doc["subject"]
            if kind not in ("release", "root") or not isinstance(subject, dict):
                raise ValueError("unknown kind or subject")
            if not isinstance(digest, str) or len(digest) != 64:
                raise ValueError("signed_sha256 is not a sha256")
            signature = Signature.from_dict(dict(doc["signature"]))
            key = key_from_document(doc["key"])  # its id from its material, never its claim
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise FormatError(f"{what} is not an Airlock detached signature: "
                              f"{str(e)[:120]}") from None
        return cls(kind, digest, subject, signature, key)


@dataclass
class Signable:
    """Metadata that collects signatures: a release or a trust root, parsed and bounded."""

    kind: Kind
    md: Metadata[Any]
    payload: bytes  # the bytes every signature covers

    @classmethod
    def from_bytes(cls, data: bytes, kind: Kind) -> Signable:
        what = "release metadata" if kind == "release" else "trust root"
        md = parse_metadata(data, Targets if kind == "release" else Root, what)
        try:
            if kind == "release":
                payload = ReleaseSerializer().serialize(md.signed)
            else:
                payload = md.signed_bytes
        except SerializationError as e:
            raise FormatError(f"{what} cannot be signed: {str(e)[:200]}") from None
        return cls(kind, md, payload)

    @property
    def signed_sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    @property
    def signers(self) -> list[str]:
        """Key ids of the signatures it carries (valid or not: the trust root decides)."""
        return list(self.md.signatures)

    @property
    def subject(self) -> dict[str, Any]:
        """What people call it: a release's name, version and sequence; a root's version."""
        signed = self.md.signed
        if self.kind == "root":
            return {"version": signed.version}
        body = signed.unrecognized_fields.get("airlock", {})
        return {"name": str(body.get("name")), "version": str(body.get("version")),
                "sequence": signed.version}

    def sign(self, signer: Signer) -> Signature:
        """A signature over the signed part, checked against the signer's public key."""
        return sign_checked(signer, self.payload)

    def with_signatures(self, signatures: list[Signature]) -> bytes:
        """The metadata with ``signatures`` added (a key's earlier signature is replaced)."""
        md = copy.deepcopy(self.md)
        for sig in signatures:
            md.signatures[sig.keyid] = sig
        try:
            return md.to_bytes()
        except SerializationError as e:  # a release parsed from bytes serialises again
            raise UsageError(f"cannot write the signed metadata: {e}") from None

    def detach(self, signature: Signature, key: Key) -> bytes:
        return DetachedSignature(self.kind, self.signed_sha256, self.subject, signature,
                                 key).to_bytes()

    def check(self, detached: DetachedSignature, what: str = "detached signature") -> Signature:
        """The signature of ``detached``, if it is over this very metadata and verifies."""
        if detached.kind != self.kind:
            raise SignatureError(f"{what} signs a {detached.kind}, not this {self.kind}")
        if detached.signed_sha256 != self.signed_sha256:
            raise SignatureError(
                f"{what} is over other metadata: it signs sha256 {detached.signed_sha256[:16]}… "
                f"({_describe(detached.subject)}), this {self.kind} is sha256 "
                f"{self.signed_sha256[:16]}… ({_describe(self.subject)})"
            )
        if detached.signature.keyid != detached.key.keyid:
            raise SignatureError(f"{what} names key {detached.signature.keyid[:16]}… but carries "
                                 f"key {detached.key.keyid[:16]}…")
        try:
            detached.key.verify_signature(detached.signature, self.payload)
        except (UnverifiedSignatureError, VerificationError):
            raise SignatureError(f"{what} does not verify with its key "
                                 f"{detached.key.keyid[:16]}… (forged or damaged)") from None
        return detached.signature


def same_signed(a: bytes, b: bytes, kind: Kind = "release") -> bool:
    """Whether two copies of metadata sign the same thing, whatever signatures each carries.

    A release signed once more after a device installed it is still that
    release; unreadable metadata is the same as nothing.
    """
    if a == b:
        return True
    try:
        return Signable.from_bytes(a, kind).payload == Signable.from_bytes(b, kind).payload
    except FormatError:
        return False


def _describe(subject: dict[str, Any]) -> str:
    if "name" in subject:
        return (f"{str(subject.get('name'))[:64]} {str(subject.get('version'))[:64]} sequence "
                f"{str(subject.get('sequence'))[:20]}")
    return f"root version {str(subject.get('version'))[:20]}"


def root_tallies(new_root: bytes, old: TrustRoot | None = None) -> list[Tally]:
    """A root's signatures against the thresholds a device will hold it to.

    Its own root role's always; with ``old`` (the root devices hold now),
    the old root role's too, as a rotation needs both. A root whose version
    does not follow ``old``'s is refused outright (RollbackError).
    """
    doc = Signable.from_bytes(new_root, "root")
    root: Root = doc.md.signed
    holders: list[tuple[str, Root]] = [(f"root v{root.version}", root)]
    if old is not None:
        if root.version != old.version + 1:
            # The rotation rules say why, in the words a device would use.
            old.rotate(new_root)
        holders.append((f"root v{old.version}", old.md.signed))
    tallies = []
    for name, holder in holders:
        result = holder.get_verification_result("root", doc.payload, doc.md.signatures)
        tallies.append(Tally(name, tuple(sorted(result.signed)),
                             holder.roles["root"].threshold, None))
    return tallies


def check_root_signer(new_root: bytes, key: Key, old: TrustRoot | None) -> None:
    """Refuse to sign a root with a key whose signature would count for nothing."""
    root: Root = Signable.from_bytes(new_root, "root").md.signed
    holders = [root] + ([old.md.signed] if old is not None else [])
    if any(key.keyid in h.roles["root"].keyids for h in holders):
        return
    hint = "" if old is not None else " (to sign with the current root's key, give it: --trust)"
    raise UsageError(f"key {key.keyid[:16]}… is not a root key of this root{hint}")

