"""``airlock build``: check a spec's models, then sign them and its images into one bundle.

    airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock
    airlock build airlock.yaml --key keys/release.key --delta-from cam-7.inventory.json -o d.airlock

The work is ``bundler.build.assemble.build_bundle``; this module turns the
options into its arguments and its result into a summary.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from securesystemslib.signer import Key

from airlock.command import Reported
from airlock.console import human_size, json_option, phase_bars, read_input
from airlock.durations import parse_duration
from airlock.errors import UsageError
from airlock.format.parts import parse_size
from bundler.commands.airlock_check import health_lines
from bundler.commands.options import (
    add_key_args,
    ledger_from,
    record_args,
    record_in_ledger,
    registry_options,
    secrets_from,
    signer_for,
    spec_args,
)
from keys.keyfile import load_public_key
from keys.signers import key_files
from keys.trust import TrustRoot

if TYPE_CHECKING:
    from bundler.sneakernet.device_inventories import Inventory

__all__ = ["DESCRIPTION", "EXAMPLES", "BuildSummary", "add_arguments", "parts_lines", "run"]

EXAMPLES = ("airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock",)
DESCRIPTION = (
    "Build a signed bundle from a release spec. Every model first runs the devices'\n"
    "health check on this host (see 'airlock check'); a model that fails to load or\n"
    "misses its golden outputs is refused (exit 4) and nothing is signed or written.")


@dataclass(frozen=True)
class BuildSummary(Reported):
    """What was built (``BuildResult.to_dict()``)."""

    def text(self) -> str:
        d = self.data
        lines = [
            f"built {d['bundle']}: {d['name']} {d['version']} (sequence {d['sequence']}), "
            f"{human_size(d['size'])}, {d['blobs']} blobs, "
            + (f"signed by {len(d['signers'])} key(s)" if d["signers"] else
               "unsigned (add signatures with 'airlock sign')"),
            f"metadata sha256 {d['metadata_sha256']}",
            f"signed sha256 {d['signed_sha256']} (what every signer signs)",
            *health_lines(d["health"]),
        ]
        if d["delta"]:
            lines.append(f"delta against {', '.join(d['delta']['inventories'])}: ships "
                         f"{human_size(d['shipped_size'])} of {human_size(d['full_size'])}; "
                         f"{d['delta']['expects']} blob(s) left out, expected on the device")
        if d.get("omits"):
            lines.append(f"{d['omits']} blob(s) of model variants no device it is for picks "
                         "left out (listed, not carried)")
        if d["parts"]:
            lines.append(f"written as {len(d['parts']['parts'])} part(s) and "
                         f"{d['parts']['manifest']}:")
            lines += parts_lines(d["parts"]["parts"])
        return "\n".join(lines)


def parts_lines(parts: list[dict[str, Any]]) -> list[str]:
    """One line per part of a split bundle: name, size, the start of its sha256."""
    return [f"  {p['name']}  {human_size(p['size'])}  sha256 {p['sha256'][:16]}…" for p in parts]


def add_arguments(b: argparse.ArgumentParser) -> None:
    spec_args(b)
    b.add_argument("--key", action="append", default=[], metavar="KEY",
                   help="key to sign with: a key file, a .pub recorded by 'keys import-public', "
                   "or a URI (hsm:, envvar:, awskms:, gcpkms:, azurekms:); repeat for a "
                   "threshold, or add signatures later with 'airlock sign'")
    b.add_argument("--unsigned", action="store_true",
                   help="sign with no key now; every signature comes from 'airlock sign'")
    add_key_args(b)
    b.add_argument("-o", "--output", type=Path, metavar="BUNDLE",
                   help="bundle path (default: NAME-VERSION.airlock); never one of the build's "
                   "inputs")
    b.add_argument("--force", action="store_true",
                   help="replace an existing -o file that is not a bundle")
    b.add_argument("--root", type=Path, metavar="ROOT.json",
                   help="a rotated trust root to carry to devices")
    b.add_argument("--no-check", action="store_true",
                   help="sign without running the models' health check (the summary says so)")
    b.add_argument("--delta-from", type=Path, action="append", default=[],
                   metavar="INVENTORY|ledger:DEVICE",
                   help="a device's signed inventory (airlock-agent inventory -o), or "
                        "ledger:DEVICE for its newest one in headquarters' ledger; leave out "
                        "every blob present on all the devices given (repeatable)")
    b.add_argument("--for-class", action="append", default=[], metavar="FACTS",
                   help="build for one class of device: a device's facts.json, or pairs like "
                        "arch=arm64,label.npu=hailo; the model variants it does not pick are "
                        "left out (repeatable: several classes)")
    b.add_argument("--device-key", type=Path, action="append", default=[], metavar="PUB",
                   help="inventories must be signed by one of these device keys (repeatable)")
    b.add_argument("--encrypt-to", type=Path, action="append", default=[],
                   metavar="RECIPIENT",
                   help="encrypt every image and model layer (ocicrypt's scheme) to this "
                        "public key (PEM, EC or RSA) or device's signed inventory; repeatable")
    b.add_argument("--max-size", metavar="SIZE",
                   help="write the bundle as parts of at most SIZE (e.g. 4000MiB) and a "
                        "parts.json, never whole")
    b.add_argument("--agent-kit", type=Path, action="append", default=[], metavar="KIT",
                   help="an agent kit (airlock agent-kit) for devices to update themselves "
                        "with; repeat for more platforms")
    record_args(b)
    json_option(b)


def _inventory(a: argparse.Namespace, given: Path, device_keys: list[Key]) -> Inventory:
    """An inventory file, or ``ledger:DEVICE``: that device's newest signed inventory in
    headquarters' ledger, checked against the key enrolled there."""
    from bundler.sneakernet.device_inventories import load_inventory, read_inventory

    if not str(given).startswith("ledger:"):
        return load_inventory(given, device_keys)
    device = str(given)[len("ledger:"):]
    ledger = ledger_from(a)
    entry = ledger.devices().get(device)
    data = ledger.inventory(device)
    if entry is None or data is None:
        raise UsageError(f"--delta-from {given}: the ledger {ledger.root} holds no inventory "
                         f"of {device!r} (enrolled, and a report ingested?)")
    pub = dict(entry["key"])
    key = Key.from_dict(str(pub.pop("keyid")), pub)
    return read_inventory(data, [key], str(given))


