"""The signing commands of ``airlock``: keys held anywhere, signatures one at a time, root ceremony.

    airlock keys import-public hsm-release --uri 'hsm:2?label=airlock' --dir keys
    airlock build airlock.yaml --key envvar:RELEASE_KEY -o vision-1.2.0.airlock   # CI: one of two
    airlock sign vision-1.2.0.airlock --key keys/hsm-release.pub --pin-env HSM_PIN   # a person: two of two
    airlock sign --detached vision-1.2.0.airlock --key keys/bob.key -o bob.sig.json
    airlock sign --merge bob.sig.json carol.sig.json vision-1.2.0.airlock
    airlock keys sign-root root-v2.json --key keys/root-a.key --trust root.json
    airlock keys verify-root root-v2.json --trust root.json

Parsers and handlers live here so ``bundler/cli.py`` only wires them in.
Every signing command shows what it is about to sign (on stderr) and asks
on a terminal; ``--yes`` answers for CI, and without a terminal or
``--yes`` nothing is signed (exit 2). Only this module and ``cli`` print.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key, Signature, Signer
from tuf.api.metadata import Root

from airlock.console import human_size, inert, inert_data, json_option, phase_bars, read_input, say
from airlock.errors import AirlockError, SignatureError, UsageError
from airlock.limits import MAX_DETACHED_SIGNATURE_BYTES
from bundler.build.output import check_output, is_bundle_file, replace_file
from keys.keyfile import passphrase_from_env, write_public_key
from keys.signatures import DetachedSignature, Signable, check_root_signer, root_tallies
from keys.signers import Secrets, import_public, is_key_uri, key_files, open_signer
from keys.trust import RELEASE_ROLE, Tally, TrustRoot, role_label

__all__ = [
    "add_key_args",
    "add_sign_commands",
    "human",
    "is_trust_root",
    "secrets_from",
    "signer_for",
]

Command = Callable[[str, str, str], argparse.ArgumentParser]


# -- what signing commands share ------------------------------------------------------------


def add_key_args(p: argparse.ArgumentParser) -> None:
    """How to unlock keys: a key file's passphrase, a token's PIN, the key-file mode rule."""
    p.add_argument("--passphrase-env", metavar="VAR", help="passphrase of the key files is in $VAR")
    p.add_argument("--pin-env", metavar="VAR",
                   help="PIN of an HSM key (hsm:) is in $VAR (default: asked on a terminal)")
    p.add_argument("--strict", action="store_true",
                   help="refuse a private key file that group or others can access (default: warn)")


def _warn(message: str) -> None:
    say("airlock", "warning", message)


def secrets_from(a: argparse.Namespace) -> Secrets:
    """The secrets a command's keys may ask for, from its flags (or a prompt on a terminal)."""
    var = getattr(a, "pin_env", None)

    def pin() -> str:
        if var is not None:
            value = os.environ.get(var)
            if not value:
                raise UsageError(f"environment variable {var} holds no PIN")
            return value
        if not sys.stdin.isatty():
            raise UsageError("the HSM asks for its PIN: pass --pin-env VAR")
        return getpass.getpass("HSM PIN: ")

    return Secrets(passphrase_from_env(getattr(a, "passphrase_env", None)), pin)


def signer_for(spec: str, secrets: Secrets, a: argparse.Namespace) -> Signer:
    return open_signer(spec, secrets, strict=getattr(a, "strict", False), warn=_warn)


def is_trust_root(path: Path) -> bool:
    """Whether ``path`` holds a trust root, signed or still collecting signatures."""
    from airlock.limits import MAX_METADATA_BYTES

    with path.open("rb") as f:
        data = f.read(MAX_METADATA_BYTES + 1)
    try:
        TrustRoot.from_bytes(data, check_self_signed=False)
    except AirlockError:
        return False
    return True


