"""What changed between two releases: ``airlock diff OLD NEW``.

OLD and NEW are bundles (or their parts); OLD may also be a device
inventory, whose release of NEW's name (the active one, else the newest)
stands in for the old release and whose blob list says what a delta would
leave out::

    change = diff(load_side(Path("vision-1.airlock")), load_side(Path("vision-2.airlock")))
    change["models"]["changed"]       # [{"name": "detector", "size": [248, 1048824], ...}]
    change["models"]["added"]         # [{"name": "detector (variant arm64)", ...}]: variants
                                      # are named one by one
    change["delta"]["ship_bytes"]     # what a delta against OLD would carry

Only the signed metadata at the front of a bundle is read (like ``airlock
inspect``), and signatures are not checked: this is for a person deciding
what to carry, not a trust decision. The result is plain data; the command
line prints it as text or ``--json``. Two flags bundles (``airlock flags set``)
compare by their flags, share of devices, rings and expiry. Two bundles that
carry SBOMs (``policy: {sbom: true}``) also show the image packages added,
removed and changed (``bundler.examine.package_changes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.console import human_size
from airlock.errors import FormatError, UsageError
from airlock.format.bundle import BundleReader
from airlock.format.oci import BLOB_PREFIX
from airlock.format.parts import open_media, resolve_media
from bundler.examine.package_changes import package_changes
from bundler.sneakernet.device_inventories import Inventory, load_inventory
from keys.release import Release

__all__ = ["Side", "diff", "diff_text", "load_side"]


@dataclass(frozen=True)
class Side:
    """One side of a diff: a release summary (or none) and the blobs it has or needs."""

    kind: str  # "bundle", "inventory" or "flags" (a flags bundle: summary is its flags_info)
    path: str
    summary: dict[str, Any] | None
    blobs: dict[str, int]  # digest -> size
    other_files: int = 0  # bytes of the layout files that are not blobs (index.json, oci-layout)
    inventory: Inventory | None = None
    packages: dict[str, str] | None = None  # image packages from the bundle's SBOM, if any


def load_side(path: Path) -> Side:
    """A bundle (or its parts), or a device inventory, read for :func:`diff`."""
    if resolve_media(path) is None and path.is_file() and _looks_like_json(path):
        inv = load_inventory(path)
        return Side("inventory", str(path), inv.active_release(), dict(inv.blobs), inventory=inv)
    from bundler.examine.flag_bundles import flags_info, is_flags_head

    stream, _ = open_media(str(path))
    with stream:
        head = BundleReader(stream).head()
        if is_flags_head(head):
            return Side("flags", str(path), flags_info(head, trust=None, ring=None), {})
        release = Release.from_bytes(head.release_json)
        packages = None
        if release.supply_chain is not None and release.supply_chain.of_kind("sbom"):
            from bundler.examine.package_changes import bundle_packages

            again, _ = open_media(str(path))  # from the start: parts read forward only
            with again:
                packages = bundle_packages(again)
    # By the digest a device holds: an encrypted blob's plaintext (as long as its ciphertext).
    blobs = {release.stored_digest("sha256:" + p[len(BLOB_PREFIX):]): i.length
             for p, i in release.files.items()
             if p.startswith(BLOB_PREFIX)}
    other = sum(i.length for p, i in release.files.items() if not p.startswith(BLOB_PREFIX))
    return Side("bundle", str(path), release.summary(), blobs, other, packages=packages)


def _looks_like_json(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(64).lstrip()[:1] == b"{"


def diff(old: Side, new: Side) -> dict[str, Any]:
    """Everything a person weighs before carrying NEW to where OLD is."""
    if "flags" in (old.kind, new.kind):
        return _flags_diff(old, new)
    if new.summary is None:
        raise FormatError(f"{new.path} is an inventory; the new side must be a bundle")
    n = new.summary
    # A device's release of the same name is the old side; if it has none, all is new to it.
    o = old.inventory.active_release(n["name"]) if old.inventory else old.summary
    ship = {d: s for d, s in new.blobs.items() if old.blobs.get(d) != s}
    return {
        "old": _side_info(old, o),
        "new": _side_info(new, n),
        "release": {k: _pair(o, n, k) for k in ("name", "version", "sequence", "expires", "rings")
                    if o is None or o.get(k) != n.get(k)},
        "models": _models(o["models"] if o else [], n["models"]),
        "images": _images(o["images"] if o else [], n["images"]),
        "flags": _mapping(o["flags"] if o else {}, n["flags"]),
        "packages": package_changes(old.packages, new.packages),
        "hooks": {k: _pair(o.get("hooks", {}) if o else {}, n["hooks"], k)
                  for k in sorted(set(n["hooks"]) | set((o or {}).get("hooks", {})))
                  if (o or {}).get("hooks", {}).get(k) != n["hooks"].get(k)},
        "delta": {
            "full_bytes": sum(new.blobs.values()) + new.other_files,
            "ship_bytes": sum(ship.values()) + new.other_files,
            "blobs_shipped": len(ship),
            "blobs_left_out": len(new.blobs) - len(ship),
        },
    }


def _flags_diff(old: Side, new: Side) -> dict[str, Any]:
    """Two flags sets: the flags added, removed and changed, and who they reach."""
    if old.kind != new.kind or old.summary is None or new.summary is None:
        flags, other = (old, new) if old.kind == "flags" else (new, old)
        raise UsageError(f"{flags.path} is a flags bundle and {other.path} is not; "
                         "diff compares two flags bundles, or two releases")
    o, n = old.summary, new.summary
    return {
        "kind": "flags",
        "old": {"kind": "flags", "path": old.path, "name": o["name"], "sequence": o["sequence"]},
        "new": {"kind": "flags", "path": new.path, "name": n["name"], "sequence": n["sequence"]},
        "settings": {k: [o[k], n[k]] for k in ("name", "sequence", "percent", "rings", "expires")
                     if o[k] != n[k]},
        "flags": _mapping(o["flags"], n["flags"]),
    }


def _flags_diff_text(d: dict[str, Any]) -> str:
    o, n = d["old"], d["new"]
    lines = [f"flags {o['name']} (sequence {o['sequence']}) -> flags {n['name']} "
             f"(sequence {n['sequence']})"]
    lines += [f"{k}: {v[0]} -> {v[1]}" for k, v in d["settings"].items()
              if k not in ("name", "sequence")]
    lines += _mapping_lines(d["flags"])
    if len(lines) == 1:
        lines.append("no changes to the flags, their share of devices, rings or expiry")
    return "\n".join(lines)


def _mapping_lines(f: dict[str, Any]) -> list[str]:
    lines = ["flags:"] if f["added"] or f["removed"] or f["changed"] else []
    lines += [f"  + {k} = {v!r}" for k, v in f["added"].items()]
    lines += [f"  - {k} (was {v!r})" for k, v in f["removed"].items()]
    lines += [f"  ~ {k}: {v[0]!r} -> {v[1]!r}" for k, v in f["changed"].items()]
    return lines


def _side_info(side: Side, summary: dict[str, Any] | None) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": side.kind, "path": side.path}
    if side.inventory is not None:
        info["device_id"] = side.inventory.device_id
    if summary is not None:
        info.update({k: summary[k] for k in ("name", "version", "sequence")})
    return info


def _pair(old: dict[str, Any] | None, new: dict[str, Any], key: str) -> list[Any]:
    return [None if old is None else old.get(key), new.get(key)]


def _key(m: dict[str, Any]) -> str:
    """A model, or one variant of it, as the diff names it: ``detector (variant int8)``."""
    return str(m["name"]) + (f" (variant {m['variant']})" if m.get("variant") else "")


def _models(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, Any]:
    before, after = {_key(m): m for m in old}, {_key(m): m for m in new}
    changed = []
    for name in sorted(set(before) & set(after)):
        a, b = before[name], after[name]
        health = {k: [a["health"].get(k), b["health"].get(k)]
                  for k in sorted(set(a["health"]) | set(b["health"]))
                  if a["health"].get(k) != b["health"].get(k)}
        quality = [what for key, what in (("evaluate", "evaluation"),
                                          ("inputs_contract", "input contract"),
                                          ("shadow", "shadow check"),
                                          ("samples", "sample export"))
                   if a.get(key) != b.get(key)]
        if a.get("when") != b.get("when"):  # the devices that take this variant change
            quality.append("variant selector ('when')")
        if a["blob"] != b["blob"] or health or a["file"] != b["file"] or quality or (
                a.get("golden") != b.get("golden")):
            changed.append({"name": name, "size": [a["size"], b["size"]],
                            "file": [a["file"], b["file"]],
                            "blob_changed": a["blob"] != b["blob"],
                            "golden_changed": a.get("golden") != b.get("golden"),
                            "quality_changed": quality,
                            "health": health})
    return {
        "added": [{"name": k, "size": after[k]["size"], "file": after[k]["file"]}
                  for k in sorted(set(after) - set(before))],
        "removed": [{"name": k, "size": before[k]["size"], "file": before[k]["file"]}
                    for k in sorted(set(before) - set(after))],
        "changed": changed,
        "unchanged": sorted(k for k in set(before) & set(after)
                            if k not in {c["name"] for c in changed}),
    }


def _image_size(image: dict[str, Any]) -> int:
    return sum(b["size"] or 0 for b in image["blobs"])


def repository(ref: str) -> str:
    """The image's name without its tag or digest: ``reg:5000/app:1`` -> ``reg:5000/app``."""
    name = ref.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    # A colon after the last slash is a tag; one before it is a registry's port.
    return (head + "/" if head else "") + last.split(":", 1)[0]


