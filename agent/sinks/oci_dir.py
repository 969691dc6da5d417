"""The default image sink: an OCI image layout directory (``ROOT/images``).

containerd, podman and skopeo import from it, e.g.::

    sink = OciDirSink(Path("/var/lib/airlock/images"))
    sink.deliver(release, blob_path)
    # skopeo copy oci:/var/lib/airlock/images:registry.local/app:1.0 containers-storage:app:1.0

Each image's manifest, config and layers are placed in ``blobs/sha256/``
(hard links to the agent's verified store where the filesystem allows,
otherwise copies), then ``index.json`` gets two entries per image and
platform:

* ``org.opencontainers.image.ref.name`` = the reference as the spec wrote
  it (``registry.local/app:1.0``); a newer release with the same reference
  moves this name to its manifest;
* ``…ref.name`` = ``registry.local/app@sha256:…``, the pinned name, which is
  never removed, so the images of a release rolled back to stay in place.

Blobs are never deleted here. ``index.json`` is replaced atomically under a
lock, so a crash leaves the old or the new index, never half of one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airlock.errors import DeliveryError
from airlock.files import write_atomic
from airlock.format.oci import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    OCI_INDEX,
    digest_hex,
    oci_layout,
    platform_of,
)
from airlock.limits import CHUNK
from keys.release import ImageEntry, Release

__all__ = ["OciDirSink", "image_blobs", "index_entries", "link_or_copy"]


def pinned_name(image: ImageEntry) -> str:
    """``host/repo:tag`` or ``host/repo@…`` -> ``host/repo@<manifest digest>``."""
    name = image.ref.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rfind(":")]
    return f"{name}@{image.manifest}"


def image_blobs(image: ImageEntry) -> list[str]:
    return list(dict.fromkeys([image.manifest, *image.blobs]))


def index_entries(image: ImageEntry, size: int) -> list[dict[str, Any]]:
    """The index.json descriptors naming ``image``: by its reference, then pinned."""
    base: dict[str, Any] = {"mediaType": image.media_type, "digest": image.manifest, "size": size}
    if image.platform:
        base["platform"] = platform_of(image.platform)
    return [
        {**base, "annotations": {ANNOTATION_REF_NAME: image.ref, ANNOTATION_CONTAINERD_NAME: image.ref}},
        {**base, "annotations": {ANNOTATION_REF_NAME: pinned_name(image)}},
    ]


def link_or_copy(src: Path, dest: Path) -> None:
    """Put ``src`` at ``dest`` atomically, unless a file of the same size is there."""
    try:
        if dest.stat().st_size == src.stat().st_size:
            return
    except FileNotFoundError:
        pass
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            with src.open("rb") as i, tmp.open("wb") as o:
                shutil.copyfileobj(i, o, CHUNK)
                o.flush()
                os.fsync(o.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


class OciDirSink:
    name = "oci-dir"

    def __init__(self, path: Path) -> None:
        self.path = path

    def deliver(self, release: Release, blob_path: Callable[[str], Path]) -> None:
        if not release.images:
            return
        try:
            blobs = self.path / "blobs" / "sha256"
            blobs.mkdir(parents=True, exist_ok=True)
            if not (self.path / "oci-layout").exists():
                write_atomic(self.path / "oci-layout", oci_layout())
            for image in release.images:
                for digest in image_blobs(image):
                    link_or_copy(blob_path(digest), blobs / digest_hex(digest))
            with self._locked():
                index = self._read_index()
                for image in release.images:
                    size = (blobs / digest_hex(image.manifest)).stat().st_size
                    for entry in index_entries(image, size):
                        _upsert(index["manifests"], entry)
                data = json.dumps(index, indent=2, sort_keys=True).encode() + b"\n"
                write_atomic(self.path / "index.json", data)
        except OSError as e:
            raise DeliveryError(f"image sink oci-dir {self.path}: {e.strerror or e}") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.path / ".airlock-lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read_index(self) -> dict[str, Any]:
        try:
            index = json.loads((self.path / "index.json").read_bytes())
        except FileNotFoundError:
            return {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [],
            }
        except ValueError:
            raise DeliveryError(
                f"image sink oci-dir: {self.path / 'index.json'} is not valid JSON; "
                "fix or move it aside (its blobs are kept)"
            ) from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise DeliveryError(
                f"image sink oci-dir: {self.path / 'index.json'} is not an OCI index"
            )
        return index


def _same_slot(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    name_a = (a.get("annotations") or {}).get(ANNOTATION_REF_NAME)
    name_b = (b.get("annotations") or {}).get(ANNOTATION_REF_NAME)
    return bool(name_a) and name_a == name_b and a.get("platform") == b.get("platform")


def _upsert(manifests: list[Any], entry: dict[str, Any]) -> None:
    """Point ``entry``'s name (and platform) at its manifest; leave every other entry be."""
    for i, old in enumerate(manifests):
        if isinstance(old, dict) and _same_slot(old, entry):
            manifests[i] = entry
            return
    manifests.append(entry)
