"""An agent kit's signed list, ``kit.json``: made on the host, checked on the device with python-tuf.

The list is a TUF ``targets`` document like a release: every file of the kit
with its length and sha256, an expiry, and a section ``airlock_kit`` naming
the agent version, platform, Python and glibc. It is signed by the **release
role** of the trust root, over the same JSON form as releases, so a kit is
trusted exactly as far as a bundle is::

    md = kit_metadata(version="0.2.0", platform="linux/amd64", python="3.11",
                      glibc="2.28", files=files, requirements="requirements.txt",
                      installer="wheels/pip-26.3-py3-none-any.whl", expires=when)
    md.sign(signer, signed_serializer=ReleaseSerializer())      # the bundler
    kit = verify_kit(trust, md.to_bytes())                      # the agent: KitDocument

The field rules are those of ``keys.kitverify`` (the standard-library
verifier every kit carries), so the host, the agent and a bare ``python3``
on a fresh device refuse the same documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization import SerializationError

from airlock.errors import ExpiredError, FormatError, SignatureError
from airlock.format.bundle import FileInfo
from airlock.limits import MAX_KIT_METADATA_BYTES
from keys.kitverify import KIT_NAME, KIT_SECTION, KitDocument, KitError, parse_kit
from keys.metadata import ReleaseSerializer, parse_metadata
from keys.trust import RELEASE_ROLE, TrustRoot

__all__ = ["kit_metadata", "read_kit", "verify_kit"]


def kit_metadata(*, version: str, platform: str, python: str, glibc: str,
                 files: Mapping[str, FileInfo], requirements: str, installer: str,
                 expires: datetime) -> Metadata[Targets]:
    """The unsigned kit list; refused (FormatError) if a device would refuse it."""
    targets = {path: TargetFile(info.length, {"sha256": info.sha256}, path)
               for path, info in sorted(files.items())}
    body = {"name": KIT_NAME, "version": version, "platform": platform, "python": python,
            "glibc": glibc, "requirements": requirements, "installer": installer}
    md = Metadata(Targets(version=1, expires=expires, targets=targets,
                          unrecognized_fields={KIT_SECTION: body}))
    _parse(md)
    return md


def _parse(md: Metadata[Any]) -> KitDocument:
    try:
        return parse_kit(md.signed.to_dict())
    except KitError as e:
        raise FormatError(str(e)) from None


def read_kit(data: bytes) -> KitDocument:
    """What ``kit.json`` says, bounded and strict; the signature is not checked here."""
    if len(data) > MAX_KIT_METADATA_BYTES:
        raise FormatError(f"kit.json is larger than {MAX_KIT_METADATA_BYTES} bytes")
    return _parse(parse_metadata(data, Targets, "kit.json"))


def verify_kit(trust: TrustRoot, data: bytes, *, now: datetime | None = None) -> KitDocument:
    """Check ``kit.json`` against the release role of ``trust``; its fields, then its expiry."""
    if len(data) > MAX_KIT_METADATA_BYTES:
        raise FormatError(f"kit.json is larger than {MAX_KIT_METADATA_BYTES} bytes")
    md = parse_metadata(data, Targets, "kit.json")
    try:
        payload = ReleaseSerializer().serialize(md.signed)
    except SerializationError as e:
        raise FormatError(f"kit.json cannot be signed as JSON: {e}") from None
    result = trust.md.signed.get_verification_result(RELEASE_ROLE, payload, md.signatures)
    if not result.verified:
        threshold = trust.md.signed.roles[RELEASE_ROLE].threshold
        raise SignatureError(f"kit.json has {len(result.signed)} valid signature(s) of the "
                             f"{threshold} the release role requires")
    kit = _parse(md)
    if kit.expires <= (now or datetime.now(timezone.utc)):
        raise ExpiredError(f"agent kit {kit.version} expired at "
                           f"{kit.expires:%Y-%m-%dT%H:%M:%SZ}; build a new one")
    return kit