def _pairs(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str]]:
    """(old ref, new ref) of the images that are the same image: the same reference, or
    the only one of a repository on each side (a tag bump is one image changing, not
    one removed and another added)."""
    pairs = [(r, r) for r in sorted(set(before) & set(after))]
    gone: dict[str, list[str]] = {}
    came: dict[str, list[str]] = {}
    for r in set(before) - set(after):
        gone.setdefault(repository(r), []).append(r)
    for r in set(after) - set(before):
        came.setdefault(repository(r), []).append(r)
    pairs += sorted((gone[repo][0], came[repo][0]) for repo in set(gone) & set(came)
                    if len(gone[repo]) == len(came[repo]) == 1)
    return pairs


def _images(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, Any]:
    before, after = {i["ref"]: i for i in old}, {i["ref"]: i for i in new}
    changed = []
    pairs = _pairs(before, after)
    for was, ref in pairs:
        a, b = before[was], after[ref]
        if a["manifest"] == b["manifest"] and was == ref:
            continue
        had = {x["digest"]: x["size"] for x in a["blobs"]}
        has = {x["digest"]: x["size"] for x in b["blobs"]}
        changed.append({
            "ref": ref, "was": was, "manifest": [a["manifest"], b["manifest"]],
            "platform": [a.get("platform"), b.get("platform")],
            "layers_added": [{"digest": d, "size": s} for d, s in has.items() if d not in had],
            "layers_removed": [{"digest": d, "size": s} for d, s in had.items() if d not in has],
            "layers_kept": sum(1 for d in has if d in had),
            "kept_bytes": sum(s or 0 for d, s in has.items() if d in had),
        })
    paired_old, paired_new = {p[0] for p in pairs}, {p[1] for p in pairs}
    return {
        "added": [{"ref": r, "size": _image_size(after[r]), "layers": len(after[r]["blobs"])}
                  for r in sorted(set(after) - paired_new)],
        "removed": [{"ref": r, "size": _image_size(before[r]), "layers": len(before[r]["blobs"])}
                    for r in sorted(set(before) - paired_old)],
        "changed": changed,
        "unchanged": sorted(r for r in set(before) & set(after)
                            if before[r]["manifest"] == after[r]["manifest"]),
    }


