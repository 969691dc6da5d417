"""Pull container images and model artifacts from OCI registries into a bundle.

``bundler.build`` calls this when the spec names ``images:`` or a model with
``ref: oci://…``::

    pulled = add_remote_content(layout, spec, {"auth": None, "insecure": ["127.0.0.1:5000"],
                                               "cache": None})
    pulled.images   # ImageEntry per image and platform, pinned to manifest digests
    pulled.models   # ModelEntry per registry model, wrapped like a local one

Images are copied byte for byte: the manifest exactly as the registry served
it (OCI or Docker schema 2), its config and every layer. A multi-arch index
or Docker manifest list resolves to the spec's platform(s); the index digest
is recorded in the signed metadata, and each platform's manifest is indexed
in the bundle's ``index.json`` under ``org.opencontainers.image.ref.name`` =
the reference as written in the spec, with its ``platform``. Layers shared by
images are stored once (the layout is keyed by digest). Blobs go through the
pull cache (``bundler.cache``) and are verified while they download.

Model artifacts are what ``oras push`` makes: the layer whose title ends in
``.onnx`` (or whose media type is the ONNX one) is the model; golden data
named in the spec by file name are found by their title annotation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundler.build import (
    GOLDEN_INPUTS_TYPE,
    GOLDEN_OUTPUTS_TYPE,
    MODEL_LAYER_TYPE,
    Layout,
    add_model_artifact,
    local_golden,
)
from bundler.cache import BlobCache
from bundler.spec import ImageSpec, ModelSpec, Spec
from keys.bundle_format import Descriptor
from keys.console import progress
from keys.errors import RegistryError
from keys.oci_registry import Manifest, Ref, RegistryClient, parse_ref
from keys.release import ImageEntry, ModelEntry

__all__ = ["Pulled", "RegistryOptions", "add_remote_content", "platform_of"]

_TITLE = "org.opencontainers.image.title"
_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class RegistryOptions:
    auth: Path | None = None  # docker config.json
    insecure: list[str] = field(default_factory=list)  # host:port served over plain HTTP
    cache: Path | None = None

    @classmethod
    def of(cls, raw: object | None) -> RegistryOptions:
        if raw is None:
            return cls()
        if isinstance(raw, RegistryOptions):
            return raw
        if not isinstance(raw, Mapping):
            raise TypeError("registry options must be a mapping")
        auth, cache = raw.get("auth"), raw.get("cache")
        return cls(
            auth=Path(auth) if auth else None,
            insecure=list(raw.get("insecure") or []),
            cache=Path(cache) if cache else None,
        )


@dataclass
class Pulled:
    models: list[ModelEntry] = field(default_factory=list)
    images: list[ImageEntry] = field(default_factory=list)
    downloaded_bytes: int = 0
    cache_hits: int = 0
    requests: int = 0


@dataclass
class _Blob:
    ref: Ref
    digest: str
    size: int


def add_remote_content(layout: Layout, spec: Spec, options: object | None) -> Pulled:
    """Pull every registry model and image of ``spec`` into ``layout``."""
    opts = RegistryOptions.of(options)
    client = RegistryClient(opts.auth, opts.insecure)
    cache = BlobCache(opts.cache)
    fetcher = _Fetcher(client, cache)
    pulled = Pulled()
    for m in spec.models:
        if m.ref is not None:
            pulled.models.append(_add_model(layout, spec, m, fetcher))
    for image in spec.images:
        pulled.images.extend(_add_image(layout, image, fetcher))
    pulled.downloaded_bytes, pulled.cache_hits = cache.downloaded_bytes, cache.hits
    pulled.requests = client.requests
    return pulled


class _Fetcher:
    """Blobs through the cache, with one progress bar per blob that must be downloaded."""

    def __init__(self, client: RegistryClient, cache: BlobCache) -> None:
        self.client, self.cache = client, cache

    def blob(self, ref: Ref, digest: str, size: int) -> Path:
        def download(dest: Path) -> None:
            with progress(size, f"pull {digest[7:19]}") as tick:
                self.client.download_blob(ref, digest, size, dest, tick)

        return self.cache.fetch(digest, size, download)

    def add(self, layout: Layout, ref: Ref, desc: Mapping[str, Any], **kw: Any) -> Descriptor:
        digest, size, media_type = _descriptor(ref, desc)
        path = self.blob(ref, digest, size)
        return layout.add_file(media_type, path, digest=digest, size=size, **kw)


def _descriptor(ref: Ref, desc: Mapping[str, Any]) -> tuple[str, int, str]:
    digest, size, media_type = desc.get("digest"), desc.get("size"), desc.get("mediaType")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise RegistryError(f"{ref}: manifest names a blob without a sha256 digest ({digest!r})")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"{ref}: manifest gives blob {digest} no valid size")
    return digest, size, media_type if isinstance(media_type, str) else "application/octet-stream"


def _manifest_body(ref: Ref, m: Manifest) -> dict[str, Any]:
    try:
        return m.json()
    except ValueError:
        raise RegistryError(f"{ref}: manifest {m.digest} is not a JSON object") from None


# -- images ------------------------------------------------------------------


def platform_of(text: str) -> dict[str, str]:
    """``linux/arm64/v8`` -> ``{"os": "linux", "architecture": "arm64", "variant": "v8"}``."""
    parts = text.split("/")
    out = {"os": parts[0], "architecture": parts[1] if len(parts) > 1 else ""}
    if len(parts) > 2:
        out["variant"] = parts[2]
    return out


def _matches(want: dict[str, str], have: Mapping[str, Any]) -> bool:
    if have.get("os") != want["os"] or have.get("architecture") != want["architecture"]:
        return False
    return "variant" not in want or have.get("variant") == want["variant"]


def _add_image(layout: Layout, image: ImageSpec, f: _Fetcher) -> list[ImageEntry]:
    ref = _parse(image.ref)
    top = f.client.get_manifest(ref)
    if not top.is_index:
        body = _manifest_body(ref, top)
        platform = image.platforms[0]
        _check_config_platform(layout, ref, body, platform, f)
        return [_add_manifest(layout, ref, top, body, platform, None, f)]
    index = _manifest_body(ref, top)
    entries = []
    for platform in image.platforms:
        want = platform_of(platform)
        found = [d for d in index.get("manifests", []) if _matches(want, d.get("platform") or {})]
        if not found:
            have = sorted(
                "/".join(filter(None, (p.get("os"), p.get("architecture"), p.get("variant"))))
                for d in index.get("manifests", [])
                if isinstance(p := d.get("platform"), dict)
            )
            raise RegistryError(
                f"{ref}: no manifest for platform {platform} in its index; it has {', '.join(have) or 'none'}"
            )
        digest, _, _ = _descriptor(ref, found[0])
        child = f.client.get_manifest(ref, digest)
        body = _manifest_body(ref, child)
        entries.append(_add_manifest(layout, ref, child, body, platform, top.digest, f))
    return entries


def _check_config_platform(
    layout: Layout, ref: Ref, body: Mapping[str, Any], platform: str, f: _Fetcher
) -> None:
    """A single-platform image must be built for the platform the spec asks for."""
    config = body.get("config")
    if not isinstance(config, dict) or config.get("size", 0) > 1 << 20:
        return
    digest, size, _ = _descriptor(ref, config)
    try:
        cfg = json.loads(f.blob(ref, digest, size).read_bytes())
    except ValueError:
        return
    if not isinstance(cfg, dict) or "architecture" not in cfg:
        return
    if not _matches(platform_of(platform), cfg):
        built = "/".join(filter(None, (cfg.get("os"), cfg.get("architecture"), cfg.get("variant"))))
        raise RegistryError(
            f"{ref}: image is built for {built}, the spec asks for {platform}; "
            f"set 'platform: {built}' on the image if that is right"
        )


def _add_manifest(
    layout: Layout,
    ref: Ref,
    m: Manifest,
    body: Mapping[str, Any],
    platform: str,
    index: str | None,
    f: _Fetcher,
) -> ImageEntry:
    config = body.get("config")
    layers = body.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise RegistryError(f"{ref}: manifest {m.digest} has no config or layers")
    blobs = [f.add(layout, ref, config).digest]
    for layer in layers:
        if layer.get("urls"):
            raise RegistryError(f"{ref}: foreign layers (with 'urls') cannot be carried offline")
        blobs.append(f.add(layout, ref, layer).digest)
    desc = layout.add_bytes(
        m.media_type, m.data, annotations={_REF_NAME: ref.text}, platform=platform_of(platform)
    )
    layout.manifests.append(desc)
    return ImageEntry(
        ref=ref.text,
        manifest=m.digest,
        media_type=m.media_type,
        platform=platform,
        index=index,
        blobs=tuple(dict.fromkeys(blobs)),
    )


def _parse(text: str) -> Ref:
    return parse_ref(text)


# -- models ------------------------------------------------------------------


def _add_model(layout: Layout, spec: Spec, m: ModelSpec, f: _Fetcher) -> ModelEntry:
    assert m.ref is not None
    ref = _parse(m.ref)
    top = f.client.get_manifest(ref)
    if top.is_index:
        raise RegistryError(
            f"{ref}: is an index, not a model artifact; push the model with 'oras push'"
        )
    body = _manifest_body(ref, top)
    layers = [d for d in body.get("layers") or [] if isinstance(d, dict)]

    def title(d: Mapping[str, Any]) -> str:
        t = (d.get("annotations") or {}).get(_TITLE)
        return t if isinstance(t, str) else ""

    models = [d for d in layers if title(d).lower().endswith(".onnx")]
    if not models:
        models = [d for d in layers if d.get("mediaType") == MODEL_LAYER_TYPE]
    if len(models) != 1:
        titles = ", ".join(title(d) or d.get("digest", "?")[:19] for d in layers) or "none"
        what = "no" if not models else "more than one"
        raise RegistryError(
            f"{ref}: {what} ONNX model layer (.onnx title) in the artifact; layers: {titles}"
        )

    def by_title(name: str | None, media_type: str, field_name: str) -> Descriptor | None:
        if name is None:
            return None
        hits = [d for d in layers if title(d) == name or title(d).rsplit("/", 1)[-1] == name]
        if not hits:
            titles = ", ".join(title(d) for d in layers)
            raise RegistryError(
                f"{ref}: health.{field_name} {name!r} is neither a local file nor a layer of "
                f"the artifact (layers: {titles})"
            )
        return _layer(layout, ref, hits[0], media_type, f)

    model = _layer(layout, ref, models[0], MODEL_LAYER_TYPE, f, file_name=True)
    local_in, local_out = local_golden(layout, m)
    inputs = local_in or by_title(m.health.inputs_ref, GOLDEN_INPUTS_TYPE, "inputs")
    outputs = local_out or by_title(m.health.outputs_ref, GOLDEN_OUTPUTS_TYPE, "outputs")
    source = ref.text if ref.digest else f"{ref.text}@{top.digest}"  # pinned either way
    return add_model_artifact(layout, spec, m, model, inputs, outputs, source=source)


def _layer(
    layout: Layout,
    ref: Ref,
    d: Mapping[str, Any],
    media_type: str,
    f: _Fetcher,
    file_name: bool = False,
) -> Descriptor:
    """Add an artifact layer under Airlock's media type, keeping its file name."""
    name = str((d.get("annotations") or {}).get(_TITLE, "")).rsplit("/", 1)[-1]
    if file_name and not _plain(name):
        raise RegistryError(f"{ref}: model file name {name!r} is not a plain file name")
    annotations = {_TITLE: name} if name else {}
    return f.add(layout, ref, {**d, "mediaType": media_type}, annotations=annotations)


def _plain(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name))
