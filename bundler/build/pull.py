"""Pull container images and model artifacts from OCI registries into a bundle.

``bundler.build.assemble`` calls this when the spec names ``images:`` or a model with
``ref: oci://…``::

    pulled = add_remote_content(contents, spec, {"auth": None, "insecure": ["127.0.0.1:5000"],
                                                 "cache": None}, progress)
    pulled.images   # ImageEntry per image and platform, pinned to manifest digests
    pulled.models   # ModelEntry per registry model, wrapped like a local one

Images are copied byte for byte: the manifest exactly as the registry served
it (OCI or Docker schema 2), its config and every layer. A multi-arch index
or Docker manifest list resolves to the spec's platform(s); the index digest
is recorded in the signed metadata, and each platform's manifest is indexed
in the bundle's ``index.json`` under ``org.opencontainers.image.ref.name`` =
the reference as written in the spec, with its ``platform``. Layers shared by
images are stored once (the layout is keyed by digest). Blobs go through the
pull cache (``bundler.build.cache``) and are verified while they download; a cache
hit is vouched for by the stamp recorded when it was verified, and the
bundle writer copies a verified blob without hashing it again.

Model artifacts are what ``oras push`` makes: the layer whose title ends in
``.onnx`` (or whose media type is the ONNX one) is the model; golden data
named in the spec by file name are found by their title annotation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airlock.console import Progress, no_progress
from airlock.errors import RegistryError
from airlock.format.oci import (
    ANNOTATION_REF_NAME,
    ANNOTATION_TITLE,
    Descriptor,
    platform_matches,
    platform_of,
    platform_text,
)
from airlock.limits import MAX_CONFIG_PROBE_BYTES
from airlock.registry import Manifest, Ref, RegistryClient, parse_ref
from bundler.build.artifacts import (
    GOLDEN_INPUTS_TYPE,
    GOLDEN_OUTPUTS_TYPE,
    MODEL_DATA_TYPE,
    MODEL_LAYER_TYPE,
    LayoutBuilder,
    add_model_artifact,
    local_golden,
)
from bundler.build.cache import BlobCache
from bundler.build.evidence import add_referrers_indexes, carry_evidence
from bundler.build.spec import ImageSpec, ModelSpec, Spec, VerifySpec
from bundler.build.upstream_policy import check_unmoved, check_upstream, key_text
from keys.release import ImageEntry, ModelEntry, is_plain_name
from keys.supply_chain import Carried, Verified

__all__ = ["Pulled", "RegistryOptions", "add_remote_content"]

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
    verified: list[Verified] = field(default_factory=list)  # ref -> digest -> upstream key
    keys: dict[str, str] = field(default_factory=dict)  # upstream key id -> base64 DER
    evidence: list[Carried] = field(default_factory=list)  # signatures etc. in the layout


def add_remote_content(
    contents: LayoutBuilder, spec: Spec, options: object | None, progress: Progress = no_progress
) -> Pulled:
    """Pull every registry model and image of ``spec`` into ``contents``."""
    opts = RegistryOptions.of(options)
    client = RegistryClient(opts.auth, opts.insecure)
    cache = BlobCache(opts.cache)
    fetcher = _Fetcher(client, cache, progress)
    pulled = Pulled()
    # Every reference is resolved to a digest, and its signature checked, before any
    # blob is fetched; the content pulled is the digest that was verified.
    wanted: list[tuple[ModelSpec | ImageSpec, VerifySpec | None]] = [
        *((m, m.verify) for m in spec.models if m.ref is not None),
        *((i, i.verify) for i in spec.images)]
    tops = []
    for item, verify in wanted:
        ref = parse_ref(item.ref or "")
        top = client.get_manifest(ref)
        tops.append((ref, top))
        found = check_upstream(client, ref, top.digest, verify, spec.require_signatures)
        if found is not None:
            pulled.verified.append(Verified(ref.text, top.digest, found.key_id))
            pulled.keys[found.key_id] = key_text(verify.key_pem if verify else b"")
            pulled.evidence.extend(carry_evidence(contents, ref.text, found))
            # The signed subject itself (an index, a model's upstream manifest) travels too,
            # so the signature can be checked again offline against bytes in the bundle.
            contents.add_bytes(top.media_type, top.data)
            progress(f"verified {ref.text}", 1, 1)
    for (item, _), (ref, top) in zip(wanted, tops, strict=True):
        if isinstance(item, ModelSpec):
            pulled.models.append(_add_model(contents, spec, item, ref, top, fetcher))
        else:
            pulled.images.extend(_add_image(contents, item, ref, top, fetcher))
    for (_, verify), (ref, top) in zip(wanted, tops, strict=True):
        if verify is not None and ref.digest is None:
            check_unmoved(client, ref, top.digest)
    if pulled.evidence:
        add_referrers_indexes(contents, pulled.evidence)
    pulled.downloaded_bytes, pulled.cache_hits = cache.downloaded_bytes, cache.hits
    pulled.requests = client.requests
    return pulled


class _Fetcher:
    """Blobs through the cache, reporting progress per blob that must be downloaded."""

    def __init__(self, client: RegistryClient, cache: BlobCache, progress: Progress) -> None:
        self.client, self.cache, self.progress = client, cache, progress

    def blob(self, ref: Ref, digest: str, size: int) -> Path:
        phase = f"pull {digest[7:19]}"

        def tick(n: int) -> None:
            self.progress(phase, n, size)

        def download(dest: Path) -> None:
            self.client.download_blob(ref, digest, size, dest, tick)

        return self.cache.fetch(digest, size, download)

    def add(self, contents: LayoutBuilder, ref: Ref, desc: Mapping[str, Any], **kw: Any) -> Descriptor:
        digest, size, media_type = _descriptor(ref, desc)
        path = self.blob(ref, digest, size)
        # The cache verified these bytes (hashed, or vouched for by its record): the
        # bundle writer copies them unhashed while they still stamp the same.
        return contents.add_file(media_type, path, digest=digest, size=size,
                                 stamp=self.cache.verified.get(digest), **kw)


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


def _add_image(contents: LayoutBuilder, image: ImageSpec, ref: Ref, top: Manifest,
               f: _Fetcher) -> list[ImageEntry]:
    if not top.is_index:
        body = _manifest_body(ref, top)
        platform = image.platforms[0]
        _check_config_platform(contents, ref, body, platform, f)
        return [_add_manifest(contents, ref, top, body, platform, None, f)]
    index = _manifest_body(ref, top)
    entries = []
    for platform in image.platforms:
        want = platform_of(platform)
        found = [d for d in index.get("manifests", []) if platform_matches(want, d.get("platform") or {})]
        if not found:
            have = sorted(
                platform_text(p)
                for d in index.get("manifests", [])
                if isinstance(p := d.get("platform"), dict)
            )
            raise RegistryError(
                f"{ref}: no manifest for platform {platform} in its index; it has {', '.join(have) or 'none'}"
            )
        digest, _, _ = _descriptor(ref, found[0])
        child = f.client.get_manifest(ref, digest)
        body = _manifest_body(ref, child)
        entries.append(_add_manifest(contents, ref, child, body, platform, top.digest, f))
    return entries


def _check_config_platform(
    contents: LayoutBuilder, ref: Ref, body: Mapping[str, Any], platform: str, f: _Fetcher
) -> None:
    """A single-platform image must be built for the platform the spec asks for."""
    config = body.get("config")
    if not isinstance(config, dict) or config.get("size", 0) > MAX_CONFIG_PROBE_BYTES:
        return
    digest, size, _ = _descriptor(ref, config)
    try:
        cfg = json.loads(f.blob(ref, digest, size).read_bytes())
    except ValueError:
        return
    if not isinstance(cfg, dict) or "architecture" not in cfg:
        return
    if not platform_matches(platform_of(platform), cfg):
        built = platform_text(cfg)
        raise RegistryError(
            f"{ref}: image is built for {built}, the spec asks for {platform}; "
            f"set 'platform: {built}' on the image if that is right"
        )


def _add_manifest(
    contents: LayoutBuilder,
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
    blobs = [f.add(contents, ref, config).digest]
    for layer in layers:
        if layer.get("urls"):
            raise RegistryError(f"{ref}: foreign layers (with 'urls') cannot be carried offline")
        blobs.append(f.add(contents, ref, layer).digest)
    desc = contents.add_bytes(
        m.media_type, m.data, annotations={ANNOTATION_REF_NAME: ref.text}, platform=platform_of(platform)
    )
    contents.manifests.append(desc)
    return ImageEntry(
        ref=ref.text,
        manifest=m.digest,
        media_type=m.media_type,
        platform=platform,
        index=index,
        blobs=tuple(dict.fromkeys(blobs)),
    )


# -- models ------------------------------------------------------------------


def _add_model(contents: LayoutBuilder, spec: Spec, m: ModelSpec, ref: Ref, top: Manifest,
               f: _Fetcher) -> ModelEntry:
    if top.is_index:
        raise RegistryError(
            f"{ref}: is an index, not a model artifact; push the model with 'oras push'"
        )
    body = _manifest_body(ref, top)
    layers = [d for d in body.get("layers") or [] if isinstance(d, dict)]

    def title(d: Mapping[str, Any]) -> str:
        t = (d.get("annotations") or {}).get(ANNOTATION_TITLE)
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
        return _layer(contents, ref, hits[0], media_type, f)

    def data_layer(name: str) -> Descriptor | None:
        """An external data file of the model: the layer titled with its name."""
        hits = [d for d in layers if title(d) == name]
        return _layer(contents, ref, hits[0], MODEL_DATA_TYPE, f) if hits else None

    model = _layer(contents, ref, models[0], MODEL_LAYER_TYPE, f, file_name=True)
    local_in, local_out = local_golden(contents, m)
    inputs = local_in or by_title(m.health.inputs_ref, GOLDEN_INPUTS_TYPE, "inputs")
    outputs = local_out or by_title(m.health.outputs_ref, GOLDEN_OUTPUTS_TYPE, "outputs")
    source = ref.text if ref.digest else f"{ref.text}@{top.digest}"  # pinned either way
    return add_model_artifact(contents, spec, m, model, inputs, outputs, source=source,
                              find_data=data_layer)


def _layer(
    contents: LayoutBuilder,
    ref: Ref,
    d: Mapping[str, Any],
    media_type: str,
    f: _Fetcher,
    file_name: bool = False,
) -> Descriptor:
    """Add an artifact layer under Airlock's media type, keeping its file name."""
    name = str((d.get("annotations") or {}).get(ANNOTATION_TITLE, "")).rsplit("/", 1)[-1]
    if file_name and not is_plain_name(name):
        raise RegistryError(f"{ref}: model file name {name!r} is not a plain file name")
    annotations = {ANNOTATION_TITLE: name} if name else {}
    return f.add(contents, ref, {**d, "mediaType": media_type}, annotations=annotations)
