"""``airlock inspect``: show what a bundle holds and will run: models, images, hooks, signers, expiry.

    airlock inspect vision-1.2.0.airlock --trust root.json
    airlock inspect vision-1.2.0.airlock --fast --json

The reading is ``bundler.examine.inspection.inspect_bundle``; this module
prints it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.command import Reported
from airlock.console import human_size, json_option, read_input, say
from airlock.errors import FormatError
from airlock.format.parts import open_media
from keys.identify import misplaced
from keys.trust import TrustRoot, role_label

__all__ = ["DESCRIPTION", "EXAMPLES", "Inspection", "add_arguments", "inspect_text", "run"]

EXAMPLES = ("airlock inspect vision-1.2.0.airlock --trust root.json",
            "airlock inspect vision-1.2.0.airlock --inventories cam-*.inventory.json --json")
DESCRIPTION = (
    "Show what a bundle holds and what it will run on a device: models and their\n"
    "budgets, images, flags, hooks and probe commands, rings, a carried trust root,\n"
    "signers and expiry (warned when near or past), full and shipped sizes, and the\n"
    "model x variant matrix (with --inventories: which device takes which). The whole\n"
    "archive is read: its structure and length always, every blob's hash unless\n"
    "--fast, so a truncated or damaged copy is exit 3.")


@dataclass(frozen=True)
class Inspection(Reported):
    """What ``inspect_bundle`` read, and the bundle it was read from."""

    def text(self) -> str:
        return inspect_text(self.data)


def add_arguments(n: argparse.ArgumentParser) -> None:
    n.add_argument("bundle", type=Path, metavar="BUNDLE",
                   help="the bundle, or its parts (BUNDLE.part001, BUNDLE.parts.json or their "
                   "directory)")
    n.add_argument("--trust", type=Path, metavar="ROOT.json",
                   help="also verify the signatures, and name the signing roles")
    n.add_argument("--fast", action="store_true",
                   help="skip hashing the blobs (the archive's structure and length are still "
                   "checked)")
    n.add_argument("--inventories", type=Path, nargs="+", default=[], metavar="INVENTORY",
                   help="devices' signed inventories (airlock-agent inventory -o): say which "
                        "variant of each model each of them takes")
    n.add_argument("--device-key", type=Path, action="append", default=[], metavar="PUB",
                   help="inventories must be signed by one of these device keys (repeatable)")
    json_option(n)


def run(a: argparse.Namespace) -> Inspection:
    from bundler.examine.inspection import inspect_bundle
    from bundler.sneakernet.device_inventories import load_inventory
    from keys.keyfile import load_public_key

    device_keys = [load_public_key(p) for p in a.device_key]
    inventories = [load_inventory(p, device_keys) for p in a.inventories]
    trust = None
    if a.trust is not None:
        trust = TrustRoot.given(read_input(a.trust, "trust root"), f"--trust {a.trust}")
    try:
        f, size = open_media(str(a.bundle))
        with f:
            info = inspect_bundle(f, trust=trust, fast=a.fast, size=size,
                                  inventories=inventories)
    except FormatError as e:
        # A key, trust root or spec handed over by mistake: say which, not a tar error.
        if str(e).startswith("not a bundle"):
            raise FormatError(misplaced(str(a.bundle)) or str(e)) from None
        raise
    info["bundle"] = str(a.bundle)
    if info["expires_warning"]:
        say("airlock", "warning", f"{a.bundle}: {info['expires_warning']}")
    return Inspection(info)


def inspect_text(d: dict[str, Any]) -> str:
    """What a bundle holds and will run, a line (or a few) per part."""
    if d.get("kind") == "flags":
        return _flags_text(d)
    lines = [
        f"{d['name']} {d['version']}  sequence {d['sequence']}  expires {d['expires']}"
        + (f"  ({d['expires_warning']})" if d["expires_warning"] else ""),
        f"size      {human_size(d['full_size'])} in {d['blobs']} blobs ({d['files']} files)"
        + (f"; shipped {human_size(d['shipped_size'])}"
           if d["shipped_size"] != d["full_size"] else "")
        + (f"; archive {human_size(d['archive_bytes'])}" if d["archive_bytes"] else ""),
        f"checked   {d['checked']}",
        "signers   " + ", ".join(k[:16] for k in d["signers"])
        + (f"  (verified: role '{role_label(d['verified_role'])}'"
           + (f", may deploy only to rings {', '.join(d['signer_rings'])}"
              if d["signer_rings"] is not None else "") + ")"
           if d["verified_role"] else "  (not verified: give --trust ROOT.json)"),
        "rings     " + (", ".join(d["rings"]) if d["rings"] else "every ring"),
    ]
    rot = d["root_rotation"]
    if rot:
        lines.append(f"trust     carries a new trust root: version {rot['version']}, "
                     f"expires {rot['expires']}, {rot['signatures']} signature(s)")
    for m in d["models"]:
        budgets = ", ".join(x for x in (
            f"p95 <= {m['max_p95_ms']:g} ms" if m["max_p95_ms"] is not None else "",
            f"memory <= {m['max_memory_mb']:g} MiB" if m["max_memory_mb"] is not None else "",
            f"timeout {m['timeout_s']:g} s", f"{m['runs']} runs",
            f"rtol {m['rtol']:g} atol {m['atol']:g}" if m["golden"] else "no golden data",
            "providers " + ", ".join(m["providers"])) if x)
        lines.append(
            f"model     {m['name']}"
            + (f" (variant {m['variant']})" if m.get("variant") else "")
            + f": {m['file']} {human_size(m['size'])}"
            + (f" + {len(m['data'])} external data file(s)" if m["data"] else "")
            + (" + golden data" if m["golden"] else ""))
        lines.append(f"          check: {budgets}")
        lines.extend(quality_lines(m))
    lines += variant_lines(d.get("variants") or [])
    for i in d["images"]:
        lines.append(f"image     {i['ref']} ({i['platform']}) {human_size(i['size'])}")
    for k in d["agent_kits"]:
        lines.append(f"agent kit {k['version']} for {k['platform']} Python {k['python']}: "
                     f"{k['file']} {human_size(k['size'])}")
    if d["flags"]:
        lines.append("flags     " + ", ".join(f"{k}={v}" for k, v in d["flags"].items()))
    hooks = d["hooks"]
    lines.append("runs      post-switch hook: " + (hooks["post_switch"] or "none"))
    lines.append("          probe: " + (f"{hooks['probe']} (within {hooks['probe_window_s']:g} s)"
                                        if hooks["probe"] else "none"))
    if d["delta"]:
        delta = d["delta"]
        lines.append(f"delta     ships {human_size(d['shipped_size'])} of "
                     f"{human_size(d['full_size'])}; applies on sequence "
                     f"{delta['base_sequence']}; expects "
                     f"{delta['expects']} blob(s) ({human_size(delta['expected_bytes'])}) "
                     "already on the device; built against:")
        lines += [f"          inventory of {i['device_id']} ({i['time']}, key "
                  f"{i['keyid'][:16]}…, sha256 {i['sha256'][:16]}…)"
                  for i in delta["inventories"]]
    return "\n".join(lines)


def variant_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The model × variant matrix: per variant its selector, size, whether carried, takers."""
    import json

    lines = []
    for row in rows:
        lines.append(f"variants  {row['model']} (the first whose 'when' matches wins):")
        for v in row["variants"]:
            takers = v.get("devices")
            lines.append(
                f"          {v['name']:<10} when {json.dumps(v['when'], separators=(',', ':'))}"
                f"  {human_size(v['size'])}"
                + ("  (left out)" if v["left_out"] else "" if v["carried"]
                   else "  (expected on the device)")
                + ("" if takers is None else
                   "  devices: " + (", ".join(takers) if takers else "none")))
        if row.get("unmatched"):
            lines.append(f"          no variant fits {', '.join(row['unmatched'])}: they would "
                         "refuse it")
        if row.get("unknown"):
            lines.append(f"          no facts from {', '.join(row['unknown'])} (agents older "
                         "than variants): cannot say")
    return lines


