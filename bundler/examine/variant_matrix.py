"""Which variant of each model which device takes: the model × variant matrix of a release.

A release may offer a model in variants (``keys.variants``); each device runs
the first whose ``when`` its facts match. The facts travel in each device's
signed inventory (``airlock-agent inventory``), so the host can say, before
anything is carried, which devices take which variant and which variants no
device of a site needs::

    rows = variant_matrix(release, inventories)
    rows[0]["variants"][1]   # {"name": "arm", "when": {"arch": ["arm64"]}, "size": 69120,
                             #  "carried": True, "left_out": False,
                             #  "devices": ["cam-7", "cam-9"]}
    rows[0]["unmatched"]     # devices no variant fits: they would refuse the release
    needed_variants(release, inventories)   # {("detector", "arm")}: what a delta must carry
    omitted_blobs(release, {("detector", "arm")})   # the blobs of the other variants
    parse_class("arch=arm64,label.npu=hailo")       # build --for-class: one class's facts

A device whose inventory carries no facts (an agent older than variants)
cannot be placed: it is listed under ``unknown``, and planning for it is
refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airlock.errors import UsageError
from airlock.format.oci import blob_path
from bundler.sneakernet.device_inventories import Inventory
from keys.release import ModelEntry, Release
from keys.variants import canonical, effective, matches, normalize_arch

__all__ = ["device_facts", "needed_variants", "omitted_blobs", "parse_class", "pick_for",
           "variant_matrix"]


def device_facts(inv: Inventory) -> dict[str, Any] | None:
    """The facts a variant selector sees for the device of ``inv``; None when it sent none."""
    record = inv.body.get("facts")
    return effective(record) if isinstance(record, dict) else None


def pick_for(models: Sequence[ModelEntry], facts: dict[str, Any]) -> ModelEntry | None:
    """The variant of one model (``models``: its entries in signed order) ``facts`` pick."""
    if models and models[0].variant is None:
        return models[0]
    return next((m for m in models if matches(m.when or {}, facts)), None)


def _groups(release: Release) -> dict[str, list[ModelEntry]]:
    groups: dict[str, list[ModelEntry]] = {}
    for m in release.models:
        groups.setdefault(m.name, []).append(m)
    return groups


def _size(release: Release, m: ModelEntry) -> int:
    return sum(info.length for d in set(m.blob_digests())
               if (info := release.files.get(blob_path(d))) is not None)


def variant_matrix(release: Release, inventories: Sequence[Inventory] = ()) -> list[dict[str, Any]]:
    """One row per model: its variants in signed order with their sizes (every blob of the
    variant: model file, data, goldens, manifest), whether this bundle carries them, and, given
    inventories, the devices that take each; ``unmatched`` and ``unknown`` devices."""
    omitted = set(release.omits)
    expected = set(release.delta.expects if release.delta else ())
    placed = [(inv.device_id, device_facts(inv)) for inv in inventories]
    rows = []
    for name, group in _groups(release).items():
        takes: dict[str | None, list[str]] = {m.variant: [] for m in group}
        unmatched: list[str] = []
        unknown: list[str] = []
        for device, facts in placed:
            if facts is None:
                unknown.append(device)
                continue
            pick = pick_for(group, facts)
            (takes[pick.variant] if pick is not None else unmatched).append(device)
        rows.append({
            "model": name,
            "variants": [
                {"name": m.variant, "when": m.when, "file": m.file_name, "size": _size(release, m),
                 # In the bundle; or a delta's, already on its devices; or left out for them.
                 "carried": not (omitted | expected).intersection(m.blob_digests()),
                 "left_out": bool(omitted.intersection(m.blob_digests())),
                 "providers": list(m.health.providers),
                 **({"devices": takes[m.variant]} if inventories else {})}
                for m in group],
            **({"unmatched": unmatched, "unknown": unknown} if inventories else {}),
        })
    return rows


def needed_variants(release: Release, inventories: Sequence[Inventory] = (),
                    classes: Sequence[dict[str, Any]] = ()) -> set[tuple[str, str]]:
    """(model, variant) pairs the inventoried devices and the device ``classes`` (effective
    facts, ``build --for-class``) pick; UsageError (exit 2) naming a device that sent no facts
    or a device or class no variant of a model fits."""
    who: list[tuple[str, dict[str, Any] | None]] = [
        (f"device {inv.device_id} ({inv.path})", device_facts(inv)) for inv in inventories]
    who += [(f"the class {canonical(c)}", c) for c in classes]
    needed: set[tuple[str, str]] = set()
    for name, group in _groups(release).items():
        if group[0].variant is None:
            continue
        for label, facts in who:
            if facts is None:
                raise UsageError(f"{label} sent an inventory without facts, so which variant of "
                                 f"model '{name}' it runs is unknown: upgrade its agent and send "
                                 "a new inventory, or build without --delta-from")
            pick = pick_for(group, facts)
            if pick is None:
                raise UsageError(f"no variant of model '{name}' fits {label}; it would refuse "
                                 "the bundle: add a variant, or give the device a label")
            needed.add((name, str(pick.variant)))
    return needed


def omitted_blobs(release: Release, needed: set[tuple[str, str]]) -> tuple[str, ...]:
    """The blobs only variants outside ``needed`` use: what a bundle for those devices leaves
    out (a blob another kept variant, a plain model or an image shares stays)."""
    kept = {d for m in release.models if m.variant is None or (m.name, m.variant) in needed
            for d in m.blob_digests()}
    kept |= {d for i in release.images for d in (i.manifest, *i.blobs)}
    return tuple(sorted({d for m in release.models if m.variant is not None
                         for d in m.blob_digests() if d not in kept}))


def parse_class(text: str) -> dict[str, Any]:
    """``build --for-class``: a device's ``facts.json`` (a path), or ``arch=arm64,npu=hailo``
    pairs where a name that is not a probed fact is a label (``label.NAME=V`` says so outright);
    the effective facts a selector sees. UsageError (exit 2) on a malformed one."""
    from pathlib import Path

    path = Path(text)
    if path.is_file():
        import json

        try:
            record = json.loads(path.read_bytes()[:1_000_000])
        except ValueError as e:
            raise UsageError(f"--for-class {text}: not a facts.json ({e})") from None
        if not isinstance(record, dict):
            raise UsageError(f"--for-class {text}: not a facts.json (not a JSON object)")
        return effective(record)
    facts: dict[str, Any] = {"labels": {}}
    for pair in text.split(","):
        key, eq, value = pair.strip().partition("=")
        if not eq or not key or not value:
            raise UsageError(f"--for-class {text!r}: give a facts.json or NAME=VALUE pairs "
                             "separated by commas, e.g. arch=arm64,label.npu=hailo")
        if key.startswith(("label.", "labels.")):
            facts["labels"][key.split(".", 1)[1]] = value
        elif key in _LISTS:
            facts[key] = value.split("+")
        else:
            facts[key] = normalize_arch(value) if key == "arch" else value
    return facts


_LISTS = ("providers", "cpu_features")  # several values joined by '+'
