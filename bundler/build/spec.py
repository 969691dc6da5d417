"""The release spec, ``airlock.yaml``: loaded safely, validated strictly.

Every error names the field and its line, and exits 2::

    spec = load_spec(Path("airlock.yaml"))
    print(spec.name, spec.version, [m.name for m in spec.models])

The fields are documented in docs/spec.md. Every value is held to the rules
a device applies to the signed release (``keys.signed_fields``), so a spec
that loads makes a release devices accept. YAML that JSON cannot say is
refused, not converted: dates, binary, sets, non-text keys, ``.inf`` and
``.nan``, integers beyond ``MAX_JSON_INTEGER``. Before anything walks the
document, one pass over its YAML events bounds its nesting (twice
``MAX_JSON_DEPTH``) and what its aliases expand to
(``MAX_SPEC_ALIAS_EXPANSION``; billion laughs).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import yaml

from airlock.durations import parse_duration
from airlock.errors import FormatError, SpecError
from airlock.quality.contract import InputRule
from airlock.quality.evaluation import Threshold
from bundler.build.spec_yaml import Fields, check_shape, line_of, plain_name, yaml_error
from keys.evaluation_fields import (
    valid_batch,
    valid_contract,
    valid_max_samples,
    valid_metrics,
    valid_providers,
    valid_session,
)
from keys.release import HealthSpec, Hooks
from keys.shadow_fields import SamplesPolicy, ShadowSpec, valid_samples, valid_shadow
from keys.signed_fields import (
    FieldError,
    valid_flags,
    valid_line,
    valid_model_files,
    valid_name,
    valid_runs,
    valid_sequence,
    valid_unique,
)
from keys.variants import valid_variants, valid_when

__all__ = ["EvaluateFiles", "HealthFiles", "ImageSpec", "ModelSpec", "Origin", "Spec",
           "VerifySpec", "load_spec"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class Origin:
    """Where a part of the spec was written, for errors found later (at build)."""

    file: str
    field: str
    line: int | None = None
    lines: tuple[tuple[str, int | None], ...] = ()  # sub-field -> its line

    def error(self, suffix: str, message: str) -> SpecError:
        """A SpecError naming ``field.suffix`` (or the field itself for an empty suffix)."""
        return SpecError(self.file, f"{self.field}.{suffix}" if suffix else self.field, message,
                         dict(self.lines).get(suffix, self.line))


@dataclass(frozen=True)
class HealthFiles:
    """Where the golden data comes from, and the budgets that go into the release as they are."""

    inputs: Path | None = None
    outputs: Path | None = None
    inputs_ref: str | None = None  # golden data inside the model's OCI artifact
    outputs_ref: str | None = None
    reference: Path | None = None  # drift reference sample, a local .npz
    limits: HealthSpec = field(default_factory=HealthSpec)  # its inputs/outputs stay None here


@dataclass(frozen=True)
class EvaluateFiles:
    """A model's labelled evaluation set (local files) and the thresholds it must meet."""

    data: Path
    labels: Path
    metrics: tuple[Threshold, ...]
    batch: int = 32
    max_samples: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path | None = None
    ref: str | None = None
    health: HealthFiles = field(default_factory=HealthFiles)
    origin: Origin = Origin("airlock.yaml", "models")
    evaluate: EvaluateFiles | None = None
    contract: tuple[InputRule, ...] = ()
    shadow: ShadowSpec | None = None
    samples: SamplesPolicy = field(default_factory=SamplesPolicy)
    verify: VerifySpec | None = None
    variant: str | None = None  # one variant of a model (keys.variants), its name
    when: dict[str, Any] | None = None  # and the device facts that select it

    @property
    def label(self) -> str:
        return self.name if self.variant is None else f"{self.name} (variant {self.variant})"


@dataclass(frozen=True)
class VerifySpec:
    """``verify: {key: FILE}``: the upstream cosign key an image or model must be signed with."""

    key: Path
    key_pem: bytes  # read (and checked to be an ECDSA P-256 public key) when the spec loads


