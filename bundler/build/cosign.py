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

import json
from dataclasses import dataclass, field
from typing import Any

from airlock.errors import RegistryError, UpstreamSignatureError
from airlock.format.oci import digest_of
from airlock.limits import MAX_EVIDENCE_BLOB_BYTES
from airlock.registry import Manifest, Ref, RegistryClient
from keys.upstream_signatures import (
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_TYPE,
    check_payload,
    key_id,
    load_public_key,
    verify_manifest,
)

__all__ = ["SIGNATURE_ANNOTATION", "SIMPLE_SIGNING_TYPE", "Evidence", "Verified", "check_payload",
           "key_id", "load_public_key", "signature_tag", "verify_manifest", "verify_upstream"]

COSIGN_SIG_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
OCI_INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


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
