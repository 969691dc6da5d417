"""Build a signed bundle from a release spec.

    spec = load_spec(Path("airlock.yaml"))
    result = build_bundle(spec, [load_signer(Path("release.key"))], Path("vision-1.2.0.airlock"))
    print(result.size, result.metadata_sha256)

The steps: local models and golden data are hashed into a
:class:`~bundler.artifacts.LayoutBuilder`; registry models and images are
pulled into it (``bundler.pull``, only when the spec names any, so a host
without oras can still build from files); the release metadata listing every
file is signed; the bundle is written to ``OUTPUT.partial`` and renamed.

Each input file is read twice: once to hash it, because its digest names the
blob and must be signed before the first blob is written (the metadata comes
first in the tar so devices check signatures before reading blobs), and once
to copy it, hashed again so a file that changes mid-build fails the build.
Memory stays flat. Progress goes to the caller's ``progress(phase, bytes,
total)`` callback; only the command line draws bars.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from securesystemslib.signer import Signer

from airlock.bundle import FileInfo, write_bundle
from airlock.console import Progress, no_progress
from airlock.errors import UsageError
from airlock.oci import ANNOTATION_TITLE, digest_of
from bundler.artifacts import MODEL_LAYER_TYPE, LayoutBuilder, add_model_artifact, local_golden
from bundler.spec import ModelSpec, Spec
from keys.release import ImageEntry, ModelEntry, Release, ReleaseSerializer

__all__ = ["BuildResult", "build_bundle"]

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


def _add_local_model(
    contents: LayoutBuilder, spec: Spec, m: ModelSpec, tick: Callable[[int], None]
) -> ModelEntry:
    assert m.path is not None
    model = contents.add_file(
        MODEL_LAYER_TYPE, m.path, tick=tick, annotations={ANNOTATION_TITLE: m.path.name}
    )
    inputs, outputs = local_golden(contents, m, tick)
    return add_model_artifact(contents, spec, m, model, inputs, outputs, source=str(m.path))


def build_bundle(
    spec: Spec,
    signers: Sequence[Signer],
    output: Path,
    *,
    root_json: bytes | None = None,
    registry_options: object | None = None,
    progress: Progress = no_progress,
) -> BuildResult:
    """Assemble, sign and write the bundle for ``spec`` at ``output`` (atomically)."""
    if not signers:
        raise UsageError("give at least one --key to sign the release")
    contents = LayoutBuilder()
    local_bytes = sum(m.path.stat().st_size for m in spec.models if m.path is not None)
    models: list[ModelEntry] = []
    images: list[ImageEntry] = []

    def hashing(n: int) -> None:
        progress("hashing", n, local_bytes)

    for m in spec.models:
        if m.path is not None:
            models.append(_add_local_model(contents, spec, m, hashing))
    if spec.images or any(m.ref for m in spec.models):
        # Imported here: only a host that pulls from registries needs oras.
        from bundler.pull import add_remote_content

        pulled = add_remote_content(contents, spec, registry_options, progress)
        models.extend(pulled.models)
        images.extend(pulled.images)
        order = {m.name: i for i, m in enumerate(spec.models)}
        models.sort(key=lambda e: order[e.name])

    kits = []
    if spec.agent_kits:
        from bundler.agentkit import add_kit_artifact

        kits = [add_kit_artifact(contents, path) for path in spec.agent_kits]
    files = contents.source_files()
    release = Release(
        name=spec.name,
        version=spec.version,
        sequence=spec.sequence,
        expires=spec.expires,
        files={f.path: FileInfo(f.size, f.sha256) for f in files},
        models=models,
        images=images,
        flags=dict(spec.flags),
        hooks=spec.hooks,
        rings=list(spec.rings),
        agent_kits=kits,
    )
    md = release.to_metadata()
    for signer in signers:
        md.sign(signer, append=True, signed_serializer=ReleaseSerializer())
    release_json = md.to_bytes()

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    total = sum(f.size for f in files)

    def writing(n: int) -> None:
        progress("writing", n, total)

    try:
        with partial.open("wb") as out:
            write_bundle(out, release_json, files, root_json=root_json, progress=writing)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return BuildResult(
        path=output,
        size=output.stat().st_size,
        blobs=len(contents.blobs),
        metadata_sha256=digest_of(release_json)[7:],
        signers=sorted(md.signatures),
        release=release,
    )
