"""The release spec, ``airlock.yaml``: loaded safely, validated strictly.

Every error names the field and its line, and exits 2::

    spec = load_spec(Path("airlock.yaml"))
    print(spec.name, spec.version, [m.name for m in spec.models])

The fields are documented in docs/spec.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from airlock.errors import SpecError
from keys.release import HealthSpec, Hooks, is_plain_name
from keys.trust import parse_duration

__all__ = ["HealthFiles", "ImageSpec", "ModelSpec", "Spec", "load_spec"]


@dataclass(frozen=True)
class HealthFiles:
    """Where the golden data comes from, and the budgets that go into the release as they are."""

    inputs: Path | None = None
    outputs: Path | None = None
    inputs_ref: str | None = None  # golden data inside the model's OCI artifact
    outputs_ref: str | None = None
    limits: HealthSpec = field(default_factory=HealthSpec)  # its inputs/outputs stay None here


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path | None = None
    ref: str | None = None
    health: HealthFiles = field(default_factory=HealthFiles)


@dataclass(frozen=True)
class ImageSpec:
    ref: str
    platforms: tuple[str, ...] = ("linux/amd64",)


@dataclass
class Spec:
    path: Path
    name: str
    version: str
    sequence: int
    expires: datetime
    models: list[ModelSpec] = field(default_factory=list)
    images: list[ImageSpec] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)
    hooks: Hooks = field(default_factory=Hooks)
    rings: list[str] = field(default_factory=list)
    agent_kits: list[Path] = field(default_factory=list)  # agent: {kit: …}, docs/BOOTSTRAP.md


def build_time() -> datetime:
    """Now, or SOURCE_DATE_EPOCH when set, so builds can be reproduced byte for byte."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), UTC)
        except ValueError:
            raise SpecError(
                "SOURCE_DATE_EPOCH", "SOURCE_DATE_EPOCH", "must be an integer"
            ) from None
    return datetime.now(UTC).replace(microsecond=0)


class _Fields:
    """Typed access to one YAML mapping, with the line of every key for errors."""

    def __init__(self, spec: Path, node: yaml.Node, where: str, allowed: set[str]) -> None:
        self.spec, self.where = spec, where
        if not isinstance(node, yaml.MappingNode):
            raise SpecError(str(spec), where or "(top)", "must be a mapping", _line(node))
        self.line = _line(node)
        self.nodes: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key not in allowed:
                hint = f"; expected one of: {', '.join(sorted(allowed))}"
                raise SpecError(str(spec), self._name(key), "unknown field" + hint, _line(key_node))
            if key in self.nodes:
                raise SpecError(str(spec), self._name(key), "given twice", _line(key_node))
            self.nodes[key] = value_node

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, message: str) -> SpecError:
        node = self.nodes.get(key)
        return SpecError(
            str(self.spec), self._name(key), message, _line(node) if node else self.line
        )

    def value(self, key: str, types: tuple[type, ...], what: str, default: Any = ...) -> Any:
        if key not in self.nodes:
            if default is ...:
                raise SpecError(str(self.spec), self._name(key), "is required", self.line)
            return default
        value = yaml.safe_load(yaml.serialize(self.nodes[key]))
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise self.error(key, f"must be {what}, got {type(value).__name__}")
        return value

    def text(self, key: str, default: Any = ...) -> Any:
        return self.value(key, (str,), "a string", default)

    def number(self, key: str, default: Any = ...) -> Any:
        v = self.value(key, (int, float), "a number", default)
        if v is not None and v < 0:
            raise self.error(key, "must not be negative")
        return None if v is None else float(v)

    def path(self, key: str, default: Any = ...) -> Path | None:
        v = self.text(key, default)
        if v is None:
            return None
        p = Path(v) if Path(v).is_absolute() else self.spec.parent / v
        if not p.is_file():
            raise self.error(key, f"file {v} does not exist")
        return p

    def sub(self, key: str, allowed: set[str]) -> _Fields | None:
        if key not in self.nodes:
            return None
        return _Fields(self.spec, self.nodes[key], self._name(key), allowed)

    def items(self, key: str) -> list[yaml.Node]:
        if key not in self.nodes:
            return []
        node = self.nodes[key]
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(key, "must be a list")
        return list(node.value)


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def _plain_name(f: _Fields, key: str) -> str:
    v = f.text(key)
    if not is_plain_name(v):
        raise f.error(key, "must be letters, digits, '.', '_' or '-' (at most 128)")
    return str(v)


