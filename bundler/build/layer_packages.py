"""The packages installed in an image, read from its layers' package databases.

``bundler.build.sbom`` lists them per image::

    pkgs = image_packages([open_layer_1, open_layer_2])   # openers of the layer blobs, in order
    [(p.ecosystem, p.name, p.version) for p in pkgs]       # ("deb", "libc6", "2.36-9+deb12u4"), …

Read, in layer order (a later layer's file replaces an earlier one's, and an
OCI whiteout ``.wh.NAME`` deletes it, as the image's root filesystem would):

* Debian and Ubuntu: ``var/lib/dpkg/status`` (and distroless images'
  ``var/lib/dpkg/status.d/*``), packages whose ``Status`` ends in ``installed``;
* Alpine: ``lib/apk/db/installed``;
* Python: every ``*.dist-info/METADATA`` (``Name`` and ``Version``).

RPM's database is SQLite or Berkeley DB, not a plain file: not read (the
SBOM says nothing of RPM packages). A layer that is not a tar (zstd, or not
an image layer at all) is skipped; a database file larger than
``MAX_PACKAGE_DB_BYTES`` is skipped, not read into memory.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO

from airlock.limits import MAX_PACKAGE_DB_BYTES

__all__ = ["Package", "image_packages", "parse_apk", "parse_dist_info", "parse_dpkg"]

Opener = Callable[[], IO[bytes]]


@dataclass(frozen=True, order=True)
class Package:
    ecosystem: str  # "deb" | "apk" | "pypi": the purl type
    name: str
    version: str
    arch: str | None = None
    source: str | None = None  # the Debian source package, when it differs


def _stanzas(text: str) -> Iterable[dict[str, str]]:
    """RFC 822-style paragraphs (dpkg status, apk's installed DB uses ``K:value`` lines)."""
    for para in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                continue  # a continuation line (Description): not needed
            k, sep, v = line.partition(":")
            if sep:
                key = k.strip()
                fields[key] = v.strip()
        if fields:
            yield fields


def parse_dpkg(text: str) -> list[Package]:
    """Installed packages of a dpkg ``status`` file."""
    out = []
    for f in _stanzas(text):
        if "Package" in f and "Version" in f and f.get("Status", "").endswith(" installed"):
            source = f.get("Source", "").split(" ")[0] or None
            out.append(Package("deb", f["Package"], f["Version"], f.get("Architecture"),
                               source if source != f["Package"] else None))
    return out


def parse_apk(text: str) -> list[Package]:
    """Installed packages of Alpine's ``lib/apk/db/installed`` (``P:`` name, ``V:`` version)."""
    out = []
    for para in text.split("\n\n"):
        f = dict(line.split(":", 1) for line in para.splitlines() if line[1:2] == ":")
        if "P" in f and "V" in f:
            out.append(Package("apk", f["P"], f["V"], f.get("A"), f.get("o")))
    return out


def parse_dist_info(text: str) -> list[Package]:
    """A Python distribution's ``METADATA`` (its header: ``Name``, ``Version``)."""
    head = text.split("\n\n", 1)[0]
    f = next(iter(_stanzas(head)), {})
    return [Package("pypi", f["Name"], f["Version"])] if "Name" in f and "Version" in f else []


def _reader(path: str) -> Callable[[str], list[Package]] | None:
    if path == "var/lib/dpkg/status" or path.startswith("var/lib/dpkg/status.d/"):
        return parse_dpkg
    if path == "lib/apk/db/installed":
        return parse_apk
    parts = path.split("/")
    if len(parts) >= 2 and parts[-2].endswith(".dist-info") and parts[-1] == "METADATA":
        return parse_dist_info
    return None


def image_packages(layers: Sequence[Opener]) -> list[Package]:
    """Every package the image's root filesystem holds, sorted, once each."""
    files: dict[str, list[Package]] = {}
    for open_layer in layers:
        try:
            with open_layer() as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
                for m in tar:
                    path = m.name.lstrip("./").lstrip("/")
                    directory, _, base = path.rpartition("/")
                    if base.startswith(".wh."):
                        gone = (directory + "/" if directory else "") + base[4:]
                        for p in [p for p in files if p == gone or p.startswith(gone + "/")]:
                            del files[p]
                        continue
                    parse = _reader(path)
                    if parse is None or not m.isfile() or m.size > MAX_PACKAGE_DB_BYTES:
                        continue
                    f = tar.extractfile(m)
                    if f is not None:
                        files[path] = parse(f.read().decode("utf-8", "replace"))
        except (tarfile.TarError, OSError, EOFError):
            continue  # not a (readable) tar layer: nothing to list from it
    return sorted({p for pkgs in files.values() for p in pkgs})
