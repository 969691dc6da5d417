"""Sample packs: the device's own samples that matter, chosen within a budget, signed, to carry home.

``airlock-agent samples export --budget 50MiB -o DIR`` writes::

    DIR/MODEL/FILE.npz                 sample files as the application dropped them
    DIR/samples.manifest.json          a DSSE envelope signed with the device key: every
                                       file's model, name, size and sha256, why it was
                                       chosen, and what both models said on its samples

Device documents are capped (``MAX_DEVICE_DOCUMENT_BYTES``): the files travel
beside the manifest, never inside it. Files are taken whole, by priority, as
long as the budget (files and manifest together) allows::

    pack = export_pack(layout, Path("/media/usb/cam-7.samples"), budget=50 << 20)
    pack["files"][0]    # {"model": "classifier", "file": "site-003.npz", "why": "disagreement",
                        #  "sha256": "…", "size": 1032, "disagreements": [{"sample": "site-003.npz[6]",
                        #  "running": 6, "candidate": 1, "release": "vision-7", "against": "vision-5"}]}

With a challenger staged (``install --no-switch``), each model's exported
samples are run through both the running model and the challenger in the
challenger's health child, and ``MODEL/airlock-outputs.npz`` (``sample``,
``running``, ``candidate``) goes with them when the budget allows.

Priority: (1) files holding samples on which the last shadow check of the
model found the candidate and the running model disagreeing (from the
journal: the candidate's release may be gone; both outputs recorded);
(2) files with samples outside the range the model's drift reference covers
(the drift bins the reference lacks); (3) the newest of the rest. A model
whose signed spec says ``samples: {export: false}`` keeps its samples on the
device: an export that would include it is refused (exit 3, naming it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.journal import Journal
from agent.layout import Layout
from agent.observe.sample_drift import sample_files
from agent.switch import read_link
from airlock.errors import AirlockError, ExportForbiddenError, PreconditionError, UsageError
from airlock.files import write_atomic
from airlock.limits import MAX_DEVICE_DOCUMENT_BYTES, MAX_SHADOW_SAMPLES
from keys.device import SAMPLES_TYPE, sign_document
from keys.keyfile import load_signer

if TYPE_CHECKING:
    # Annotations only: keys.release (~30 ms) is not for ``status`` to pay
    # (tests/test_startup.py).
    from keys.release import ModelEntry, Release

__all__ = ["MANIFEST", "OUTPUTS_FILE", "export_pack"]

MANIFEST = "samples.manifest.json"
#: Both models' outputs on a model's exported samples, beside them (never a sample's name).
OUTPUTS_FILE = "airlock-outputs.npz"
# Room kept in the device-document cap for the envelope, key and signature.
_MANIFEST_SLACK = 4096


def export_pack(layout: Layout, out: Path, budget: int,
                models: list[str] | None = None) -> dict[str, Any]:
    """Choose, copy and sign a pack into ``out`` (created; must be empty). The manifest body."""
    rid = read_link(layout, "current")
    if rid is None:
        raise PreconditionError("no release is active: its models say what may be exported")
    release = layout.load_release(rid)
    chosen = _models(release, models)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"-o {out}: give a new or empty directory")
    disagreements = _disagreements(layout)
    candidates: list[tuple[int, float, ModelEntry, os.DirEntry[str], list[dict[str, Any]]]] = []
    for m in chosen:
        outside = _outside_reference(layout, rid, m)
        for entry in sample_files(layout.samples / m.name, limit=MAX_SHADOW_SAMPLES):
            if entry.name == OUTPUTS_FILE:
                continue
            said = [d for d in disagreements.get(m.name, [])
                    if d["sample"].rsplit("[", 1)[0] == entry.name]
            rank = 0 if said else 1 if outside(Path(entry.path)) else 2
            candidates.append((rank, -entry.stat().st_mtime_ns, m, entry, said))
    candidates.sort(key=lambda c: (c[0], c[1], c[2].name, c[3].name))
    config = layout.load_config()
    body: dict[str, Any] = {
        "device_id": config.device_id, "release": rid,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "budget_bytes": budget, "bytes": 0, "files": [], "left_out": 0,
    }
    out.mkdir(parents=True, exist_ok=True)
    used = 0
    for rank, _, m, entry, said in candidates:
        size = entry.stat(follow_symlinks=False).st_size
        item = {"model": m.name, "file": entry.name, "size": size,
                "why": ("disagreement", "outside reference", "recent")[rank],
                "sha256": "", "disagreements": said}
        grown = len(json.dumps(item)) + 64
        if (used + size + _manifest_size(body) + grown > budget
                or _manifest_size(body) + grown > MAX_DEVICE_DOCUMENT_BYTES - _MANIFEST_SLACK):
            body["left_out"] += 1
            continue
        item["sha256"] = _copy(Path(entry.path), out / m.name / entry.name)
        body["files"].append(item)
        used += size
    used += _outputs(layout, out, body, budget - used - _manifest_size(body) - 512)
    body["bytes"] = used
    data = sign_document(body, SAMPLES_TYPE, load_signer(layout.device_key))
    write_atomic(out / MANIFEST, data)
    return body


def _outputs(layout: Layout, out: Path, body: dict[str, Any], room: int) -> int:
    """With a staged challenger: both models' outputs on every exported sample, per model.

    Run in the challenger's health child (``agent.challenger``, the shadow
    comparison over the pack's own files); written as ``MODEL/OUTPUTS_FILE``
    (``sample``, ``running``, ``candidate``) and listed in the manifest; left
    out, and said so, when it would not fit the budget. Bytes added.
    """
    from agent.challenger import shadow_asks, staged
    from agent.release_health import check_release

    record, current = staged(layout), read_link(layout, "current")
    if record is None or current is None:
        return 0
    release = layout.load_release(record["release"])
    models = sorted({f["model"] for f in body["files"]} & {m.name for m in release.models})
    asks, _ = shadow_asks(layout, release, running=current, enforce=False)
    added = 0
    for name in models:
        if name not in asks:
            continue
        files = tuple(out / name / f["file"] for f in body["files"] if f["model"] == name)
        target = out / name / OUTPUTS_FILE
        model = next(m for m in release.models if m.name == name)
        assert model.shadow is not None  # it has an ask
        ask = replace(asks[name], files=files, outputs_to=target,
                      policy=replace(model.shadow, samples=MAX_SHADOW_SAMPLES))
        check_release(layout.release_dir(release.id),
                      replace(release, models=[replace(model, evaluation=None)]),
                      runtime=layout.load_config().runtime, shadows={name: ask})
        if not target.is_file():
            continue
        size = target.stat().st_size
        if added + size > room:
            target.unlink()
            body["outputs_left_out"] = body.get("outputs_left_out", 0) + 1
            continue
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        body["files"].append({"model": name, "file": OUTPUTS_FILE, "size": size,
                              "why": "outputs", "sha256": digest, "disagreements": [],
                              "running_release": current, "candidate_release": release.id})
        added += size
    return added


def _manifest_size(body: dict[str, Any]) -> int:
    # The signed envelope carries the payload base64-encoded (4/3) with the key and signature.
    return len(json.dumps(body)) * 4 // 3 + _MANIFEST_SLACK


def _models(release: Release, names: list[str] | None) -> list[ModelEntry]:
    known = {m.name: m for m in release.models}
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise UsageError(f"--model {unknown[0]}: {release.id} has models "
                         f"{', '.join(sorted(known)) or 'none'}")
    chosen = [known[n] for n in names] if names else list(release.models)
    forbidden = [m.name for m in chosen if not m.samples.export]
    if forbidden:
        raise ExportForbiddenError(
            f"the signed spec of {release.id} forbids exporting the samples of model "
            f"'{forbidden[0]}' (samples: {{export: false}}); they stay on this device"
            + ("" if names else "; name the other models with --model"))
    return chosen


def _copy(src: Path, dst: Path) -> str:
    """Copy one sample file, hashing what was written; its sha256."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(src, "rb") as f, open(dst, "xb") as g:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            g.write(chunk)
        g.flush()
        os.fsync(g.fileno())
    shutil.copystat(src, dst)
    return h.hexdigest()


