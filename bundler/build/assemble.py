"""Build a signed bundle from a release spec.

    spec = load_spec(Path("airlock.yaml"))
    result = build_bundle(spec, [load_signer(Path("release.key"))], Path("vision-1.2.0.airlock"))
    print(result.size, result.metadata_sha256, result.health.ok)

    assembled = assemble(spec)                       # what ``airlock check`` stops after
    report = check_models(assembled.contents, assembled.models)

The steps: the output path is checked (``bundler.build.output``: never one of the
build's inputs, never an existing file that is not a bundle unless
``force``); local models, their external data and golden data are hashed
into a :class:`~bundler.build.artifacts.LayoutBuilder` and checked as a device's
health check would use them (``bundler.build.model_check``); registry models and
images are pulled into it (``bundler.build.pull``, only when the spec names any, so
a host without oras can still build from files); every model runs the
device's health check (``bundler.build.host_check``; a failure is exit 4, nothing
signed or written; ``check=False`` skips it); the release metadata listing
every file is signed and read back with the device's reader (a release a
device would refuse is exit 2, nothing written); the bundle is written to a
new partial file beside the output and renamed over it (or, with ``max_size``, straight into
parts ``OUTPUT.part001``… and ``OUTPUT.parts.json``, never whole on disk:
``airlock.format.parts``); with ``delta_from``, the blobs every given device holds
are left out.

Each input file is hashed once, before anything is written: its digest names
the blob, orders the members and is signed in the metadata that comes first in
the tar (devices check signatures before reading blobs). The writer then
copies it in the kernel (``os.copy_file_range``), unhashed, while its stamp
(device, inode, size, mtime) is the one it had when hashed, checked before and
after the copy; a file whose stamp moved is hashed again as it is copied, so a
file that changes mid-build fails the build. A pulled blob the cache verified
is copied the same way. Split output (``max_size``) goes through Python, as
the part writer hashes every part for ``parts.json``. Memory stays flat. Progress goes to the caller's ``progress(phase, bytes,
total)`` callback; only the command line draws bars.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from securesystemslib.signer import Signer
from tuf.api.serialization import SerializationError

from airlock.console import Progress, human_size, no_progress
from airlock.errors import FormatError, HealthCheckError, NoSpaceError, UsageError
from airlock.files import PartialFile
from airlock.format.layout_check import FileInfo
from airlock.format.oci import ANNOTATION_TITLE, digest_of
from airlock.format.parts import PartSet, PartsWriter
from airlock.format.writer import SourceFile, write_bundle
from bundler.build.artifacts import (
    MODEL_LAYER_TYPE,
    LayoutBuilder,
    add_model_artifact,
    local_data,
    local_golden,
)
from bundler.build.output import check_output, is_bundle_file
from bundler.build.spec import ModelSpec, Spec, build_time
from bundler.sneakernet.device_inventories import Inventory, plan_delta
from keys.encryption_keys import Recipient
from keys.features import UnknownFeatureError, check_requires
from keys.metadata import ReleaseSerializer, check_metadata_bounds
from keys.release import AgentKitEntry, Encryption, ImageEntry, ModelEntry, Release
from keys.signatures import Signable
from keys.signers import sign_checked
from keys.supply_chain import SupplyChain

if TYPE_CHECKING:  # the health check (and what it imports) only when a build runs it
    from airlock.quality.health import HealthReport

__all__ = ["Assembled", "BuildResult", "assemble", "build_bundle", "refuse_unhealthy"]

# Bytes a bundle takes beyond its files' data: 512-byte headers and padding per
# member, the end-of-archive blocks, the 10 KiB record tarfile pads to.
_TAR_OVERHEAD = 64 * 1024


@dataclass
class BuildResult:
    path: Path
    size: int
    blobs: int
    metadata_sha256: str
    signers: list[str]
    release: Release
    parts: PartSet | None = None  # when written split (max_size)
    health: HealthReport | None = None  # None: the host check was skipped (--no-check)
    signed_sha256: str = ""  # what every signature covers; stays as signatures are added

    def to_dict(self) -> dict[str, object]:
        r = self.release
        return {
            "health": self.health.to_dict() if self.health is not None else None,
            "checked": self.health is not None,
            "bundle": str(self.path),
            "size": self.size,
            "parts": None if self.parts is None else self.parts.to_dict(),
            "full_size": sum(i.length for i in r.files.values()),
            "shipped_size": sum(i.length for i in r.shipped.values()),
            "omits": len(r.omits),
            "delta": None if r.delta is None else {
                "base_sequence": r.delta.base_sequence,
                "expects": len(r.delta.expects),
                "inventories": [i.device_id for i in r.delta.inventories],
            },
            "blobs": self.blobs,
            "files": len(r.files),
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
    try:
        check_requires(release.requires)
    except UnknownFeatureError as e:
        raise UsageError(f"cannot build: {e.feature!r} is required but is no feature an "
                         "agent knows (keys.features.KNOWN_FEATURES)") from None
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


@dataclass
class Assembled:
    """A spec's contents, hashed and pulled, not yet signed."""

    contents: LayoutBuilder
    models: list[ModelEntry]
    images: list[ImageEntry]
    supply_chain: SupplyChain | None = None  # upstream policy and the evidence carried


