"""The bundle's bill of materials: CycloneDX 1.6 JSON, written by cyclonedx-python-lib.

``bundler.build.assemble`` makes it when the spec says ``policy: {sbom: true}``,
after every model and image is in the layout, and stores it there::

    text = bom_json(spec, assembled.contents, assembled.models, assembled.images)
    carried = store_sbom(contents, spec, text)    # keys.supply_chain.Carried, kind "sbom"
    validate(text)                                # ValueError naming the schema's complaint

The document (``metadata.component`` is the release, name and version):

* every image is a ``container`` component: its manifest digest (hash and
  ``version``), an ``oci`` purl with the repository and architecture, the
  platform, the index digest of a multi-arch image, and, nested, the
  packages found in its layers (``bundler.build.layer_packages``: dpkg,
  apk, Python dist-info) as ``deb`` / ``apk`` / ``pypi`` purls;
* every model is a ``machine-learning-model`` component (ML-BOM) with the
  model file's digest and a model card (``bundler.build.model_card``);
* every carried agent kit is an ``application`` component with its wheel's digest.

The serial number is derived from the release and its content digests and
the timestamp is the build time (``SOURCE_DATE_EPOCH`` honoured), so a
rebuild writes the same bytes. Stored as an OCI artifact (artifact type
``application/vnd.cyclonedx+json``, its one layer titled ``sbom.cdx.json``)
named ``airlock-sbom`` in ``index.json``, annotated with the release it
describes, and listed in the signed metadata's ``supply_chain.evidence``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from airlock.format.oci import (
    ANNOTATION_REF_NAME,
    ANNOTATION_TITLE,
    OCI_EMPTY,
    OCI_MANIFEST,
    oci_manifest,
)
from bundler.build.artifacts import LayoutBuilder
from bundler.build.evidence import EVIDENCE_ANNOTATION
from bundler.build.layer_packages import Package, image_packages
from bundler.build.model_card import model_card
from bundler.build.spec import Spec, build_time
from keys.release import AgentKitEntry, ImageEntry, ModelEntry
from keys.supply_chain import Carried

__all__ = ["SBOM_REF_NAME", "SBOM_TYPE", "bom_json", "store_sbom", "validate"]

SBOM_TYPE = "application/vnd.cyclonedx+json"
SBOM_REF_NAME = "airlock-sbom"
RELEASE_ANNOTATION = "dev.airlock.release"
_DISTRO = {"deb": "debian", "apk": "alpine"}


def _package(p: Package, parent: str) -> Any:
    from cyclonedx.model.component import Component
    from packageurl import PackageURL

    qualifiers = {"arch": p.arch} if p.arch else {}
    if p.source:
        qualifiers["upstream"] = p.source
    purl = PackageURL(p.ecosystem, _DISTRO.get(p.ecosystem), p.name, p.version, qualifiers)
    return Component(name=p.name, version=p.version, purl=purl,
                     bom_ref=f"{parent}#{p.ecosystem}:{p.name}@{p.version}")


def _image(contents: LayoutBuilder, i: ImageEntry) -> Any:
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    name = i.ref.split("@")[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: -len(last)] + last.split(":")[0]
    arch = (i.platform or "").split("/")[1] if "/" in (i.platform or "") else None
    purl = PackageURL("oci", None, name.rsplit("/", 1)[-1], i.manifest,
                      {"repository_url": name, **({"arch": arch} if arch else {})})
    layers = [contents.blobs[d].open for d in i.blobs[1:] if d in contents.blobs]
    ref = f"image:{i.ref}@{i.platform}"
    props = [Property(name="airlock:ref", value=i.ref),
             Property(name="airlock:platform", value=i.platform or "")]
    if i.index:
        props.append(Property(name="airlock:index", value=i.index))
    return Component(
        type=ComponentType.CONTAINER, name=i.ref, version=i.manifest, bom_ref=ref, purl=purl,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=i.manifest[7:])],
        properties=props, components=[_package(p, ref) for p in image_packages(layers)])


def _model(m: ModelEntry) -> Any:
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.component import Component, ComponentType

    props = [Property(name="airlock:source", value=m.source)] if m.source else []
    return Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=m.name, version=m.blob,
                     bom_ref=f"model:{m.name}",
                     hashes=[HashType(alg=HashAlgorithm.SHA_256, content=m.blob[7:])],
                     properties=props)


def _kit(k: AgentKitEntry) -> Any:
    from cyclonedx.model import HashAlgorithm, HashType
    from cyclonedx.model.component import Component, ComponentType

    return Component(type=ComponentType.APPLICATION, name=f"airlock-agent kit {k.platform}",
                     version=k.version, bom_ref=f"agent-kit:{k.file_name}",
                     hashes=[HashType(alg=HashAlgorithm.SHA_256, content=k.blob[7:])])


def bom_json(spec: Spec, contents: LayoutBuilder, models: Sequence[ModelEntry],
             images: Sequence[ImageEntry], kits: Sequence[AgentKitEntry] = ()) -> str:
    """The CycloneDX 1.6 JSON document of what the release carries."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    seed = " ".join([spec.name, str(spec.sequence), *(m.blob for m in models),
                     *(i.manifest for i in images)])
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"airlock:{seed}"))
    bom.metadata.timestamp = build_time()
    bom.metadata.component = Component(type=ComponentType.APPLICATION, name=spec.name,
                                       version=spec.version, bom_ref=f"release:{spec.name}")
    parts = [*(_model(m) for m in models), *(_image(contents, i) for i in images),
             *(_kit(k) for k in kits)]
    for c in parts:
        bom.components.add(c)
        bom.register_dependency(c, list(c.components))
    bom.register_dependency(bom.metadata.component, parts)
    doc = json.loads(JsonV1Dot6(bom).output_as_string())
    cards = {f"model:{m.name}": model_card(m, contents.blobs[m.blob].open) for m in models
             if m.blob in contents.blobs}
    for c in doc.get("components", []):
        if c.get("bom-ref") in cards:
            c["modelCard"] = cards[c["bom-ref"]]
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def validate(text: str) -> None:
    """ValueError unless ``text`` is valid against the CycloneDX 1.6 schema the library bundles."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise ValueError(f"the SBOM is not valid CycloneDX 1.6: {str(error)[:300]}")


def store_sbom(contents: LayoutBuilder, spec: Spec, text: str) -> Carried:
    """The SBOM as an OCI artifact in the layout, named ``airlock-sbom``; its signed record."""
    data = text.encode()
    layer = contents.add_bytes(SBOM_TYPE, data, annotations={ANNOTATION_TITLE: "sbom.cdx.json"})
    config = contents.add_bytes(OCI_EMPTY, b"{}")
    release = f"{spec.name}-{spec.sequence}"
    manifest = contents.add_bytes(
        OCI_MANIFEST,
        oci_manifest(config, [layer], artifact_type=SBOM_TYPE,
                     annotations={RELEASE_ANNOTATION: release}),
        annotations={ANNOTATION_REF_NAME: SBOM_REF_NAME, EVIDENCE_ANNOTATION: "sbom"},
        artifact_type=SBOM_TYPE)
    contents.manifests.append(manifest)
    return Carried("sbom", "", release, manifest.digest, OCI_MANIFEST, SBOM_TYPE)
