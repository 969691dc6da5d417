"""A held release as its bundle file: the tar the one writer makes, re-assembled piece by piece.

The device keeps no bundle file: it keeps ``release.json``, ``index.json`` and
the blobs. ``airlock.format.writer`` is reproducible (fixed headers, order and
padding), so the same members laid out the same way give back the bundle that
was built, byte for byte, when it carried no rotated trust root and was not
re-signed into a larger slot (otherwise a bundle with the same signed content).
Nothing is written: a byte range maps to pieces, each a literal or a slice of a
stored blob::

    image = BundleImage.of(release_json, index_json, files)
    image.size                          # what Content-Length says
    for piece, start, count in image.slices(offset, length):
        ...                             # piece.data[start:start+count] or the blob file's bytes
"""

from __future__ import annotations

import bisect
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from airlock.format.oci import BLOB_PREFIX, oci_layout
from airlock.format.slot import RELEASE_PATH, metadata_slot
from airlock.format.writer import member_header

__all__ = ["BundleImage", "Piece"]


@dataclass(frozen=True)
class Piece:
    """``size`` bytes at ``offset`` of the bundle: ``data``, or the blob ``blob`` (hex) whole."""

    offset: int
    size: int
    data: bytes | None = None
    blob: str | None = None


@dataclass(frozen=True)
class BundleImage:
    pieces: tuple[Piece, ...]
    size: int

    @classmethod
    def of(cls, release_json: bytes, index_json: bytes,
           files: Mapping[str, tuple[int, str]]) -> BundleImage:
        """``files``: the release's shipped files, path -> (size, sha256 hex)."""
        pieces: list[Piece] = []
        at = 0

        def literal(data: bytes) -> None:
            nonlocal at
            if data:
                pieces.append(Piece(at, len(data), data=data))
                at += len(data)

        slot = metadata_slot(release_json)
        literal(member_header(RELEASE_PATH, len(slot)) + slot)
        order = {"oci-layout": 0, "index.json": 1}
        for path, (size, sha) in sorted(files.items(),
                                        key=lambda kv: (order.get(kv[0], 2), kv[1][0], kv[0])):
            literal(member_header(path, size))
            if path == "oci-layout":
                literal(oci_layout())
            elif path == "index.json":
                literal(index_json)
            elif path.startswith(BLOB_PREFIX) and size:
                pieces.append(Piece(at, size, blob=sha))
                at += size
            literal(b"\0" * (-size % tarfile.BLOCKSIZE))
        end = 2 * tarfile.BLOCKSIZE  # what TarFile.close() writes: two zero blocks, then a record
        end += -(at + end) % tarfile.RECORDSIZE
        literal(b"\0" * end)
        return cls(tuple(pieces), at)

    def slices(self, offset: int, length: int) -> Iterator[tuple[Piece, int, int]]:
        """(piece, start in piece, count) covering ``length`` bytes from ``offset``."""
        starts = [p.offset for p in self.pieces]
        i = max(0, bisect.bisect_right(starts, offset) - 1)
        end = min(self.size, offset + length)
        while offset < end and i < len(self.pieces):
            piece = self.pieces[i]
            start = offset - piece.offset
            count = min(piece.size - start, end - offset)
            if count > 0:
                yield piece, start, count
                offset += count
            i += 1
