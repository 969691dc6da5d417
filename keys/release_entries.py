"""The parts of a signed release: models, images, hooks, a delta's base, agent kits.

Plain frozen records that ``keys.release.Release`` is made of; the strict
reader of each from untrusted JSON is ``keys.release_reader``::

    model = ModelEntry("detector", "sha256:…", "sha256:…", "model.onnx", "application/vnd.onnx",
                       1, HealthSpec(inputs="sha256:…", outputs="sha256:…"))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airlock.quality.contract import InputRule
from airlock.quality.evaluation import Threshold
from keys.evaluation_fields import (
    SessionOptions,
)
from keys.shadow_fields import SamplesPolicy, ShadowSpec
from keys.signed_fields import (
    DRIFT_REFERENCE_FILE,
    EVAL_DATA_FILE,
    EVAL_LABELS_FILE,
    GOLDEN_INPUTS_FILE,
    GOLDEN_OUTPUTS_FILE,
)

__all__ = ["AgentKitEntry", "Delta", "EncryptedBlob", "Encryption", "EvaluationSpec", "HealthSpec", "Hooks", "ImageEntry", "InventoryRef", "ModelEntry"]


@dataclass(frozen=True)
class HealthSpec:
    """What the agent checks before it switches to a model."""

    inputs: str | None = None  # digest of the golden inputs .npz
    outputs: str | None = None  # digest of the golden outputs .npz
    rtol: float = 1e-4
    atol: float = 1e-5
    runs: int = 20
    max_p95_ms: float | None = None
    max_memory_mb: float | None = None
    timeout_s: float = 60.0
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    reference: str | None = None  # digest of the drift reference sample .npz
    drift_warn: float | None = None  # PSI above which drift is a warning (agent default 0.2)
    # False: every listed provider must be usable on the device, or the check fails.
    provider_fallback: bool = False
    session: SessionOptions = field(default_factory=SessionOptions)


@dataclass(frozen=True)
class EvaluationSpec:
    """A labelled set the model must score well on (``evaluate:`` in the spec)."""

    data: str  # digest of the .npz of inputs, one row per sample
    labels: str  # digest of the .npz holding one array, named after the output it scores
    metrics: tuple[Threshold, ...]
    batch: int = 32
    max_samples: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"data": self.data, "labels": self.labels, "batch": self.batch,
                               "metrics": {t.metric: t.rules() for t in self.metrics}}
        if self.max_samples is not None:
            out["max_samples"] = self.max_samples
        return out


@dataclass(frozen=True)
class ModelEntry:
    name: str
    manifest: str  # digest of the OCI artifact manifest
    blob: str  # digest of the model file layer
    file_name: str  # file name inside the release's models/<name>/ dir
    media_type: str
    size: int
    health: HealthSpec = field(default_factory=HealthSpec)
    source: str | None = None  # where the bundler took it from (path or OCI ref)
    # ONNX external data: (file name, digest) of each file the model loads beside it.
    data: tuple[tuple[str, str], ...] = ()
    evaluation: EvaluationSpec | None = None
    contract: tuple[InputRule, ...] = ()
    shadow: ShadowSpec | None = None  # compare with the running model on device samples
    samples: SamplesPolicy = field(default_factory=SamplesPolicy)
    # One variant of a model that comes in several (keys.variants): its name, and the device
    # facts that select it (canonical form; {} selects every device). None: no variants.
    variant: str | None = None
    when: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """``detector`` or ``detector (variant int8)``, as messages name it."""
        return self.name if self.variant is None else f"{self.name} (variant {self.variant})"

    def blob_digests(self) -> list[str]:
        """Every blob of this model (or variant): its manifest and the files it links."""
        return [self.manifest, *(d for _, d in self.linked_files())]

    def linked_files(self) -> list[tuple[str, str]]:
        """(file name, digest) of every file the agent links into ``models/NAME/``.

        The model, its external data, its golden data and evaluation set
        under the fixed names the health check reads; the release rules keep
        them distinct.
        """
        files = [(self.file_name, self.blob), *self.data]
        if self.health.inputs is not None:
            files.append((GOLDEN_INPUTS_FILE, self.health.inputs))
        if self.health.outputs is not None:
            files.append((GOLDEN_OUTPUTS_FILE, self.health.outputs))
        if self.health.reference is not None:
            files.append((DRIFT_REFERENCE_FILE, self.health.reference))
        if self.evaluation is not None:
            files.append((EVAL_DATA_FILE, self.evaluation.data))
            files.append((EVAL_LABELS_FILE, self.evaluation.labels))
        return files


@dataclass(frozen=True)
class ImageEntry:
    ref: str  # the reference as the user wrote it, e.g. registry:5000/app:1.0
    manifest: str  # digest pinned at build time (the platform's manifest)
    media_type: str
    platform: str | None = None
    index: str | None = None  # digest of the multi-arch index it came from, if any
    blobs: tuple[str, ...] = ()  # config and layers, so a sink knows what to copy


@dataclass(frozen=True)
class Hooks:
    post_switch: str | None = None
    probe: str | None = None  # http(s)://... URL or a shell command
    probe_window_s: float = 30.0


@dataclass(frozen=True)
class InventoryRef:
    """A signed device inventory a delta bundle was built against."""

    device_id: str
    keyid: str  # the device key that signed it
    sha256: str  # of the inventory file, hex
    time: str  # when the device wrote it


@dataclass(frozen=True)
class Delta:
    """A delta bundle applies on top of ``base_sequence`` and omits ``expects``."""

    base_sequence: int
    expects: tuple[str, ...] = ()  # digests the device must already hold
    inventories: tuple[InventoryRef, ...] = ()


@dataclass(frozen=True)
class AgentKitEntry:
    """An agent kit a release carries: the agent a device of ``platform`` and ``python`` runs."""

    blob: str  # digest of the kit tar
    manifest: str  # digest of its OCI artifact manifest
    file_name: str  # airlock-agent-kit-0.2.0-linux-amd64-py3.11.tar
    size: int
    version: str  # the agent version inside, a final release like 0.2.0
    platform: str  # linux/amd64
    python: str  # 3.11


@dataclass(frozen=True)
class EncryptedBlob:
    """A blob the bundle carries encrypted (``airlock.format.ocicrypt``), as the release signs it."""

    digest: str  # of the ciphertext: what the bundle carries and the device verifies first
    plain: str  # of the plaintext: what the device stores, models and images name
    jwe: str  # the layer's keys.jwe annotation (the key wrapped per recipient)
    hmac: str  # base64 HMAC-SHA256 of the ciphertext (ocicrypt's pubopts)


@dataclass(frozen=True)
class Encryption:
    """Who may open an encrypted release, and its encrypted blobs."""

    recipients: tuple[tuple[str, str], ...]  # (name, key id: RFC 7638 thumbprint)
    blobs: tuple[EncryptedBlob, ...]

    def by_digest(self) -> dict[str, EncryptedBlob]:
        return {b.digest: b for b in self.blobs}

    def to_json(self) -> dict[str, Any]:
        return {"scheme": "ocicrypt-jwe",
                "recipients": [{"name": n, "kid": k} for n, k in self.recipients],
                "blobs": [{"digest": b.digest, "plain": b.plain, "jwe": b.jwe, "hmac": b.hmac}
                          for b in self.blobs]}
