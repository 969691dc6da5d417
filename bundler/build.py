"""Build a signed bundle from a release spec.

    spec = load_spec(Path("airlock.yaml"))
    result = build_bundle(spec, [load_signer(Path("release.key"))], Path("vision-1.2.0.airlock"))
    print(result.size, result.metadata_sha256)

Each input file is read twice: once to hash it, because its digest names the
blob and must be signed before the first blob is written (the metadata comes
first in the tar so devices check signatures before reading blobs), and once
to copy it, hashed again so a file that changes mid-build fails the build
instead of producing a bundle whose signature lies. Memory stays flat.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

from securesystemslib.signer import Signer

from bundler.spec import ModelSpec, Spec
from keys.bundle_format import (
    CHUNK,
    OCI_EMPTY,
    Descriptor,
    SourceFile,
    oci_index,
    oci_layout,
    oci_manifest,
    write_bundle,
)
from keys.console import progress
from keys.errors import UsageError
from keys.release import (
    FileInfo,
    Hooks,
    ModelEntry,
    Release,
    ReleaseSerializer,
    blob_path,
)

__all__ = [
    "GOLDEN_INPUTS_TYPE",
    "GOLDEN_OUTPUTS_TYPE",
    "MODEL_ARTIFACT_TYPE",
    "MODEL_LAYER_TYPE",
    "BuildResult",
    "Layout",
    "add_model_artifact",
    "build_bundle",
    "local_golden",
]

MODEL_ARTIFACT_TYPE = "application/vnd.airlock.model.v1"
MODEL_LAYER_TYPE = "application/vnd.onnx.model.v1"
GOLDEN_INPUTS_TYPE = "application/vnd.airlock.golden.inputs.v1+npz"
GOLDEN_OUTPUTS_TYPE = "application/vnd.airlock.golden.outputs.v1+npz"
_TITLE = "org.opencontainers.image.title"
_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class BuildResult:
    path: Path
    size: int
    blobs: int
    metadata_sha256: str
    signers: list[str]
    release: Release

    def to_dict(self) -> dict[str, object]:
        r = self.release
        return {
            "bundle": str(self.path),
            "size": self.size,
            "blobs": self.blobs,
            "metadata_sha256": self.metadata_sha256,
            "signers": self.signers,
            "name": r.name,
            "version": r.version,
            "sequence": r.sequence,
            "expires": r.expires.isoformat(),
        }


def _hash_file(path: Path, tick: Callable[[int], None] | None = None) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with path.open("rb") as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
            if tick:
                tick(n)
    return h.hexdigest(), size


@dataclass
class Layout:
    """The OCI layout being assembled: blobs by digest, and index entries.

    Registry sources (bundler.registry) add blobs they cached on disk with
    :meth:`add_file`; a blob added twice (shared layers) is stored once.
    """

    blobs: dict[str, SourceFile] = field(default_factory=dict)
    manifests: list[Descriptor] = field(default_factory=list)

    def add_bytes(self, media_type: str, data: bytes, **kw: object) -> Descriptor:
        desc = Descriptor.of(media_type, data, **kw)  # type: ignore[arg-type]
        self.blobs.setdefault(desc.digest, _memory_source(blob_path(desc.digest), data))
        return desc

    def add_file(
        self,
        media_type: str,
        path: Path,
        *,
        digest: str | None = None,
        size: int | None = None,
        tick: Callable[[int], None] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Descriptor:
        """Add a file; hashes it unless the caller already knows digest and size."""
        if digest is None or size is None:
            hexdigest, size = _hash_file(path, tick)
            digest = "sha256:" + hexdigest
        self.blobs.setdefault(
            digest, SourceFile(blob_path(digest), size, digest[7:], partial(_open_binary, path))
        )
        return Descriptor(media_type, digest, size, annotations or {})

    def source_files(self) -> list[SourceFile]:
        index = oci_index(self.manifests)
        return [
            _memory_source("oci-layout", oci_layout()),
            _memory_source("index.json", index),
            *self.blobs.values(),
        ]


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


def _memory_source(path: str, data: bytes) -> SourceFile:
    def opener() -> IO[bytes]:
        return io.BytesIO(data)

    return SourceFile(path, len(data), hashlib.sha256(data).hexdigest(), opener)


def _add_local_model(
    layout: Layout, spec: Spec, m: ModelSpec, tick: Callable[[int], None]
) -> ModelEntry:
    assert m.path is not None
    model = layout.add_file(MODEL_LAYER_TYPE, m.path, tick=tick, annotations={_TITLE: m.path.name})
    inputs, outputs = local_golden(layout, m, tick)
    return add_model_artifact(layout, spec, m, model, inputs, outputs, source=str(m.path))


def local_golden(
    layout: Layout, m: ModelSpec, tick: Callable[[int], None] | None = None
) -> tuple[Descriptor | None, Descriptor | None]:
    """The spec's golden input/output files that are local paths, added to ``layout``."""
    h = m.health
    i = o = None
    if h.inputs is not None:
        i = layout.add_file(
            GOLDEN_INPUTS_TYPE, h.inputs, tick=tick, annotations={_TITLE: h.inputs.name}
        )
    if h.outputs is not None:
        o = layout.add_file(
            GOLDEN_OUTPUTS_TYPE, h.outputs, tick=tick, annotations={_TITLE: h.outputs.name}
        )
    return i, o