@dataclass(frozen=True)
class ImageSpec:
    ref: str
    platforms: tuple[str, ...] = ("linux/amd64",)
    verify: VerifySpec | None = None


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
    require_signatures: bool = False  # policy: {require_signatures: true}, docs/SUPPLY_CHAIN.md
    sbom: bool = False  # policy: {sbom: true}: a CycloneDX SBOM inside the bundle
    provenance: bool = False  # policy: {provenance: true}: in-toto SLSA provenance, DSSE-signed
    enforce_on_device: bool = False  # policy: {enforce_on_device: true}: re-checked at install


def build_time() -> datetime:
    """Now, or SOURCE_DATE_EPOCH when set, so builds can be reproduced byte for byte."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), timezone.utc)
        except ValueError:
            raise SpecError(
                "SOURCE_DATE_EPOCH", "SOURCE_DATE_EPOCH", "must be an integer"
            ) from None
    return datetime.now(timezone.utc).replace(microsecond=0)


DEFAULT_MIN_VALIDITY = timedelta(days=1)


def load_spec(path: Path, *, min_validity: timedelta = DEFAULT_MIN_VALIDITY) -> Spec:
    """Read and validate a release spec; SpecError (exit 2) names the field and line.

    ``expires`` must lie at least ``min_validity`` after the build time.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise SpecError(str(path), "(file)", f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise SpecError(str(path), "(file)", f"is not UTF-8 text (byte {e.start})") from None
    try:
        check_shape(path, text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise yaml_error(path, e) from None
    if root is None:
        raise SpecError(str(path), "(top)", "the spec is empty")
    top = Fields(
        path,
        root,
        "",
        {"name", "version", "sequence", "expires", "models", "images", "flags", "hooks", "rings",
         "agent", "policy"},
    )
    name = plain_name(top, "name")
    version = _version(top)
    sequence = top.check("sequence", valid_sequence, top.value("sequence", (int,), "an integer"))
    expires = _expires(top, min_validity)

    groups = [_models(path, node, i) for i, node in enumerate(top.items("models"))]
    top.check("models", valid_unique, [g[0].name for g in groups], "model")
    models = [m for g in groups for m in g]
    images = [_image(path, node, i) for i, node in enumerate(top.items("images"))]
    flags = top.check("flags", valid_flags,
                      top.value("flags", (dict,), "a mapping of name to value", {}))
    hooks = Hooks()
    h = top.sub("hooks", {"post_switch", "probe", "probe_window_s"})
    if h is not None:
        hooks = Hooks(
            h.command("post_switch", None), h.command("probe", None),
            h.number("probe_window_s", 30.0)
        )
    rings = top.value("rings", (list,), "a list of ring names", [])
    for i, ring in enumerate(rings):
        top.check("rings", _at(i, valid_name), ring)
    if not models and not images:
        raise SpecError(
            str(path), "models", "a release needs at least one model or image", top.line
        )
    spec = Spec(path, name, version, sequence, expires, models, images, flags, hooks, rings,
                _agent_kits(top))
    p = top.sub("policy", {"require_signatures", "sbom", "provenance", "enforce_on_device"})
    if p is not None:
        spec.require_signatures = p.value("require_signatures", (bool,), "true or false", False)
        spec.sbom = p.value("sbom", (bool,), "true or false", False)
        spec.provenance = p.value("provenance", (bool,), "true or false", False)
        spec.enforce_on_device = p.value("enforce_on_device", (bool,), "true or false", False)
        if spec.enforce_on_device and not spec.require_signatures and not any(
                e.verify for e in spec.images) and not any(m.verify for m in spec.models):
            raise p.error("enforce_on_device", "there is nothing to enforce: give "
                                               "'require_signatures: true' or 'verify:' blocks")
    return spec


def _at(index: int, rule: Callable[[Any], _T]) -> Callable[[Any], _T]:
    """``rule`` whose FieldError points at item ``index`` of a list."""

    def check(value: Any) -> _T:
        try:
            return rule(value)
        except FieldError as e:
            raise FieldError(str(e), (index, *e.at)) from None
    return check


def _version(top: Fields) -> str:
    """The version as written: a YAML string. ``1.10`` unquoted is the number 1.1, so no number."""
    node = top.nodes.get("version")
    if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:str":
        value = top.value("version", (str, int, float, bool, type(None)), "a string")
        if not isinstance(value, str):
            read = "nothing" if value is None else f"the {type(value).__name__} {value!r}"
            raise top.error("version", f"must be a string: YAML reads {node.value} as {read}; "
                                       f'quote it: version: "{node.value}"')
    version = top.value("version", (str,), "a string")
    return top.check("version", valid_line, version)


def _expires(top: Fields, min_validity: timedelta) -> datetime:
    """A duration from the build time, or a date; at least ``min_validity`` after the build time."""
    raw = top.value("expires", (str, datetime, date), "a duration like 30d or a date", "30d")
    if isinstance(raw, datetime):
        expires = raw.astimezone(timezone.utc) if raw.tzinfo else raw.replace(tzinfo=timezone.utc)
    elif isinstance(raw, date):
        expires = datetime(raw.year, raw.month, raw.day, tzinfo=timezone.utc)
    else:
        top.check("expires", valid_line, raw)
        try:
            expires = build_time() + parse_duration(raw)
        except Exception:
            try:
                parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))  # 3.10: no "Z"
            except ValueError:
                raise top.error("expires", "must be a duration like 30d or an ISO date") from None
            expires = parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    # Devices refuse expired metadata (freeze attack); so does the build, at its own time
    # and at the real one: a SOURCE_DATE_EPOCH days old (a reproducible rebuild of an old
    # commit) must not turn "expires: 2d" into a bundle that is already expired today.
    built = build_time()
    real = datetime.now(timezone.utc).replace(microsecond=0)
    # (A build taking a second between the two readings is not an old SOURCE_DATE_EPOCH.)
    now = real if real - built > timedelta(minutes=1) else built
    when = (f"built at {built:%Y-%m-%dT%H:%M:%SZ}" if now == built else
            f"it is {real:%Y-%m-%dT%H:%M:%SZ} now; SOURCE_DATE_EPOCH dates the build "
            f"{built:%Y-%m-%dT%H:%M:%SZ}, and 'expires: DURATION' counts from that")
    if expires <= now:
        raise top.error("expires", f"{expires:%Y-%m-%dT%H:%M:%SZ} is in the past ({when}); "
                                   "devices refuse expired releases")
    if expires - now < min_validity:
        raise top.error("expires", f"{expires:%Y-%m-%dT%H:%M:%SZ} is only {_span(expires - now)} "
                                   + ("after the build, " if now == built else
                                      f"after now ({when}), ")
                                   + "less than --min-validity "
                                   f"{_span(min_validity)}: the release could expire before it "
                                   "reaches the site (lower --min-validity to build it anyway)")
    return expires


