"""The envelope of every signed document Airlock reads: bounded parse, signed form, kind.

Untrusted bytes become TUF metadata here, bounded in bytes and in JSON
values before a single Python object is built; signatures cover the form
:class:`ReleaseSerializer` writes; and which document it is (a release, a
flags set) is read once, from the signed ``airlock_kind`` field::

    md = parse_metadata(data, Targets, "release metadata")   # FormatError on anything wrong
    payload = ReleaseSerializer().serialize(md.signed)       # what the signatures cover
    if kind_of(md).is_flags(): ...                           # Kind.RELEASE or Kind.FLAGS

Metadata written before the field existed has none; its kind is then the
section it carries (``airlock`` for a release, ``airlock_flags`` for a flags
set), read from the parsed document, never by looking for bytes in it.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from tuf.api.metadata import Metadata, Root, Signed, Targets
from tuf.api.serialization import DeserializationError, SerializationError, SignedSerializer

from airlock.errors import FormatError
from airlock.limits import MAX_METADATA_BYTES, MAX_METADATA_VALUES

__all__ = ["FLAGS_SECTION", "KIND_FIELD", "RELEASE_SECTION", "Kind", "ReleaseSerializer",
           "bundle_kind", "check_metadata_bounds", "kind_of", "parse_metadata"]

#: The signed field naming what a document is (beside TUF's own fields in ``signed``).
KIND_FIELD = "airlock_kind"
#: The section of a release, and of a flags set.
RELEASE_SECTION = "airlock"
FLAGS_SECTION = "airlock_flags"


class Kind(Enum):
    """What a signed bundle document is; ask with the predicates, never by its bytes."""

    RELEASE = "release"
    FLAGS = "flags"

    def is_release(self) -> bool:
        return self is Kind.RELEASE

    def is_flags(self) -> bool:
        return self is Kind.FLAGS

    @property
    def section(self) -> str:
        """The section of ``signed`` holding this kind's body."""
        return RELEASE_SECTION if self is Kind.RELEASE else FLAGS_SECTION


def kind_of(md: Metadata[Any]) -> Kind:
    """The kind of parsed metadata: its signed ``airlock_kind``, else the one section it has.

    A kind this version does not know, a kind that disagrees with the section
    present, or both sections at once is a FormatError (exit 3). Metadata with
    neither section reads as a release, whose strict reader then says what
    is missing.
    """
    fields = md.signed.unrecognized_fields
    has_release, has_flags = RELEASE_SECTION in fields, FLAGS_SECTION in fields
    if has_release and has_flags:
        raise FormatError(f"bundle metadata carries both a '{RELEASE_SECTION}' and an "
                          f"'{FLAGS_SECTION}' section; it is neither a release nor a flags set")
    if KIND_FIELD not in fields:  # written before the field existed: the section says
        return Kind.FLAGS if has_flags else Kind.RELEASE
    raw = fields[KIND_FIELD]
    kind = next((k for k in Kind if k.value == raw), None)
    if kind is None:
        shown = repr(raw)[:40]
        raise FormatError(f"bundle metadata is of kind {shown}, which this version of Airlock "
                          f"does not know (it knows {', '.join(k.value for k in Kind)}); update "
                          "airlock-agent first")
    if (has_flags and not kind.is_flags()) or (has_release and not kind.is_release()):
        raise FormatError(f"bundle metadata says it is a {kind.value} but carries the section "
                          f"of another kind")
    return kind


def bundle_kind(data: bytes) -> Kind:
    """The kind of a bundle's (unverified) metadata, to choose how to verify it.

    Bytes that do not parse read as a release: its verification then names the
    problem in the words it always has ("release metadata is not valid ...").
    """
    try:
        md = parse_metadata(data, Targets, "bundle metadata")
    except FormatError:
        return Kind.RELEASE
    return kind_of(md)


def parse_metadata(data: bytes, kind: type[Root] | type[Targets], what: str) -> Metadata[Any]:
    """Untrusted bytes -> TUF metadata of the expected type, or a FormatError naming the cause.

    The one parse of metadata whose signatures are not checked yet (a trust
    root, a release in a bundle, ``airlock inspect``): bounded in bytes and in
    JSON values before a single Python object is built (see
    :func:`check_metadata_bounds`).
    """
    check_metadata_bounds(data, what)
    try:
        md: Metadata[Any] = Metadata.from_bytes(data)
    except (DeserializationError, ValueError, TypeError, KeyError, RecursionError) as e:
        raise FormatError(f"{what} is not valid TUF metadata: {_cause(e)}") from None
    if not isinstance(md.signed, kind):
        raise FormatError(f"{what} is not of type '{kind.type}'")
    return md


def check_metadata_bounds(data: bytes, what: str) -> None:
    """Refuse metadata larger than any real release, in bytes or in JSON values.

    Counting ``[``, ``{``, ``,`` and ``:`` runs in C over the raw bytes and
    bounds from above the values ``json.loads`` would build (each value but
    the first follows one of them; inside strings they only make the count
    stricter), so a hostile shape such as a million ``[]`` is refused before
    it costs memory. The bundler applies the same check before it signs.
    """
    if len(data) > MAX_METADATA_BYTES:
        raise FormatError(
            f"{what} is {len(data)} bytes; at most {MAX_METADATA_BYTES} are allowed"
        )
    values = 1 + sum(data.count(c) for c in (b"[", b"{", b",", b":"))
    if values > MAX_METADATA_VALUES:
        raise FormatError(
            f"{what} holds up to {values} JSON values; at most {MAX_METADATA_VALUES} are "
            "allowed"
        )


def _cause(e: BaseException) -> str:
    """The message that names the problem: TUF wraps it as 'Failed to deserialize JSON'."""
    inner = e.__cause__ or e
    text = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
    return text[:200]


class ReleaseSerializer(SignedSerializer):
    """The bytes a release signature covers.

    JSON with sorted keys, no whitespace, UTF-8. TUF's default (OLPC canonical
    JSON) forbids floats, but releases carry float tolerances, budgets and
    flag values, so releases are signed over this form instead; Python's float
    repr is the shortest round-tripping form, the same on every platform.
    Trust roots keep TUF's own form.
    """

    def serialize(self, signed_obj: Signed) -> bytes:
        try:
            return json.dumps(
                signed_obj.to_dict(),
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
            ).encode()
        except (TypeError, ValueError) as e:
            raise SerializationError(str(e)) from e

