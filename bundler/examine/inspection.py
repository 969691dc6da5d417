"""What a bundle holds and what it will run on a device, read from the whole archive.

``airlock inspect`` answers "what is on this stick?" before anyone drives to
a site: the models with their checks and budgets, the images, the flags, the
commands a device will run (the post-switch hook and the probe), the rings,
a carried trust-root rotation, who signed, when it expires, and how big it
is::

    with open("vision-1.2.0.airlock", "rb") as f:
        info = inspect_bundle(f, trust=None, fast=False, size=os.fstat(f.fileno()).st_size)
    info["expires_warning"]    # "expires in 2 days: the release may expire before it is installed"
    info["variants"][0]        # the model × variant matrix (bundler.examine.variant_matrix)
    info["hooks"]["probe"]     # "curl -fsS http://localhost:8080/health"

The whole archive is read, through the bundle reader's one loop: every
header, every listed file present with its signed length, the layout
documents, and (unless ``fast``) every blob hashed; then the archive's own
length, so a truncated copy is exit 3 and never reported as fine. With
``trust`` the signatures are verified too and the signing role named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import IO, Any

from tuf.api.metadata import Root, Targets

from airlock.errors import FormatError
from airlock.format.bundle import BundleReader
from airlock.format.oci import BLOB_PREFIX
from bundler.examine.variant_matrix import variant_matrix
from bundler.sneakernet.device_inventories import Inventory
from keys.metadata import parse_metadata
from keys.release import ModelEntry, Release
from keys.signatures import Signable
from keys.trust import TrustRoot

__all__ = ["EXPIRY_WARNING", "inspect_bundle"]

#: A release closer than this to its expiry is flagged: media takes days to travel.
EXPIRY_WARNING = timedelta(days=7)
# The two zero blocks that end every tar archive.
_TAR_END_BYTES = 1024


def inspect_bundle(stream: IO[bytes], *, trust: TrustRoot | None, fast: bool, size: int,
                   now: datetime | None = None, sbom: bool = False,
                   provenance: bool = False,
                   inventories: Sequence[Inventory] = ()) -> dict[str, Any]:
    """Everything a person should know about a bundle; FormatError (exit 3) if it is damaged.

    ``size`` is the archive's length (0 when unknown: a pipe). ``sbom``: the carried
    CycloneDX document under ``"sbom"`` (None when the bundle carries none); ``provenance``:
    the provenance's DSSE envelope under ``"provenance"``. With ``inventories`` the
    model × variant matrix (``variants``) says which of those devices take which variant.
    """
    now = now or datetime.now(timezone.utc)
    reader = BundleReader(stream)
    head = reader.head()
    from bundler.examine.flag_bundles import flags_info, is_flags_head, read_flags_bundle

    if is_flags_head(head):
        info = flags_info(read_flags_bundle(reader), trust=trust, ring=None, now=now)
        info["archive_bytes"] = size or None
        if size and size < reader.end_offset + _TAR_END_BYTES:
            raise FormatError(f"bundle is truncated: {size} bytes, but its members end at "
                              f"{reader.end_offset} (an incomplete copy?)")
        left = timedelta(days=info["expires_in_days"])
        return {**info, "expires_warning": _expiry_warning(left)}
    verified = None
    if trust is not None:
        _, verified = trust.verify_head(head.release_json, head.root_json, any_ring=True)
    md = parse_metadata(head.release_json, Targets, "release metadata")
    r = Release.from_metadata(md)
    expected = r.not_carried()
    from bundler.examine.evidence import evidence_info, keep_evidence, sbom_text, wanted_paths

    kept: dict[str, bytes] = {}
    wanted = wanted_paths(r)
    for member in reader.files(r.files, expected, hash_unread=not fast):
        keep_evidence(member, kept, wanted)
    if size and size < reader.end_offset + _TAR_END_BYTES:
        raise FormatError(f"bundle is truncated: {size} bytes, but its members end at "
                          f"{reader.end_offset} and a tar archive ends with "
                          f"{_TAR_END_BYTES} zero bytes (an incomplete copy?)")

    full = sum(i.length for i in r.files.values())
    # By the digest a device stores: an encrypted blob's plaintext is as long as its ciphertext.
    plain = {b.digest: b.plain for b in r.encryption.blobs} if r.encryption else {}
    sizes = {plain.get(d, d): i.length for p, i in r.files.items() if p.startswith(BLOB_PREFIX)
             for d in (f"sha256:{p[len(BLOB_PREFIX):]}",)}
    shipped = sum(i.length for i in r.shipped.values())
    left = r.expires - now
    return {
        "kind": "release",
        "bundle": None,  # the caller names it
        "name": r.name,
        "version": r.version,
        "sequence": r.sequence,
        "expires": r.expires.isoformat(),
        "expires_in_days": round(left.total_seconds() / 86400, 2),
        "expires_warning": _expiry_warning(left),
        "metadata_sha256": hashlib.sha256(head.release_json).hexdigest(),
        "signed_sha256": Signable.from_bytes(head.release_json, "release").signed_sha256,
        "signers": sorted(md.signatures),
        "verified_role": verified.role if verified else None,
        "signer_rings": list(verified.rings) if verified and verified.rings is not None else None,
        "carries_root": head.root_json is not None,
        "root_rotation": _rotation(head.root_json),
        "checked": "structure and lengths (--fast)" if fast else "every blob hashed",
        "models": [_model(r, m) for m in r.models],
        "variants": [row for row in variant_matrix(r, inventories)
                     if row["variants"][0]["name"] is not None],
        "omits": len(r.omits),
        "images": [
            {
                "ref": i.ref,
                "platform": i.platform,
                "manifest": i.manifest,
                "size": sum(sizes.get(d, 0) for d in i.blobs),
            }
            for i in r.images
        ],
        "flags": r.flags,
        "hooks": {"post_switch": r.hooks.post_switch, "probe": r.hooks.probe,
                  "probe_window_s": r.hooks.probe_window_s},
        "rings": r.rings,
        "files": len(r.files),
        "blobs": sum(1 for p in r.files if p.startswith(BLOB_PREFIX)),
        "full_size": full,
        "shipped_size": shipped,
        "archive_bytes": size or None,
        "agent_kits": [
            {"file": k.file_name, "version": k.version, "platform": k.platform,
             "python": k.python, "size": k.size}
            for k in r.agent_kits
        ],
        "delta": _delta(r, full - shipped),
        "supply_chain": evidence_info(r, kept),
        "sbom": sbom_text(r, kept) if sbom else None,
        "provenance": sbom_text(r, kept, "provenance") if provenance else None,
        # Named without any key: who may open it (key ids are RFC 7638 thumbprints).
        "encryption": None if r.encryption is None else {
            "scheme": "ocicrypt (AES-256-CTR + HMAC-SHA256, keys wrapped as JWE)",
            "recipients": [{"name": n, "kid": k} for n, k in r.encryption.recipients],
            "blobs": len(r.encryption.blobs)},
    }


def _model(r: Release, m: ModelEntry) -> dict[str, Any]:
    """One model as inspect shows it: its file, its golden data and budgets, its quality gates."""
    return {
        "name": m.name,
        "variant": m.variant,
        "when": m.when,
        "file": m.file_name,
        "size": m.size,
        "blob": m.blob,
        "source": m.source,
        "golden": m.health.inputs is not None,
        "data": [name for name, _ in m.data],
        "rtol": m.health.rtol,
        "atol": m.health.atol,
        "runs": m.health.runs,
        "max_p95_ms": m.health.max_p95_ms,
        "max_memory_mb": m.health.max_memory_mb,
        "timeout_s": m.health.timeout_s,
        "providers": list(m.health.providers),
        **_quality(r, m),
    }


def _delta(r: Release, expected_bytes: int) -> dict[str, Any] | None:
    """What a delta bundle leaves on the device, and the inventories it was planned from."""
    if r.delta is None:
        return None
    return {
        "base_sequence": r.delta.base_sequence,
        "expects": len(r.delta.expects),
        "expected_bytes": expected_bytes,
        "inventories": [
            {"device_id": i.device_id, "keyid": i.keyid, "sha256": i.sha256, "time": i.time}
            for i in r.delta.inventories
        ],
    }


def _quality(r: Release, m: ModelEntry) -> dict[str, Any]:
    """What a model's check will enforce beyond golden data: evaluation, contract, runtime."""
    ev = m.evaluation

    def size(digest: str) -> int | None:
        info = r.files.get(f"{BLOB_PREFIX}{digest[7:]}")
        return info.length if info else None

    return {
        "evaluate": None if ev is None else {
            "metrics": {t.metric: t.rules() for t in ev.metrics}, "batch": ev.batch,
            "max_samples": ev.max_samples, "data_bytes": size(ev.data),
            "labels_bytes": size(ev.labels)},
        "inputs_contract": {rule.name: rule.to_json() for rule in m.contract},
        "provider_fallback": m.health.provider_fallback,
        "session": m.health.session.to_json(),
        "shadow": None if m.shadow is None else m.shadow.to_json(),
        "samples_export": m.samples.export,
    }


def _expiry_warning(left: timedelta) -> str | None:
    if left <= timedelta(0):
        return "EXPIRED: devices refuse it; rebuild with a later 'expires'"
    if left < EXPIRY_WARNING:
        days = left.total_seconds() / 86400
        when = f"{days:.1f} days" if days >= 1 else f"{left.total_seconds() / 3600:.1f} hours"
        return f"expires in {when}: it may expire before it is installed"
    return None


def _rotation(root_json: bytes | None) -> dict[str, Any] | None:
    if root_json is None:
        return None
    md = parse_metadata(root_json, Root, "carried trust root")
    return {"version": md.signed.version, "expires": md.signed.expires.isoformat(),
            "signatures": len(md.signatures)}