def add_model_artifact(
    layout: Layout,
    spec: Spec,
    m: ModelSpec,
    model: Descriptor,
    inputs: Descriptor | None,
    outputs: Descriptor | None,
    source: str,
) -> ModelEntry:
    """Wrap blobs already in ``layout`` as the model's OCI artifact and index it.

    Local files and registry artifacts end up in the same shape, so the agent
    sees one kind of model whatever its source.
    """
    layers = [model] + [d for d in (inputs, outputs) if d is not None]
    config = layout.add_bytes(OCI_EMPTY, b"{}")
    manifest = layout.add_bytes(
        "application/vnd.oci.image.manifest.v1+json",
        oci_manifest(config, layers, artifact_type=MODEL_ARTIFACT_TYPE),
        annotations={_REF_NAME: f"models/{m.name}:{_tag(spec.version)}"},
        artifact_type=MODEL_ARTIFACT_TYPE,
    )
    layout.manifests.append(manifest)
    return _model_entry(
        m,
        manifest.digest,
        model,
        inputs.digest if inputs else None,
        outputs.digest if outputs else None,
        source=source,
    )


def _model_entry(
    m: ModelSpec,
    manifest: str,
    model: Descriptor,
    inputs: str | None,
    outputs: str | None,
    source: str,
) -> ModelEntry:
    file_name = model.annotations.get(_TITLE) or f"{m.name}.onnx"
    return ModelEntry(
        name=m.name,
        manifest=manifest,
        blob=model.digest,
        file_name=file_name,
        media_type=model.media_type,
        size=model.size,
        source=source,
        health=dataclasses.replace(m.health.limits, inputs=inputs, outputs=outputs),
    )


def _tag(version: str) -> str:
    """An OCI-safe tag for ``ref.name`` annotations."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in version)
    return safe[:128] or "latest"


def build_bundle(
    spec: Spec,
    signers: Sequence[Signer],
    output: Path,
    *,
    root_json: bytes | None = None,
    registry_options: object | None = None,
) -> BuildResult:
    """Assemble, sign and write the bundle for ``spec`` at ``output`` (atomically)."""
    if not signers:
        raise UsageError("give at least one --key to sign the release")
    layout = Layout()
    local_bytes = sum(m.path.stat().st_size for m in spec.models if m.path is not None)
    models: list[ModelEntry] = []
    images = []
    with progress(local_bytes, "hashing") as tick:
        for m in spec.models:
            if m.path is not None:
                models.append(_add_local_model(layout, spec, m, tick))
    if spec.images or any(m.ref for m in spec.models):
        # Imported here: only a host that pulls from registries needs oras.
        from bundler import registry  # type: ignore[attr-defined,unused-ignore]

        pulled = registry.add_remote_content(layout, spec, registry_options)
        models.extend(pulled.models)
        images.extend(pulled.images)
        order = {m.name: i for i, m in enumerate(spec.models)}
        models.sort(key=lambda e: order[e.name])

    files = layout.source_files()
    release = Release(
        name=spec.name,
        version=spec.version,
        sequence=spec.sequence,
        expires=spec.expires,
        files={f.path: FileInfo(f.size, f.sha256) for f in files},
        models=models,
        images=images,
        flags=dict(spec.flags),
        hooks=Hooks(spec.hooks.post_switch, spec.hooks.probe, spec.hooks.probe_window_s),
        rings=list(spec.rings),
    )
    md = release.to_metadata()
    for signer in signers:
        md.sign(signer, append=True, signed_serializer=ReleaseSerializer())
    release_json = md.to_bytes()

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    total = sum(f.size for f in files)
    try:
        with partial.open("wb") as out, progress(total, "writing") as tick:
            write_bundle(out, release_json, files, root_json=root_json, progress=tick)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return BuildResult(
        path=output,
        size=output.stat().st_size,
        blobs=len(layout.blobs),
        metadata_sha256=hashlib.sha256(release_json).hexdigest(),
        signers=sorted(md.signatures),
        release=release,
    )
