"""Cosign key-based signatures on registry content, checked before anything is carried.

``bundler.build.pull`` calls this for every image or model whose spec entry says
``verify: {key: FILE}``, with the digest the reference resolved to, before any
of its blobs is fetched::

    found = verify_upstream(client, ref, "sha256:4f…", key_pem)  # UpstreamSignatureError, exit 3
    found.key_id        # "sha256:…" of the key (its DER SubjectPublicKeyInfo)
    found.carried       # the signature manifests (and attestations) to carry, bytes as served

What is checked is cosign's "simple signing" format (cosign's
specs/SIGNATURE_SPEC.md), as ``cosign sign --key`` writes it:

* the tag schema: a manifest tagged ``sha256-<hex>.sig`` in the image's
  repository, each layer of media type
  ``application/vnd.dev.cosign.simplesigning.v1+json`` a JSON payload
  ``{"critical": {"identity": {"docker-reference": …}, "image":
  {"docker-manifest-digest": "sha256:…"}, "type": "cosign container image
  signature"}, "optional": …}`` with its signature in the layer annotation
  ``dev.cosignproject.cosign/signature``: base64 of an ECDSA P-256 / SHA-256
  (ASN.1 DER) signature over the payload blob's bytes;
* OCI 1.1 referrers, where the registry answers ``/v2/<repo>/referrers/<digest>``
  (Debian's docker-registry 2.8 does not): a referrer of artifact type
  ``application/vnd.dev.cosign.artifact.sig.v1+json`` is checked the same way;
  other referrers (SBOMs, attestations) are carried as found.

A signature counts when one of its layers verifies with the key *and* its
payload names the very digest that is carried: a signature over another
digest is refused even when the key made it. Cosign attestations (tag
``sha256-<hex>.att``) are carried, not judged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airlock.errors import RegistryError, UpstreamSignatureError
from airlock.format.oci import digest_of
from airlock.limits import MAX_EVIDENCE_BLOB_BYTES
from airlock.registry import Manifest, Ref, RegistryClient

__all__ = ["SIGNATURE_ANNOTATION", "SIMPLE_SIGNING_TYPE", "Evidence", "Verified", "check_payload",
           "key_id", "load_public_key", "signature_tag", "verify_manifest", "verify_upstream"]

SIMPLE_SIGNING_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_SIG_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
PAYLOAD_TYPE = "cosign container image signature"
OCI_INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def load_public_key(pem: bytes) -> Any:
    """An ECDSA P-256 public key from PEM; ValueError saying what it is instead."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise ValueError("is not a PEM public key (cosign's cosign.pub)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("is not an ECDSA P-256 public key, the kind 'cosign generate-key-pair' "
                         "makes")
    return key


def key_id(pem: bytes) -> str:
    """``sha256:`` of the key's DER SubjectPublicKeyInfo: the same key, the same id."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    der = load_public_key(pem).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def signature_tag(digest: str, suffix: str = "sig") -> str:
    """Cosign's tag for what refers to ``digest``: ``sha256-<hex>.sig`` (or ``.att``)."""
    return digest.replace(":", "-") + "." + suffix


@dataclass(frozen=True)
class Evidence:
    """A manifest that refers to a carried image or model, with its blobs, as served."""

    kind: str  # "signature" | "attestation" | "referrer"
    subject: str  # the digest it refers to
    manifest: Manifest
    blobs: dict[str, bytes]  # digest -> bytes (config and layers)
    tag: str | None = None  # cosign's tag name when found by the tag schema
    artifact_type: str | None = None
    verified_with: str | None = None  # key id, for a signature that verified


@dataclass
class Verified:
    """What ``verify_upstream`` found: the key that vouched, and everything to carry."""

    key_id: str
    carried: list[Evidence] = field(default_factory=list)