def _span(d: timedelta) -> str:
    """A duration in the spec's own words: 3d, 5h, 90m, 30s."""
    seconds = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds}s"


def _agent_kits(top: Fields) -> list[Path]:
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


_MODEL_FIELDS = {"path", "ref", "health", "evaluate", "inputs_contract", "shadow", "samples",
                 "verify"}


def _models(spec: Path, node: yaml.Node, i: int) -> list[ModelSpec]:
    """``models[i]``: one model, or its variants (``variants:`` with ``when`` selectors)."""
    f = Fields(spec, node, f"models[{i}]", {"name", "variants", *_MODEL_FIELDS})
    name = plain_name(f, "name")
    if "variants" not in f.nodes:
        return [_model(spec, f, name, f"models[{i}]")]
    mixed = sorted(_MODEL_FIELDS & set(f.nodes))
    if mixed:
        raise f.error(mixed[0], "belongs to each variant when a model has 'variants'")
    nodes = f.items("variants")
    if not nodes:
        raise f.error("variants", "must list at least one variant")
    out = []
    for j, v_node in enumerate(nodes):
        where = f"models[{i}].variants[{j}]"
        v = Fields(spec, v_node, where, {"name", "when", "providers", *_MODEL_FIELDS})
        if "when" not in v.nodes:
            raise SpecError(str(spec), f"{where}.when", "is required: the device facts that "
                            "select this variant ({} for every device)", v.line)
        when = v.check("when", valid_when, v.value("when", (dict,), "a mapping of device facts"))
        model = _with_providers(v, _model(spec, v, name, where))
        default = model.path.stem if model.path is not None else f"v{j + 1}"
        variant = plain_name(v, "name") if "name" in v.nodes else default
        out.append(dataclasses.replace(model, variant=variant, when=when))
    f.check("variants", valid_variants, [m.when or {} for m in out],
            [str(m.variant) for m in out], name)
    return out


