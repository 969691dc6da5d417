"""The front of a bundle: where its metadata lives, and the padded metadata slot.

``airlock/release.json`` is written into a padded slot: the JSON document,
then spaces and one newline (JSON whitespace, which every JSON reader skips)
up to a whole number of tar blocks with at least ``SLOT_SPARE`` bytes to
spare. A signature added after the build (``airlock sign``) rewrites only the
slot's bytes, so the tar header (whose size field would change) and every
blob after it stay byte for byte where they were::

    slot = metadata_slot(release_json)          # padded: len(slot) % 512 == 0
    fitted = metadata_slot(new_json, len(slot)) # same size, or SlotFullError

The slot's size depends only on the JSON's length, so builds stay
reproducible; a bundle written before the slot existed is a slot with no
spare room. ``bundler.signing.slot_rewrite`` rewrites a slot in place
(crash-safe) or copies the bundle around a bigger one.
"""

from __future__ import annotations

from airlock.errors import FormatError
from airlock.limits import MAX_METADATA_BYTES

__all__ = ["JSON_SPACE", "RELEASE_PATH", "ROOT_PATH", "SLOT_BLOCK", "SLOT_SPARE", "SlotFullError",
           "metadata_slot"]

ROOT_PATH = "airlock/root.json"
RELEASE_PATH = "airlock/release.json"

#: A tar block: the slot ends on one, so its member needs no tar padding.
SLOT_BLOCK = 512
#: Room a slot keeps beyond its JSON for signatures added after the build:
#: about 30 Ed25519 or ECDSA signatures, or 7 RSA-4096 ones (a KMS key).
SLOT_SPARE = 8 * 1024
JSON_SPACE = b" \t\r\n"


class SlotFullError(FormatError):
    """New metadata does not fit the bundle's metadata slot; the bundle must be copied."""


def metadata_slot(release_json: bytes, size: int | None = None) -> bytes:
    """``release_json`` padded to a slot: spaces and a final newline, ``size`` bytes in all.

    ``size=None`` chooses the build's size: the JSON, ``SLOT_SPARE`` and the
    newline, rounded up to a whole tar block, but no more than a reader takes
    (``MAX_METADATA_BYTES``) when the JSON fits that. Raises SlotFullError
    when the JSON (and its newline) does not fit ``size``.
    """
    body = release_json.rstrip(JSON_SPACE)
    if size is None:
        least = -(-(len(body) + 1) // SLOT_BLOCK) * SLOT_BLOCK
        roomy = -(-(len(body) + 1 + SLOT_SPARE) // SLOT_BLOCK) * SLOT_BLOCK
        size = max(least, min(roomy, MAX_METADATA_BYTES))
    if len(body) + 1 > size:
        raise SlotFullError(
            f"the metadata ({len(body)} bytes) no longer fits its {size}-byte slot"
        )
    return body + b" " * (size - len(body) - 1) + b"\n"
