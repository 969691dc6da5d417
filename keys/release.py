"""The signed release metadata: what a bundle holds and how to check it.

A release is a TUF ``targets`` document (``tuf.api.metadata.Targets``):

* ``version`` is the release *sequence*, the integer the agent uses for
  anti-rollback;
* ``expires`` is the release expiry;
* ``targets`` lists **every** file of the OCI layout in the bundle
  (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``) with its exact
  length and sha256;
* ``airlock_kind`` is ``"release"`` (``keys.metadata.Kind``; a flags set says
  ``"flags"``);
* the field ``airlock`` carries what TUF has no words for: the user's name and
  version string, models with their health-check budgets (and the external
  data files a model loads beside it, its evaluation set and thresholds, its
  input contract), images, feature flags, hooks, target rings, agent kits
  (``agent.kits``: the agent for each device platform, see docs/BOOTSTRAP.md)
  and, for a delta bundle, its base; and ``requires``, the features the
  release depends on (``keys.features``: an agent refuses a release requiring
  one it does not know).

Every field is read strictly, by the rules of ``keys.signed_fields`` that the
bundler also applies to a spec before it signs.

A delta bundle's ``targets`` still list the whole release; ``delta.expects``
marks the blobs the bundle leaves out because the device must already hold
them (with the signed lengths the device checks its copies against), and
``delta.inventories`` names the signed device inventories it was built from.

Example::

    release = Release(name="vision", version="1.2.0", sequence=7, expires=when)
    md = release.to_metadata()          # Metadata[Targets], ready to sign
    again = Release.from_metadata(md)   # strict: a bad field is a FormatError
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from tuf.api.metadata import Metadata, TargetFile, Targets

from airlock.errors import FormatError
from airlock.format.bundle import FileInfo
from airlock.format.oci import BLOB_PREFIX, blob_path, digest_hex, is_sha256_hex
from airlock.limits import MAX_NAME_LENGTH
from airlock.quality.contract import InputRule
from airlock.quality.evaluation import Threshold
from keys.evaluation_fields import (
    SessionOptions,
    valid_batch,
    valid_contract,
    valid_max_samples,
    valid_metrics,
    valid_providers,
    valid_session,
)
from keys.features import check_requires
from keys.metadata import KIND_FIELD, RELEASE_SECTION, Kind, kind_of, parse_metadata
from keys.signed_fields import (
    DRIFT_REFERENCE_FILE,
    EVAL_DATA_FILE,
    EVAL_LABELS_FILE,
    GOLDEN_INPUTS_FILE,
    GOLDEN_OUTPUTS_FILE,
    FieldError,
    is_plain_name,
    valid_command,
    valid_flags,
    valid_json,
    valid_line,
    valid_model_files,
    valid_name,
    valid_number,
    valid_runs,
    valid_sequence,
    valid_unique,
)

__all__ = [
    "AgentKitEntry",
    "Delta",
    "EvaluationSpec",
    "HealthSpec",
    "Hooks",
    "ImageEntry",
    "InventoryRef",
    "ModelEntry",
    "Release",
    "SessionOptions",
    "is_plain_name",
]


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


@dataclass
class Release:
    name: str
    version: str
    sequence: int
    expires: datetime
    files: dict[str, FileInfo] = field(default_factory=dict)
    models: list[ModelEntry] = field(default_factory=list)
    images: list[ImageEntry] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)
    hooks: Hooks = field(default_factory=Hooks)
    rings: list[str] = field(default_factory=list)
    delta: Delta | None = None
    agent_kits: list[AgentKitEntry] = field(default_factory=list)
    requires: tuple[str, ...] = ()  # features the release depends on (keys.features)

    @property
    def id(self) -> str:
        """Directory name of this release on a device: ``NAME-SEQUENCE``."""
        return f"{self.name}-{self.sequence}"

    def to_metadata(self) -> Metadata[Targets]:
        targets = {
            path: TargetFile(info.length, {"sha256": info.sha256}, path)
            for path, info in sorted(self.files.items())
        }
        body: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "models": [_model_dict(m) for m in self.models],
            "images": [_drop_none(asdict(i)) for i in self.images],
            "flags": self.flags,
            "hooks": _drop_none(asdict(self.hooks)),
            "rings": list(self.rings),
            "requires": list(self.requires),
        }
        if self.delta is not None:
            body["delta"] = {
                "base_sequence": self.delta.base_sequence,
                "expects": list(self.delta.expects),
                "inventories": [asdict(i) for i in self.delta.inventories],
            }
        if self.agent_kits:  # absent otherwise, so releases without kits keep their bytes
            body["agent"] = {"kits": [asdict(k) for k in self.agent_kits]}
        signed = Targets(
            version=self.sequence,
            expires=self.expires,
            targets=targets,
            unrecognized_fields={KIND_FIELD: Kind.RELEASE.value, RELEASE_SECTION: body},
        )
        return Metadata(signed)

    @classmethod
    def from_bytes(cls, data: bytes) -> Release:
        """A release from its JSON, bounded and strict; signatures are not checked here."""
        return cls.from_metadata(parse_metadata(data, Targets, "release metadata"))

    @classmethod
    def from_metadata(cls, md: Metadata[Any]) -> Release:
        """Read a release from (already verified) metadata; strict about every field."""
        signed = md.signed
        if not isinstance(signed, Targets):
            raise FormatError("release metadata is not of type 'targets'")
        if not kind_of(md).is_release():
            raise FormatError("the metadata is a flags set, not a release; apply it with "
                              "'airlock-agent flags apply'")
        body = signed.unrecognized_fields.get(RELEASE_SECTION)
        if not isinstance(body, dict):
            raise FormatError("release metadata has no 'airlock' section")
        try:
            valid_sequence(signed.version)
        except FieldError as e:
            raise FormatError(f"release sequence (TUF 'version') {e}") from None
        try:
            valid_json(body)
        except FieldError as e:
            raise FormatError(f"release field '{e.where('airlock')}' {e}") from None
        r = _Reader(body, "airlock")
        # Before any other field: a release built for a newer agent is refused for what
        # this agent lacks, not for a field it cannot read.
        requires = check_requires(r.texts("requires"))
        files: dict[str, FileInfo] = {}
        for path, target in signed.targets.items():
            sha = target.hashes.get("sha256")
            if not is_sha256_hex(sha):
                raise FormatError(f"release lists {path!r} without a sha256")
            if path.startswith(BLOB_PREFIX) and path[len(BLOB_PREFIX) :] != sha:
                raise FormatError(f"release lists {path!r} under another digest")
            files[path] = FileInfo(target.length, sha)
        name = r.name("name")
        hooks = r.sub("hooks")
        delta_raw = body.get("delta")
        delta = None
        if delta_raw is not None:
            d = r.sub("delta")
            delta = Delta(d.integer("base_sequence"), tuple(d.digests("expects")),
                          tuple(_inventory_from(i) for i in d.subs("inventories")))
        models = [_model_from(m) for m in r.subs("models")]
        r.check("models", valid_unique, [m.name for m in models], "model")
        release = cls(
            name=name,
            version=r.text("version"),
            sequence=signed.version,
            expires=signed.expires,
            files=files,
            models=models,
            images=[_image_from(i) for i in r.subs("images")],
            flags=r.check("flags", valid_flags, r.mapping("flags")),
            hooks=Hooks(
                post_switch=hooks.opt_text("post_switch", command=True),
                probe=hooks.opt_text("probe", command=True),
                probe_window_s=hooks.number("probe_window_s", 30.0),
            ),
            rings=[r.check(f"rings[{i}]", valid_name, ring)
                   for i, ring in enumerate(r.texts("rings"))],
            delta=delta,
            agent_kits=[_kit_from(k) for k in r.sub("agent").subs("kits")],
            requires=requires,
        )
        release._check_references()
        return release

    def _check_references(self) -> None:
        """Every blob a model or image names is in the bundle or expected on the device.

        Otherwise validly signed metadata could make a device depend on
        content nobody vouched for being present (extraneous dependencies), and
        the install would fail late, after the download, instead of at once.
        """
        if self.delta is not None:
            for expected in self.delta.expects:
                if blob_path(expected) not in self.files:
                    raise FormatError(
                        f"delta expects blob {expected[:23]}… that the release does not list"
                    )
        have = set(self.all_digests())
        for m in self.models:
            for digest in (m.manifest, *(d for _, d in m.linked_files())):
                if digest not in have:
                    raise FormatError(
                        f"model '{m.name}' names blob {digest[:23]}… that is not in the bundle "
                        "nor expected on the device"
                    )
            info = self.files.get(blob_path(m.blob))
            if info is not None and info.length != m.size:
                raise FormatError(
                    f"model '{m.name}' says {m.size} bytes but its blob is {info.length} bytes"
                )
        for i in self.images:
            for digest in (i.manifest, *i.blobs):
                if digest not in have:
                    raise FormatError(
                        f"image '{i.ref}' names blob {digest[:23]}… that is not in the bundle "
                        "nor expected on the device"
                    )
        for k in self.agent_kits:
            for digest in (k.manifest, k.blob):
                if digest not in have:
                    raise FormatError(f"agent kit '{k.file_name}' names blob {digest[:23]}… "
                                      "that is not in the bundle nor expected on the device")
            info = self.files.get(blob_path(k.blob))
            if info is not None and info.length != k.size:
                raise FormatError(f"agent kit '{k.file_name}' says {k.size} bytes but its "
                                  f"blob is {info.length} bytes")

    def all_digests(self) -> list[str]:
        """Digests of every blob this release needs, carried or expected on the device.

        ``files`` lists the whole release, a delta's expected blobs included
        (``_check_references`` refuses a delta expecting a blob it does not list).
        """
        return sorted(f"sha256:{p[len(BLOB_PREFIX) :]}" for p in self.files
                      if p.startswith(BLOB_PREFIX))

    @property
    def shipped(self) -> dict[str, FileInfo]:
        """The files the bundle carries: all of them, less what a delta expects on the device."""
        if self.delta is None:
            return dict(self.files)
        left_out = {blob_path(d) for d in self.delta.expects}
        return {p: i for p, i in self.files.items() if p not in left_out}

    def summary(self) -> dict[str, Any]:
        """What people compare between releases (``airlock diff``, device inventories).

        Models and images with their sizes and health budgets, flags, hooks,
        rings and expiry; not the file list.
        """

        def size(digest: str) -> int | None:
            info = self.files.get(blob_path(digest))
            return None if info is None else info.length

        return {
            "name": self.name,
            "version": self.version,
            "sequence": self.sequence,
            "expires": self.expires.isoformat(),
            "models": [
                {"name": m.name, "file": m.file_name, "blob": m.blob, "size": m.size,
                 "media_type": m.media_type,
                 "health": {k: v for k, v in _health_dict(m.health).items()
                            if k not in ("inputs", "outputs")},
                 "golden": [d for d in (m.health.inputs, m.health.outputs) if d],
                 **_quality_dict(m)}
                for m in self.models
            ],
            "images": [
                {"ref": i.ref, "platform": i.platform, "manifest": i.manifest,
                 "blobs": [{"digest": d, "size": size(d)} for d in i.blobs]}
                for i in self.images
            ],
            "flags": self.flags,
            "hooks": _drop_none(asdict(self.hooks)),
            "rings": list(self.rings),
        }


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items() if v is not None}


def _health_dict(h: HealthSpec) -> dict[str, Any]:
    health = _drop_none(asdict(h))
    # Absent when unset, so releases that use none of them sign (and summarise) as before.
    if not h.provider_fallback:
        del health["provider_fallback"]
    session = h.session.to_json()
    if session:
        health["session"] = session
    else:
        del health["session"]
    return health


def _quality_dict(m: ModelEntry) -> dict[str, Any]:
    """``evaluate`` and ``inputs_contract`` as signed; absent when the model has none."""
    d: dict[str, Any] = {}
    if m.evaluation is not None:
        d["evaluate"] = m.evaluation.to_json()
    if m.contract:
        d["inputs_contract"] = {rule.name: rule.to_json() for rule in m.contract}
    return d


def _model_dict(m: ModelEntry) -> dict[str, Any]:
    d = _drop_none(asdict(m))
    d["health"] = _health_dict(m.health)
    for key in ("data", "evaluation", "contract"):
        d.pop(key, None)
    if m.data:
        d["data"] = dict(m.data)
    d.update(_quality_dict(m))
    return d


_T = TypeVar("_T")


class _Reader:
    """Typed access to an untrusted JSON object, raising FormatError naming the field."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise FormatError(f"release field '{where}' must be an object")
        self.raw, self.where = raw, where

    def _get(self, key: str, types: tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.raw:
            if default is ...:
                raise FormatError(f"release field '{self.where}.{key}' is missing")
            return default
        value = self.raw[key]
        if value is None and default is not ... and default is None:
            return None
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise FormatError(f"release field '{self.where}.{key}' has the wrong type")
        return value

    def value(self, key: str, default: Any) -> Any:
        """The value as signed, for a rule of keys.signed_fields to judge."""
        return self.raw.get(key, default)

    def check(self, key: str, rule: Callable[..., _T], *args: Any, **kw: Any) -> _T:
        """``rule(*args)`` of keys.signed_fields; a broken rule names this field."""
        try:
            return rule(*args, **kw)
        except FieldError as e:
            raise FormatError(f"release field '{e.where(f'{self.where}.{key}')}' {e}") from None

    def text(self, key: str) -> str:
        return self.check(key, valid_line, self._get(key, (str,)))

    def name(self, key: str) -> str:
        return self.check(key, valid_name, self._get(key, (str,)))

    def opt_text(self, key: str, *, command: bool = False) -> str | None:
        v = self._get(key, (str,), None)
        if v is None:
            return None
        return self.check(key, valid_command if command else valid_line, v)

    def integer(self, key: str) -> int:
        return int(self._get(key, (int,)))

    def number(self, key: str, default: float | None, *, positive: bool = False) -> Any:
        v = self._get(key, (int, float), default)
        return None if v is None else self.check(key, valid_number, v, positive=positive)

    def mapping(self, key: str) -> dict[str, Any]:
        return dict(self._get(key, (dict,), {}))

    def texts(self, key: str) -> list[str]:
        values = self._get(key, (list,), [])
        if not all(isinstance(v, str) for v in values):
            raise FormatError(f"release field '{self.where}.{key}' must be a list of strings")
        return [self.check(f"{key}[{i}]", valid_line, v) for i, v in enumerate(values)]

    def digests(self, key: str) -> list[str]:
        values = self.texts(key)
        for v in values:
            digest_hex(v)
        return values

    def digest(self, key: str, optional: bool = False) -> Any:
        v = self._get(key, (str,), None if optional else ...)
        if v is not None:
            digest_hex(v)
        return v

    def file_digests(self, key: str) -> tuple[tuple[str, str], ...]:
        """An object of file name -> digest (a model's external data), in signed order."""
        raw = self._get(key, (dict,), {})
        out = []
        for file_name, digest in raw.items():
            self.check(key, valid_name, file_name)
            if not isinstance(digest, str):
                raise FormatError(f"release field '{self.where}.{key}' must map names to digests")
            digest_hex(digest)
            out.append((file_name, digest))
        return tuple(out)

    def sub(self, key: str) -> _Reader:
        return _Reader(self._get(key, (dict,), {}), f"{self.where}.{key}")

    def subs(self, key: str) -> list[_Reader]:
        return [
            _Reader(v, f"{self.where}.{key}[{i}]")
            for i, v in enumerate(self._get(key, (list,), []))
        ]


def _model_from(r: _Reader) -> ModelEntry:
    h = r.sub("health")
    name = r.name("name")
    file_name = r.text("file_name")
    r.check("file_name", valid_model_files, file_name)
    data = r.file_digests("data")
    r.check("data", valid_model_files, file_name, [n for n, _ in data])
    providers = h.texts("providers") or ["CPUExecutionProvider"]
    h.check("providers", valid_providers, providers)
    evaluation = None
    if "evaluate" in r.raw:
        e = r.sub("evaluate")
        max_samples = e.value("max_samples", None)
        evaluation = EvaluationSpec(
            data=e.digest("data"),
            labels=e.digest("labels"),
            metrics=e.check("metrics", valid_metrics, e.value("metrics", None)),
            batch=e.check("batch", valid_batch, e.value("batch", 32)),
            max_samples=None if max_samples is None
            else e.check("max_samples", valid_max_samples, max_samples),
        )
    contract: tuple[InputRule, ...] = ()
    if "inputs_contract" in r.raw:
        contract = r.check("inputs_contract", valid_contract, r.value("inputs_contract", None))
    fallback = h.value("provider_fallback", False)
    if not isinstance(fallback, bool):
        raise FormatError(f"release field '{h.where}.provider_fallback' must be true or false")
    return ModelEntry(
        name=name,
        manifest=r.digest("manifest"),
        blob=r.digest("blob"),
        file_name=file_name,
        media_type=r.text("media_type"),
        size=r.integer("size"),
        source=r.opt_text("source"),
        data=data,
        health=HealthSpec(
            inputs=h.digest("inputs", optional=True),
            outputs=h.digest("outputs", optional=True),
            rtol=h.number("rtol", 1e-4),
            atol=h.number("atol", 1e-5),
            runs=h.check("runs", valid_runs, h.value("runs", 20)),
            max_p95_ms=h.number("max_p95_ms", None),
            max_memory_mb=h.number("max_memory_mb", None),
            timeout_s=h.number("timeout_s", 60.0, positive=True),
            providers=tuple(providers),
            reference=h.digest("reference", optional=True),
            drift_warn=h.number("drift_warn", None),
            provider_fallback=fallback,
            session=h.check("session", valid_session, h.value("session", {})),
        ),
        evaluation=evaluation,
        contract=contract,
    )


def _inventory_from(r: _Reader) -> InventoryRef:
    device_id = r.text("device_id")
    if not device_id.isprintable() or len(device_id) > MAX_NAME_LENGTH:
        raise FormatError(f"release field '{r.where}.device_id' is not a printable device name")
    keyid, sha = r.text("keyid"), r.text("sha256")
    if not (is_sha256_hex(keyid) and is_sha256_hex(sha)):
        raise FormatError(f"release field '{r.where}' needs a hex keyid and sha256")
    time = r.text("time")
    if not time.isprintable() or len(time) > 64:
        raise FormatError(f"release field '{r.where}.time' is not a time")
    return InventoryRef(device_id, keyid, sha, time)


def _kit_from(r: _Reader) -> AgentKitEntry:
    from keys.kitverify import KitError, version_key

    file_name = r.name("file_name")
    version = r.text("version")
    try:
        version_key(version)
    except KitError as e:
        raise FormatError(str(e)) from None
    return AgentKitEntry(blob=r.digest("blob"), manifest=r.digest("manifest"),
                         file_name=file_name, size=r.integer("size"), version=version,
                         platform=r.text("platform"), python=r.text("python"))


def _image_from(r: _Reader) -> ImageEntry:
    return ImageEntry(
        ref=r.text("ref"),
        manifest=r.digest("manifest"),
        media_type=r.text("media_type"),
        platform=r.opt_text("platform"),
        index=r.digest("index", optional=True),
        blobs=tuple(r.digests("blobs")),
    )
