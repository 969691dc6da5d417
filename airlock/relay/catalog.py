"""What a relay holds: repositories and tags, manifests, blobs and bundles of verified releases.

Built from releases whose signatures verified (a device's kept releases, or a
bundle a host verified at start). An image's ``org.opencontainers.image.ref.name``
(``127.0.0.1:5000/app:1``) is served as repository ``app``, tag ``1``: the
registry host is left out, since a runtime asks its mirror for the path only
(``/v2/app/manifests/1?ns=127.0.0.1:5000``)::

    catalog = Catalog([HeldRelease("site-1", release_json, index_json, files)],
                      blob_file=lambda hex_: store / hex_)
    catalog.manifest("app", "1")              # Manifest(digest, media_type, size) or None
    catalog.tag_list("app")                   # ["1"]
    catalog.blob_size("sha256:…")             # served only when held
    catalog.bundles["site-1"].size            # the bundle file, re-assembled
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.format.oci import (
    ANNOTATION_REF_NAME,
    BLOB_PREFIX,
    INDEX_TYPES,
    MANIFEST_TYPES,
    is_digest,
    oci_layout,
)
from airlock.relay.bundle_image import BundleImage
from airlock.relay.verified import VerifiedBlobs

__all__ = ["Catalog", "HeldRelease", "Manifest", "registries_named", "split_ref"]

#: A manifest or index larger than this is not read for its children or subject.
_MAX_MANIFEST = 4 * 1024 * 1024


@dataclass(frozen=True)
class HeldRelease:
    """One release a relay serves; ``files`` are the shipped ones, path -> (size, sha256 hex)."""

    id: str
    release_json: bytes
    index_json: bytes | None
    files: Mapping[str, tuple[int, str]]


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    size: int


def split_ref(ref: str) -> tuple[str, str | None]:
    """``host:5000/team/app:1`` -> (``team/app``, ``1``); a digest reference has no tag."""
    name = ref.partition("@")[0]
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    return "/".join(parts), tag


def registries_named(releases: Sequence[HeldRelease]) -> list[str]:
    """The registry hosts the releases' images were pulled from (``127.0.0.1:5000``)."""
    hosts = set()
    for held in releases:
        try:
            index = json.loads(held.index_json or b"{}")
        except ValueError:
            continue
        for desc in index.get("manifests", []) if isinstance(index, dict) else []:
            ref = (desc.get("annotations") or {}).get(ANNOTATION_REF_NAME) \
                if isinstance(desc, dict) else None
            if isinstance(ref, str) and "/" in ref:
                first = ref.split("/", 1)[0]
                if "." in first or ":" in first or first == "localhost":
                    hosts.add(first)
    return sorted(hosts)


class Catalog:
    def __init__(self, releases: Sequence[HeldRelease],
                 blob_file: Callable[[str], Path | None]) -> None:
        self.blobs = VerifiedBlobs(blob_file)
        self.sizes: dict[str, int] = {}
        self.tags: dict[str, dict[str, Manifest]] = {}
        self.manifests: dict[str, Manifest] = {}
        self.subjects: dict[str, list[dict[str, Any]]] = {}
        self.bundles: dict[str, BundleImage] = {}
        for held in releases:  # later ones win a tag two releases share
            self._add(held)

    def _add(self, held: HeldRelease) -> None:
        for path, (size, sha) in held.files.items():
            if path.startswith(BLOB_PREFIX):
                self.sizes[sha] = size
        if held.index_json is None:
            return
        try:
            index = json.loads(held.index_json)
        except ValueError:
            return
        for desc in index.get("manifests", []) if isinstance(index, dict) else []:
            found = self._walk(desc, depth=0)
            ref = (desc.get("annotations") or {}).get(ANNOTATION_REF_NAME)
            if found is None or not isinstance(ref, str):
                continue
            repo, tag = split_ref(ref)
            if tag:
                self.tags.setdefault(repo, {})[tag] = found
                if "/" not in repo:  # docker.io/busybox is asked for as library/busybox
                    self.tags.setdefault(f"library/{repo}", {})[tag] = found
        if self._literals_match(held):
            self.bundles[held.id] = BundleImage.of(held.release_json, held.index_json,
                                                   held.files)

    @staticmethod
    def _literals_match(held: HeldRelease) -> bool:
        """The bundle can be re-assembled: its two small files are the bytes it was signed with."""
        for path, data in (("oci-layout", oci_layout()), ("index.json", held.index_json or b"")):
            want = held.files.get(path)
            if want is not None and hashlib.sha256(data).hexdigest() != want[1]:
                return False
        return True

    def _walk(self, desc: Any, depth: int) -> Manifest | None:
        """Record a manifest (and an index's children); the manifest, or None if not held."""
        if not isinstance(desc, dict) or depth > 2:
            return None
        digest, media = desc.get("digest"), desc.get("mediaType")
        if not is_digest(digest) or not isinstance(digest, str) \
                or media not in (*MANIFEST_TYPES, *INDEX_TYPES):
            return None
        size = self.sizes.get(digest[7:])
        if size is None:
            return None
        found = Manifest(digest, media, size)
        self.manifests[digest] = found
        doc = self._read_json(digest[7:], size)
        subject = doc.get("subject") if isinstance(doc, dict) else None
        if isinstance(subject, dict) and is_digest(subject.get("digest")):
            entry = {"mediaType": media, "digest": digest, "size": size}
            for key in ("artifactType", "annotations"):
                if key in doc:
                    entry[key] = doc[key]
            if "artifactType" not in entry and isinstance(doc.get("config"), dict):
                entry["artifactType"] = doc["config"].get("mediaType")
            self.subjects.setdefault(subject["digest"], []).append(entry)
        if media in INDEX_TYPES and isinstance(doc, dict):
            for child in doc.get("manifests", []) or []:
                self._walk(child, depth + 1)
        return found

    def _read_json(self, hex_: str, size: int) -> Any:
        if size > _MAX_MANIFEST:
            return None
        f = self.blobs.open(hex_)
        if f is None:
            return None
        with f:
            try:
                return json.loads(f.read(_MAX_MANIFEST))
            except ValueError:
                return None

    def manifest(self, repo: str, reference: str) -> Manifest | None:
        if is_digest(reference):
            return self.manifests.get(reference) if repo in self.tags else None
        return self.tags.get(repo, {}).get(reference)

    def tag_list(self, repo: str) -> list[str] | None:
        tags = self.tags.get(repo)
        return None if tags is None else sorted(tags)

    def blob_size(self, digest: str) -> int | None:
        return self.sizes.get(digest[7:]) if is_digest(digest) else None