def _is_detached(path: Path) -> bool:
    with path.open("rb") as f:
        data = f.read(MAX_DETACHED_SIGNATURE_BYTES + 1)
    try:
        DetachedSignature.from_bytes(data)
    except AirlockError:
        return False
    return True


def _confirm(a: argparse.Namespace, shown: str, signers: list[Signer], specs: list[str]) -> None:
    """Show what is about to be signed and by which keys; ask on a terminal unless --yes."""
    who = "\n".join(f"  with key {s.public_key.keyid[:16]}… ({inert(spec)})"
                    for s, spec in zip(signers, specs, strict=True))
    print(f"{shown}\n{who}", file=sys.stderr)
    if a.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("nothing signed: signing asks for confirmation on a terminal; "
                         "pass --yes to sign without asking (CI)")
    print("Sign? [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise UsageError("nothing signed: not confirmed")


def _signed_by(signers: list[str]) -> str:
    return ", ".join(k[:16] + "…" for k in signers) or "nobody yet"


# -- airlock sign ------------------------------------------------------------------------


def _release_text(d: dict[str, Any]) -> str:
    d = inert_data(d)
    lines = [f"About to sign release {d['name']} {d['version']} (sequence {d['sequence']}), "
             f"expires {d['expires']}"]
    for m in d["models"]:
        lines.append(f"  model {m['name']}: {m['file']} {human_size(m['size'])} {m['blob'][:19]}…"
                     + (" + golden data" if m["golden"] else ""))
    for i in d["images"]:
        lines.append(f"  image {i['ref']} ({i['platform']}) {i['manifest'][:19]}…")
    hooks = {k: v for k, v in d["hooks"].items() if v}
    lines.append("  hooks: " + (", ".join(f"{k}: {v}" for k, v in hooks.items()) or "none"))
    lines.append("  rings: " + (", ".join(d["rings"]) or "every ring"))
    if d["flags"]:
        lines.append("  flags: " + ", ".join(f"{k}={v}" for k, v in d["flags"].items()))
    if d["delta_base"] is not None:
        lines.append(f"  delta on sequence {d['delta_base']}")
    lines.append(f"  {d['files']} files, {human_size(d['size'])}")
    lines.append(f"  signed sha256 {d['signed_sha256']}")
    lines.append(f"  signed already by: {_signed_by(d['signers'])}")
    return "\n".join(lines)


def _sign_files(a: argparse.Namespace) -> tuple[Path, list[Path]]:
    """The bundle (or root) and, with --merge, the detached signatures before it."""
    files = [Path(f) for f in a.files]
    if a.merge:
        if len(files) < 2:
            raise UsageError("--merge takes the signature files, then the file they sign")
        if a.key:
            raise UsageError("--merge adds signatures made elsewhere; give no --key")
        return files[-1], files[:-1]
    if len(files) != 1:
        raise UsageError("give one file to sign (with --merge: SIG.json... then the file)")
    if not a.key:
        raise UsageError("give --key (a key file, a .pub from 'keys import-public', or a URI)")
    if a.detached and (a.output is None or len(a.key) != 1):
        raise UsageError("--detached signs with one --key and writes the signature to -o SIG.json")
    return files[0], []


def _merged(doc: Signable, sig_files: list[Path]) -> list[tuple[Signature, Key]]:
    found = []
    for f in sig_files:
        what = f"detached signature {inert(f)}"
        detached = DetachedSignature.from_bytes(read_input(f, "detached signature"), what)
        found.append((doc.check(detached, what), detached.key))
        print(f"merging {inert(f)}: key {detached.key.keyid[:16]}…", file=sys.stderr)
    return found


def _new_signatures(a: argparse.Namespace, doc: Signable, shown: str, sig_files: list[Path],
                    allowed: Callable[[Key], None]) -> list[tuple[Signature, Key]]:
    """Signatures from --merge files, or made now by each --key once confirmed."""
    if sig_files:
        merged = _merged(doc, sig_files)
        for _, key in merged:
            allowed(key)
        return merged
    secrets = secrets_from(a)
    signers = [signer_for(k, secrets, a) for k in a.key]
    for s in signers:
        allowed(s.public_key)
        if s.public_key.keyid in doc.signers:
            _warn(f"key {s.public_key.keyid[:16]}… signed this already; its signature is replaced")
    _confirm(a, shown, signers, list(a.key))
    return [(doc.sign(s), s.public_key) for s in signers]


def _read_trust(path: Path | None) -> TrustRoot | None:
    return TrustRoot.from_bytes(read_input(path, "trust root")) if path is not None else None


def _sign(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.signing.sign import SigningSession

    bundle, sig_files = _sign_files(a)
    trust = _read_trust(a.trust)
    reads = [*key_files(a.key), *sig_files, *([a.trust] if a.trust else [])]

    def allowed(key: Key) -> None:
        if trust is not None and not trust.signs_releases(key.keyid):
            raise UsageError(f"key {key.keyid[:16]}… signs no releases in {a.trust}; its "
                             "signature would count for nothing")

    if a.detached:  # before anyone is asked: a mistyped -o must not cost a key or a bundle
        check_output(a.output, [bundle, *reads], force=a.force, kind="a detached signature",
                     is_ours=_is_detached)
    elif a.output is not None:
        check_output(a.output, [bundle, *reads], force=a.force, kind="an Airlock bundle",
                     is_ours=is_bundle_file)
    write = not a.detached and a.output is None
    with SigningSession.open(bundle, write=write, whole=not a.detached) as session:
        doc = session.doc
        made = _new_signatures(a, doc, _release_text(session.describe()), sig_files, allowed)
        if a.detached:
            replace_file(a.output, doc.detach(*made[0]))
            return {"signature": str(a.output), "detached": True, "keyid": made[0][0].keyid,
                    "signed_sha256": doc.signed_sha256, "subject": doc.subject}
        with phase_bars() as bars:
            result = session.save([sig for sig, _ in made], a.output, force=a.force,
                                  inputs=reads, progress=bars)
        release_json = doc.with_signatures([sig for sig, _ in made])
    out: dict[str, Any] = {
        "bundle": str(result.path), "in_place": result.in_place, "written": result.written,
        "added": [sig.keyid for sig, _ in made], "signers": result.signers,
        "signed_sha256": doc.signed_sha256, "subject": doc.subject,
    }
    if trust is not None:
        out["tally"] = _tally_dict(trust.tally(release_json))
    return out


def _tally_dict(t: Tally) -> dict[str, Any]:
    return {"role": role_label(t.role), "valid": len(t.valid), "threshold": t.threshold,
            "complete": t.complete}


# -- the root ceremony ------------------------------------------------------------------


def _root_text(doc: Signable) -> str:
    root: Root = doc.md.signed
    trust = TrustRoot(doc.md)
    rr, rel = root.roles["root"], root.roles[RELEASE_ROLE]
    lines = [
        f"About to sign trust root version {root.version}, expires "
        f"{root.expires.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"  root keys ({rr.threshold} of {len(rr.keyids)} must sign): {_signed_by(rr.keyids)}",
        f"  release keys ({rel.threshold} of {len(rel.keyids)} must sign): "
        f"{_signed_by(rel.keyids)}",
    ]
    for name, rings in trust.ring_signers().items():
        lines.append(f"  ring signer {inert(name)}: rings {inert(', '.join(rings))}")
    lines.append(f"  signed sha256 {doc.signed_sha256}")
    lines.append(f"  signed already by: {_signed_by(doc.signers)}")
    return "\n".join(lines)


def _root_tallies(data: bytes, old: TrustRoot | None) -> list[dict[str, Any]]:
    return [{"keys": t.role, "valid": len(t.valid), "threshold": t.threshold,
             "complete": t.complete} for t in root_tallies(data, old)]


def _sign_root(a: argparse.Namespace) -> dict[str, Any]:
    path, sig_files = _sign_files(a)
    old = _read_trust(a.trust)
    data = read_input(path, "trust root")
    TrustRoot.from_bytes(data, check_self_signed=False)  # the whole root is well formed
    doc = Signable.from_bytes(data, "root")
    reads = [path, *key_files(a.key), *sig_files, *([a.trust] if a.trust else [])]
    if a.output is not None:
        check_output(a.output, reads, force=a.force,
                     kind="a detached signature" if a.detached else "a trust root",
                     is_ours=_is_detached if a.detached else is_trust_root)
    made = _new_signatures(a, doc, _root_text(doc), sig_files,
                           lambda key: check_root_signer(data, key, old))
    if a.detached:
        replace_file(a.output, doc.detach(*made[0]))
        return {"signature": str(a.output), "detached": True, "keyid": made[0][0].keyid,
                "signed_sha256": doc.signed_sha256, "subject": doc.subject}
    new = doc.with_signatures([sig for sig, _ in made])
    output = a.output or path
    replace_file(output, new)
    return {"root": str(output), "version": doc.md.signed.version,
            "added": [sig.keyid for sig, _ in made], "signed_sha256": doc.signed_sha256,
            "tallies": _root_tallies(new, old)}


def _verify_root(a: argparse.Namespace) -> dict[str, Any]:
    data = read_input(a.root, "trust root")
    old = _read_trust(a.trust)
    candidate = TrustRoot.from_bytes(data, check_self_signed=False)
    tallies = root_tallies(data, old)
    short = [t for t in tallies if not t.complete]
    if short:
        raise SignatureError(f"{a.root} is short of signatures: " + "; ".join(
            f"{t.role} root keys: {len(t.valid)} of {t.threshold}" for t in short))
    # Complete: now exactly the checks a device makes before it takes the root.
    if old is not None:
        old.rotate(data)
    else:
        TrustRoot.from_bytes(data)
    return {"root": str(a.root), "ok": True, "version": candidate.version,
            "expires": candidate.expires.isoformat(), "tallies": _root_tallies(data, old)}


def _import_public(a: argparse.Namespace) -> dict[str, Any]:
    if not is_key_uri(a.uri):
        raise UsageError(f"--uri {a.uri!r} is not a private-key URI (hsm:, envvar:, awskms:, "
                         "gcpkms:, azurekms:)")
    key: Key
    if a.pem is not None:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
        from securesystemslib.signer import SSlibKey

        try:
            key = SSlibKey.from_crypto(load_pem_public_key(read_input(a.pem, "public key")),
                                       scheme=a.scheme)
        except (ValueError, TypeError) as e:
            raise UsageError(f"{a.pem} is not a PEM public key Airlock can use: {e}") from None
    else:
        key = import_public(a.uri, secrets_from(a))
    path = a.dir / f"{a.name}.pub"
    if not a.name or "/" in a.name or a.name.startswith("."):
        raise UsageError(f"key name {a.name!r} must be a plain file name")
    write_public_key(path, key, a.uri, force=a.force)
    return {"public": str(path), "keyid": key.keyid, "scheme": key.scheme, "uri": a.uri}


# -- wiring ---------------------------------------------------------------------------------


def _signing_flags(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("files", nargs="+", metavar="FILE",
                   help=f"the {what}; with --merge: the SIG.json files, then the {what}")
    p.add_argument("--key", action="append", default=[],
                   help="key to sign with: a key file, a .pub recorded by 'keys import-public', "
                   "or a URI (hsm:, envvar:, awskms:, gcpkms:, azurekms:); repeatable")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--detached", action="store_true",
                      help="write the signature to -o SIG.json instead; the file is untouched")
    mode.add_argument("--merge", action="store_true",
                      help="add the detached signatures named before the file")
    p.add_argument("-o", "--output", type=Path,
                   help="write the signed copy (or, --detached, the signature) here")
    p.add_argument("--yes", action="store_true", help="sign without asking (CI)")
    p.add_argument("--force", action="store_true",
                   help="let -o replace an existing file of another kind")
    add_key_args(p)
    json_option(p)


def add_sign_commands(cmd: Command, kcmd: Command) -> dict[str, Callable[[argparse.Namespace],
                                                                        dict[str, Any]]]:
    """Add ``sign`` and ``keys import-public|sign-root|verify-root``; their handlers by name."""
    s = cmd("sign", "add a signature to a built bundle: only its metadata is rewritten, no blob",
            "airlock sign vision-1.2.0.airlock --key keys/alice.key --trust root.json")
    _signing_flags(s, "bundle")
    s.add_argument("--trust", type=Path,
                   help="trust root: refuse keys it does not trust, report N of M signatures")

    i = kcmd("import-public",
             "record the public key of an HSM or KMS key (NAME.pub naming its URI) for keys init",
             "airlock keys import-public hsm-release --uri 'hsm:2?label=airlock' --dir keys")
    i.add_argument("name", metavar="NAME", help="the key's name: NAME.pub is written")
    i.add_argument("--uri", required=True, help="the private key's URI")
    i.add_argument("--dir", type=Path, default=Path("."), metavar="DIR",
                   help="where NAME.pub is written (default: here)")
    i.add_argument("--pem", type=Path,
                   help="take the public key from this PEM file instead of asking the key's holder")
    i.add_argument("--scheme", help="with --pem: the signature scheme (default: by key type)")
    i.add_argument("--force", action="store_true", help="overwrite an existing NAME.pub")
    i.add_argument("--pin-env", metavar="VAR", help="PIN of the HSM, if reading asks for it")
    i.add_argument("--passphrase-env", metavar="VAR", help="passphrase of an envvar: key")
    json_option(i)

    r = kcmd("sign-root", "add one root key's signature to a trust root (a root ceremony step)",
             "airlock keys sign-root root-v2.json --key keys/root-a.key --trust root.json")
    _signing_flags(r, "trust root")
    r.add_argument("--trust", type=Path,
                   help="the root devices hold now: its root keys may sign a rotation")

    v = kcmd("verify-root", "check that a trust root has the signatures devices will require",
             "airlock keys verify-root root-v2.json --trust root.json")
    v.add_argument("root", type=Path, metavar="ROOT.json", help="the trust root to check")
    v.add_argument("--trust", type=Path, help="the root devices hold now (for a rotation)")
    json_option(v)
    return {"sign": _sign, "import-public": _import_public, "sign-root": _sign_root,
            "verify-root": _verify_root}


def human(cmd: str, d: dict[str, Any]) -> str | None:
    """Human output of the commands here (None: not one of them)."""
    if cmd in ("sign", "sign-root") and d.get("detached"):
        return (f"wrote detached signature {d['signature']}: key {d['keyid'][:16]}… over "
                f"signed sha256 {d['signed_sha256'][:16]}…")
    if cmd == "sign":
        how = ("metadata slot rewritten in place" if d["in_place"]
               else f"written as a new file ({human_size(d['written'])})")
        lines = [f"signed {d['bundle']}: {len(d['added'])} signature(s) added, "
                 f"{len(d['signers'])} in all; {how}"]
        if "tally" in d:
            t = d["tally"]
            lines.append(f"{t['valid']} of {t['threshold']} signatures for role '{t['role']}'"
                         + ("" if t["complete"] else "; not installable yet"))
        return "\n".join(lines)
    if cmd in ("sign-root", "verify-root"):
        head = (f"root {d['root']} (version {d['version']}) "
                + ("has every signature devices require" if cmd == "verify-root"
                   else f"signed: {len(d['added'])} signature(s) added"))
        return "\n".join([head, *(f"  {t['keys']} root keys: {t['valid']} of {t['threshold']}"
                                  for t in d["tallies"])])
    if cmd == "import-public":
        return f"recorded {d['public']}: key {d['keyid']} ({d['scheme']}) at {d['uri']}"
    return None