def _with_providers(v: Fields, model: ModelSpec) -> ModelSpec:
    """A variant's ``providers:`` (as the variant's own word; ``health.providers`` is the
    same thing): the execution providers its build is for, checked and run with."""
    if "providers" not in v.nodes:
        return model
    health = v.nodes.get("health")
    if isinstance(health, yaml.MappingNode) and any(
            isinstance(k, yaml.ScalarNode) and k.value == "providers" for k, _ in health.value):
        raise v.error("providers", "is given twice: here and in 'health.providers'; keep one")
    providers = v.check("providers", valid_providers, v.value(
        "providers", (list,), "a list of provider names", ["CPUExecutionProvider"]))
    limits = dataclasses.replace(model.health.limits, providers=providers)
    return dataclasses.replace(model, health=dataclasses.replace(model.health, limits=limits))


def _model(spec: Path, f: Fields, name: str, where: str) -> ModelSpec:
    """One model, or one variant of it: its file or reference, health, evaluation, contract."""
    if ("path" in f.nodes) == ("ref" in f.nodes):
        raise SpecError(str(spec), where, "give exactly one of 'path' or 'ref'", f.line)
    model_path = f.path("path", None)
    if model_path is not None:
        # Its file name is signed and becomes models/NAME/FILE on devices.
        f.check("path", valid_model_files, model_path.name)
    ref = f.text("ref", None)
    if ref is not None and not ref.startswith("oci://"):
        raise f.error("ref", "must look like oci://HOST/REPO:TAG or oci://HOST/REPO@sha256:…")
    health, h = _health(spec, f, ref)
    evaluate, e = _evaluate(f)
    contract: tuple[InputRule, ...] = ()
    if "inputs_contract" in f.nodes:
        contract = f.check("inputs_contract", valid_contract, f.value(
            "inputs_contract", (dict,), "a mapping of input name to its contract"))
    shadow = None
    if "shadow" in f.nodes:
        shadow = f.check("shadow", valid_shadow, f.value(
            "shadow", (dict,), "a mapping like {samples: 500, min_agreement: 0.97}"))
    samples = SamplesPolicy()
    if "samples" in f.nodes:
        samples = f.check("samples", valid_samples, f.value(
            "samples", (dict,), "a mapping like {export: false}"))
    lines = [(k, line_of(f.nodes.get(k))) for k in ("path", "ref", "inputs_contract")]
    if h is not None:
        lines += [(f"health.{k}", line_of(h.nodes.get(k))) for k in ("inputs", "outputs",
                                                                     "reference")]
    if e is not None:
        lines += [(f"evaluate.{k}", line_of(e.nodes.get(k)))
                  for k in ("data", "labels", "metrics", "batch")]
    origin = Origin(str(spec), where, f.line, tuple((k, n) for k, n in lines if n))
    verify = _verify(f)
    if verify is not None and ref is None:
        raise f.error("verify", "only a registry model (ref: oci://…) carries an upstream "
                                "signature to verify")
    return ModelSpec(name, model_path, ref, health, origin, evaluate, contract, shadow, samples,
                     verify)


