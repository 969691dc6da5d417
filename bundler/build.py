"""Build a signed bundle from a release spec.

    spec = load_spec(Path("airlock.yaml"))
    result = build_bundle(spec, [load_signer(Path("release.key"))], Path("vision-1.2.0.airlock"))
    print(result.size, result.metadata_sha256)

The steps: the output path is checked (``bundler.output``: never one of the
build's inputs, never an existing file that is not a bundle unless
``force``); local models, their external data and golden data are hashed
into a :class:`~bundler.artifacts.LayoutBuilder` and checked as a device's
health check would use them (``bundler.model_check``); registry models and
images are pulled into it (``bundler.pull``, only when the spec names any, so
a host without oras can still build from files); the release metadata listing
every file is signed and read back with the device's reader (a release a
device would refuse is exit 2, nothing written); the bundle is written to a
new partial file beside the output and renamed over it.

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
from tuf.api.serialization import SerializationError

from airlock.bundle import FileInfo, write_bundle
from airlock.console import Progress, no_progress
from airlock.errors import FormatError, UsageError
from airlock.oci import ANNOTATION_TITLE, digest_of
from bundler.artifacts import (
    MODEL_LAYER_TYPE,
    LayoutBuilder,
    add_model_artifact,
    local_data,
    local_golden,
)
from bundler.output import check_output, exclusive_partial, is_bundle_file
from bundler.spec import ModelSpec, Spec
from keys.release import (
    ImageEntry,
    ModelEntry,
    Release,
    ReleaseSerializer,
    check_metadata_bounds,
)
from keys.signatures import Signable
from keys.signers import sign_checked

__all__ = ["BuildResult", "build_bundle"]

@dataclass
class BuildResult:
    path: Path
    size: int
    blobs: int
    metadata_sha256: str
    signers: list[str]
    release: Release
    signed_sha256: str = ""  # what every signature covers; stays as signatures are added

    def to_dict(self) -> dict[str, object]:
        r = self.release
        return {
            "bundle": str(self.path),
            "size": self.size,
            "blobs": self.blobs,
            "metadata_sha256": self.metadata_sha256,
            "signed_sha256": self.signed_sha256,
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
    return add_model_artifact(contents, spec, m, model, inputs, outputs, source=str(m.path),
                              find_data=local_data(contents, m))


def _sign(release: Release, signers: Sequence[Signer]) -> tuple[bytes, list[str]]:
    """The signed metadata, read back as a device reads it before anything is written.

    The spec already held every value to the device's rules; reading the
    signed bytes back with the device's own reader (size bound, every field
    rule) makes sure no bundle leaves the host that a device would refuse for
    its metadata, whatever the spec checks missed (a pulled artifact's
    file name, a source path with a control character).
    """
    md = release.to_metadata()
    try:
        payload = ReleaseSerializer().serialize(md.signed)
    except SerializationError as e:
        raise UsageError(f"the release cannot be signed as JSON: {e}") from None
    for signer in signers:
        # A token or KMS that fails (wrong PIN, no network) is one line naming it.
        sig = sign_checked(signer, payload)
        md.signatures[sig.keyid] = sig
    release_json = md.to_bytes()
    try:
        check_metadata_bounds(release_json, "the release metadata")
    except FormatError as e:
        raise UsageError(f"{e}; devices would refuse it: carry fewer images or models "
                         "per release") from None
    try:
        Release.from_bytes(release_json)
    except FormatError as e:
        raise UsageError(f"devices would refuse this release: {e}") from None
    return release_json, sorted(md.signatures)


def build_bundle(
    spec: Spec,
    signers: Sequence[Signer],
    output: Path,
    *,
    root_json: bytes | None = None,
    registry_options: object | None = None,
    progress: Progress = no_progress,
    inputs: Sequence[Path] = (),
    force: bool = False,
) -> BuildResult:
    """Assemble, sign and write the bundle for ``spec`` at ``output`` (atomically).

    ``signers`` may be fewer than a threshold, or none: the rest sign later
    (``bundler.sign``) without the bundle being built again.

    ``inputs`` are the other files the build reads (key files, a carried root):
    ``output`` may never be one of them, nor the spec or a file it names;
    ``force`` lets ``output`` replace an existing file that is not a bundle.
    """
    def guard(read: Sequence[Path]) -> None:
        check_output(output, [spec.path, *inputs, *read], force=force,
                     kind="an Airlock bundle", is_ours=is_bundle_file)

    # Before the long part, with what the spec names; again before writing, with every
    # file the bundle is actually copied from (pulled blobs in the cache included).
    guard([p for m in spec.models for p in (m.path, m.health.inputs, m.health.outputs) if p])
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
    )
    release_json, keyids = _sign(release, signers)

    guard(contents.local_paths)
    total = sum(f.size for f in files)

    def writing(n: int) -> None:
        progress("writing", n, total)

    with exclusive_partial(output) as (partial, out):
        write_bundle(out, release_json, files, root_json=root_json, progress=writing)
        out.flush()
        os.fsync(out.fileno())
        os.replace(partial, output)
    return BuildResult(
        path=output,
        size=output.stat().st_size,
        blobs=len(contents.blobs),
        metadata_sha256=digest_of(release_json)[7:],
        signers=keyids,
        release=release,
        signed_sha256=Signable.from_bytes(release_json, "release").signed_sha256,
    )
