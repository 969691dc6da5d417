"""The signed release metadata: what a bundle holds and how to check it.

A release is a TUF ``targets`` document (``tuf.api.metadata.Targets``):

* ``version`` is the release *sequence*, the integer the agent uses for
  anti-rollback;
* ``expires`` is the release expiry;
* ``targets`` lists **every** file of the OCI layout in the bundle
  (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``) with its exact
  length and sha256;
* the field ``airlock`` carries what TUF has no words for: the user's name and
  version string, models with their health-check budgets, images, feature
  flags, hooks, target rings, agent kits (``agent.kits``: the agent for each
  device platform, see docs/BOOTSTRAP.md) and, for a delta bundle, its base.

Example::

    release = Release(name="vision", version="1.2.0", sequence=7, expires=when)
    md = release.to_metadata()          # Metadata[Targets], ready to sign
    again = Release.from_metadata(md)   # strict: a bad field is a FormatError
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from tuf.api.metadata import Metadata, Root, Signed, TargetFile, Targets
from tuf.api.serialization import DeserializationError, SerializationError, SignedSerializer

from airlock.bundle import FileInfo
from airlock.errors import FormatError
from airlock.limits import (
    MAX_HEALTH_RUNS,
    MAX_JSON_DEPTH,
    MAX_METADATA_BYTES,
    MAX_NAME_LENGTH,
    MAX_SEQUENCE,
)
from airlock.oci import BLOB_PREFIX, blob_path, digest_hex

__all__ = [
    "AgentKitEntry",
    "Delta",
    "HealthSpec",
    "Hooks",
    "ImageEntry",
    "ModelEntry",
    "Release",
    "ReleaseSerializer",
    "is_plain_name",
    "parse_metadata",
]

# Release, model, file and ring names become file names on devices.
_PLAIN_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}$")


def is_plain_name(text: object) -> bool:
    """The one naming rule: letters, digits, ``.``, ``_``, ``-``; no leading dot; bounded."""
    return isinstance(text, str) and _PLAIN_NAME.match(text) is not None


def parse_metadata(data: bytes, kind: type[Root] | type[Targets], what: str) -> Metadata[Any]:
    """Untrusted bytes -> TUF metadata of the expected type, or a FormatError naming the cause.

    The one parse of metadata whose signatures are not checked yet (a trust
    root, a release in a bundle, ``airlock inspect``): bounded in size first.
    """
    if len(data) > MAX_METADATA_BYTES:
        raise FormatError(f"{what} is larger than {MAX_METADATA_BYTES} bytes")
    try:
        md: Metadata[Any] = Metadata.from_bytes(data)
    except (DeserializationError, ValueError, TypeError, KeyError, RecursionError) as e:
        raise FormatError(f"{what} is not valid TUF metadata: {_cause(e)}") from None
    if not isinstance(md.signed, kind):
        raise FormatError(f"{what} is not of type '{kind.type}'")
    return md


def _cause(e: BaseException) -> str:
    """The message that names the problem: TUF wraps it as 'Failed to deserialize JSON'."""
    inner = e.__cause__ or e
    text = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
    return text[:200]


class ReleaseSerializer(SignedSerializer):
    """The bytes a release signature covers.

    JSON with sorted keys, no whitespace, UTF-8. TUF's default (OLPC canonical
    JSON) forbids floats, but releases carry float tolerances, budgets and
    flag values, so releases are signed over this form instead; Python's float
    repr is the shortest round-tripping form, the same on every platform.
    Trust roots keep TUF's own form.
    """

    def serialize(self, signed_obj: Signed) -> bytes:
        try:
            return json.dumps(
                signed_obj.to_dict(),
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
            ).encode()
        except (TypeError, ValueError) as e:
            raise SerializationError(str(e)) from e


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
class Delta:
    """A delta bundle applies on top of ``base_sequence`` and omits ``expects``."""

    base_sequence: int
    expects: tuple[str, ...] = ()  # digests the device must already hold


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
        }
        if self.delta is not None:
            body["delta"] = asdict(self.delta)
        if self.agent_kits:  # absent otherwise, so releases without kits keep their bytes
            body["agent"] = {"kits": [asdict(k) for k in self.agent_kits]}
        signed = Targets(
            version=self.sequence,
            expires=self.expires,
            targets=targets,
            unrecognized_fields={"airlock": body},
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
        body = signed.unrecognized_fields.get("airlock")
        if not isinstance(body, dict):
            raise FormatError("release metadata has no 'airlock' section")
        if not 1 <= signed.version <= MAX_SEQUENCE:
            raise FormatError(
                f"release sequence {signed.version} is out of range 1..{MAX_SEQUENCE}"
            )
        _check_depth(body, "airlock", 0)
        r = _Reader(body, "airlock")
        files: dict[str, FileInfo] = {}
        for path, target in signed.targets.items():
            sha = target.hashes.get("sha256")
            if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise FormatError(f"release lists {path!r} without a sha256")
            if path.startswith(BLOB_PREFIX) and path[len(BLOB_PREFIX) :] != sha:
                raise FormatError(f"release lists {path!r} under another digest")
            files[path] = FileInfo(target.length, sha)
        name = r.text("name")
        if not is_plain_name(name):
            raise FormatError(f"release name {name!r} is not a plain name")
        hooks = r.sub("hooks")
        delta_raw = body.get("delta")
        delta = None
        if delta_raw is not None:
            d = r.sub("delta")
            delta = Delta(d.integer("base_sequence"), tuple(d.digests("expects")))
        release = cls(
            name=name,
            version=r.text("version"),
            sequence=signed.version,
            expires=signed.expires,
            files=files,
            models=[_model_from(m) for m in r.subs("models")],
            images=[_image_from(i) for i in r.subs("images")],
            flags=r.mapping("flags"),
            hooks=Hooks(
                post_switch=hooks.opt_text("post_switch"),
                probe=hooks.opt_text("probe"),
                probe_window_s=hooks.number("probe_window_s", 30.0),
            ),
            rings=r.texts("rings"),
            delta=delta,
            agent_kits=[_kit_from(k) for k in r.sub("agent").subs("kits")],
        )
        release._check_references()
        return release

    def _check_references(self) -> None:
        """Every blob a model or image names is in the bundle or expected on the device.

        Otherwise validly signed metadata could make a device depend on
        content nobody vouched for being present (extraneous dependencies), and
        the install would fail late, after the download, instead of at once.
        """
        have = set(self.all_digests())
        for m in self.models:
            for digest in (m.manifest, m.blob, m.health.inputs, m.health.outputs):
                if digest is not None and digest not in have:
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
        """Digests of every blob this release needs, in the bundle or expected."""
        found = [f"sha256:{p[len(BLOB_PREFIX) :]}" for p in self.files if p.startswith(BLOB_PREFIX)]
        if self.delta:
            found.extend(self.delta.expects)
        return sorted(set(found))


def _check_depth(value: Any, where: str, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise FormatError(f"release field '{where}' is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_depth(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_depth(v, f"{where}[{i}]", depth + 1)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items() if v is not None}


def _model_dict(m: ModelEntry) -> dict[str, Any]:
    d = _drop_none(asdict(m))
    d["health"] = _drop_none(asdict(m.health))
    return d


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

    def text(self, key: str) -> str:
        return str(self._get(key, (str,)))

    def opt_text(self, key: str) -> str | None:
        v = self._get(key, (str,), None)
        return None if v is None else str(v)

    def integer(self, key: str) -> int:
        return int(self._get(key, (int,)))

    def number(self, key: str, default: float | None) -> Any:
        v = self._get(key, (int, float), default)
        if v is None:
            return None
        try:
            f = float(v)
        except OverflowError:
            f = math.inf
        if not math.isfinite(f):
            raise FormatError(f"release field '{self.where}.{key}' is not a finite number")
        return f

    def mapping(self, key: str) -> dict[str, Any]:
        return dict(self._get(key, (dict,), {}))

    def texts(self, key: str) -> list[str]:
        values = self._get(key, (list,), [])
        if not all(isinstance(v, str) for v in values):
            raise FormatError(f"release field '{self.where}.{key}' must be a list of strings")
        return list(values)

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

    def sub(self, key: str) -> _Reader:
        return _Reader(self._get(key, (dict,), {}), f"{self.where}.{key}")

    def subs(self, key: str) -> list[_Reader]:
        return [
            _Reader(v, f"{self.where}.{key}[{i}]")
            for i, v in enumerate(self._get(key, (list,), []))
        ]


def _model_from(r: _Reader) -> ModelEntry:
    h = r.sub("health")
    name = r.text("name")
    file_name = r.text("file_name")
    if not is_plain_name(name) or not is_plain_name(file_name):
        raise FormatError(f"model name {name!r} or file name {file_name!r} is not a plain name")
    providers = h.texts("providers") or ["CPUExecutionProvider"]
    runs = h.number("runs", 20)
    if not 1 <= runs <= MAX_HEALTH_RUNS:
        raise FormatError(f"model {name!r}: health.runs must be between 1 and {MAX_HEALTH_RUNS}")
    return ModelEntry(
        name=name,
        manifest=r.digest("manifest"),
        blob=r.digest("blob"),
        file_name=file_name,
        media_type=r.text("media_type"),
        size=r.integer("size"),
        source=r.opt_text("source"),
        health=HealthSpec(
            inputs=h.digest("inputs", optional=True),
            outputs=h.digest("outputs", optional=True),
            rtol=h.number("rtol", 1e-4),
            atol=h.number("atol", 1e-5),
            runs=int(runs),
            max_p95_ms=h.number("max_p95_ms", None),
            max_memory_mb=h.number("max_memory_mb", None),
            timeout_s=h.number("timeout_s", 60.0),
            providers=tuple(providers),
        ),
    )


def _kit_from(r: _Reader) -> AgentKitEntry:
    from keys.kitverify import KitError, version_key

    file_name = r.text("file_name")
    if not is_plain_name(file_name):
        raise FormatError(f"agent kit file name {file_name!r} is not a plain name")
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