def run(a: argparse.Namespace) -> BuildSummary:
    from bundler.build.assemble import build_bundle
    from bundler.build.host_config import apply_to_args
    from bundler.build.spec import load_spec

    apply_to_args(a, a.spec)
    spec = load_spec(a.spec, min_validity=parse_duration(a.min_validity))
    if not a.key and not a.unsigned:
        raise UsageError("give --key to sign the release (repeat for a threshold), or "
                         "--unsigned to collect every signature later with 'airlock sign'")
    if a.key and a.unsigned:
        raise UsageError("--unsigned signs with no key; drop --key or --unsigned")
    for kit in a.agent_kit:
        if not kit.is_file():
            raise UsageError(f"--agent-kit {kit}: no such file")
        spec.agent_kits.append(kit)
    secrets = secrets_from(a)
    signers = [signer_for(k, secrets, a) for k in a.key]
    root_json = None
    if a.root is not None:
        root_json = TrustRoot.given(read_input(a.root, "trust root"), f"--root {a.root}").to_bytes()
    output = a.output or Path(f"{spec.name}-{spec.version}.airlock")
    reads = [*key_files(a.key), *(p for p in (a.root, a.registry_auth) if p is not None),
             *a.delta_from, *a.device_key, *a.encrypt_to]
    max_size = None if a.max_size is None else parse_size(a.max_size)
    device_keys = [load_public_key(p) for p in a.device_key]
    inventories = [_inventory(a, p, device_keys) for p in a.delta_from]
    recipients = []
    if a.encrypt_to:
        from bundler.build.encrypt import recipient_of_file

        recipients = [recipient_of_file(p, read_input(p, "recipient"), device_keys)
                      for p in a.encrypt_to]
    from bundler.examine.variant_matrix import parse_class

    classes = [parse_class(c) for c in a.for_class]
    with phase_bars() as bars:
        result = build_bundle(
            spec, signers, output, root_json=root_json, registry_options=registry_options(a),
            progress=bars, inputs=reads, force=a.force, max_size=max_size,
            delta_from=inventories, for_class=classes, check=not a.no_check,
            enforce_budgets=a.enforce_budgets, encrypt_to=recipients)
    if a.record:
        from bundler.hq.ledger_records import record_build

        supply = result.release.supply_chain
        sboms = supply.of_kind("sbom") if supply is not None else []
        # The ledger names the SBOM by the manifest digest 'airlock inspect --sbom' reads.
        sbom = sboms[0].manifest if sboms else None
        record_in_ledger(a, "build",
                         lambda ledger: record_build(ledger, result.path, a.spec, sbom))
    return BuildSummary(result.to_dict())