def quality_lines(m: dict[str, Any]) -> list[str]:
    """What a model's check enforces beyond golden data: evaluation, input contract, runtime."""
    from airlock.quality.contract import InputRule
    from airlock.quality.evaluation import Threshold

    lines = []
    ev = m.get("evaluate")
    if ev:
        samples = f", at most {ev['max_samples']} samples" if ev["max_samples"] else ""
        rules = "; ".join(Threshold(name, **bounds).describe()
                          for name, bounds in ev["metrics"].items())
        lines.append(f"          evaluation ({human_size(ev['data_bytes'] or 0)} set, batch "
                     f"{ev['batch']}{samples}): {rules}")
    for name, rule in (m.get("inputs_contract") or {}).items():
        lines.append(f"          contract {name}: {InputRule(name, **rule).describe()}")
    if len(m.get("providers") or []) > 1 or m.get("session"):
        session = ", ".join(f"{k}={v}" for k, v in (m.get("session") or {}).items())
        lines.append("          runtime: "
                     + ("fallback allowed" if m["provider_fallback"] else "every provider required")
                     + (f"; session {session}" if session else ""))
    return lines


def _flags_text(d: dict[str, Any]) -> str:
    """A flags bundle: the flags it sets, for whom, who signed it."""
    from bundler.examine.flag_bundles import flags_text

    signed = ("signers   " + ", ".join(k[:16] for k in d["signers"])
              + (f"  (role '{role_label(d['verified_role'])}')" if d["verified_role"]
                 else "  (not verified: give --trust ROOT.json)"))
    return "\n".join([f"{d['bundle']}: " + flags_text(d)[0], *flags_text(d)[1:2], signed,
                      "flags", *flags_text(d)[2:]])
