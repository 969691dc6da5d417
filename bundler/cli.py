"""``airlock``: the host-side command line (keys, build, verify, inspect).

airlock keys generate release --dir keys
airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json
airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock
airlock verify vision-1.2.0.airlock --trust root.json
airlock inspect vision-1.2.0.airlock --json
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any, NoReturn

from securesystemslib.signer import CryptoSigner

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
    say,
)
from airlock.errors import AirlockError, UsageError
from airlock.limits import MAX_METADATA_BYTES
from bundler.output import check_output, exclusive_partial
from keys.keyfile import generate_keypair, load_public_key, load_signer, passphrase_from_env
from keys.release import Release, parse_metadata
from keys.trust import (
    RingSigner,
    TrustRoot,
    create_root,
    parse_duration,
    role_label,
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
    b.add_argument("--json", action="store_true")

    v = cmd(
        "verify",
        "check a bundle's signatures, expiry and every blob",
        "airlock verify vision-1.2.0.airlock --trust root.json",
    )
    v.add_argument("bundle", type=Path)
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
    from bundler.spec import load_spec

    spec = load_spec(a.spec)
    passphrase = passphrase_from_env(a.passphrase_env)
    signers = [_signer(p, passphrase, a) for p in a.key]
    root_json = None
    if a.root is not None:
        root_json = TrustRoot.from_bytes(read_input(a.root, "trust root")).to_bytes()
    output = a.output or Path(f"{spec.name}-{spec.version}.airlock")
    options = {"auth": a.registry_auth, "insecure": a.insecure, "cache": a.cache}
    reads = [*a.key, *(p for p in (a.root, a.registry_auth) if p is not None)]
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
        )
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
        "threshold": verified.threshold,
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
        "delta": None
        if r.delta is None
        else {"base_sequence": r.delta.base_sequence, "expects": len(r.delta.expects)},
    }


def _human(cmd: str) -> Any:
    def fmt(d: dict[str, Any]) -> str:
        if cmd == "build":
            return (
                f"built {d['bundle']}: {d['name']} {d['version']} (sequence {d['sequence']}), "
                f"{human_size(d['size'])}, {d['blobs']} blobs, signed by {len(d['signers'])} key(s)\n"
                f"metadata sha256 {d['metadata_sha256']}"
            )
        if cmd == "verify":
            return (
                f"OK {d['bundle']}: {d['name']} {d['version']} (sequence {d['sequence']}) "
                f"signed by role '{role_label(d['role'])}' ({len(d['signers'])} of "
                f"{d['threshold']} signatures), {d['files']} files checked"
            )
        if cmd == "inspect":
            lines = [
                f"{d['name']} {d['version']}  sequence {d['sequence']}  expires {d['expires']}",
                f"size {human_size(d['size'])} in {d['files']} files; signers: "
                + ", ".join(k[:16] for k in d["signers"]),
            ]
            if d["verified_role"]:
                lines.append(f"signatures verified for role '{role_label(d['verified_role'])}'")
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
    handlers = {"keys": _keys, "build": _build, "verify": _verify, "inspect": _inspect}
    result = handlers[a.cmd](a)
    emit(result, a.json, _human(a.cmd))
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    run(_main, argv, prog="airlock")
