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
  one it does not know); and ``issued``, the build's signed clock (UTC,
  ``SOURCE_DATE_EPOCH`` when set): a lower bound of the real time that a
  device keeps as its time floor (``agent.timefloor``). Absent in releases
  built before it existed; an older agent ignores it, which costs it only the
  floor it never had, so it needs no ``requires`` entry.

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

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from tuf.api.metadata import Metadata, TargetFile, Targets

from airlock.errors import FormatError, RejectedError
from airlock.format.bundle import FileInfo
from airlock.format.oci import BLOB_PREFIX, blob_path, is_sha256_hex
from keys.evaluation_fields import (
    SessionOptions,
)
from keys.features import check_requires
from keys.metadata import KIND_FIELD, RELEASE_SECTION, Kind, kind_of, parse_metadata
from keys.signed_fields import (
    FieldError,
    is_plain_name,
    valid_flags,
    valid_json,
    valid_name,
    valid_sequence,
    valid_unique,
)
from keys.signed_time import format_time, parse_time
from keys.supply_chain import SupplyChain, supply_chain_from

__all__ = [
    "AgentKitEntry",
    "Delta",
    "EncryptedBlob",
    "Encryption",
    "EvaluationSpec",
    "HealthSpec",
    "Hooks",
    "ImageEntry",
    "InventoryRef",
    "ModelEntry",
    "NoVariantError",
    "Release",
    "SessionOptions",
    "format_time",
    "is_plain_name",
    "parse_time",
]


