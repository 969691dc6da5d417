"""The OCI vocabulary, once: media types, annotations, descriptors, digests, platforms.

Modelled on go-containerregistry's ``pkg/v1/types``: every other module
names these constants instead of spelling the strings again::

    from airlock.format import oci

    desc = oci.Descriptor.of(oci.OCI_EMPTY, b"{}")
    oci.blob_path(desc.digest)                  # "blobs/sha256/44136f…"
    oci.platform_of("linux/arm64/v8")          # {"os": "linux", "architecture": "arm64", ...}
    oci.platform_matches(oci.platform_of("linux/amd64"), {"os": "linux", "architecture": "amd64"})

It holds words and pure helpers only: no I/O beyond hashing a file, and no
decisions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from airlock.errors import FormatError
from airlock.limits import CHUNK

__all__ = [
    "ANNOTATION_CONTAINERD_NAME",
    "ANNOTATION_REF_NAME",
    "ANNOTATION_TITLE",
    "BLOB_PREFIX",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "IMAGE_LAYOUT_VERSION",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYOUT",
    "OCI_MANIFEST",
    "Descriptor",
    "blob_path",
    "canonical_json",
    "digest_hex",
    "digest_of",
    "hash_file",
    "is_digest",
    "is_sha256_hex",
    "oci_index",
    "oci_layout",
    "oci_manifest",
    "platform_matches",
    "platform_of",
    "platform_text",
]

# -- media types -----------------------------------------------------------------

OCI_LAYOUT = "application/vnd.oci.image.layout.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

# -- annotations and the image layout ---------------------------------------------

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
IMAGE_LAYOUT_VERSION = "1.0.0"
BLOB_PREFIX = "blobs/sha256/"

# -- digests -----------------------------------------------------------------------

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}\Z")


def is_digest(text: object) -> bool:
    """True for ``sha256:`` and 64 lower-case hex digits, the only digests Airlock accepts."""
    return isinstance(text, str) and _DIGEST.match(text) is not None


def is_sha256_hex(text: object) -> TypeGuard[str]:
    """True for 64 lower-case hex digits: a digest without its ``sha256:`` (TUF hashes, key ids)."""
    return isinstance(text, str) and is_digest(f"sha256:{text}")


def digest_hex(digest: str) -> str:
    """``sha256:<hex>`` -> ``<hex>``; a FormatError for anything else."""
    if not is_digest(digest):
        raise FormatError(f"not a sha256 digest: {digest[:80]!r}")
    return digest[7:]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_path(digest: str) -> str:
    """The path of a blob inside an OCI layout (and inside a bundle's tar)."""
    return BLOB_PREFIX + digest_hex(digest)


def hash_file(path: Path, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """``(sha256 hex, size)`` of a file, read in chunks (memory stays flat)."""
    h, size = hashlib.sha256(), 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with path.open("rb") as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
            if progress:
                progress(n)
    return h.hexdigest(), size


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON for the blobs Airlock writes (manifests, index), so builds repeat."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# -- platforms -------------------------------------------------------------------


def platform_of(text: str) -> dict[str, str]:
    """``linux/arm64/v8`` -> ``{"os": "linux", "architecture": "arm64", "variant": "v8"}``."""
    parts = text.split("/")
    out = {"os": parts[0], "architecture": parts[1] if len(parts) > 1 else ""}
    if len(parts) > 2:
        out["variant"] = parts[2]
    return out


def platform_text(platform: Mapping[str, Any]) -> str:
    """The inverse of :func:`platform_of`: ``linux/arm64/v8``."""
    parts = (platform.get("os"), platform.get("architecture"), platform.get("variant"))
    return "/".join(p for p in parts if isinstance(p, str) and p)


def platform_matches(want: Mapping[str, str], have: Mapping[str, Any]) -> bool:
    """Whether ``have`` (an index entry's or a config's platform) is the ``want``ed one."""
    if have.get("os") != want["os"] or have.get("architecture") != want["architecture"]:
        return False
    return "variant" not in want or have.get("variant") == want["variant"]


# -- descriptors and documents -----------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        if self.platform:
            d["platform"] = dict(self.platform)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    @classmethod
    def of(cls, media_type: str, data: bytes, **kw: Any) -> Descriptor:
        return cls(media_type, digest_of(data), len(data), **kw)


def oci_layout() -> bytes:
    """The ``oci-layout`` file of an image layout."""
    return canonical_json({"imageLayoutVersion": IMAGE_LAYOUT_VERSION})


def oci_manifest(
    config: Descriptor,
    layers: Sequence[Descriptor],
    *,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """An OCI image manifest; with ``artifact_type`` it is an artifact as ORAS makes them."""
    m: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_dict(),
        "layers": [layer.to_dict() for layer in layers],
    }
    if artifact_type:
        m["artifactType"] = artifact_type
    if annotations:
        m["annotations"] = dict(annotations)
    return canonical_json(m)


def oci_index(manifests: Sequence[Descriptor]) -> bytes:
    return canonical_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [m.to_dict() for m in manifests]}
    )
