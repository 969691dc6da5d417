"""The strict reader of a release's parts from untrusted JSON: every field typed, bounded, named.

``keys.release.Release.from_metadata`` reads each model, image, kit and
inventory reference through it; a wrong type or a broken rule is a
FormatError naming the field (exit 3 on the device, exit 2 at build)::

    model = model_from(Reader(raw_model, "airlock.models[0]"))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from airlock.errors import FormatError
from airlock.format.oci import digest_hex, is_sha256_hex
from airlock.limits import MAX_NAME_LENGTH
from airlock.quality.contract import InputRule
from keys.evaluation_fields import (
    valid_batch,
    valid_contract,
    valid_max_samples,
    valid_metrics,
    valid_providers,
    valid_session,
)
from keys.release_entries import (
    AgentKitEntry,
    EncryptedBlob,
    Encryption,
    EvaluationSpec,
    HealthSpec,
    ImageEntry,
    InventoryRef,
    ModelEntry,
)
from keys.shadow_fields import SamplesPolicy, valid_samples, valid_shadow
from keys.signed_fields import (
    FieldError,
    valid_command,
    valid_line,
    valid_model_files,
    valid_name,
    valid_number,
    valid_runs,
)

_T = TypeVar("_T")


class Reader:
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

    def sub(self, key: str) -> Reader:
        return Reader(self._get(key, (dict,), {}), f"{self.where}.{key}")

    def subs(self, key: str) -> list[Reader]:
        return [
            Reader(v, f"{self.where}.{key}[{i}]")
            for i, v in enumerate(self._get(key, (list,), []))
        ]


def model_from(r: Reader) -> ModelEntry:
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
    shadow = r.check("shadow", valid_shadow, r.raw["shadow"]) if "shadow" in r.raw else None
    samples = (r.check("samples", valid_samples, r.raw["samples"]) if "samples" in r.raw
               else SamplesPolicy())
    variant = when = None
    if "variant" in r.raw or "when" in r.raw:
        from keys.variants import valid_when

        variant = r.name("variant")
        when = r.check("when", valid_when, r.value("when", None))
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
        shadow=shadow,
        samples=samples,
        variant=variant,
        when=when,
    )


def inventory_from(r: Reader) -> InventoryRef:
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


def kit_from(r: Reader) -> AgentKitEntry:
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


def image_from(r: Reader) -> ImageEntry:
    return ImageEntry(
        ref=r.text("ref"),
        manifest=r.digest("manifest"),
        media_type=r.text("media_type"),
        platform=r.opt_text("platform"),
        index=r.digest("index", optional=True),
        blobs=tuple(r.digests("blobs")),
    )


def encryption_from(r: Reader) -> Encryption:
    """The signed ``encryption`` section: recipients by key id, each blob's two digests."""
    if r.text("scheme") != "ocicrypt-jwe":
        raise FormatError("release field 'encryption.scheme' names an unknown scheme")
    recipients = tuple((e.text("name"), e.text("kid")) for e in r.subs("recipients"))
    blobs = tuple(EncryptedBlob(digest=b.digest("digest"), plain=b.digest("plain"),
                                jwe=b.text("jwe"), hmac=b.text("hmac"))
                  for b in r.subs("blobs"))
    if not recipients:
        raise FormatError("release field 'encryption.recipients' is empty")
    return Encryption(recipients, blobs)
