"""``airlock``: the host-side command line (keys, build, verify, inspect).

airlock keys generate release --dir keys
airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json
airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock
airlock verify vision-1.2.0.airlock --trust root.json
airlock inspect vision-1.2.0.airlock --json
airlock report enroll cam-7.pub --device-id cam-7 --site north
airlock report ingest /media/usb/airlock-reports/ --textfile fleet.prom
airlock inventory show cam-7.inventory.json --device-key keys/cam-7.pub
airlock build airlock.yaml --key keys/release.key --delta-from cam-7.inventory.json -o v-delta.airlock
airlock diff cam-7.inventory.json vision-1.3.0.airlock
airlock fleet push vision-1.3.0.airlock cam-7 --user airlock --identity site.key --known-hosts kh
airlock split vision-1.2.0.airlock --max-size 4000MiB
airlock join vision-1.2.0.airlock.part001 -o vision-1.2.0.airlock
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from securesystemslib.signer import CryptoSigner

from airlock.bundle import BundleReader
from airlock.console import (
    Parser,
    add_command,
    emit,
    human_size,
    phase_bars,
    progress,
    read_input,
    run,
    say,
)
from airlock.errors import AirlockError, UsageError
from airlock.limits import MAX_METADATA_BYTES
from airlock.parts import open_media, parse_size
from bundler.fleet_cli import (
    add_fleet_commands,
    hosts_text,
    rollout_text,
    run_hosts,
    run_rollout,
)
from bundler.output import check_output, exclusive_partial
from bundler.report_cli import add_report_command, run_report
from keys.keyfile import generate_keypair, load_public_key, load_signer, passphrase_from_env
from keys.release import Release, parse_metadata
from keys.trust import (
    RingSigner,
    TrustRoot,
    create_root,
    parse_duration,
    rotate_root,
)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    p = Parser(
        prog="airlock",
        description=__doc__,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)

    def cmd(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return add_command(sub, name, help, example, [common])

    keys = cmd("keys", "manage signing keys and the trust root", "airlock keys generate release")
    ksub = keys.add_subparsers(dest="keys_cmd", required=True, parser_class=Parser)

    def kcmd(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return add_command(ksub, name, help, example, [common])

    g = kcmd(
        "generate",
        "make an Ed25519 key pair NAME.key (0600) and NAME.pub; say how to protect it: "
        "--passphrase-env VAR or --no-passphrase",
        "AIRLOCK_PASS=secret airlock keys generate release --dir keys --passphrase-env AIRLOCK_PASS",
    )
    g.add_argument("name")
    g.add_argument("--dir", type=Path, default=Path("."))
    protect = g.add_mutually_exclusive_group()
    protect.add_argument("--passphrase-env", metavar="VAR",
                         help="encrypt with the passphrase in $VAR (must not be empty)")
    protect.add_argument("--no-passphrase", action="store_true",
                         help="write the private key unencrypted (guard the file yourself)")
    g.add_argument("--force", action="store_true", help="overwrite an existing key pair")
    g.add_argument("--json", action="store_true")

    i = kcmd(
        "init",
        "create a trust root (root.json) for devices",
        "airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json",
    )
    _root_args(i, first=True)

    r = kcmd(
        "rotate",
        "make the next trust root, signed by the old and the new root keys",
        "airlock keys rotate --trust root.json --root-key keys/root.key "
        "--new-root-key keys/root2.key -o root-v2.json",
    )
    r.add_argument("--trust", type=Path, required=True, help="the current root.json")
    _root_args(r, first=False)

    b = cmd(
        "build",
        "build a signed bundle from a release spec",
        "airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock",
    )
    b.add_argument("spec", type=Path)
    b.add_argument(
        "--key",
        type=Path,
        action="append",
        required=True,
        help="private key to sign with; repeat to meet a threshold",
    )
    b.add_argument("--passphrase-env", metavar="VAR", help="passphrase of the keys is in $VAR")
    _strict_arg(b)
    b.add_argument(
        "-o",
        "--output",
        type=Path,
        help="bundle path (default NAME-VERSION.airlock); never one of the build's inputs",
    )
    b.add_argument(
        "--force", action="store_true", help="replace an existing -o file that is not a bundle"
    )
    b.add_argument("--root", type=Path, help="a rotated root.json to carry to devices")
    b.add_argument(
        "--registry-auth", type=Path, help="docker config.json with registry credentials"
    )
    b.add_argument(
        "--insecure",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="plain-HTTP registry (repeatable)",
    )
    b.add_argument("--cache", type=Path, help="pull cache directory (default ~/.cache/airlock)")
    b.add_argument("--delta-from", type=Path, action="append", default=[], metavar="INVENTORY",
                   help="a device's signed inventory (airlock-agent inventory -o); leave out "
                        "every blob present on all the devices given (repeatable)")
    b.add_argument("--device-key", type=Path, action="append", default=[], metavar="PUB",
                   help="inventories must be signed by one of these device keys (repeatable)")
    b.add_argument("--max-size", metavar="SIZE",
                   help="write the bundle as parts of at most SIZE (e.g. 4000MiB) and a "
                        "parts.json, never whole")
    b.add_argument("--json", action="store_true")

    v = cmd(
        "verify",
        "check a bundle's signatures, expiry and every blob",
        "airlock verify vision-1.2.0.airlock --trust root.json",
    )
    v.add_argument("bundle", type=Path,
                   help="bundle, or its parts (BUNDLE.part001, BUNDLE.parts.json or their directory)")
    v.add_argument("--trust", type=Path, required=True, help="trust root (root.json)")
    v.add_argument("--ring", help="check it as a device in this ring would (default: for the "
                   "rings the release names)")
    v.add_argument("--json", action="store_true")

    n = cmd(
        "inspect",
        "show what a bundle holds (metadata only, fast)",
        "airlock inspect vision-1.2.0.airlock --json",
    )
    n.add_argument("bundle", type=Path)
    n.add_argument("--trust", type=Path, help="also verify the metadata signatures")
    n.add_argument("--json", action="store_true")

    add_report_command(cmd)
    df = cmd(
        "diff",
        "what changed between two bundles, or between a device inventory and a bundle",
        "airlock diff cam-7.inventory.json vision-1.3.0.airlock --json",
    )
    df.add_argument("old", type=Path, help="bundle (or its parts) or device inventory")
    df.add_argument("new", type=Path, help="bundle (or its parts)")
    df.add_argument("--json", action="store_true")

    inv = cmd("inventory", "read device inventories", "airlock inventory show cam-7.inventory.json")
    isub = inv.add_subparsers(dest="inventory_cmd", required=True, parser_class=Parser)
    ish = add_command(
        isub,
        "show",
        "check a device inventory's signature and show what the device holds",
        "airlock inventory show cam-7.inventory.json --device-key keys/cam-7.pub",
        [common],
    )
    ish.add_argument("file", type=Path)
    ish.add_argument("--device-key", type=Path, action="append", default=[], metavar="PUB",
                     help="it must be signed by this device key (repeatable: one of these)")
    ish.add_argument("--json", action="store_true")

    fg = cmd("flags", "build a signed feature-flags bundle",
             "airlock flags set night_mode=true --name site --sequence 3 --percent 10 "
             "--key keys/release.key -o site-flags-3.airlock")
    fgs = fg.add_subparsers(dest="flags_cmd", required=True, parser_class=Parser)
    fset = add_command(fgs, "set", "sign NAME=VALUE flags into a flags bundle",
                       "airlock flags set night_mode=true threshold=0.4 --name site "
                       "--sequence 3 --percent 10 --expires 30d --key keys/release.key "
                       "-o site-flags-3.airlock", [common])
    fset.add_argument("assignments", nargs="+", metavar="NAME=VALUE",
                      help="a flag and its value (JSON when it parses, else a string)")
    fset.add_argument("--name", default="site", help="the flags set's name: its own "
                      "anti-rollback sequence on each device (default site)")
    fset.add_argument("--sequence", type=int, required=True,
                      help="higher than the last flags set of this name")
    fset.add_argument("--percent", type=float, default=100.0,
                      help="share of devices that take these values (stable per device)")
    fset.add_argument("--ring", action="append", default=[], help="only devices of RING "
                      "(repeatable; a ring signer must name its rings)")
    fset.add_argument("--expires", default="30d", help="lifetime (default 30d); after it "
                      "devices fall back to the release's values")
    fset.add_argument("--key", type=Path, action="append", required=True)
    fset.add_argument("--passphrase-env", metavar="VAR")
    _strict_arg(fset)
    fset.add_argument("-o", "--output", type=Path, required=True)
    fset.add_argument("--json", action="store_true")

    fl = cmd("fleet", "reach site devices over SSH",
             "airlock fleet push vision-1.3.0.airlock cam-7 --user airlock --identity site.key "
             "--known-hosts site/known_hosts")
    fsub = fl.add_subparsers(dest="fleet_cmd", required=True, parser_class=Parser)
    fp = add_command(
        fsub,
        "push",
        "copy a bundle (or its parts) to devices over SFTP; a broken copy resumes, checked",
        "airlock fleet push vision-1.3.0.airlock cam-7 10.0.4.8:2222 --user airlock "
        "--identity site.key --known-hosts site/known_hosts --dest /var/lib/airlock/incoming",
        [common],
    )
    fp.add_argument("bundle", type=Path, help="bundle, or its parts (BUNDLE.part001, "
                    "BUNDLE.parts.json or their directory)")
    fp.add_argument("hosts", nargs="+", metavar="HOST[:PORT]")
    fp.add_argument("--user", required=True)
    fp.add_argument("--identity", type=Path, required=True, help="SSH private key")
    fp.add_argument("--known-hosts", type=Path, required=True,
                    help="OpenSSH known_hosts file the device keys are checked against")
    fp.add_argument("--accept-new-hosts", action="store_true",
                    help="record the key of a host not yet in known_hosts (a changed key is "
                         "always refused)")
    fp.add_argument("--dest", default=".", help="directory on the devices (default: the "
                    "login's home)")
    fp.add_argument("--json", action="store_true")
    add_fleet_commands(fsub, common, add_command)

    sp = cmd(
        "split",
        "cut a bundle into parts for FAT32 media (BUNDLE.part001… and BUNDLE.parts.json)",
        "airlock split vision-1.2.0.airlock --max-size 4000MiB",
    )
    sp.add_argument("bundle", type=Path)
    sp.add_argument("--max-size", default=None, metavar="SIZE",
                    help="largest part: bytes or K/M/G (1000s) or KiB/MiB/GiB (1024s); "
                         "default 4000MiB")
    sp.add_argument("--json", action="store_true")

    j = cmd(
        "join",
        "reassemble a split bundle into one file, checking every part",
        "airlock join vision-1.2.0.airlock.part001 -o vision-1.2.0.airlock",
    )
    j.add_argument("part", type=Path, help="BUNDLE.part001, BUNDLE.parts.json or their directory")
    j.add_argument("-o", "--output", type=Path, required=True)
    j.add_argument("--json", action="store_true")
    return p


def _root_args(p: argparse.ArgumentParser, first: bool) -> None:
    p.add_argument(
        "--root-key",
        type=Path,
        action="append",
        required=True,
        help="private root key that signs (repeat for a threshold)",
    )
    if not first:
        p.add_argument(
            "--new-root-key",
            type=Path,
            action="append",
            default=[],
            help="private key of the new root role (repeat); default: keep the keys",
        )
    p.add_argument(
        "--release-key",
        type=Path,
        action="append",
        required=first,
        help="public key allowed to sign releases for every ring (repeat)",
    )
    p.add_argument("--root-threshold", type=int, default=None if not first else 1)
    p.add_argument("--release-threshold", type=int, default=None if not first else 1)
    p.add_argument(
        "--ring-signer",
        action="append",
        default=None,
        metavar="NAME:RINGS:KEYS[:N]",
        help="a signer limited to rings, e.g. canary:canary:keys/canary.pub or "
        "eu:eu-1,eu-2:a.pub,b.pub:2",
    )
    p.add_argument("--expires", default="365d", help="root lifetime (default 365d)")
    p.add_argument("--passphrase-env", metavar="VAR", help="passphrase of the root keys is in $VAR")
    _strict_arg(p)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument(
        "--force", action="store_true", help="replace an existing -o file that is not a trust root"
    )
    p.add_argument("--json", action="store_true")


def _strict_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse a private key file that group or others can access (default: warn)",
    )


def _warn(message: str) -> None:
    say("airlock", "warning", message)


def _signer(path: Path, passphrase: bytes | None, a: argparse.Namespace) -> CryptoSigner:
    return load_signer(path, passphrase, strict=a.strict, warn=_warn)


def _is_trust_root(path: Path) -> bool:
    with path.open("rb") as f:
        data = f.read(MAX_METADATA_BYTES + 1)
    try:
        TrustRoot.from_bytes(data)
    except AirlockError:
        return False
    return True


def _ring_parts(text: str) -> list[str]:
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(parts[:3]):
        raise UsageError(
            f"--ring-signer {text!r} must be NAME:RING[,RING]:KEY.pub[,KEY.pub][:THRESHOLD]"
        )
    return parts


def _ring_signer(text: str) -> RingSigner:
    parts = _ring_parts(text)
    keys = tuple(load_public_key(Path(k)) for k in parts[2].split(","))
    threshold = int(parts[3]) if len(parts) == 4 and parts[3].isdigit() else 1
    return RingSigner(parts[0], keys, tuple(parts[1].split(",")), threshold)


def _write_root(a: argparse.Namespace, data: bytes) -> None:
    # The key files this command read are what a mistyped -o would destroy.
    reads = [*a.root_key, *getattr(a, "new_root_key", []), *(a.release_key or [])]
    reads += [Path(k) for t in a.ring_signer or [] for k in _ring_parts(t)[2].split(",")]
    check_output(a.output, reads, force=a.force, kind="a trust root", is_ours=_is_trust_root)
    with exclusive_partial(a.output) as (partial, out):
        out.write(data)
        os.replace(partial, a.output)


def _keys(a: argparse.Namespace) -> dict[str, Any]:
    if a.keys_cmd == "generate":
        if a.passphrase_env is None and not a.no_passphrase:
            raise UsageError(
                "say how to protect the private key: --passphrase-env VAR (encrypted with the "
                "passphrase in $VAR) or --no-passphrase (unencrypted, guard the file yourself)"
            )
        passphrase = passphrase_from_env(a.passphrase_env)
        priv, pub = generate_keypair(a.name, a.dir, passphrase, force=a.force)
        return {
            "private": str(priv),
            "public": str(pub),
            "keyid": load_public_key(pub).keyid,
            "encrypted": passphrase is not None,
        }
    passphrase = passphrase_from_env(a.passphrase_env)
    root_signers = [_signer(p, passphrase, a) for p in a.root_key]
    rings = [_ring_signer(t) for t in a.ring_signer] if a.ring_signer is not None else None
    if a.keys_cmd == "init":
        md = create_root(
            root_signers,
            [load_public_key(p) for p in a.release_key],
            root_threshold=a.root_threshold,
            release_threshold=a.release_threshold,
            expires=parse_duration(a.expires),
            ring_signers=rings or (),
        )
    else:
        old = TrustRoot.from_bytes(read_input(a.trust, "trust root"))
        md = rotate_root(
            old,
            root_signers,
            [_signer(p, passphrase, a) for p in a.new_root_key],
            root_threshold=a.root_threshold,
            release_keys=[load_public_key(p) for p in a.release_key] if a.release_key else None,
            release_threshold=a.release_threshold,
            ring_signers=rings,
            expires=parse_duration(a.expires),
        )
    _write_root(a, md.to_bytes())
    return {
        "root": str(a.output),
        "version": md.signed.version,
        "expires": md.signed.expires.isoformat(),
        "signatures": len(md.signatures),
    }


def _build(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.build import build_bundle
    from bundler.inventory import load_inventory
    from bundler.spec import load_spec

    spec = load_spec(a.spec)
    passphrase = passphrase_from_env(a.passphrase_env)
    signers = [_signer(p, passphrase, a) for p in a.key]
    root_json = None
    if a.root is not None:
        root_json = TrustRoot.from_bytes(read_input(a.root, "trust root")).to_bytes()
    output = a.output or Path(f"{spec.name}-{spec.version}.airlock")
    options = {"auth": a.registry_auth, "insecure": a.insecure, "cache": a.cache}
    reads = [*a.key, *(p for p in (a.root, a.registry_auth) if p is not None),
             *a.delta_from, *a.device_key]
    max_size = None if a.max_size is None else parse_size(a.max_size)
    device_keys = [load_public_key(p) for p in a.device_key]
    inventories = [load_inventory(p, device_keys) for p in a.delta_from]
    with phase_bars() as bars:
        result = build_bundle(
            spec,
            signers,
            output,
            root_json=root_json,
            registry_options=options,
            progress=bars,
            inputs=reads,
            force=a.force,
            max_size=max_size,
            delta_from=inventories,
        )
    return result.to_dict()


def _verify(a: argparse.Namespace) -> dict[str, Any]:
    trust = TrustRoot.from_bytes(read_input(a.trust, "trust root"))
    f, size = open_media(str(a.bundle))
    from bundler.verify import verify_bundle

    with f, progress(size, "verifying") as tick:
        verified = verify_bundle(f, trust, ring=a.ring, progress=tick)
    r = verified.release
    return {
        "bundle": str(a.bundle),
        "ok": True,
        "name": r.name,
        "version": r.version,
        "sequence": r.sequence,
        "role": verified.role,
        "signers": list(verified.signers),
        "rings": list(verified.rings) if verified.rings is not None else None,
        "files": len(r.files),
    }


def _inspect(a: argparse.Namespace) -> dict[str, Any]:
    from tuf.api.metadata import Targets

    f, _ = open_media(str(a.bundle))
    with f:
        head = BundleReader(f).head()
    verified_role = None
    if a.trust is not None:
        trust = TrustRoot.from_bytes(read_input(a.trust, "trust root"))
        _, verified = trust.verify_head(head.release_json, head.root_json, any_ring=True)
        verified_role = verified.role
    md = parse_metadata(head.release_json, Targets, "release metadata")
    r = Release.from_metadata(md)
    size = sum(i.length for i in r.files.values())
    return {
        "bundle": str(a.bundle),
        "name": r.name,
        "version": r.version,
        "sequence": r.sequence,
        "expires": r.expires.isoformat(),
        "signers": sorted(md.signatures),
        "verified_role": verified_role,
        "carries_root": head.root_json is not None,
        "metadata_sha256": hashlib.sha256(head.release_json).hexdigest(),
        "models": [
            {
                "name": m.name,
                "file": m.file_name,
                "size": m.size,
                "blob": m.blob,
                "golden": m.health.inputs is not None,
                "data": [name for name, _ in m.data],
                "max_p95_ms": m.health.max_p95_ms,
                "max_memory_mb": m.health.max_memory_mb,
            }
            for m in r.models
        ],
        "images": [
            {
                "ref": i.ref,
                "platform": i.platform,
                "manifest": i.manifest,
                "size": sum(
                    r.files[f"blobs/sha256/{d[7:]}"].length
                    for d in i.blobs
                    if f"blobs/sha256/{d[7:]}" in r.files
                ),
            }
            for i in r.images
        ],
        "flags": r.flags,
        "rings": r.rings,
        "files": len(r.files),
        "size": size,
        "full_size": size,
        "shipped_size": sum(i.length for i in r.shipped.values()),
        "delta": None
        if r.delta is None
        else {
            "base_sequence": r.delta.base_sequence,
            "expects": len(r.delta.expects),
            "expected_bytes": size - sum(i.length for i in r.shipped.values()),
            "inventories": [
                {"device_id": i.device_id, "keyid": i.keyid, "sha256": i.sha256, "time": i.time}
                for i in r.delta.inventories
            ],
        },
    }


def _inventory(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.inventory import load_inventory

    inv = load_inventory(a.file, [load_public_key(p) for p in a.device_key])
    return {
        "file": str(a.file),
        "sha256": inv.sha256,
        "keyid": inv.keyid,
        "verified_with": [str(p) for p in a.device_key] if inv.pinned else "embedded key",
        "inventory": inv.body,
    }


def _diff(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.diff import diff, load_side

    return diff(load_side(a.old), load_side(a.new))


def _flags(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.flagset import build_flags, parse_assignments

    passphrase = passphrase_from_env(a.passphrase_env)
    signers = [_signer(p, passphrase, a) for p in a.key]
    check_output(a.output, a.key, force=False, kind="a flags bundle",
                 is_ours=lambda p: p.suffix == ".airlock")
    return build_flags(parse_assignments(a.assignments), name=a.name, sequence=a.sequence,
                       expires=parse_duration(a.expires), percent=a.percent, rings=a.ring,
                       signers=signers, output=a.output)


def _fleet(a: argparse.Namespace) -> dict[str, Any]:
    if a.fleet_cmd == "hosts":
        return run_hosts(a)
    if a.fleet_cmd == "rollout":
        return run_rollout(a)
    from bundler.push import files_of, push_all
    from bundler.ssh import Login, Target

    targets = [Target.parse(h) for h in a.hosts]
    login = Login(a.user, a.identity, a.known_hosts, accept_new=a.accept_new_hosts)
    total = sum(p.stat().st_size for p in files_of(a.bundle))
    with phase_bars() as bars:
        results = push_all(a.bundle, targets, login, a.dest,
                           progress=lambda host, n: bars(f"push {host}", n, total))
    failed = [r for r in results if not r.ok]
    return {
        "bundle": str(a.bundle),
        "dest": a.dest,
        "hosts": [r.to_dict() for r in results],
        "ok": not failed,
        "exit_code": failed[0].exit_code if failed else 0,
    }


def _split(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.split import DEFAULT_MAX_SIZE, split_bundle

    max_size = parse_size(a.max_size or DEFAULT_MAX_SIZE)
    total = a.bundle.stat().st_size if a.bundle.is_file() else 0
    with progress(total, "splitting") as tick:
        parts = split_bundle(a.bundle, max_size, tick)
    return parts.to_dict()


def _join(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.split import join_parts

    with progress(0, "joining") as tick:
        parts = join_parts(a.part, a.output, tick)
    return {**parts.to_dict(), "output": str(a.output)}


def _parts_lines(d: dict[str, Any]) -> list[str]:
    return [f"  {p['name']}  {human_size(p['size'])}  sha256 {p['sha256'][:16]}…"
            for p in d["parts"]]


def _human(cmd: str) -> Any:
    def fmt(d: dict[str, Any]) -> str:
        if cmd == "build":
            text = (
                f"built {d['bundle']}: {d['name']} {d['version']} (sequence {d['sequence']}), "
                f"{human_size(d['size'])}, {d['blobs']} blobs, signed by {len(d['signers'])} key(s)\n"
                f"metadata sha256 {d['metadata_sha256']}"
            )
            if d["delta"]:
                text += (f"\ndelta against {', '.join(d['delta']['inventories'])}: ships "
                         f"{human_size(d['shipped_size'])} of {human_size(d['full_size'])}; "
                         f"{d['delta']['expects']} blob(s) left out, expected on the device")
            if d["parts"]:
                text += f"\nwritten as {len(d['parts']['parts'])} part(s) and " \
                        f"{d['parts']['manifest']}:\n" + "\n".join(_parts_lines(d["parts"]))
            return text
        if cmd == "diff":
            from bundler.diff import diff_text

            return diff_text(d)
        if cmd == "flags":
            return (f"wrote {d['bundle']}: flags {d['name']} sequence {d['sequence']}, "
                    f"{d['percent']:g}% of devices"
                    + (f" in rings {', '.join(d['rings'])}" if d["rings"] else "")
                    + f", expires {d['expires']}: "
                    + ", ".join(f"{k}={json.dumps(v)}" for k, v in d["flags"].items()))
        if cmd == "fleet" and "hosts" in d and "inventory" in d:
            return hosts_text(d)
        if cmd == "fleet" and "waves" in d:
            return rollout_text(d)
        if cmd == "fleet":
            from bundler.push import push_text

            return push_text(d)
        if cmd == "inventory":
            from bundler.inventory import inventory_text

            return inventory_text(d)
        if cmd in ("split", "join"):
            head = (f"split {d['bundle']} ({human_size(d['size'])}) into {len(d['parts'])} "
                    f"part(s), listed in {d['manifest']}:" if cmd == "split" else
                    f"joined {len(d['parts'])} part(s) into {d['output']} "
                    f"({human_size(d['size'])}), every sha256 checked")
            return "\n".join([head, *(_parts_lines(d) if cmd == "split" else [])])
        if cmd == "verify":
            return (
                f"OK {d['bundle']}: {d['name']} {d['version']} (sequence {d['sequence']}) "
                f"signed by role '{d['role']}', {d['files']} files checked"
            )
        if cmd == "inspect":
            lines = [
                f"{d['name']} {d['version']}  sequence {d['sequence']}  expires {d['expires']}",
                f"size {human_size(d['size'])} in {d['files']} files; signers: "
                + ", ".join(k[:16] for k in d["signers"]),
            ]
            if d["delta"]:
                delta = d["delta"]
                lines.append(
                    f"delta: ships {human_size(d['shipped_size'])} of {human_size(d['full_size'])};"
                    f" {delta['expects']} blob(s) ({human_size(delta['expected_bytes'])}) must "
                    f"already be on the device; built against:"
                )
                lines += [
                    f"  inventory of {i['device_id']} ({i['time']}, key {i['keyid'][:16]}…, "
                    f"sha256 {i['sha256'][:16]}…)"
                    for i in delta["inventories"]
                ]
            if d["verified_role"]:
                lines.append(f"signatures verified for role '{d['verified_role']}'")
            for m in d["models"]:
                lines.append(
                    f"  model {m['name']}: {m['file']} {human_size(m['size'])}"
                    + (f" + {len(m['data'])} external data file(s)" if m["data"] else "")
                    + (" + golden data" if m["golden"] else "")
                )
            for i in d["images"]:
                lines.append(f"  image {i['ref']} ({i['platform']}) {human_size(i['size'])}")
            if d["flags"]:
                lines.append("  flags: " + ", ".join(f"{k}={v}" for k, v in d["flags"].items()))
            if d["rings"]:
                lines.append("  rings: " + ", ".join(d["rings"]))
            return "\n".join(lines)
        return "\n".join(f"{k}: {v}" for k, v in d.items())

    return fmt


def _main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    handlers = {"keys": _keys, "build": _build, "verify": _verify, "inspect": _inspect,
                "report": run_report, "split": _split, "join": _join,
                "inventory": _inventory, "diff": _diff, "fleet": _fleet,
                "flags": _flags}
    result = handlers[a.cmd](a)
    if result is None:
        return 0
    emit(result, a.json, _human(a.cmd))
    if a.cmd == "fleet" and a.fleet_cmd == "rollout":
        for r in result["devices"]:
            if not r["ok"]:
                say("airlock", "error", f"{r['device']}: {r['reason']}")
        if result["halted"]:
            say("airlock", "error", f"rollout halted after wave {result['halted_after_wave']}: "
                "too many failures")
        return int(result["exit_code"])
    if a.cmd == "fleet" and a.fleet_cmd == "push" and not result["ok"]:
        # The table went to stdout; each failed host is one line on stderr.
        for h in result["hosts"]:
            if not h["ok"]:
                print(f"airlock: error: {h['target']}: {h['error']}", file=sys.stderr)
        return int(result["exit_code"])
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    run(_main, argv, prog="airlock")
