"""Real cosign-format signatures, made with ``cryptography`` and pushed to the test registry.

The format is cosign's public signature spec (simple signing, tag schema), as
``cosign sign --key`` writes it::

    key = CosignKey.generate(tmp / "vendor")              # vendor.key (private) + vendor.pub
    sign(host, "site/app", digest, key)                  # tag site/app:sha256-<hex>.sig
    sign(host, "site/app", digest, key, over=other)      # a signature over another digest
    sign(host, "site/app", digest, key, tamper=True)     # payload changed after signing
    attest(host, "site/app", digest, key, {"bomFormat": "CycloneDX"})  # sha256-<hex>.att
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class CosignKey:
    private: ec.EllipticCurvePrivateKey
    pub: Path  # the PEM public key a spec's verify.key names

    @classmethod
    def generate(cls, stem: Path) -> CosignKey:
        private = ec.generate_private_key(ec.SECP256R1())
        pub = stem.with_suffix(".pub")
        pub.parent.mkdir(parents=True, exist_ok=True)
        pub.write_bytes(private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return cls(private, pub)


def payload(host: str, repo: str, digest: str) -> bytes:
    """cosign's simple-signing payload for ``digest``."""
    return json.dumps({
        "critical": {"identity": {"docker-reference": f"{host}/{repo}"},
                     "image": {"docker-manifest-digest": digest},
                     "type": "cosign container image signature"},
        "optional": None}, separators=(",", ":")).encode()


def _blob(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data), **extra}


def sign(host: str, repo: str, digest: str, key: CosignKey, *, over: str | None = None,
         tamper: bool = False) -> str:
    """Push a cosign signature of ``digest`` (covering ``over`` if given); the tag it is under."""
    from airlock.registry import RegistryClient, parse_ref

    body = payload(host, repo, over or digest)
    sig = key.private.sign(body, ec.ECDSA(hashes.SHA256()))
    if tamper:
        body = body.replace(b'"optional":null', b'"optional":{"x":"y"}')
    config = json.dumps({"architecture": "", "os": "", "rootfs": {"type": "layers",
                         "diff_ids": ["sha256:" + hashlib.sha256(body).hexdigest()]}}).encode()
    layer = _blob(body, SIMPLE_SIGNING, annotations={
        "dev.cosignproject.cosign/signature": base64.b64encode(sig).decode()})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": _blob(config, "application/vnd.oci.image.config.v1+json"),
                           "layers": [layer]}).encode()
    tag = digest.replace(":", "-") + ".sig"
    client = RegistryClient(insecure=[host])
    ref = parse_ref(f"{host}/{repo}:{tag}")
    for data in (config, body):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        client.upload_blob(ref, d, len(data), lambda data=data: _bytes_io(data))
    client.put_manifest(ref, manifest, OCI_MANIFEST)
    return tag


def attest(host: str, repo: str, digest: str, key: CosignKey, predicate: dict[str, Any]) -> str:
    """Push a cosign attestation (``sha256-<hex>.att``): an in-toto statement in a DSSE envelope."""
    from airlock.registry import RegistryClient, parse_ref

    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                            "subject": [{"name": f"{host}/{repo}",
                                         "digest": {"sha256": digest[7:]}}],
                            "predicateType": "https://cyclonedx.org/bom",
                            "predicate": predicate}).encode()
    pae = b"DSSEv1 %d application/vnd.in-toto+json %d " % (len("application/vnd.in-toto+json"),
                                                           len(statement)) + statement
    sig = key.private.sign(pae, ec.ECDSA(hashes.SHA256()))
    envelope = json.dumps({"payloadType": "application/vnd.in-toto+json",
                           "payload": base64.b64encode(statement).decode(),
                           "signatures": [{"sig": base64.b64encode(sig).decode()}]}).encode()
    config = b"{}"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": _blob(config, "application/vnd.oci.image.config.v1+json"),
                           "layers": [_blob(envelope, "application/vnd.dsse.envelope.v1+json",
                                            annotations={"predicateType":
                                                         "https://cyclonedx.org/bom"})]}).encode()
    tag = digest.replace(":", "-") + ".att"
    client = RegistryClient(insecure=[host])
    ref = parse_ref(f"{host}/{repo}:{tag}")
    for data in (config, envelope):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        client.upload_blob(ref, d, len(data), lambda data=data: _bytes_io(data))
    client.put_manifest(ref, manifest, OCI_MANIFEST)
    return tag


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def digest_of_tag(host: str, repo_tag: str) -> str:
    """The manifest digest a tag names now."""
    from airlock.registry import RegistryClient, parse_ref

    return RegistryClient(insecure=[host]).get_manifest(parse_ref(f"{host}/{repo_tag}")).digest
