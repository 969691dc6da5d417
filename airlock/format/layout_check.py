"""The OCI layout inside a bundle checked against itself: every reference carried or expected.

The signature vouches for every file's bytes; :class:`LayoutCheck` checks what
those bytes say, as the reader streams them past::

    check = LayoutCheck(release.files, expected=release.delta.expects)
    if check.wants("index.json"):
        check.see("index.json", data)   # raises FormatError on a dangling reference
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airlock.errors import FormatError
from airlock.format.oci import BLOB_PREFIX, INDEX_TYPES

__all__ = ["FileInfo", "LayoutCheck"]


@dataclass(frozen=True)
class FileInfo:
    """A file of the bundle's OCI layout as the signed metadata lists it."""

    length: int
    sha256: str  # hex


class LayoutCheck:
    """Checks, while a bundle streams past, that its OCI layout references only what it has.

    The signature vouches for every file's bytes; this checks what those bytes
    say: ``index.json`` and each manifest it names must parse, and every
    descriptor they hold (manifests, configs, layers) must be listed in the
    release with the same size: carried in the bundle, or, for a delta bundle,
    expected on the device.
    A nested index (a multi-arch list) is not followed: only the platforms
    chosen at build time are carried. ``index.json`` must come before any blob,
    as the writer puts it, so no manifest streams past unchecked.
    :meth:`BundleReader.files` drives it::

        check = LayoutCheck(release.files, expected=release.delta.expects)
        if check.wants(path):        # index.json, or a manifest it named
            check.see(path, data)    # raises FormatError on a dangling reference
    """

    def __init__(self, listed: Mapping[str, FileInfo], expected: Sequence[str] = ()) -> None:
        self._listed = listed
        self._expected = {d[7:] for d in expected if d.startswith("sha256:")}
        self._manifests: set[str] = set()
        self._index_seen = "index.json" not in listed

    def wants(self, path: str) -> bool:
        """Whether ``path`` must be read whole and given to :meth:`see`."""
        if path == "index.json":
            return True
        if path.startswith(BLOB_PREFIX) and not self._index_seen:
            raise FormatError(f"{path} comes before index.json; the layout's index must come first")
        return path in self._manifests

    def see(self, path: str, data: bytes) -> None:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise FormatError(f"{path} is not valid JSON: {str(e)[:120]}") from None
        if not isinstance(doc, dict):
            raise FormatError(f"{path} is not a JSON object")
        if path == "index.json":
            self._index_seen = True
            for d in self._descriptors(path, doc, "manifests"):
                if self._check(path, d) and d.get("mediaType") not in INDEX_TYPES:
                    self._manifests.add(BLOB_PREFIX + d["digest"][7:])
        elif doc.get("mediaType") not in INDEX_TYPES and "manifests" not in doc:
            config = doc.get("config")
            for d in [*([config] if config is not None else []), *self._descriptors(path, doc, "layers")]:
                self._check(path, d)

    @staticmethod
    def _descriptors(path: str, doc: dict[str, Any], key: str) -> list[Any]:
        found = doc.get(key, [])
        if not isinstance(found, list):
            raise FormatError(f"{path}: '{key}' is not a list")
        return found

    def _check(self, path: str, d: Any) -> bool:
        """True when ``d`` is carried in this bundle; raises unless listed with its size."""
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            raise FormatError(f"{path} holds a descriptor without a digest")
        digest, size = d["digest"], d.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise FormatError(f"{path}: descriptor {digest[:23]}… has no valid size")
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise FormatError(f"{path}: descriptor digest {digest[:80]!r} is not sha256")
        info = self._listed.get(BLOB_PREFIX + digest[7:])
        carried = digest[7:] not in self._expected
        if info is None:
            raise FormatError(
                f"{path} names {digest[:23]}… that the bundle does not carry (incomplete layout)"
            )
        if info.length != size:
            raise FormatError(
                f"{path} says {digest[:23]}… is {size} bytes; the "
                f"{'bundle carries' if carried else 'release expects'} {info.length}"
            )
        return carried
