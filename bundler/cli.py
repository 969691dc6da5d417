"""``airlock``: the host-side command line (keys, build, verify, inspect).

airlock keys generate release --dir keys
airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json
airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock
airlock verify vision-1.2.0.airlock --trust root.json
airlock inspect vision-1.2.0.airlock --json
airlock agent-kit --platform linux/arm64 --python 3.11 --key keys/release.key
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any, NoReturn

from airlock.bundle import BundleReader
from airlock.console import (
    Parser,
    add_command,
    emit,
    human_size,
    open_bundle,
    phase_bars,
    progress,
    read_input,
    run,
)
from airlock.errors import UsageError
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
        "make an Ed25519 key pair NAME.key (0600) and NAME.pub",
        "AIRLOCK_PASS=secret airlock keys generate release --dir keys --passphrase-env AIRLOCK_PASS",
    )
    g.add_argument("name")
    g.add_argument("--dir", type=Path, default=Path("."))
    g.add_argument("--passphrase-env", metavar="VAR", help="encrypt with the passphrase in $VAR")
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
    b.add_argument("-o", "--output", type=Path, help="bundle path (default NAME-VERSION.airlock)")
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
    b.add_argument("--agent-kit", type=Path, action="append", default=[], metavar="KIT",
                   help="an agent kit (airlock agent-kit) for devices to update themselves "
                        "with; repeat for more platforms")
    b.add_argument("--json", action="store_true")

    v = cmd(
        "verify",
        "check a bundle's signatures, expiry and every blob",
        "airlock verify vision-1.2.0.airlock --trust root.json",
    )
    v.add_argument("bundle", type=Path)
    v.add_argument("--trust", type=Path, required=True, help="trust root (root.json)")
    v.add_argument("--ring", help="check it may be deployed to this ring")
    v.add_argument("--json", action="store_true")

    n = cmd(
        "inspect",
        "show what a bundle holds (metadata only, fast)",
        "airlock inspect vision-1.2.0.airlock --json",
    )
    n.add_argument("bundle", type=Path)
    n.add_argument("--trust", type=Path, help="also verify the metadata signatures")
    n.add_argument("--json", action="store_true")

    k = cmd(
        "agent-kit",
        "build the signed offline installer of the agent for one device platform",
        "airlock agent-kit --platform linux/arm64 --python 3.11 --key keys/release.key",
    )
    k.add_argument("--platform", default=None, metavar="linux/amd64|linux/arm64",
                   help="the device's platform (default: this machine's)")
    k.add_argument("--python", default=None, metavar="3.11",
                   help="the device's python3 version (default: this Python's)")
    k.add_argument("--glibc", default=None, metavar="2.28",
                   help="the oldest glibc the wheels may need (default 2.28)")
    k.add_argument("--extra", action="append", default=[], metavar="REQUIREMENT",
                   help="another package to carry and install beside the agent (repeatable)")
    k.add_argument("--key", type=Path, action="append", required=True,
                   help="release key to sign kit.json with; repeat to meet a threshold")
    k.add_argument("--passphrase-env", metavar="VAR", help="passphrase of the keys is in $VAR")
    k.add_argument("-o", "--output", type=Path,
                   help="kit path (default airlock-agent-kit-VERSION-PLATFORM-pyX.Y.tar)")
    k.add_argument("--expires", default="365d", help="kit lifetime (default 365d)")
    k.add_argument("--project", type=Path, help="airlock-edge source checkout (default: this one)")
    k.add_argument("--lock", type=Path,
                   help="the lock of exact wheels (default PROJECT/packaging/agent-kit-lock.json)")
    k.add_argument("--update-lock", action="store_true",
                   help="resolve this target again against the index and record it in the lock")
    k.add_argument("--cache", type=Path, help="download cache (default ~/.cache/airlock)")
    k.add_argument("--index-url", metavar="URL", help="package index for pip (a mirror)")
    k.add_argument("--find-links", action="append", default=[], metavar="DIR|URL",
                   help="more places pip may take wheels from (repeatable)")
    k.add_argument("--json", action="store_true")
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
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--json", action="store_true")


def _ring_signer(text: str) -> RingSigner:
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(parts[:3]):
        raise UsageError(
            f"--ring-signer {text!r} must be NAME:RING[,RING]:KEY.pub[,KEY.pub][:THRESHOLD]"
        )
    keys = tuple(load_public_key(Path(k)) for k in parts[2].split(","))
    threshold = int(parts[3]) if len(parts) == 4 and parts[3].isdigit() else 1
    return RingSigner(parts[0], keys, tuple(parts[1].split(",")), threshold)


def _write_root(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _keys(a: argparse.Namespace) -> dict[str, Any]:
    passphrase = passphrase_from_env(a.passphrase_env)
    if a.keys_cmd == "generate":
        priv, pub = generate_keypair(a.name, a.dir, passphrase, force=a.force)
        return {"private": str(priv), "public": str(pub), "keyid": load_public_key(pub).keyid}
    root_signers = [load_signer(p, passphrase) for p in a.root_key]
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
            [load_signer(p, passphrase) for p in a.new_root_key],
            root_threshold=a.root_threshold,
            release_keys=[load_public_key(p) for p in a.release_key] if a.release_key else None,
            release_threshold=a.release_threshold,
            ring_signers=rings,
            expires=parse_duration(a.expires),
        )
    _write_root(a.output, md.to_bytes())
    return {
        "root": str(a.output),
        "version": md.signed.version,
        "expires": md.signed.expires.isoformat(),
        "signatures": len(md.signatures),
    }


def _build(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.build import build_bundle
    from bundler.spec import load_spec

    spec = load_spec(a.spec)
    for kit in a.agent_kit:
        if not kit.is_file():
            raise UsageError(f"--agent-kit {kit}: no such file")
        spec.agent_kits.append(kit)
    passphrase = passphrase_from_env(a.passphrase_env)
    signers = [load_signer(p, passphrase) for p in a.key]
    root_json = None
    if a.root is not None:
        root_json = TrustRoot.from_bytes(read_input(a.root, "trust root")).to_bytes()
    output = a.output or Path(f"{spec.name}-{spec.version}.airlock")
    options = {"auth": a.registry_auth, "insecure": a.insecure, "cache": a.cache}
    with phase_bars() as bars:
        result = build_bundle(
            spec, signers, output, root_json=root_json, registry_options=options, progress=bars
        )
    return result.to_dict()


def _agent_kit(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.agentkit import DEFAULT_GLIBC, KitTarget, build_agent_kit
    from bundler.spec import build_time
    from keys.kitverify import host_platform

    target = KitTarget(a.platform or host_platform(),
                       a.python or f"{sys.version_info.major}.{sys.version_info.minor}",
                       a.glibc or DEFAULT_GLIBC, tuple(a.extra))
    passphrase = passphrase_from_env(a.passphrase_env)
    signers = [load_signer(p, passphrase) for p in a.key]
    index = (["--index-url", a.index_url] if a.index_url else []) + [
        arg for link in a.find_links for arg in ("--find-links", link)]
    with phase_bars() as bars:
        result = build_agent_kit(
            target, signers, a.output, expires=build_time() + parse_duration(a.expires),
            project=a.project, lock=a.lock, update_lock=a.update_lock, cache=a.cache,
            index=index, progress=bars)
    return result.to_dict()


def _verify(a: argparse.Namespace) -> dict[str, Any]:
    trust = TrustRoot.from_bytes(read_input(a.trust, "trust root"))
    f, size = open_bundle(str(a.bundle))
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

    f, _ = open_bundle(str(a.bundle))
    with f:
        head = BundleReader(f).head()
    verified_role = None
    if a.trust is not None:
        trust = TrustRoot.from_bytes(read_input(a.trust, "trust root"))
        _, verified = trust.verify_head(head.release_json, head.root_json)
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
        "delta": None
        if r.delta is None
        else {"base_sequence": r.delta.base_sequence, "expects": len(r.delta.expects)},
        "agent_kits": [
            {"file": k.file_name, "version": k.version, "platform": k.platform,
             "python": k.python, "size": k.size}
            for k in r.agent_kits
        ],
    }


def _human(cmd: str) -> Any:
    def fmt(d: dict[str, Any]) -> str:
        if cmd == "build":
            return (
                f"built {d['bundle']}: {d['name']} {d['version']} (sequence {d['sequence']}), "
                f"{human_size(d['size'])}, {d['blobs']} blobs, signed by {len(d['signers'])} key(s)\n"
                f"metadata sha256 {d['metadata_sha256']}"
            )
        if cmd == "agent-kit":
            return (
                f"built {d['kit']}: agent {d['version']} for {d['platform']} Python "
                f"{d['python']} (glibc {d['glibc']}+), {len(d['wheels'])} wheels, "
                f"{human_size(d['size'])}\nsha256 {d['sha256']}  (read it to the site to check "
                "the copy)" + ("\nlock updated" if d["lock_updated"] else "")
            )
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
            if d["verified_role"]:
                lines.append(f"signatures verified for role '{d['verified_role']}'")
            for m in d["models"]:
                lines.append(
                    f"  model {m['name']}: {m['file']} {human_size(m['size'])}"
                    + (" + golden data" if m["golden"] else "")
                )
            for i in d["images"]:
                lines.append(f"  image {i['ref']} ({i['platform']}) {human_size(i['size'])}")
            if d["flags"]:
                lines.append("  flags: " + ", ".join(f"{k}={v}" for k, v in d["flags"].items()))
            if d["rings"]:
                lines.append("  rings: " + ", ".join(d["rings"]))
            for k in d["agent_kits"]:
                lines.append(f"  agent kit {k['version']} for {k['platform']} Python "
                             f"{k['python']}: {k['file']} {human_size(k['size'])}")
            return "\n".join(lines)
        return "\n".join(f"{k}: {v}" for k, v in d.items())

    return fmt


def _main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    handlers = {"keys": _keys, "build": _build, "verify": _verify, "inspect": _inspect,
                "agent-kit": _agent_kit}
    result = handlers[a.cmd](a)
    emit(result, a.json, _human(a.cmd))
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    run(_main, argv, prog="airlock")
