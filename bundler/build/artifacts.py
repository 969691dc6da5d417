"""The OCI layout a bundle carries, assembled blob by blob; models as OCI artifacts.

Local files and registry pulls both land here, so the agent sees one kind of
model whatever its source::

    contents = LayoutBuilder()
    model = contents.add_file(MODEL_LAYER_TYPE, Path("vision.onnx"))
    inputs, outputs = local_golden(contents, model_spec)
    entry = add_model_artifact(contents, spec, model_spec, model, inputs, outputs,
                               source="vision.onnx", find_data=local_data(contents, model_spec))
    files = contents.source_files()   # oci-layout, index.json, blobs/sha256/…

A model artifact's layers are the model, its ONNX external data files (a
model over 2 GB keeps its weights there), its golden data and its evaluation
set and labels. Before it is wrapped, ``bundler.build.model_check`` reads the
model and the golden data, and ``bundler.build.evaluation_check`` the evaluation
set and the input contract: what would fail a device's health check fails
the build instead (exit 2).

A blob added twice (a layer shared by two images) is stored once: the
builder is keyed by digest. Files are hashed here, once, and stamped
(:class:`~airlock.format.writer.FileStamp`: device, inode, size, mtime, from the
open file before and after hashing); the bundle writer copies a file whose
stamp still matches without hashing it again, and hashes as it copies one
whose stamp moved, so a file that changes mid-build fails the build instead
of making a bundle whose signature lies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

from airlock.format.oci import (
    ANNOTATION_REF_NAME,
    ANNOTATION_TITLE,
    OCI_EMPTY,
    OCI_MANIFEST,
    Descriptor,
    blob_path,
    digest_of,
    oci_index,
    oci_layout,
    oci_manifest,
)
from airlock.format.writer import FileStamp, SourceFile
from airlock.limits import CHUNK, RACY_STAMP_NS
from bundler.build.evaluation_check import (
    check_contract_signature,
    check_data_contract,
    check_evaluation,
)
from bundler.build.model_check import (
    ModelCheckError,
    ModelFacts,
    check_external_sizes,
    check_golden,
    read_model,
)
from bundler.build.spec import ModelSpec, Spec
from keys.release import EvaluationSpec, ModelEntry

__all__ = [
    "DRIFT_REFERENCE_TYPE",
    "EVAL_DATA_TYPE",
    "EVAL_LABELS_TYPE",
    "GOLDEN_INPUTS_TYPE",
    "GOLDEN_OUTPUTS_TYPE",
    "MODEL_ARTIFACT_TYPE",
    "MODEL_DATA_TYPE",
    "MODEL_LAYER_TYPE",
    "LayoutBuilder",
    "add_model_artifact",
    "hash_stamped",
    "local_data",
    "local_golden",
]

MODEL_ARTIFACT_TYPE = "application/vnd.airlock.model.v1"
MODEL_LAYER_TYPE = "application/vnd.onnx.model.v1"
GOLDEN_INPUTS_TYPE = "application/vnd.airlock.golden.inputs.v1+npz"
GOLDEN_OUTPUTS_TYPE = "application/vnd.airlock.golden.outputs.v1+npz"
MODEL_DATA_TYPE = "application/vnd.airlock.model.external-data.v1"
DRIFT_REFERENCE_TYPE = "application/vnd.airlock.drift.reference.v1+npz"
EVAL_DATA_TYPE = "application/vnd.airlock.eval.data.v1+npz"
EVAL_LABELS_TYPE = "application/vnd.airlock.eval.labels.v1+npz"


@dataclass
class LayoutBuilder:
    """The OCI layout being assembled: blobs by digest, and index entries."""

    blobs: dict[str, SourceFile] = field(default_factory=dict)
    manifests: list[Descriptor] = field(default_factory=list)
    local_paths: list[Path] = field(default_factory=list)  # every file the bundle is copied from
    paths: dict[str, Path] = field(default_factory=dict)  # digest -> the file it is copied from

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
        stamp: FileStamp | None = None,
    ) -> Descriptor:
        """Add a file; hashes it unless the caller already knows digest and size.

        ``stamp``: the file's stamp when the caller verified ``digest``
        against these bytes itself (the pull cache), so the bundle writer
        need not hash them again.
        """
        if digest is None or size is None:
            hexdigest, size, stamp = hash_stamped(path, tick)
            digest = "sha256:" + hexdigest
        self.local_paths.append(path)
        self.paths.setdefault(digest, path)
        self.blobs.setdefault(
            digest, SourceFile(blob_path(digest), size, digest[7:], partial(_open_binary, path),
                               stamp)
        )
        return Descriptor(media_type, digest, size, annotations or {})

    def opener(self, desc: Descriptor) -> Callable[[], IO[bytes]]:
        """Opens a blob already added, for reading it back (model checks)."""
        return self.blobs[desc.digest].open

    def source_files(self) -> list[SourceFile]:
        index = oci_index(self.manifests)
        return [
            _memory_source("oci-layout", oci_layout()),
            _memory_source("index.json", index),
            *self.blobs.values(),
        ]


def hash_stamped(path: Path, tick: Callable[[int], None] | None = None
                 ) -> tuple[str, int, FileStamp | None]:
    """``(sha256 hex, size, stamp)`` of a file, read once in chunks (memory stays flat).

    The stamp is None when the bytes hashed cannot be tied to it: the file
    changed while it was hashed, or its mtime is so recent that a write in
    the same clock tick would leave it unchanged (git's "racily clean"):
    such a file is hashed again wherever it is read.
    """
    h, size = hashlib.sha256(), 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    started = time.time_ns()
    with path.open("rb") as f:
        before = os.fstat(f.fileno())
        with contextlib.suppress(AttributeError, OSError):  # a hint: read ahead further
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
            if tick:
                tick(n)
        after = os.fstat(f.fileno())
    stamp = FileStamp.of(after)
    steady = FileStamp.of(before) == stamp and stamp.size == size
    settled = stamp.mtime_ns < started - RACY_STAMP_NS
    return h.hexdigest(), size, stamp if steady and settled else None


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


def _memory_source(path: str, data: bytes) -> SourceFile:
    def opener() -> IO[bytes]:
        return io.BytesIO(data)

    return SourceFile(path, len(data), digest_of(data)[7:], opener)


def local_golden(
    contents: LayoutBuilder, m: ModelSpec, tick: Callable[[int], None] | None = None
) -> tuple[Descriptor | None, Descriptor | None]:
    """The spec's golden input/output files that are local paths, added to ``contents``."""
    h = m.health
    i = o = None
    if h.inputs is not None:
        i = contents.add_file(
            GOLDEN_INPUTS_TYPE, h.inputs, tick=tick, annotations={ANNOTATION_TITLE: h.inputs.name}
        )
    if h.outputs is not None:
        o = contents.add_file(
            GOLDEN_OUTPUTS_TYPE,
            h.outputs,
            tick=tick,
            annotations={ANNOTATION_TITLE: h.outputs.name},
        )
    return i, o


def local_data(contents: LayoutBuilder, m: ModelSpec) -> Callable[[str], Descriptor | None]:
    """Finds a local model's external data file beside it and adds it to ``contents``."""

    def find(name: str) -> Descriptor | None:
        assert m.path is not None
        path = m.path.parent / name
        if not path.is_file():
            return None
        return contents.add_file(MODEL_DATA_TYPE, path, annotations={ANNOTATION_TITLE: name})

    return find


def add_model_artifact(
    contents: LayoutBuilder,
    spec: Spec,
    m: ModelSpec,
    model: Descriptor,
    inputs: Descriptor | None,
    outputs: Descriptor | None,
    source: str,
    find_data: Callable[[str], Descriptor | None],
) -> ModelEntry:
    """Check the model and its golden data, then wrap them as the model's OCI artifact.

    ``find_data(name)`` adds the external data file ``name`` to ``contents``
    (None when there is none): beside a local model, or a layer of a
    registry artifact. A model that would fail on devices is a SpecError.
    """
    file_name = model.annotations.get(ANNOTATION_TITLE) or f"{m.name}.onnx"
    field_name = "path" if m.path is not None else "ref"
    try:
        facts = read_model(contents.opener(model), file_name, field_name)
        data = []
        for name in facts.external:
            found = find_data(name)
            if found is None:
                raise ModelCheckError(field_name, f"needs the external data file {name!r} "
                                      "beside it, and there is none")
            data.append(found)
        check_external_sizes(facts, {d.annotations[ANNOTATION_TITLE]: d.size for d in data},
                             field_name)
        check_golden(facts, contents.opener(inputs) if inputs else None,
                     contents.opener(outputs) if outputs else None)
        reference = None
        if m.health.reference is not None:
            # The drift reference sample, a local file for local and registry models alike.
            reference = contents.add_file(
                DRIFT_REFERENCE_TYPE,
                m.health.reference,
                annotations={ANNOTATION_TITLE: m.health.reference.name},
            )
        check_contract_signature(facts, m.contract)
        if m.contract:
            for where, sample in (("health.inputs", inputs), ("health.reference", reference)):
                if sample is not None:
                    check_data_contract(m.contract, contents.opener(sample), where,
                                        stacked=where == "health.reference")
        evaluation, eval_layers = _add_evaluation(contents, m, facts)
    except ModelCheckError as e:
        raise m.origin.error(e.field, str(e)) from None
    layers = ([model, *data] + [d for d in (inputs, outputs, reference) if d is not None]
              + eval_layers)
    config = contents.add_bytes(OCI_EMPTY, b"{}")
    manifest = contents.add_bytes(
        OCI_MANIFEST,
        oci_manifest(config, layers, artifact_type=MODEL_ARTIFACT_TYPE),
        annotations={ANNOTATION_REF_NAME: f"models/{m.name}:{_tag(spec.version)}"
                     + (f"-{m.variant}" if m.variant else "")},
        artifact_type=MODEL_ARTIFACT_TYPE,
    )
    contents.manifests.append(manifest)
    return ModelEntry(
        name=m.name,
        manifest=manifest.digest,
        blob=model.digest,
        file_name=file_name,
        media_type=model.media_type,
        size=model.size,
        source=source,
        data=tuple((d.annotations[ANNOTATION_TITLE], d.digest) for d in data),
        health=dataclasses.replace(
            m.health.limits,
            inputs=inputs.digest if inputs else None,
            outputs=outputs.digest if outputs else None,
            reference=reference.digest if reference else None,
        ),
        evaluation=evaluation,
        contract=m.contract,
        shadow=m.shadow,
        samples=m.samples,
        variant=m.variant,
        when=m.when,
    )


def _add_evaluation(contents: LayoutBuilder, m: ModelSpec,
                    facts: ModelFacts) -> tuple[EvaluationSpec | None, list[Descriptor]]:
    """The evaluation set and labels (local files, for local and registry models alike)."""
    ev = m.evaluate
    if ev is None:
        return None, []
    data = contents.add_file(EVAL_DATA_TYPE, ev.data, annotations={ANNOTATION_TITLE: ev.data.name})
    labels = contents.add_file(EVAL_LABELS_TYPE, ev.labels,
                               annotations={ANNOTATION_TITLE: ev.labels.name})
    check_evaluation(facts, ev, m.contract, contents.opener(data), contents.opener(labels))
    spec = EvaluationSpec(data.digest, labels.digest, ev.metrics, ev.batch, ev.max_samples)
    return spec, [data, labels]


def _tag(version: str) -> str:
    """An OCI-safe tag for ``ref.name`` annotations."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in version)
    return safe[:128] or "latest"