def _health(spec: Path, f: Fields, ref: str | None) -> tuple[HealthFiles, Fields | None]:
    """``health:``: golden files (local, or layers of a registry model) and the budgets."""
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
            "reference",
            "drift_warn",
            "provider_fallback",
            "session",
        },
    )
    if h is None:
        return HealthFiles(), None
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
    runs = h.check("runs", valid_runs, h.value("runs", (int,), "an integer", 20))
    providers = h.check("providers", valid_providers, h.value(
        "providers", (list,), "a list of provider names", ["CPUExecutionProvider"]
    ))
    timeout = h.number("timeout_s", 60.0, positive=True)
    return HealthFiles(
        inputs=inputs,
        outputs=outputs,
        inputs_ref=inputs_ref,
        outputs_ref=outputs_ref,
        reference=_reference(h),
        limits=HealthSpec(
            rtol=h.number("rtol", 1e-4),
            atol=h.number("atol", 1e-5),
            runs=runs,
            max_p95_ms=h.number("max_p95_ms", None),
            max_memory_mb=h.number("max_memory_mb", None),
            timeout_s=timeout,
            providers=providers,
            drift_warn=h.number("drift_warn", None),
            provider_fallback=h.value("provider_fallback", (bool,), "true or false", False),
            session=h.check("session", valid_session,
                            h.value("session", (dict,), "a mapping of session options", {})),
        ),
    ), h


def _evaluate(f: Fields) -> tuple[EvaluateFiles | None, Fields | None]:
    """``evaluate:``: the set, its labels (local ``.npz`` files) and the metric thresholds."""
    e = f.sub("evaluate", {"data", "labels", "metrics", "batch", "max_samples"})
    if e is None:
        return None, None
    data, labels = e.path("data"), e.path("labels")
    assert data is not None and labels is not None
    max_samples = e.value("max_samples", (int,), "an integer", None)
    return EvaluateFiles(
        data=data,
        labels=labels,
        metrics=e.check("metrics", valid_metrics, e.value(
            "metrics", (dict,), "a mapping of metric to thresholds, e.g. accuracy: {min: 0.9}")),
        batch=e.check("batch", valid_batch, e.value("batch", (int,), "an integer", 32)),
        max_samples=None if max_samples is None
        else e.check("max_samples", valid_max_samples, max_samples),
    ), e


def _reference(h: Fields) -> Path | None:
    """The drift reference sample, refused here if a device could not read it."""
    from airlock.quality.drift import features, load_sample

    path = h.path("reference", None)
    if path is not None:
        try:
            for name, array in load_sample(path).items():
                features(name, array)
        except FormatError as e:
            raise h.error("reference", str(e)) from None
    return path


def _image(spec: Path, node: yaml.Node, i: int) -> ImageSpec:
    if isinstance(node, yaml.ScalarNode):
        ref = node.value if node.tag == "tag:yaml.org,2002:str" else None
        if not isinstance(ref, str):
            raise SpecError(str(spec), f"images[{i}]", "must be a reference string", line_of(node))
        try:
            return ImageSpec(valid_line(ref))
        except FieldError as e:
            raise SpecError(str(spec), f"images[{i}]", str(e), line_of(node)) from None
    f = Fields(spec, node, f"images[{i}]", {"ref", "platform", "platforms", "verify"})
    ref = f.text("ref")
    if "platform" in f.nodes and "platforms" in f.nodes:
        raise f.error("platforms", "give 'platform' or 'platforms', not both")
    platforms: list[str] = [f.text("platform", "linux/amd64")]
    if "platforms" in f.nodes:
        platforms = f.value("platforms", (list,), "a list like [linux/amd64, linux/arm64]")
        if not platforms or not all(isinstance(p, str) and "/" in p for p in platforms):
            raise f.error("platforms", "must be a list like [linux/amd64, linux/arm64]")
        for n, platform in enumerate(platforms):
            f.check("platforms", _at(n, valid_line), platform)
    return ImageSpec(ref, tuple(platforms), _verify(f))


def _verify(f: Fields) -> VerifySpec | None:
    """``verify: {key: FILE}``: a cosign public key (PEM, ECDSA P-256), read and checked now."""
    v = f.sub("verify", {"key"})
    if v is None:
        return None
    key = v.path("key")
    assert key is not None
    from bundler.build.cosign import load_public_key

    pem = key.read_bytes()
    try:
        load_public_key(pem)
    except ValueError as e:
        raise v.error("key", f"{key.name}: {e}") from None
    return VerifySpec(key, pem)
