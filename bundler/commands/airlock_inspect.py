"""``airlock inspect``: show what a bundle holds and will run: models, images, hooks, signers, expiry.

    airlock inspect vision-1.2.0.airlock --trust root.json
    airlock inspect vision-1.2.0.airlock --fast --json
    airlock inspect vision-1.2.0.airlock --sbom -o vision-1.2.0.cdx.json
    airlock inspect vision-1.2.0.airlock --provenance

The reading is ``bundler.examine.inspection.inspect_bundle``; this module
prints it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.command import Reported
from airlock.console import human_size, json_option, read_input, say
from airlock.errors import FormatError, UsageError
from airlock.files import write_atomic
from airlock.format.parts import open_media
from keys.identify import misplaced
from keys.trust import TrustRoot, role_label

__all__ = ["DESCRIPTION", "EXAMPLES", "Inspection", "Written", "add_arguments", "inspect_text",
           "run"]

EXAMPLES = ("airlock inspect vision-1.2.0.airlock --trust root.json",
            "airlock inspect vision-1.2.0.airlock --sbom -o vision-1.2.0.cdx.json",
            "airlock inspect vision-1.2.0.airlock --inventories cam-*.inventory.json --json")
DESCRIPTION = (
    "Show what a bundle holds and what it will run on a device: models and their\n"
    "budgets, images, flags, hooks and probe commands, rings, a carried trust root,\n"
    "signers and expiry (warned when near or past), full and shipped sizes, the\n"
    "model x variant matrix (with --inventories: which device takes which), the upstream\n"
    "signatures, attestations and SBOM it carries with their subjects (--sbom prints the\n"
    "CycloneDX SBOM, --provenance the release's provenance statement). The whole\n"
    "archive is read: its structure and length always, every blob's hash unless\n"
    "--fast, so a truncated or damaged copy is exit 3.")


@dataclass(frozen=True)
class Inspection(Reported):
    """What ``inspect_bundle`` read, and the bundle it was read from."""

    def text(self) -> str:
        return inspect_text(self.data)


@dataclass(frozen=True)
class Written:
    """Where ``--sbom -o FILE`` (or ``--provenance -o FILE``) wrote the document."""

    what: str
    path: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "written": self.path, "bytes": self.bytes}

    def text(self) -> str:
        return f"wrote {self.what} to {self.path} ({self.bytes} bytes)"


def add_arguments(n: argparse.ArgumentParser) -> None:
    n.add_argument("bundle", type=Path, metavar="BUNDLE",
                   help="the bundle, or its parts (BUNDLE.part001, BUNDLE.parts.json or their "
                   "directory)")
    n.add_argument("--trust", type=Path, metavar="ROOT.json",
                   help="also verify the signatures, and name the signing roles")
    n.add_argument("--fast", action="store_true",
                   help="skip hashing the blobs (the archive's structure and length are still "
                   "checked)")
    show = n.add_mutually_exclusive_group()
    show.add_argument("--sbom", action="store_true",
                      help="print the CycloneDX 1.6 SBOM the bundle carries (built with "
                      "'policy: {sbom: true}')")
    show.add_argument("--provenance", action="store_true",
                      help="print the bundle's provenance: the DSSE envelope of its in-toto "
                      "SLSA statement")
    n.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="with --sbom or --provenance: write the document to FILE instead")
    n.add_argument("--inventories", type=Path, nargs="+", default=[], metavar="INVENTORY",
                   help="devices' signed inventories (airlock-agent inventory -o): say which "
                        "variant of each model each of them takes")
    n.add_argument("--device-key", type=Path, action="append", default=[], metavar="PUB",
                   help="inventories must be signed by one of these device keys (repeatable)")
    json_option(n)


def run(a: argparse.Namespace) -> Inspection | Written | None:
    from bundler.examine.inspection import inspect_bundle
    from bundler.sneakernet.device_inventories import load_inventory
    from keys.keyfile import load_public_key

    if a.output is not None and not (a.sbom or a.provenance):
        raise UsageError("-o FILE goes with --sbom or --provenance")

    device_keys = [load_public_key(p) for p in a.device_key]
    inventories = [load_inventory(p, device_keys) for p in a.inventories]
    trust = None
    if a.trust is not None:
        trust = TrustRoot.given(read_input(a.trust, "trust root"), f"--trust {a.trust}")
    try:
        f, size = open_media(str(a.bundle))
        with f:
            info = inspect_bundle(f, trust=trust, fast=a.fast, size=size, sbom=a.sbom,
                                  provenance=a.provenance, inventories=inventories)
    except FormatError as e:
        # A key, trust root or spec handed over by mistake: say which, not a tar error.
        if str(e).startswith("not a bundle"):
            raise FormatError(misplaced(str(a.bundle)) or str(e)) from None
        raise
    info["bundle"] = str(a.bundle)
    if info["expires_warning"]:
        say("airlock", "warning", f"{a.bundle}: {info['expires_warning']}")
    if a.sbom or a.provenance:
        return _document(a, info)
    return Inspection(info)


def _document(a: argparse.Namespace, info: dict[str, Any]) -> Written | None:
    """The SBOM or provenance document, printed or written to ``-o FILE``.

    Printed here whole, as JSON with every non-ASCII character escaped (so no
    control sequence reaches the terminal): a result's text would be cut to
    a message's length.
    """
    what, key = ("SBOM", "sbom") if a.sbom else ("provenance", "provenance")
    text = info.get(key)
    if text is None:
        how = ("build it with 'policy: {sbom: true}' in the spec" if a.sbom
               else "build it with 'policy: {provenance: true}' in the spec")
        raise UsageError(f"{a.bundle} carries no {what}; {how}")
    if a.output is None:
        print(json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=True))
        return None
    data = text.encode()
    try:
        write_atomic(a.output, data)
    except OSError as e:
        raise UsageError(f"cannot write {a.output}: {e.strerror}") from None
    return Written(what, str(a.output), len(data))


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
    if d.get("encryption"):
        enc = d["encryption"]
        lines.append(f"encrypted {enc['blobs']} layer(s) to "
                     + ", ".join(f"{r['name']} ({r['kid'][:12]}…)" for r in enc["recipients"]))
    lines.append("runs      post-switch hook: " + (hooks["post_switch"] or "none"))
    lines.append("          probe: " + (f"{hooks['probe']} (within {hooks['probe_window_s']:g} s)"
                                        if hooks["probe"] else "none"))
    lines.extend(supply_chain_lines(d.get("supply_chain")))
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


def supply_chain_lines(sc: dict[str, Any] | None) -> list[str]:
    """The upstream policy, and each carried signature, attestation or SBOM with its subject."""
    if sc is None:
        return []
    lines = ["policy    upstream signatures " + ("required" if sc["require_signatures"]
                                                 else "checked where the spec says verify:")
             + (f"; keys {', '.join(k[7:23] + '…' for k in sc['keys'])}" if sc["keys"] else "")]
    for v in sc["verified"]:
        lines.append(f"verified  {v['ref']} = {v['digest'][:23]}… signed by key "
                     f"{v['key'][7:23]}…")
    for e in sc["evidence"]:
        name = e.get("tag") or e["manifest"][:23] + "…"
        how = (f", verified with key {e['verified_with'][7:23]}…" if e.get("verified_with")
               else "")
        lines.append(f"evidence  {e['kind']} {name} -> {e['subject_name']}{how}")
    for p in sc["problems"] or []:
        lines.append(f"PROBLEM   {p}")
    return lines


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
    shadow = m.get("shadow")
    if shadow:
        ratio = shadow.get("max_latency_ratio")
        lines.append(f"          shadow check: newest {shadow['samples']} device samples, agreement "
                     f">= {shadow['min_agreement']:.1%} ({shadow['compare']})"
                     + (f", latency ratio <= {ratio:g}" if ratio is not None else "")
                     + f"; too few: {shadow['when_too_few']}")
    if m.get("samples_export") is False:
        lines.append("          samples: export forbidden (they stay on the device)")
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
