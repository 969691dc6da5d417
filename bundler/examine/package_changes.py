"""Packages added, removed and changed between two bundles' SBOMs (``airlock diff``).

    old = bundle_packages(stream_a)   # {"deb:libc6": "2.36-9+deb12u4", …} or None: no SBOM
    new = bundle_packages(stream_b)
    package_changes(old, new)         # {"added": [...], "removed": [...], "changed": [...]}

A bundle built with ``policy: {sbom: true}`` carries a CycloneDX SBOM
(``bundler.build.sbom``); the packages of every image in it are read, keyed
by ecosystem and name (a package found in two images at two versions keeps
both, ``deb:libc6`` naming each version once). The archive is walked to the
SBOM's blob without hashing the images' layers (like ``inspect --fast``):
``airlock diff`` helps a person decide what to carry, it is no trust decision.
"""

from __future__ import annotations

import json
from typing import IO, Any

from airlock.format.bundle import BundleReader
from bundler.examine.evidence import keep_evidence, sbom_text, wanted_paths
from keys.release import Release

__all__ = ["bundle_packages", "package_changes", "packages_of_sbom"]


def packages_of_sbom(text: str) -> dict[str, str]:
    """``ecosystem:name`` -> version(s, joined by ", ") of every image package in an SBOM."""
    found: dict[str, set[str]] = {}
    for c in json.loads(text).get("components", []):
        if c.get("type") != "container":
            continue
        for p in c.get("components", []):
            purl = str(p.get("purl", ""))
            ecosystem = purl[4:].split("/", 1)[0] if purl.startswith("pkg:") else "?"
            found.setdefault(f"{ecosystem}:{p.get('name')}", set()).add(str(p.get("version")))
    return {k: ", ".join(sorted(v)) for k, v in sorted(found.items())}


def bundle_packages(stream: IO[bytes]) -> dict[str, str] | None:
    """The image packages a bundle's SBOM lists, or None when it carries no SBOM."""
    reader = BundleReader(stream)
    release = Release.from_bytes(reader.head().release_json)
    if release.supply_chain is None or not release.supply_chain.of_kind("sbom"):
        return None
    wanted, kept = wanted_paths(release), dict[str, bytes]()
    expects = release.delta.expects if release.delta else ()
    for member in reader.files(release.files, expects, hash_unread=False):
        keep_evidence(member, kept, wanted)
    text = sbom_text(release, kept)
    return None if text is None else packages_of_sbom(text)


def package_changes(old: dict[str, str] | None, new: dict[str, str] | None
                    ) -> dict[str, Any] | None:
    """What a person sees change in the images' packages; None when either side has no SBOM."""
    if old is None or new is None:
        return None
    return {
        "added": [{"package": k, "version": v} for k, v in new.items() if k not in old],
        "removed": [{"package": k, "version": v} for k, v in old.items() if k not in new],
        "changed": [{"package": k, "version": [old[k], v]} for k, v in new.items()
                    if k in old and old[k] != v],
    }
