"""What the bundle reader lets tarfile parse: bounded extended headers, safe members only.

tarfile reads a pax or GNU long-name header whole and parses it before the
member it describes, so hostile archives are stopped here, before that::

    tar = BundleTar.open(fileobj=stream, mode="r:", tarinfo=BoundedTarInfo)
    try:
        member = tar.next()        # extended headers bounded (airlock.limits)
    except TAR_ERRORS as e:        # what tarfile raises on hostile input
        raise FormatError(...)
    check_member(member)           # regular file, safe path, inside the layout
"""

from __future__ import annotations

import posixpath
import re
import tarfile
from typing import Any, cast

from airlock.console import shown
from airlock.errors import FormatError
from airlock.format.oci import BLOB_PREFIX
from airlock.format.slot import RELEASE_PATH, ROOT_PATH
from airlock.limits import (
    MAX_EXTENDED_HEADER_BYTES,
    MAX_EXTENDED_HEADER_TOTAL_BYTES,
    MAX_EXTENDED_HEADERS_PER_MEMBER,
)

__all__ = ["MEMBER_NAME_SHOWN", "TAR_ERRORS", "BoundedTarInfo", "BundleTar", "check_member", "member"]


# Headers that tarfile reads whole into memory before the member they describe.
_EXTENDED_TYPES = (
    tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
)

# What tarfile raises on hostile input. ValueError: its pax sparse-map parser
# fails that way on garbage. RecursionError and MemoryError: a bound below
# missed a way to exhaust the reader; still a bad bundle, never exit 1.
TAR_ERRORS = (
    tarfile.TarError, OSError, EOFError, UnicodeError, ValueError, RecursionError, MemoryError,
)


class BundleTar(tarfile.TarFile):
    """A TarFile that counts the extended headers it has read, for :class:`BoundedTarInfo`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before TarFile.__init__, which already reads the first header.
        self.extended_bytes = 0  # in the whole archive so far
        self.extended_in_row = 0  # before the member being read
        super().__init__(*args, **kwargs)


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that bounds extended headers before tarfile reads and parses them.

    tarfile reads a pax or GNU long-name header whole, parses it (quadratic
    on unpatched Pythons, CVE-2024-6232), then recurses to read the header it
    describes. Each header's size, the headers in a row and their total in
    the archive are bounded (``airlock.limits``), so none of that grows with
    what an attacker writes.
    """

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size < 0:  # base-256 sizes can be negative; tarfile would seek backwards
            raise FormatError(f"bundle has a tar header with negative size {self.size}")
        if self.type not in _EXTENDED_TYPES:
            return super()._proc_member(tar)  # type: ignore[misc, no-any-return]
        if self.size > MAX_EXTENDED_HEADER_BYTES:
            raise FormatError(
                f"bundle has a {self.size}-byte extended tar header; at most "
                f"{MAX_EXTENDED_HEADER_BYTES} bytes are allowed"
            )
        counts = cast(BundleTar, tar)
        counts.extended_bytes += self.size
        if counts.extended_bytes > MAX_EXTENDED_HEADER_TOTAL_BYTES:
            raise FormatError(
                f"bundle has more than {MAX_EXTENDED_HEADER_TOTAL_BYTES} bytes of extended "
                "tar headers"
            )
        if counts.extended_in_row >= MAX_EXTENDED_HEADERS_PER_MEMBER:
            raise FormatError(
                f"bundle has more than {MAX_EXTENDED_HEADERS_PER_MEMBER} extended tar headers "
                "in a row"
            )
        counts.extended_in_row += 1
        try:
            return super()._proc_member(tar)  # type: ignore[misc, no-any-return]
        finally:
            counts.extended_in_row -= 1


#: Member names quoted in a refusal: the shapes of the layout (or near them), nothing
#: longer. Any other name is shown by length and digest (``airlock.console.shown``): a tar
#: long name or pax path is data, and data may be another file's content.
MEMBER_NAME_SHOWN = re.compile(r"[A-Za-z0-9._/+-]{1,120}")


def member(name: str) -> str:
    """``bundle member 'NAME'``, or by length and digest when the name is not plain."""
    return f"bundle member {shown(name, MEMBER_NAME_SHOWN)}"


def check_member(m: tarfile.TarInfo) -> None:
    """Refuse any member a hostile archive could use against the reader's host."""
    name = m.name
    label = member(name)
    if not m.isreg() or m.issparse() or m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = "link" if m.issym() or m.islnk() else "directory" if m.isdir() else "special file"
        raise FormatError(f"{label} is a {kind}; only regular files are allowed")
    if m.size < 0:  # a pax 'size' record can say anything
        raise FormatError(f"{label} has negative size {m.size}")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or posixpath.normpath(name) != name
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise FormatError(f"{label} has an unsafe path")
    if not (
        name in (ROOT_PATH, RELEASE_PATH, "oci-layout", "index.json")
        or name.startswith(BLOB_PREFIX)
    ):
        raise FormatError(f"{label} is outside the bundle layout")
    # The stdlib's tar data filter is not used: Debian 12's Python 3.11.2
    # lacks it. Every rule it has is covered above: regular files only (no
    # links, devices or fifos), no absolute, '..' or unnormalised names, and
    # member modes are never applied (the reader copies bytes, not modes).