def load_spec(path: Path) -> Spec:
    """Read and validate a release spec; SpecError (exit 2) names the field and line."""
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(str(path), "(file)", f"cannot read: {e.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise SpecError(
            str(path),
            "(yaml)",
            f"not valid YAML: {getattr(e, 'problem', e)}",
            mark.line + 1 if mark else None,
        ) from None
    if root is None:
        raise SpecError(str(path), "(top)", "the spec is empty")
    top = _Fields(
        path,
        root,
        "",
        {"name", "version", "sequence", "expires", "models", "images", "flags", "hooks", "rings",
         "agent"},
    )
    name = _plain_name(top, "name")
    version = top.value("version", (str, int, float), "a string")
    sequence = top.value("sequence", (int,), "an integer")
    if sequence < 1:
        raise top.error("sequence", "must be 1 or more")
    expires_raw = top.value("expires", (str, datetime), "a duration like 30d or a date", "30d")
    if isinstance(expires_raw, datetime):
        expires = expires_raw if expires_raw.tzinfo else expires_raw.replace(tzinfo=UTC)
    else:
        try:
            expires = build_time() + parse_duration(expires_raw)
        except Exception:
            try:
                expires = datetime.fromisoformat(expires_raw).astimezone(UTC)
            except ValueError:
                raise top.error("expires", "must be a duration like 30d or an ISO date") from None

    models = [_model(path, node, i) for i, node in enumerate(top.items("models"))]
    seen: set[str] = set()
    for i, m in enumerate(models):
        if m.name in seen:
            raise SpecError(
                str(path),
                f"models[{i}].name",
                f"model {m.name!r} is listed twice",
                _line(top.items("models")[i]),
            )
        seen.add(m.name)
    images = [_image(path, node, i) for i, node in enumerate(top.items("images"))]
    flags = top.value("flags", (dict,), "a mapping of name to value", {})
    for k in flags:
        if not isinstance(k, str):
            raise top.error("flags", "flag names must be strings")
    hooks = Hooks()
    h = top.sub("hooks", {"post_switch", "probe", "probe_window_s"})
    if h is not None:
        hooks = Hooks(
            h.text("post_switch", None), h.text("probe", None), h.number("probe_window_s", 30.0)
        )
    rings = top.value("rings", (list,), "a list of ring names", [])
    if not all(is_plain_name(r) for r in rings):
        raise top.error("rings", "must be a list of plain ring names")
    if not models and not images:
        raise SpecError(
            str(path), "models", "a release needs at least one model or image", top.line
        )
    return Spec(path, name, str(version), sequence, expires, models, images, flags, hooks, rings,
                _agent_kits(top))


def _agent_kits(top: _Fields) -> list[Path]:
    """``agent: {kit: FILE}`` or ``agent: {kit: [FILE, …]}``: agent kits the release carries."""
    a = top.sub("agent", {"kit"})
    if a is None:
        return []
    if "kit" in a.nodes and isinstance(a.nodes["kit"], yaml.SequenceNode):
        names = a.value("kit", (list,), "a kit file or a list of kit files")
    else:
        names = [a.text("kit")]
    kits = []
    for n in names:
        if not isinstance(n, str):
            raise a.error("kit", "must name kit files (strings)")
        p = Path(n) if Path(n).is_absolute() else top.spec.parent / n
        if not p.is_file():
            raise a.error("kit", f"file {n} does not exist")
        kits.append(p)
    return kits


def _model(spec: Path, node: yaml.Node, i: int) -> ModelSpec:
    f = _Fields(spec, node, f"models[{i}]", {"name", "path", "ref", "health"})
    name = _plain_name(f, "name")
    if ("path" in f.nodes) == ("ref" in f.nodes):
        raise SpecError(str(spec), f"models[{i}]", "give exactly one of 'path' or 'ref'", f.line)
    model_path = f.path("path", None)
    ref = f.text("ref", None)
    if ref is not None and not ref.startswith("oci://"):
        raise f.error("ref", "must look like oci://HOST/REPO:TAG or oci://HOST/REPO@sha256:…")
    health = HealthFiles()
    h = f.sub(
        "health",
        {
            "inputs",
            "outputs",
            "rtol",
            "atol",
            "runs",
            "max_p95_ms",
            "max_memory_mb",
            "timeout_s",
            "providers",
        },
    )
    if h is not None:
        inputs = outputs = None
        inputs_ref = outputs_ref = None
        # With a registry model, golden files may name layers of its artifact.
        if ref is not None:
            inputs_ref = h.text("inputs", None)
            outputs_ref = h.text("outputs", None)
            if inputs_ref and (spec.parent / inputs_ref).is_file():
                inputs, inputs_ref = h.path("inputs"), None
            if outputs_ref and (spec.parent / outputs_ref).is_file():
                outputs, outputs_ref = h.path("outputs"), None
        else:
            inputs, outputs = h.path("inputs", None), h.path("outputs", None)
        if (inputs or inputs_ref) and not (outputs or outputs_ref):
            raise h.error("outputs", "golden inputs need golden outputs")
        runs = h.value("runs", (int,), "an integer", 20)
        if runs < 1:
            raise h.error("runs", "must be 1 or more")
        providers = h.value(
            "providers", (list,), "a list of provider names", ["CPUExecutionProvider"]
        )
        timeout = h.number("timeout_s", 60.0)
        if timeout <= 0:
            raise h.error("timeout_s", "must be more than 0")
        health = HealthFiles(
            inputs=inputs,
            outputs=outputs,
            inputs_ref=inputs_ref,
            outputs_ref=outputs_ref,
            limits=HealthSpec(
                rtol=h.number("rtol", 1e-4),
                atol=h.number("atol", 1e-5),
                runs=runs,
                max_p95_ms=h.number("max_p95_ms", None),
                max_memory_mb=h.number("max_memory_mb", None),
                timeout_s=timeout,
                providers=tuple(str(p) for p in providers),
            ),
        )
    return ModelSpec(name, model_path, ref, health)


def _image(spec: Path, node: yaml.Node, i: int) -> ImageSpec:
    if isinstance(node, yaml.ScalarNode):
        ref = yaml.safe_load(yaml.serialize(node))
        if not isinstance(ref, str):
            raise SpecError(str(spec), f"images[{i}]", "must be a reference string", _line(node))
        return ImageSpec(ref)
    f = _Fields(spec, node, f"images[{i}]", {"ref", "platform", "platforms"})
    ref = f.text("ref")
    if "platform" in f.nodes and "platforms" in f.nodes:
        raise f.error("platforms", "give 'platform' or 'platforms', not both")
    platforms: list[str] = [f.text("platform", "linux/amd64")]
    if "platforms" in f.nodes:
        platforms = f.value("platforms", (list,), "a list like [linux/amd64, linux/arm64]")
        if not platforms or not all(isinstance(p, str) and "/" in p for p in platforms):
            raise f.error("platforms", "must be a list like [linux/amd64, linux/arm64]")
    return ImageSpec(ref, tuple(platforms))