def _disagreements(layout: Layout) -> dict[str, list[dict[str, Any]]]:
    """Per model, the disagreements of its newest shadow check in the journal."""
    newest: dict[str, list[dict[str, Any]]] = {}
    for e in Journal(layout.journal).entries():
        if e.get("event") != "health-result":
            continue
        report = e.get("report")
        for m in (report.get("models") or []) if isinstance(report, dict) else []:
            shadow = m.get("shadow") if isinstance(m, dict) else None
            if not isinstance(shadow, dict) or not isinstance(m.get("name"), str):
                continue
            newest[m["name"]] = [
                {"sample": str(d.get("sample")), "running": d.get("running"),
                 "candidate": d.get("candidate"), "release": e.get("release"),
                 "against": shadow.get("running_release")}
                for d in shadow.get("disagreements") or [] if isinstance(d, dict)]
    return newest


def _outside_reference(layout: Layout, rid: str, model: ModelEntry) -> Any:
    """A test: does a sample file hold rows outside the range the drift reference covers?"""
    if model.health.reference is None:
        return lambda path: False
    from airlock.quality.drift import features, load_sample

    try:
        ref = load_sample(layout.release_dir(rid) / "models" / model.name / "reference.npz")
        ranges = {k: (float(v.min()), float(v.max()))
                  for name, a in ref.items() for k, v in features(name, a).items() if v.size}
    except AirlockError:
        return lambda path: False

    def outside(path: Path) -> bool:
        try:
            sample = load_sample(path)
            for name, a in sample.items():
                for k, v in features(name, a).items():
                    lo, hi = ranges.get(k, (float("-inf"), float("inf")))
                    if v.size and (float(v.min()) < lo or float(v.max()) > hi):
                        return True
        except AirlockError:
            return False
        return False

    return outside