def assemble(spec: Spec, *, registry_options: object | None = None,
             progress: Progress = no_progress) -> Assembled:
    """Hash the spec's local files and pull its registry content into one layout.

    Every model is read as a device's check will use it (``bundler.build.model_check``):
    what it would refuse is a SpecError naming the field (exit 2).
    """
    from bundler.build.upstream_policy import check_local_models

    check_local_models(spec)
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
        from bundler.build.pull import add_remote_content

        pulled = add_remote_content(contents, spec, registry_options, progress)
        models.extend(pulled.models)
        images.extend(pulled.images)
        order = {(m.name, m.variant): i for i, m in enumerate(spec.models)}
        models.sort(key=lambda e: order[(e.name, e.variant)])
        if spec.require_signatures or pulled.verified:
            supply = SupplyChain(spec.require_signatures, pulled.keys, pulled.verified,
                                 pulled.evidence)
            return Assembled(contents, models, images, supply)
    return Assembled(contents, models, images)


def _require_space(output: Path, need: int) -> None:
    """Refuse (exit 5) before writing when the output's filesystem cannot hold the bundle."""
    try:
        free = shutil.disk_usage(output.parent if str(output.parent) else Path(".")).free
    except OSError:
        return  # no such directory yet: exclusive_partial creates it, and errors say why
    # Tar headers and padding: a few KiB per blob at most, on top of the data.
    if free < need + _TAR_OVERHEAD:
        raise NoSpaceError(f"no space left to write {output}: the bundle needs "
                           f"{human_size(need)} and {output.parent} has {human_size(free)} "
                           "free; nothing was written: free space there or choose another -o")


def _evidence(spec: Spec, assembled: Assembled, kits: Sequence[AgentKitEntry],
              signers: Sequence[Signer], health: HealthReport | None) -> SupplyChain | None:
    """The SBOM and the provenance the spec's policy asks for, added to the layout."""
    contents, supply = assembled.contents, assembled.supply_chain
    sbom_blob = None
    if spec.sbom:
        from bundler.build.sbom import bom_json, store_sbom, validate

        text = bom_json(spec, contents, assembled.models, assembled.images, kits)
        try:
            validate(text)
        except ValueError as e:
            raise UsageError(str(e)) from None
        supply = supply or SupplyChain(spec.require_signatures)
        supply.evidence.append(store_sbom(contents, spec, text))
        sbom_blob = digest_of(text.encode())
    if spec.provenance:
        from bundler.build.provenance import provenance_envelope, statement, store_provenance

        body = statement(spec, assembled.models, assembled.images, kits, supply, sbom_blob,
                         health)
        supply = supply or SupplyChain(spec.require_signatures)
        supply.evidence.append(store_provenance(contents, spec,
                                                provenance_envelope(body, signers)))
    return supply


def _release(spec: Spec, assembled: Assembled, delta_from: Sequence[Inventory],
             encryption: Encryption | None = None, kits: Sequence[AgentKitEntry] = (),
             supply: SupplyChain | None = None,
             for_class: Sequence[dict[str, Any]] = ()) -> tuple[Release, list[SourceFile]]:
    """The release to sign (every file listed) and the files the bundle carries: with
    inventories or classes, only the variants those devices pick (the others listed, omitted)."""
    contents = assembled.contents
    files = contents.source_files()
    release = Release(
        name=spec.name,
        version=spec.version,
        sequence=spec.sequence,
        expires=spec.expires,
        files={f.path: FileInfo(f.size, f.sha256) for f in files},
        models=assembled.models,
        images=assembled.images,
        flags=dict(spec.flags),
        hooks=spec.hooks,
        rings=list(spec.rings),
        agent_kits=list(kits),
        supply_chain=supply,
        encryption=encryption,
        # An agent that cannot decrypt or cannot run the shadow check refuses the release
        # rather than skip it.
        requires=tuple(
            name
            for name, wanted in (
                ("encryption", encryption is not None),
                ("shadow", any(m.shadow for m in assembled.models)),
                # An agent that cannot pick a variant refuses the release, not misreads it.
                ("variants", any(m.variant for m in assembled.models)),
            )
            if wanted
        ),
        issued=build_time(),  # the device's time floor (agent.timefloor); SOURCE_DATE_EPOCH sets it
    )
    if supply is not None and spec.enforce_on_device:
        supply.enforce_on_device = True
        # An older agent refuses, not skips, the check.
        release.requires = (*release.requires, "upstream_signatures")
    if "variants" in release.requires and (delta_from or for_class):
        from bundler.examine.variant_matrix import needed_variants, omitted_blobs

        release.omits = omitted_blobs(release, needed_variants(release, delta_from, for_class))
    if delta_from:
        delta = plan_delta(release, delta_from)
        release.delta = dataclasses.replace(
            delta, expects=tuple(d for d in delta.expects if d not in release.omits))
    if delta_from or release.omits:
        shipped = release.shipped
        files = [f for f in files if f.path in shipped]
    return release, files


