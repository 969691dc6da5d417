"""``airlock``: the host-side command line (keys, build, sign, verify, inspect).

airlock keys generate release --dir keys
airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json
airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock
airlock sign vision-1.2.0.airlock --key 'hsm:2?label=airlock' --trust root.json
airlock verify vision-1.2.0.airlock --trust root.json
airlock inspect vision-1.2.0.airlock --json

Signing with keys held anywhere and the root ceremony: ``bundler/signing_cli.py``.
"""

from __future__ import annotations

import argparse
import hashlib
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
from bundler.output import check_output
from bundler.signing_cli import (
    add_key_args,
    add_sign_commands,
    human,
    is_trust_root,
    secrets_from,
    signer_for,
    write_file,
)
from keys.keyfile import generate_keypair, load_public_key, passphrase_from_env
from keys.release import Release, parse_metadata
from keys.signatures import Signable
from keys.signers import key_files, open_public_key
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
    handlers = add_sign_commands(cmd, kcmd)
    p.set_defaults(signing=handlers)

    b = cmd(
        "build",
        "build a signed bundle from a release spec",
        "airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock",
    )
    b.add_argument("spec", type=Path)
    b.add_argument(
        "--key",
        action="append",
        default=[],
        help="key to sign with: a key file, a .pub recorded by 'keys import-public', or a URI "
        "(hsm:, envvar:, awskms:, gcpkms:, azurekms:); repeat for a threshold, or add "
        "signatures later with 'airlock sign'",
    )
    b.add_argument("--unsigned", action="store_true",
                   help="sign with no key now; every signature comes from 'airlock sign'")
    add_key_args(b)
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
        action="append",
        default=[],
        help="root key that signs: a key file, a recorded .pub or a URI (repeat for a "
        "threshold); with --unsigned, root public keys (.pub or URI) that sign later",
    )
    if not first:
        p.add_argument(
            "--new-root-key",
            action="append",
            default=[],
            help="key of the new root role (repeat), as --root-key; default: keep the keys",
        )
    p.add_argument(
        "--release-key",
        action="append",
        required=first,
        help="public key allowed to sign releases for every ring: a .pub file or a URI (repeat)",
    )
    p.add_argument("--unsigned", action="store_true",
                   help="sign nothing here: write the root for 'airlock keys sign-root' to collect "
                   "its signatures one by one (a root ceremony)")
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
    add_key_args(p)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument(
        "--force", action="store_true", help="replace an existing -o file that is not a trust root"
    )
    p.add_argument("--json", action="store_true")


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
    reads = key_files([*a.root_key, *getattr(a, "new_root_key", []), *(a.release_key or [])])
    reads += [Path(k) for t in a.ring_signer or [] for k in _ring_parts(t)[2].split(",")]
    if getattr(a, "trust", None) is not None:
        reads.append(a.trust)
    check_output(a.output, reads, force=a.force, kind="a trust root", is_ours=is_trust_root)
    write_file(a.output, data)


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
    if a.keys_cmd in a.signing:
        return a.signing[a.keys_cmd](a)  # type: ignore[no-any-return]
    secrets = secrets_from(a)
    if a.unsigned:
        # A ceremony's first step: keys named, nothing signed; the holders sign one by one.
        root_signers, root_keys = [], [open_public_key(k, secrets) for k in a.root_key]
        new_signers, new_keys = [], [open_public_key(k, secrets)
                                     for k in getattr(a, "new_root_key", [])]
    else:
        if a.keys_cmd == "init" and not a.root_key:
            raise UsageError("give --root-key (repeat for a threshold), or --unsigned to collect "
                             "root signatures one by one")
        root_signers = [signer_for(k, secrets, a) for k in a.root_key]
        new_signers = [signer_for(k, secrets, a) for k in getattr(a, "new_root_key", [])]
        root_keys, new_keys = [], []
    release_keys = [open_public_key(k, secrets) for k in a.release_key or []]
    rings = [_ring_signer(t) for t in a.ring_signer] if a.ring_signer is not None else None
    if a.keys_cmd == "init":
        md = create_root(
            root_signers,
            release_keys,
            root_threshold=a.root_threshold,
            release_threshold=a.release_threshold,
            expires=parse_duration(a.expires),
            ring_signers=rings or (),
            root_keys=root_keys,
        )
    else:
        old = TrustRoot.from_bytes(read_input(a.trust, "trust root"))
        if not a.root_key and not a.unsigned:
            raise UsageError("give --root-key (a key of the current root), or --unsigned to "
                             "collect the signatures one by one with 'airlock keys sign-root'")
        md = rotate_root(
            old,
            root_signers,
            new_signers,
            root_threshold=a.root_threshold,
            release_keys=release_keys or None,
            release_threshold=a.release_threshold,
            ring_signers=rings,
            expires=parse_duration(a.expires),
            new_root_keys=new_keys,
            complete=not a.unsigned,
        )
    _write_root(a, md.to_bytes())
    result = {
        "root": str(a.output),
        "version": md.signed.version,
        "expires": md.signed.expires.isoformat(),
        "signatures": len(md.signatures),
        "signed_sha256": hashlib.sha256(md.signed_bytes).hexdigest(),
    }
    if a.unsigned:
        result["next"] = (f"each root key holder: airlock keys sign-root {a.output} --key KEY"
                          + (f" --trust {a.trust}" if a.keys_cmd == "rotate" else ""))
    return result


def _build(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.build import build_bundle
    from bundler.spec import load_spec

    spec = load_spec(a.spec)
    if not a.key and not a.unsigned:
        raise UsageError("give --key to sign the release (repeat for a threshold), or "
                         "--unsigned to collect every signature later with 'airlock sign'")
    if a.key and a.unsigned:
        raise UsageError("--unsigned signs with no key; drop --key or --unsigned")
    secrets = secrets_from(a)
    signers = [signer_for(k, secrets, a) for k in a.key]
    root_json = None
    if a.root is not None:
        root_json = TrustRoot.from_bytes(read_input(a.root, "trust root")).to_bytes()
    output = a.output or Path(f"{spec.name}-{spec.version}.airlock")
    options = {"auth": a.registry_auth, "insecure": a.insecure, "cache": a.cache}
    reads = [*key_files(a.key), *(p for p in (a.root, a.registry_auth) if p is not None)]
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
        "signed_sha256": Signable.from_bytes(head.release_json, "release").signed_sha256,
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
        text = human(cmd, d)
        if text is not None:
            return text
        if cmd == "build":
            return (
                f"built {d['bundle']}: {d['name']} {d['version']} (sequence {d['sequence']}), "
                f"{human_size(d['size'])}, {d['blobs']} blobs, "
                + (f"signed by {len(d['signers'])} key(s)" if d["signers"] else
                   "unsigned (add signatures with 'airlock sign')")
                + f"\nmetadata sha256 {d['metadata_sha256']}"
                f"\nsigned sha256 {d['signed_sha256']} (what every signer signs)"
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
    handlers = {"keys": _keys, "build": _build, "verify": _verify, "inspect": _inspect,
                 **a.signing}
    result = handlers[a.cmd](a)
    emit(result, a.json, _human(a.keys_cmd if a.cmd == "keys" else a.cmd))
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    run(_main, argv, prog="airlock")
