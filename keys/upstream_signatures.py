"""Cosign key-based signatures ("simple signing") checked: on the host at build, offline after.

The bundler checks what a registry serves with these (``bundler.build.cosign``),
``airlock verify`` checks what a bundle carries, and a device checks it at
install when the release says ``supply_chain.enforce_on_device``::

    why = verify_manifest(signature_manifest, {digest: payload_bytes}, key_pem, "sha256:4f…")
    problems = recheck(release, read_blob)   # [] when every recorded signature still checks

A signature counts when a layer of type
``application/vnd.dev.cosign.simplesigning.v1+json`` carries in its annotation
``dev.cosignproject.cosign/signature`` a base64 ECDSA P-256 / SHA-256 (DER)
signature over the payload blob's bytes that verifies with the key, and the
payload (``{"critical": {"image": {"docker-manifest-digest": …}, "type":
"cosign container image signature"}, …}``) names the digest in question
(cosign's specs/SIGNATURE_SPEC.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from keys.release import Release

__all__ = ["PAYLOAD_TYPE", "SIGNATURE_ANNOTATION", "SIMPLE_SIGNING_TYPE", "check_payload",
           "key_id", "load_public_key", "pem_of", "recheck", "verify_manifest"]

SIMPLE_SIGNING_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PAYLOAD_TYPE = "cosign container image signature"


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


def pem_of(der_b64: str) -> bytes:
    """A key as the signed metadata records it (base64 DER) back to PEM."""
    body = base64.b64encode(base64.b64decode(der_b64)).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines)
            + "\n-----END PUBLIC KEY-----\n").encode()


def recheck(r: Release, read: Callable[[str], bytes | None]) -> list[str]:
    """Why the carried upstream signatures do not satisfy the recorded policy (empty: they do).

    ``read(digest)`` gives a carried blob's bytes (None when absent): the
    signature manifests and payloads the ``supply_chain`` section names.
    """
    sc = r.supply_chain
    if sc is None:
        return []
    problems = []
    for v in sc.verified:
        reasons = []
        for e in [e for e in sc.of_kind("signature") if e.subject == v.digest]:
            data = read(e.manifest)
            if data is None:
                reasons.append("its signature manifest is not in the bundle")
                continue
            try:
                manifest = json.loads(data)
            except ValueError:
                reasons.append("its signature manifest is not JSON")
                continue
            blobs = {str(d.get("digest")): b for d in manifest.get("layers") or []
                     if isinstance(d, dict) and (b := read(str(d.get("digest")))) is not None}
            why = verify_manifest(manifest, blobs, pem_of(sc.keys[v.key]), v.digest)
            if why is None:
                break
            reasons.append(why)
        else:
            problems.append(f"{v.ref}: upstream signature of {v.digest[:19]}… does not check: "
                            + (reasons[0] if reasons else "no signature carried"))
    if sc.require_signatures:
        verified = {v.digest for v in sc.verified}
        for i in r.images:
            if i.manifest not in verified and (i.index or "") not in verified:
                problems.append(f"{i.ref}: policy.require_signatures, but no verified "
                                "upstream signature is recorded for it")
        for m in r.models:
            if not m.source or m.source.rsplit("@", 1)[-1] not in verified:
                problems.append(f"model {m.name}: policy.require_signatures, but no verified "
                                "upstream signature is recorded for it")
    return problems