def _write(output: Path, release_json: bytes, files: Sequence[SourceFile], *,
           root_json: bytes | None, max_size: int | None,
           progress: Progress) -> tuple[int, PartSet | None]:
    """Write the bundle (or its parts) whole, or nothing; its size and parts.

    No room or no permission is a one-line error naming ``output`` (exit 5 or 2).
    """
    total = sum(f.size for f in files)

    def writing(n: int) -> None:
        progress("writing", n, total)

    _require_space(output, total)
    try:
        if max_size is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            writer = PartsWriter(output, max_size)
            try:
                write_bundle(cast(BinaryIO, writer), release_json, files, root_json=root_json,
                             progress=writing)
                parts = writer.publish()
            except BaseException:
                writer.discard()
                raise
            return parts.size, parts
        with PartialFile(output, parents=True) as partial:
            write_bundle(partial.file, release_json, files, root_json=root_json,
                         progress=writing)
            partial.publish()
        return output.stat().st_size, None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(f"no space left to write {output} (the bundle needs "
                               f"{human_size(total)}); nothing was written: free space there "
                               "or choose another -o") from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise UsageError(f"cannot write {output}: {e.strerror}; choose another -o") from None
        raise


def refuse_unhealthy(report: HealthReport, what: str) -> None:
    """Exit 4 with the agent's own words when a model fails its check on the host."""
    if not report.ok:
        raise HealthCheckError(f"{report.reason}; {what}")


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
    max_size: int | None = None,
    delta_from: Sequence[Inventory] = (),
    for_class: Sequence[dict[str, Any]] = (),
    check: bool = True,
    enforce_budgets: bool = False,
    encrypt_to: Sequence[Recipient] = (),
) -> BuildResult:
    """Assemble, check, sign and write the bundle for ``spec`` at ``output`` (atomically).

    ``signers`` may be fewer than a threshold, or none: the rest sign later
    (``bundler.signing.sign``) without the bundle being built again.

    ``inputs`` are the other files the build reads (key files, a carried root):
    ``output`` may never be one of them, nor the spec or a file it names;
    ``force`` lets ``output`` replace an existing file that is not a bundle.
    With ``max_size`` the bundle is written as parts of at most that many
    bytes. With ``delta_from`` (checked device inventories) it leaves out the
    blobs every one of those devices holds; the signed metadata still lists
    the whole release and marks those blobs as expected on the device. With
    ``delta_from`` or ``for_class`` (effective device facts) a model's
    variants no such device picks are left out too, listed as ``omits``.
    ``check`` runs the device's health check on every model first (a failure
    is a HealthCheckError, exit 4, and nothing is signed or written);
    ``enforce_budgets`` makes latency and memory budgets fail it too.
    With ``encrypt_to`` every image and model layer is carried encrypted to
    those recipients (``bundler.build.encrypt``), after the model check.
    """

    def guard(read: Sequence[Path]) -> None:
        check_output(output, [spec.path, *inputs, *read], force=force,
                     kind="an Airlock bundle", is_ours=is_bundle_file)

    # Before the long part, with what the spec names; again before writing, with every
    # file the bundle is actually copied from (pulled blobs in the cache included).
    guard([p for m in spec.models for p in (m.path, m.health.inputs, m.health.outputs) if p])
    assembled = assemble(spec, registry_options=registry_options, progress=progress)
    contents = assembled.contents
    health = None
    if check:
        from bundler.build.host_check import check_models

        health = check_models(contents, assembled.models, enforce_budgets=enforce_budgets,
                              progress=progress)
        refuse_unhealthy(health, "nothing was signed or written "
                                 "(--no-check signs it unchecked)")

    # Kits, SBOM and provenance before any encryption: the SBOM reads the clear layers,
    # and evidence stays clear (bundler.build.evidence.EVIDENCE_ANNOTATION).
    kits = []
    if spec.agent_kits:
        from bundler.build.agentkit import add_kit_artifact

        kits = [add_kit_artifact(contents, path) for path in spec.agent_kits]
    supply = _evidence(spec, assembled, kits, signers, health)
    with contextlib.ExitStack() as stack:
        encryption = None
        if encrypt_to:
            from bundler.build.encrypt import encrypt_layout

            # Ciphertext beside the output (same file system; gone once the bundle is written).
            output.absolute().parent.mkdir(parents=True, exist_ok=True)
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix=".airlock-encrypt-", dir=output.absolute().parent)))
            encryption = encrypt_layout(contents, encrypt_to, work, progress)
        release, files = _release(spec, assembled, delta_from, encryption, kits, supply,
                                  for_class)
        release_json, keyids = _sign(release, signers)

        guard(contents.local_paths)
        size, parts = _write(output, release_json, files, root_json=root_json,
                             max_size=max_size, progress=progress)
    return BuildResult(
        path=output,
        size=size,
        blobs=len(contents.blobs),
        metadata_sha256=digest_of(release_json)[7:],
        signers=keyids,
        release=release,
        parts=parts,
        health=health,
        signed_sha256=Signable.from_bytes(release_json, "release").signed_sha256,
    )