from keys.release_entries import (
    AgentKitEntry,
    Delta,
    EncryptedBlob,
    Encryption,
    EvaluationSpec,
    HealthSpec,
    Hooks,
    ImageEntry,
    InventoryRef,
    ModelEntry,
)
from keys.release_reader import (
    Reader,
    encryption_from,
    image_from,
    inventory_from,
    kit_from,
    model_from,
)


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
    supply_chain: SupplyChain | None = None  # upstream policy and evidence (keys.supply_chain)
    encryption: Encryption | None = None  # blobs carried encrypted to named recipients
    issued: datetime | None = None  # the build's signed clock: a device's time floor
    # Once a device picked its variants (pick_variants): the blobs only the other variants
    # need. Still listed in ``files`` (the bundle may carry them), never stored nor required.
    unused: frozenset[str] = frozenset()
    # Blobs of variants this bundle leaves out (``build --for-class``, or a delta for devices
    # that pick none of them): listed, not carried; a device needs them only if it picks one.
    omits: tuple[str, ...] = ()

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
        if self.issued is not None:  # absent otherwise, so older releases keep their bytes
            body["issued"] = format_time(self.issued)
        if self.delta is not None:
            body["delta"] = {
                "base_sequence": self.delta.base_sequence,
                "expects": list(self.delta.expects),
                "inventories": [asdict(i) for i in self.delta.inventories],
            }
        if self.omits:  # absent otherwise, so releases without variants keep their bytes
            body["omits"] = list(self.omits)
        if self.agent_kits:  # absent otherwise, so releases without kits keep their bytes
            body["agent"] = {"kits": [asdict(k) for k in self.agent_kits]}
        if self.supply_chain is not None:  # likewise
            body["supply_chain"] = self.supply_chain.to_json()
        if self.encryption is not None:  # absent otherwise: clear releases keep their bytes
            body["encryption"] = self.encryption.to_json()
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
        r = Reader(body, "airlock")
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
                          tuple(inventory_from(i) for i in d.subs("inventories")))
        models = [model_from(m) for m in r.subs("models")]
        r.check("models", _valid_models, models, requires)
        release = cls(
            name=name,
            version=r.text("version"),
            sequence=signed.version,
            expires=signed.expires,
            files=files,
            models=models,
            images=[image_from(i) for i in r.subs("images")],
            flags=r.check("flags", valid_flags, r.mapping("flags")),
            hooks=Hooks(
                post_switch=hooks.opt_text("post_switch", command=True),
                probe=hooks.opt_text("probe", command=True),
                probe_window_s=hooks.number("probe_window_s", 30.0),
            ),
            rings=[r.check(f"rings[{i}]", valid_name, ring)
                   for i, ring in enumerate(r.texts("rings"))],
            delta=delta,
            agent_kits=[kit_from(k) for k in r.sub("agent").subs("kits")],
            requires=requires,
            supply_chain=(supply_chain_from(r.sub("supply_chain"))
                          if body.get("supply_chain") is not None else None),
            encryption=(encryption_from(r.sub("encryption"))
                        if body.get("encryption") is not None else None),
            issued=_issued(r.opt_text("issued"), signed.expires),
            omits=tuple(r.digests("omits")) if "omits" in body else (),
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
        only_variants = self.variant_only()
        for omitted in self.omits:
            if blob_path(omitted) not in self.files or omitted not in only_variants:
                raise FormatError(f"release omits blob {omitted[:23]}…, which is not a blob "
                                  "only model variants need")
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
        for digest in self.supply_chain.digests() if self.supply_chain else ():
            if digest not in have:
                raise FormatError(f"supply-chain evidence names manifest {digest[:23]}… that is "
                                  "not in the bundle nor expected on the device")
        for k in self.agent_kits:
            for digest in (k.manifest, k.blob):
                if digest not in have:
                    raise FormatError(f"agent kit '{k.file_name}' names blob {digest[:23]}… "
                                      "that is not in the bundle nor expected on the device")
            info = self.files.get(blob_path(k.blob))
            if info is not None and info.length != k.size:
                raise FormatError(f"agent kit '{k.file_name}' says {k.size} bytes but its "
                                  f"blob is {info.length} bytes")

    def stored_digest(self, digest: str) -> str:
        """The digest a device holds a listed blob under: an encrypted blob's plaintext one.

        A delta's ``expects`` names listed (ciphertext) digests; the device
        looks for the plaintext it decrypted from an earlier release.
        """
        if self.encryption is None:
            return digest
        blob = self.encryption.by_digest().get(digest)
        return digest if blob is None else blob.plain

    def has_variants(self) -> bool:
        return any(m.variant is not None for m in self.models)

    def pick_variants(self, facts: dict[str, Any]) -> Release:
        """This release as a device with ``facts`` runs it: for each model with variants, the
        first whose ``when`` matches, in signed order (``keys.variants``); the others gone.

        No match for a model is a RejectedError (exit 3) naming the model, its variants and
        the facts it was given, before anything changes.
        """
        from keys.variants import matches

        chosen: list[ModelEntry] = []
        for name, group in _by_name(self.models):
            if group[0].variant is None:
                chosen.append(group[0])
                continue
            pick = next((m for m in group if matches(m.when or {}, facts)), None)
            if pick is None:
                raise NoVariantError(name, group, facts)
            chosen.append(pick)
        kept = {d for m in chosen for d in m.blob_digests()}
        unused = {d for m in self.models if m.variant is not None for d in m.blob_digests()
                  if d not in kept}
        return dataclasses.replace(self, models=chosen, unused=frozenset(unused))

    def with_variants(self, chosen: dict[str, str]) -> Release:
        """The release as installed: ``chosen`` maps each model to the variant picked at
        install (``releases/ID/variants.json``)."""
        picked = [m for m in self.models if m.variant is None or chosen.get(m.name) == m.variant]
        if sorted(m.name for m in picked) != sorted({m.name for m in self.models}):
            raise FormatError(f"the variants recorded for {self.id} ({chosen}) are not one per "
                              "model of its release")
        kept = {d for m in picked for d in m.blob_digests()}
        unused = {d for m in self.models for d in m.blob_digests() if d not in kept}
        return dataclasses.replace(self, models=picked, unused=frozenset(unused))

    def variants(self) -> dict[str, str]:
        """Model -> the variant it runs (models without variants absent)."""
        return {m.name: m.variant for m in self.models if m.variant is not None}

    def all_digests(self) -> list[str]:
        """Digests of every blob this release needs, carried or expected on the device.

        ``files`` lists the whole release, a delta's expected blobs included
        (``_check_references`` refuses a delta expecting a blob it does not list).
        """
        plain = self.encryption.by_digest() if self.encryption else {}
        digests = (f"sha256:{p[len(BLOB_PREFIX) :]}" for p in self.files
                   if p.startswith(BLOB_PREFIX))
        # Another variant's blobs are not needed; an encrypted blob is held decrypted, under
        # its plaintext digest.
        return sorted({plain[d].plain if d in plain else d for d in digests
                       if d not in self.unused})

    @property
    def shipped(self) -> dict[str, FileInfo]:
        """The files the bundle carries that the device keeps: all of them, less what a delta
        expects on the device and what only variants it did not pick need."""
        left_out = {blob_path(d) for d in (*self.unused, *self.not_carried())}
        return {p: i for p, i in self.files.items() if p not in left_out}

    def variant_only(self) -> set[str]:
        """Blobs only model variants need (not a plain model, an image or a kit): what a device
        needs or not by the variant it picks."""
        only = {d for m in self.models if m.variant is not None for d in m.blob_digests()}
        only -= {d for m in self.models if m.variant is None for d in m.blob_digests()}
        only -= {d for i in self.images for d in (i.manifest, *i.blobs)}
        return only

    def not_carried(self) -> tuple[str, ...]:
        """Blobs listed but not in the bundle: what a delta expects on the device, and the
        variants it omits (the bundle reader refuses them if carried)."""
        return (*(self.delta.expects if self.delta else ()), *self.omits)

    def missing_variant_blobs(self, have: Callable[[str], bool]) -> list[str]:
        """Of the blobs this bundle omits, those the variants this device picked need and
        ``have`` says it does not hold (this release after ``pick_variants``)."""
        return [d for d in self.omits if d not in self.unused and not have(d)]

    def summary(self) -> dict[str, Any]:
        """What people compare between releases (``airlock diff``, device inventories).

        Models and images with their sizes and health budgets, flags, hooks,
        rings and expiry; not the file list.
        """

        carried = {b.plain: b.digest for b in self.encryption.blobs} if self.encryption else {}

        def size(digest: str) -> int | None:
            # An encrypted blob is listed by its ciphertext, as long as its plaintext (CTR).
            info = self.files.get(blob_path(carried.get(digest, digest)))
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
                 **({"variant": m.variant, "when": m.when} if m.variant is not None else {}),
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


def _issued(raw: str | None, expires: datetime) -> datetime | None:
    if raw is None:
        return None
    issued = parse_time(raw, "release field 'airlock.issued'")
    # A release issued after it expires was never valid: refuse it rather than let it
    # push a device's time floor past its own expiry.
    if issued > expires:
        raise FormatError(f"release field 'airlock.issued' {raw} is after its expiry")
    return issued


class NoVariantError(RejectedError):
    """No variant of a model fits this device. Exit code 3."""

    def __init__(self, name: str, group: list[ModelEntry], facts: dict[str, Any]) -> None:
        from keys.variants import canonical

        shown = {k: v for k, v in facts.items() if k in _SHOWN_FACTS and v not in (None, [], {})}
        super().__init__(
            f"no variant of model '{name}' fits this device: "
            + "; ".join(f"{m.variant} wants {canonical(m.when or {})}" for m in group)
            + f"; the device's facts are {canonical(shown)}; nothing was changed (give the "
            "device a label or fact with 'airlock-agent config', or add a variant)")
        self.model = name


_SHOWN_FACTS = ("arch", "os", "cpu_features", "ram_mb", "python", "onnxruntime", "providers",
                "labels")


def _by_name(models: list[ModelEntry]) -> list[tuple[str, list[ModelEntry]]]:
    groups: dict[str, list[ModelEntry]] = {}
    for m in models:
        groups.setdefault(m.name, []).append(m)
    return list(groups.items())


def _valid_models(models: list[ModelEntry], requires: tuple[str, ...]) -> None:
    """Model names unique, except the variants of one model: together, all named, distinct
    selectors, a catch-all only last (``keys.variants.valid_variants``), ``variants`` required."""
    from keys.variants import valid_variants

    groups = _by_name(models)
    seen: list[str] = []
    for m in models:  # a model's variants are signed one after the other
        if not seen or seen[-1] != m.name:
            seen.append(m.name)
    valid_unique(seen, "model")
    for name, group in groups:
        if len(group) > 1 and any(m.variant is None for m in group):
            second = [i for i, m in enumerate(models) if m.name == name][1]
            raise FieldError(f"lists model {name!r} twice", (second,))
        if group[0].variant is not None:
            valid_variants([m.when or {} for m in group], [str(m.variant) for m in group], name)
            if "variants" not in requires:
                raise FieldError(f"model '{name}' has variants but the release does not "
                                 "require the feature 'variants'")


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
    if m.shadow is not None:
        d["shadow"] = m.shadow.to_json()
    if not m.samples.export:
        d["samples"] = m.samples.to_json()
    return d


def _model_dict(m: ModelEntry) -> dict[str, Any]:
    d = _drop_none(asdict(m))
    d["health"] = _health_dict(m.health)
    for key in ("data", "evaluation", "contract", "shadow", "samples"):
        d.pop(key, None)
    if m.data:
        d["data"] = dict(m.data)
    d.update(_quality_dict(m))
    return d


_T = TypeVar("_T")
