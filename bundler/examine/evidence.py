"""The supply-chain evidence a bundle carries, read back and checked offline.

``airlock inspect`` lists it and prints the SBOM; ``airlock verify`` re-checks
the upstream signatures against the policy the signed metadata records::

    kept, wanted = {}, wanted_paths(r)          # digest -> bytes, filled as the bundle streams
    for member in reader.files(r.files, ...):
        keep_evidence(member, kept, wanted)
    info = evidence_info(r, kept)               # {"policy": …, "evidence": [...], "problems": [...]}
    sbom = sbom_text(r, kept)                   # the CycloneDX JSON, or None

The check, with no network: every ``supply_chain.verified`` entry's subject
(the digest its reference resolved to) is in the bundle and one of the
carried cosign signatures for it verifies with the recorded key and covers
that digest; under ``require_signatures`` every image and registry model has
such an entry. Each failure is one line in ``problems``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airlock.format.bundle import BundleFile
from airlock.format.oci import BLOB_PREFIX
from airlock.limits import MAX_EVIDENCE_BLOB_BYTES
from keys.release import Release

__all__ = ["evidence_info", "keep_evidence", "recheck", "sbom_text", "wanted_paths"]


def _wanted(r: Release) -> set[str]:
    """Blob paths that are not image or model content: evidence, small enough to keep."""
    if r.supply_chain is None:
        return set()
    content = {d for i in r.images for d in (i.manifest, *i.blobs)}
    content |= {d for m in r.models for d in (m.blob, *(x for _, x in m.linked_files()))}
    return {p for p, info in r.files.items() if p.startswith(BLOB_PREFIX)
            and "sha256:" + p[len(BLOB_PREFIX):] not in content
            and info.length <= MAX_EVIDENCE_BLOB_BYTES}


def keep_evidence(member: BundleFile, kept: dict[str, bytes], wanted: set[str]) -> None:
    """Keep ``member``'s bytes (hash-checked as read) when it is in ``wanted_paths``."""
    if member.path in wanted:
        kept["sha256:" + member.path[len(BLOB_PREFIX):]] = b"".join(
            bytes(c) for c in member.chunks())


def wanted_paths(r: Release) -> set[str]:
    return _wanted(r)


def _names(r: Release) -> dict[str, str]:
    """digest -> what it is in this release (an image ref and platform, a model)."""
    names: dict[str, str] = {}
    for i in r.images:
        names[i.manifest] = f"image {i.ref} ({i.platform})"
        if i.index:
            names.setdefault(i.index, f"image {i.ref} (index)")
    for m in r.models:
        if m.source and "@" in m.source:
            names[m.source.rsplit("@", 1)[1]] = f"model {m.name}"
    return names


def recheck(r: Release, kept: Mapping[str, bytes]) -> list[str]:
    """Why the carried upstream signatures do not satisfy the recorded policy (empty: they do)."""
    from keys.upstream_signatures import recheck as check

    return check(r, kept.get)


def evidence_info(r: Release, kept: Mapping[str, bytes] | None) -> dict[str, Any] | None:
    """What ``inspect`` shows of the supply chain; None when the release records none."""
    sc = r.supply_chain
    if sc is None:
        return None
    names = _names(r)
    return {
        "require_signatures": sc.require_signatures,
        "keys": sorted(sc.keys),
        "verified": [{"ref": v.ref, "digest": v.digest, "key": v.key} for v in sc.verified],
        "evidence": [{**e.to_json(), "subject_name": names.get(e.subject, "the release")
                      if e.subject else "the release"} for e in sc.evidence],
        "problems": None if kept is None else recheck(r, kept),
    }


def sbom_text(r: Release, kept: Mapping[str, bytes], kind: str = "sbom") -> str | None:
    """The SBOM (or with ``kind="provenance"`` the provenance) the bundle carries, or None."""
    if r.supply_chain is None:
        return None
    for e in r.supply_chain.of_kind(kind):
        manifest = kept.get(e.manifest)
        if manifest is None:
            continue
        for layer in json.loads(manifest).get("layers", []):
            data = kept.get(layer.get("digest"))
            if data is not None:
                return data.decode()
    return None
