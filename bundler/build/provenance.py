"""The bundle's own provenance: an in-toto Statement with a SLSA v1 predicate, DSSE-signed.

``bundler.build.assemble`` makes it when the spec says ``policy: {provenance: true}``,
after the SBOM and before the release metadata is signed, and stores it::

    envelope = provenance_envelope(spec, assembled, signers, health=report, options=opts)
    carried = store_provenance(contents, spec, envelope)   # keys.supply_chain.Carried

The statement (``https://in-toto.io/Statement/v1``, predicate type
``https://slsa.dev/provenance/v1``) names as subjects every image manifest,
model file, agent kit and the SBOM, by sha256. Its ``buildDefinition`` holds
the spec's file name and digest, every registry reference with the digest
it resolved to (``resolvedDependencies``; the upstream key that vouched for
it as an annotation) and the build parameters (the upstream policy, whether
the host check ran); ``runDetails`` names the builder (Airlock and its
version), the build time and the host check's result (a byproduct).

The envelope is DSSE (securesystemslib's ``dsse.Envelope``, payload type
``application/vnd.in-toto+json``) signed by the same signers as the release,
with their key ids; signers added later (``airlock sign``) sign the release
metadata, which lists the envelope's digest, not the envelope itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signer

from airlock.format.oci import (
    ANNOTATION_REF_NAME,
    ANNOTATION_TITLE,
    OCI_EMPTY,
    OCI_MANIFEST,
    oci_manifest,
)
from bundler.build.artifacts import LayoutBuilder
from bundler.build.evidence import EVIDENCE_ANNOTATION
from bundler.build.spec import Spec, build_time
from keys.release import AgentKitEntry, ImageEntry, ModelEntry
from keys.supply_chain import Carried, SupplyChain

if TYPE_CHECKING:
    from airlock.quality.health import HealthReport

__all__ = ["DSSE_TYPE", "PROVENANCE_REF_NAME", "provenance_envelope", "statement",
           "store_provenance"]

DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO_TYPE = "application/vnd.in-toto+json"
PROVENANCE_REF_NAME = "airlock-provenance"
BUILD_TYPE = "urn:airlock:build:v1"


def _sha(digest: str) -> dict[str, str]:
    return {"sha256": digest[7:]}


def _version() -> str:
    try:
        return metadata.version("airlock-edge")
    except metadata.PackageNotFoundError:
        return "source"


def statement(spec: Spec, models: Sequence[ModelEntry], images: Sequence[ImageEntry],
              kits: Sequence[AgentKitEntry], supply: SupplyChain | None,
              sbom_blob: str | None, health: HealthReport | None) -> dict[str, Any]:
    """The in-toto Statement with its SLSA provenance predicate."""
    subjects = [{"name": f"image:{i.ref}@{i.platform}", "digest": _sha(i.manifest)}
                for i in images]
    subjects += [{"name": f"model:{m.name}/{m.file_name}", "digest": _sha(m.blob)} for m in models]
    subjects += [{"name": f"agent-kit:{k.file_name}", "digest": _sha(k.blob)} for k in kits]
    if sbom_blob:
        subjects.append({"name": "sbom.cdx.json", "digest": _sha(sbom_blob)})
    keys = {v.ref: v.key for v in supply.verified} if supply else {}
    deps = []
    for m in models:
        if m.source and "@" in m.source:
            ref, digest = m.source.rsplit("@", 1)
            deps.append((ref, digest))
    deps += [(i.ref, i.index or i.manifest) for i in images]
    resolved = []
    for ref, digest in dict.fromkeys(deps):
        d: dict[str, Any] = {"uri": ref, "digest": _sha(digest)}
        key = keys.get(ref) or keys.get(f"oci://{ref}")
        if key:
            d["annotations"] = {"upstream_signature_key": key}
        resolved.append(d)
    spec_bytes = spec.path.read_bytes()
    check: dict[str, Any] = {"name": "host-check", "annotations": {"ran": health is not None}}
    if health is not None:
        check["annotations"].update({"ok": health.ok, "reason": health.reason or ""})
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "spec": {"name": spec.path.name,
                             "digest": {"sha256": hashlib.sha256(spec_bytes).hexdigest()}},
                    "release": {"name": spec.name, "version": spec.version,
                                "sequence": spec.sequence},
                    "policy": {"require_signatures": spec.require_signatures,
                               "sbom": spec.sbom, "provenance": True},
                },
                "internalParameters": {"host_check": health is not None},
                "resolvedDependencies": resolved,
            },
            "runDetails": {
                "builder": {"id": f"urn:airlock:bundler:{_version()}"},
                "metadata": {"startedOn": build_time().strftime("%Y-%m-%dT%H:%M:%SZ")},
                "byproducts": [check],
            },
        },
    }


def provenance_envelope(body: dict[str, Any], signers: Sequence[Signer]) -> bytes:
    """The statement as a DSSE envelope signed by every signer of the release."""
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload, IN_TOTO_TYPE, {})
    for signer in signers:
        envelope.sign(signer)
    return (json.dumps(envelope.to_dict(), indent=2, sort_keys=True) + "\n").encode()


def store_provenance(contents: LayoutBuilder, spec: Spec, envelope: bytes) -> Carried:
    """The envelope as an OCI artifact named ``airlock-provenance``; its signed record."""
    layer = contents.add_bytes(DSSE_TYPE, envelope,
                               annotations={ANNOTATION_TITLE: "provenance.intoto.json"})
    config = contents.add_bytes(OCI_EMPTY, b"{}")
    release = f"{spec.name}-{spec.sequence}"
    manifest = contents.add_bytes(
        OCI_MANIFEST,
        oci_manifest(config, [layer], artifact_type=IN_TOTO_TYPE,
                     annotations={"dev.airlock.release": release}),
        annotations={ANNOTATION_REF_NAME: PROVENANCE_REF_NAME, EVIDENCE_ANNOTATION: "provenance"},
        artifact_type=IN_TOTO_TYPE)
    contents.manifests.append(manifest)
    return Carried("provenance", "", release, manifest.digest, OCI_MANIFEST, IN_TOTO_TYPE)