def _mapping(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {
        "added": {k: new[k] for k in sorted(set(new) - set(old))},
        "removed": {k: old[k] for k in sorted(set(old) - set(new))},
        "changed": {k: [old[k], new[k]] for k in sorted(set(old) & set(new)) if old[k] != new[k]},
    }


def diff_text(d: dict[str, Any]) -> str:
    """The :func:`diff` result as text for people (the command line prints it)."""
    if d.get("kind") == "flags":
        return _flags_diff_text(d)

    def who(side: dict[str, Any]) -> str:
        what = (f"{side['name']} {side['version']} (sequence {side['sequence']})"
                if "name" in side else "no release of this name")
        return what + (f" on device {side['device_id']}" if "device_id" in side else "")

    lines = [f"{who(d['old'])} -> {who(d['new'])}"]
    for key, (was, now) in d["release"].items():
        if key not in ("name", "version", "sequence"):
            lines.append(f"{key}: {was} -> {now}")
    m = d["models"]
    if m["added"] or m["removed"] or m["changed"]:
        lines.append("models:")
    lines += [f"  + {x['name']}: {x['file']} {human_size(x['size'])}" for x in m["added"]]
    lines += [f"  - {x['name']}: {x['file']} {human_size(x['size'])}" for x in m["removed"]]
    for x in m["changed"]:
        what = [f"{human_size(x['size'][0])} -> {human_size(x['size'][1])}"
                + (" (new blob)" if x["blob_changed"] else "")]
        if x["golden_changed"]:
            what.append("golden data changed")
        what += [f"{q} changed" for q in x["quality_changed"]]
        what += [f"{k} {v[0]} -> {v[1]}" for k, v in x["health"].items()]
        lines.append(f"  ~ {x['name']}: " + "; ".join(what))
    i = d["images"]
    if i["added"] or i["removed"] or i["changed"]:
        lines.append("images:")
    lines += [f"  + {x['ref']}: {x['layers']} blobs, {human_size(x['size'])}" for x in i["added"]]
    lines += [f"  - {x['ref']}: {x['layers']} blobs, {human_size(x['size'])}"
              for x in i["removed"]]
    for x in i["changed"]:
        added = sum(y["size"] or 0 for y in x["layers_added"])
        removed = sum(y["size"] or 0 for y in x["layers_removed"])
        name = x["ref"] if x["was"] == x["ref"] else f"{x['was']} -> {x['ref']}"
        manifest = "new manifest" if x["manifest"][0] != x["manifest"][1] else "same manifest"
        lines.append(f"  ~ {name}: {manifest}; +{len(x['layers_added'])} blob(s) "
                     f"({human_size(added)}), -{len(x['layers_removed'])} "
                     f"({human_size(removed)}), {x['layers_kept']} kept "
                     f"({human_size(x['kept_bytes'])})")
    lines += _mapping_lines(d["flags"])
    p = d.get("packages")
    if p and (p["added"] or p["removed"] or p["changed"]):
        lines.append("packages (from the SBOMs):")
        lines += [f"  + {x['package']} {x['version']}" for x in p["added"]]
        lines += [f"  - {x['package']} {x['version']}" for x in p["removed"]]
        lines += [f"  ~ {x['package']} {x['version'][0]} -> {x['version'][1]}"
                  for x in p["changed"]]
    if d["hooks"]:
        lines.append("hooks:")
        lines += [f"  ~ {k}: {v[0]!r} -> {v[1]!r}" for k, v in d["hooks"].items()]
    if len(lines) == 1:
        lines.append("no changes to models, images, flags, hooks or budgets")
    delta = d["delta"]
    lines.append(f"a delta against the old side ships {human_size(delta['ship_bytes'])} of "
                 f"{human_size(delta['full_bytes'])} ({delta['blobs_shipped']} blob(s) carried, "
                 f"{delta['blobs_left_out']} left out)")
    return "\n".join(lines)