def check_payload(payload: bytes, signature_b64: str, key_pem: bytes, digest: str) -> str | None:
    """Why a simple-signing payload and its signature do not vouch for ``digest``; None if they do."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return "its signature annotation is not base64"
    try:
        load_public_key(key_pem).verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the signature does not verify with the key (another key made it, or it was " \
               "tampered with)"
    try:
        body = json.loads(payload)
        critical = body["critical"]
        signed_digest = critical["image"]["docker-manifest-digest"]
        kind = critical["type"]
    except (ValueError, KeyError, TypeError):
        return "its payload is not a cosign simple-signing document"
    if kind != PAYLOAD_TYPE:
        return f"its payload is of type {str(kind)[:80]!r}, not {PAYLOAD_TYPE!r}"
    if signed_digest != digest:
        return f"the signature covers {str(signed_digest)[:80]}, not {digest}"
    return None


def verify_manifest(manifest: Mapping[str, Any], blobs: Mapping[str, bytes], key_pem: bytes,
                    digest: str) -> str | None:
    """Why no layer of a cosign signature manifest vouches for ``digest``; None if one does.

    ``blobs`` holds the payload layers by digest (the registry's, or the bundle's).
    """
    reasons = []
    for layer in manifest.get("layers") or []:
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLE_SIGNING_TYPE:
            continue
        signature = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        payload = blobs.get(str(layer.get("digest")))
        if not isinstance(signature, str) or payload is None:
            reasons.append("a layer has no signature annotation")
            continue
        why = check_payload(payload, signature, key_pem, digest)
        if why is None:
            return None
        reasons.append(why)
    if not reasons:
        return "the signature manifest has no simple-signing layer"
    # The most telling reason: a right key over another digest says more than a bad key.
    return next((r for r in reasons if r.startswith("the signature covers")), reasons[0])


def verify_upstream(client: RegistryClient, ref: Ref, digest: str, key_pem: bytes) -> Verified:
    """Find and check ``digest``'s cosign signatures; UpstreamSignatureError (exit 3) naming ``ref``.

    Returns the signatures (verified), cosign attestations and other OCI 1.1
    referrers, to be carried beside the content.
    """
    found: list[Evidence] = []
    for suffix, kind in (("sig", "signature"), ("att", "attestation")):
        tag = signature_tag(digest, suffix)
        m = client.find_manifest(ref, tag)
        if m is not None:
            found.append(_evidence(client, ref, kind, digest, m, tag, None))
    for desc in _referrers(client, ref, digest):
        d = str(desc.get("digest"))
        if any(e.manifest.digest == d for e in found):
            continue
        artifact = desc.get("artifactType")
        m = client.get_manifest(ref, d)
        kind = "signature" if artifact == COSIGN_SIG_ARTIFACT else "referrer"
        found.append(_evidence(client, ref, kind, digest, m, None,
                               artifact if isinstance(artifact, str) else None))
    kid = key_id(key_pem)
    signatures = [e for e in found if e.kind == "signature"]
    if not signatures:
        raise UpstreamSignatureError(
            f"{ref}: not signed: no cosign signature for {digest} ({signature_tag(digest)} "
            "is not in the registry, nor a signature referrer); nothing was written")
    reasons, carried = [], []
    for e in found:
        if e.kind == "signature":
            why = verify_manifest(e.manifest.json(), e.blobs, key_pem, digest)
            if why is None:
                e = Evidence(e.kind, e.subject, e.manifest, e.blobs, e.tag, e.artifact_type, kid)
            else:
                reasons.append(why)
        carried.append(e)
    if not any(e.verified_with for e in carried):
        raise UpstreamSignatureError(
            f"{ref}: signature refused: {reasons[0]} (key {kid[:19]}…); nothing was written")
    return Verified(kid, carried)


def _referrers(client: RegistryClient, ref: Ref, digest: str) -> list[dict[str, Any]]:
    """The OCI 1.1 referrers API's answer, or nothing from a registry without it."""
    r = client.request(ref, "GET", f"referrers/{digest}", what="referrers",
                       headers={"Accept": OCI_INDEX_TYPE}, ok=(200, 400, 404, 405))
    with r:
        if r.status_code != 200 or len(r.content) > MAX_EVIDENCE_BLOB_BYTES:
            return []
        try:
            body = json.loads(r.content)
        except ValueError:
            return []
    manifests = body.get("manifests") if isinstance(body, dict) else None
    return [d for d in manifests or [] if isinstance(d, dict)
            and isinstance(d.get("digest"), str) and str(d["digest"]).startswith("sha256:")]


def _evidence(client: RegistryClient, ref: Ref, kind: str, subject: str, m: Manifest,
              tag: str | None, artifact_type: str | None) -> Evidence:
    """The manifest's config and layers, read whole (they are small) and checked."""
    try:
        body = m.json()
    except ValueError:
        raise RegistryError(f"{ref}: {tag or m.digest} is not a JSON manifest") from None
    blobs: dict[str, bytes] = {}
    for desc in [body.get("config"), *(body.get("layers") or [])]:
        if not isinstance(desc, dict):
            continue
        digest, size = desc.get("digest"), desc.get("size")
        if not isinstance(digest, str) or not isinstance(size, int) or digest in blobs:
            continue
        if size > MAX_EVIDENCE_BLOB_BYTES:
            raise RegistryError(f"{ref}: {tag or m.digest} names a {size}-byte blob; "
                                f"signatures and attestations are at most "
                                f"{MAX_EVIDENCE_BLOB_BYTES} bytes")
        r = client.request(ref, "GET", f"blobs/{digest}", what=f"blob {digest[:19]}")
        with r:
            data = r.content
        if len(data) != size or digest_of(data) != digest:
            raise UpstreamSignatureError(
                f"{ref}: blob {digest[:19]}… of {tag or m.digest} does not match its digest; "
                "nothing was written")
        blobs[digest] = data
    return Evidence(kind, subject, m, blobs, tag, artifact_type or body.get("artifactType"))
