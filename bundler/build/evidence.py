"""Upstream signatures and attestations carried in the bundle's OCI layout, as referrers.

``bundler.build.pull`` hands over what ``bundler.build.cosign`` found; this puts
it in the layout the way both kinds of tools look for it::

    entries = carry_evidence(contents, "reg/app:1.4", verified)   # keys.supply_chain.Carried
    add_referrers_indexes(contents, all_entries)                   # once, after every image

* every signature or attestation manifest is stored byte for byte (so its
  signature still verifies) with its config and layers, and named in
  ``index.json`` by cosign's tag, ``sha256-<hex>.sig`` / ``.att``
  (``org.opencontainers.image.ref.name``), as ``cosign`` and ``skopeo`` name it
  in an OCI layout;
* per subject, an OCI image index tagged ``sha256-<hex>`` (the OCI 1.1
  distribution spec's referrers tag schema) lists every manifest that
  refers to it, with its ``artifactType``: what a referrers walker reads when
  the layout is served or pushed to a registry without the referrers API.

The images' own entries in ``index.json`` are untouched, so ``skopeo copy
oci-archive:…:REF`` still reads each image.
"""

from __future__ import annotations

from collections.abc import Sequence

from airlock.format.oci import ANNOTATION_REF_NAME, OCI_INDEX, Descriptor, oci_index
from bundler.build.artifacts import LayoutBuilder
from bundler.build.cosign import Verified
from keys.supply_chain import Carried

__all__ = ["EVIDENCE_ANNOTATION", "add_referrers_indexes", "carry_evidence"]

#: On the ``index.json`` entry of every piece of evidence (its kind): ``--encrypt-to``
#: leaves these clear, so signatures still verify and anyone can read the SBOM.
EVIDENCE_ANNOTATION = "dev.airlock.evidence"


def carry_evidence(contents: LayoutBuilder, ref: str, verified: Verified) -> list[Carried]:
    """Add what ``verify_upstream`` found to the layout; the signed records of it."""
    out = []
    for e in verified.carried:
        for digest, data in e.blobs.items():
            media = "application/octet-stream"
            d = contents.add_bytes(media, data)
            assert d.digest == digest  # checked when fetched
        body = e.manifest.json()
        config = body.get("config") if isinstance(body.get("config"), dict) else {}
        artifact = e.artifact_type or str((config or {}).get("mediaType") or "") or None
        annotations = {ANNOTATION_REF_NAME: e.tag, EVIDENCE_ANNOTATION: e.kind} if e.tag else {}
        desc = contents.add_bytes(e.manifest.media_type, e.manifest.data,
                                  annotations=annotations, artifact_type=artifact)
        if e.tag and not any(m.digest == desc.digest for m in contents.manifests):
            contents.manifests.append(desc)
        out.append(Carried(e.kind, e.subject, ref, desc.digest, e.manifest.media_type,
                           artifact, e.tag, e.verified_with))
    return out


def add_referrers_indexes(contents: LayoutBuilder, carried: Sequence[Carried]) -> None:
    """One referrers index per subject, tagged ``sha256-<hex>`` in ``index.json``."""
    by_subject: dict[str, list[Carried]] = {}
    for c in carried:
        if c.subject:
            by_subject.setdefault(c.subject, []).append(c)
    for subject, items in sorted(by_subject.items()):
        seen: dict[str, Descriptor] = {}
        for c in items:
            size = contents.blobs[c.manifest].size
            seen.setdefault(c.manifest, Descriptor(c.media_type, c.manifest, size,
                                                   artifact_type=c.artifact_type))
        index = oci_index(list(seen.values()))
        desc = contents.add_bytes(OCI_INDEX, index,
                                  annotations={ANNOTATION_REF_NAME: subject.replace(":", "-"),
                                               EVIDENCE_ANNOTATION: "referrers"})
        contents.manifests.append(desc)
