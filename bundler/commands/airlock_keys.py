"""``airlock keys``: make signing keys and trust roots, and hold a root ceremony.

    airlock keys generate release --dir keys --passphrase-env AIRLOCK_PASS
    airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json
    airlock keys rotate --trust root.json --root-key keys/root.key --new-root-key keys/root2.key -o r2.json
    airlock keys import-public hsm-release --uri 'hsm:2?label=airlock' --dir keys
    airlock keys sign-root root-v2.json --key keys/root-a.key --trust root.json
    airlock keys verify-root root-v2.json --trust root.json

A bare ``airlock keys`` prints this group's help. The trust work is in
``keys.trust`` and ``keys.signatures``; the prompt and merge of ``sign-root``
are ``bundler.commands.signing_steps``'.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key
from tuf.api.metadata import Metadata, Root

from airlock.console import inert, json_option, read_input
from airlock.durations import parse_duration
from airlock.errors import SignatureError, UsageError
from bundler.build.output import check_output, replace_file
from bundler.commands.options import (
    add_key_args,
    is_trust_root,
    secrets_from,
    signer_for,
    subcommands,
)
from bundler.commands.signing_steps import (
    DetachedWritten,
    is_detached,
    new_signatures,
    read_trust,
    sign_files,
    signed_by,
    signing_flags,
)
from keys.keyfile import generate_keypair, load_public_key, passphrase_from_env, write_public_key
from keys.purpose_signers import PurposeSigner, purpose_signers
from keys.signatures import Signable, check_root_signer, root_tallies
from keys.signers import import_public, is_key_uri, key_files, open_public_key
from keys.trust import (
    RELEASE_ROLE,
    RingSigner,
    TrustRoot,
    create_root,
    rotate_root,
)

__all__ = ["DESCRIPTION", "EXAMPLES", "KeyPair", "PublicImported", "RootChecked",
           "RootSigned", "RootWritten", "add_arguments", "run"]

EXAMPLES = ("airlock keys generate release --dir keys --passphrase-env AIRLOCK_PASS",
            "airlock keys init --root-key keys/root.key --release-key keys/release.pub "
            "-o root.json")
DESCRIPTION = None


def _fields_text(d: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in d.items())


@dataclass(frozen=True)
class KeyPair:
    """``keys generate``: the two files written."""

    private: str
    public: str
    keyid: str
    encrypted: bool

    def to_dict(self) -> dict[str, Any]:
        return {"private": self.private, "public": self.public, "keyid": self.keyid,
                "encrypted": self.encrypted}

    def text(self) -> str:
        return _fields_text(self.to_dict())


@dataclass(frozen=True)
class RootWritten:
    """``keys init`` and ``keys rotate``: the trust root written (and, unsigned, who signs next)."""

    root: str
    version: int
    expires: str
    signatures: int
    signed_sha256: str
    next: str | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"root": self.root, "version": self.version,
                               "expires": self.expires, "signatures": self.signatures,
                               "signed_sha256": self.signed_sha256}
        return out if self.next is None else {**out, "next": self.next}

    def text(self) -> str:
        return _fields_text(self.to_dict())


def _tallies_text(head: str, tallies: list[dict[str, Any]]) -> str:
    return "\n".join([head, *(f"  {t['keys']} root keys: {t['valid']} of {t['threshold']}"
                              for t in tallies)])


@dataclass(frozen=True)
class RootSigned:
    """``keys sign-root``: signatures added to a trust root, and each role's tally."""

    root: str
    version: int
    added: list[str]
    signed_sha256: str
    tallies: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "version": self.version, "added": self.added,
                "signed_sha256": self.signed_sha256, "tallies": self.tallies}

    def text(self) -> str:
        return _tallies_text(f"root {self.root} (version {self.version}) signed: "
                             f"{len(self.added)} signature(s) added", self.tallies)


@dataclass(frozen=True)
class RootChecked:
    """``keys verify-root``: a trust root with every signature devices require."""

    root: str
    version: int
    expires: str
    tallies: list[dict[str, Any]]
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "ok": self.ok, "version": self.version,
                "expires": self.expires, "tallies": self.tallies}

    def text(self) -> str:
        return _tallies_text(f"root {self.root} (version {self.version}) has every signature "
                             "devices require", self.tallies)


@dataclass(frozen=True)
class PublicImported:
    """``keys import-public``: NAME.pub written, naming the private key's URI."""

    public: str
    keyid: str
    scheme: str
    uri: str

    def to_dict(self) -> dict[str, Any]:
        return {"public": self.public, "keyid": self.keyid, "scheme": self.scheme,
                "uri": self.uri}

    def text(self) -> str:
        return f"recorded {self.public}: key {self.keyid} ({self.scheme}) at {self.uri}"


# -- the parser -----------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.set_defaults(keys_help=p.format_help)
    add = subcommands(p, "keys_cmd", required=False, metavar="KEYS-COMMAND")
    g = add("generate", "make an Ed25519 key pair NAME.key (mode 0600) and NAME.pub",
            "AIRLOCK_PASS=secret airlock keys generate release --dir keys "
            "--passphrase-env AIRLOCK_PASS",
            "Make an Ed25519 key pair NAME.key (mode 0600) and NAME.pub. Say how the private "
            "key\nis protected: --passphrase-env VAR (encrypted) or --no-passphrase (not).")
    g.add_argument("name", metavar="NAME",
                   help="key name: the files are NAME.key and NAME.pub, e.g. root or release")
    g.add_argument("--dir", type=Path, default=Path("."), metavar="DIR",
                   help="directory to write the key pair in")
    protect = g.add_mutually_exclusive_group()
    protect.add_argument("--passphrase-env", metavar="VAR",
                         help="encrypt with the passphrase in $VAR (must not be empty)")
    protect.add_argument("--no-passphrase", action="store_true",
                         help="write the private key unencrypted (guard the file yourself)")
    g.add_argument("--force", action="store_true", help="overwrite an existing key pair")
    json_option(g)
    _root_args(add("init", "create a trust root (root.json) for devices; never over an "
                   "existing one without --force", "airlock keys init --root-key keys/root.key "
                   "--release-key keys/release.pub -o root.json"), first=True)
    r = add("rotate", "make the next trust root, signed by the old and the new root keys",
            "airlock keys rotate --trust root.json --root-key keys/root.key "
            "--new-root-key keys/root2.key -o root-v2.json")
    r.add_argument("--trust", type=Path, required=True, metavar="ROOT.json",
                   help="the current trust root")
    _root_args(r, first=False)
    _ceremony_args(add)


def _ceremony_args(add: Any) -> None:
    i = add("import-public",
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
    r = add("sign-root", "add one root key's signature to a trust root (a root ceremony step)",
            "airlock keys sign-root root-v2.json --key keys/root-a.key --trust root.json")
    signing_flags(r, "trust root")
    r.add_argument("--trust", type=Path,
                   help="the root devices hold now: its root keys may sign a rotation")
    v = add("verify-root", "check that a trust root has the signatures devices will require",
            "airlock keys verify-root root-v2.json --trust root.json")
    v.add_argument("root", type=Path, metavar="ROOT.json", help="the trust root to check")
    v.add_argument("--trust", type=Path, help="the root devices hold now (for a rotation)")
    json_option(v)


def _root_args(p: argparse.ArgumentParser, first: bool) -> None:
    p.add_argument("--root-key", action="append", default=[], metavar="KEY",
                   help="root key that signs: a key file, a recorded .pub or a URI (repeat for a "
                   "threshold); with --unsigned, root public keys (.pub or URI) that sign later")
    if not first:
        p.add_argument("--new-root-key", action="append", default=[], metavar="KEY",
                       help="key of the new root role (repeat), as --root-key; default: keep "
                       "the keys")
    p.add_argument("--release-key", action="append", required=first, metavar="KEY.pub",
                   help="public key allowed to sign releases for every ring: a .pub file or a "
                   "URI (repeat)")
    p.add_argument("--unsigned", action="store_true",
                   help="sign nothing here: write the root for 'airlock keys sign-root' to collect "
                   "its signatures one by one (a root ceremony)")
    p.add_argument("--root-threshold", type=int, default=None if not first else 1, metavar="N",
                   help="root signatures a rotation needs" + ("" if first else
                                                               " (default: unchanged)"))
    p.add_argument("--release-threshold", type=int, default=None if not first else 1,
                   metavar="N", help="release signatures a bundle needs"
                   + ("" if first else " (default: unchanged)"))
    p.add_argument("--ring-signer", action="append", default=None, metavar="NAME:RINGS:KEYS[:N]",
                   help="a signer limited to rings, e.g. canary:canary:keys/canary.pub or "
                   "eu:eu-1,eu-2:a.pub,b.pub:2 (repeatable)")
    p.add_argument("--time-signer", action="append", default=None, metavar="NAME:KEYS[:N]",
                   help="a signer of time tokens ('airlock time-token'), never of releases, "
                   "e.g. clock:keys/time.pub (repeatable)")
    p.add_argument("--director-signer", action="append", default=None, metavar="NAME:KEYS[:N]",
                   help="a signer of directed visits ('airlock direct'), never of releases, "
                   "e.g. hq:keys/director.pub (repeatable); on rotate, the signers of a "
                   "purpose given replace that purpose's, the others are kept")
    p.add_argument("--expires", default="365d", metavar="DURATION",
                   help="root lifetime, like 365d or 2y")
    add_key_args(p)
    p.add_argument("-o", "--output", type=Path, required=True, metavar="ROOT.json",
                   help="where to write the trust root")
    p.add_argument("--force", action="store_true",
                   help="replace an existing -o file, even a trust root")
    json_option(p)


# -- running --------------------------------------------------------------------------------


def run(a: argparse.Namespace) -> Any:
    if a.keys_cmd is None:  # a bare 'airlock keys' is asking what there is
        print(a.keys_help(), end="")
        return None
    handlers = {"generate": _generate, "init": _make_root, "rotate": _make_root,
                "import-public": _import_public, "sign-root": _sign_root,
                "verify-root": _verify_root}
    return handlers[a.keys_cmd](a)


def _generate(a: argparse.Namespace) -> KeyPair:
    if a.passphrase_env is None and not a.no_passphrase:
        raise UsageError(
            "say how to protect the private key: --passphrase-env VAR (encrypted with the "
            "passphrase in $VAR) or --no-passphrase (unencrypted, guard the file yourself)")
    passphrase = passphrase_from_env(a.passphrase_env)
    priv, pub = generate_keypair(a.name, a.dir, passphrase, force=a.force)
    return KeyPair(str(priv), str(pub), load_public_key(pub).keyid, passphrase is not None)


def _ring_parts(text: str) -> list[str]:
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(parts[:3]):
        raise UsageError(
            f"--ring-signer {text!r} must be NAME:RING[,RING]:KEY.pub[,KEY.pub][:THRESHOLD]")
    return parts


def _ring_signer(text: str) -> RingSigner:
    parts = _ring_parts(text)
    keys = tuple(load_public_key(Path(k)) for k in parts[2].split(","))
    threshold = int(parts[3]) if len(parts) == 4 and parts[3].isdigit() else 1
    return RingSigner(parts[0], keys, tuple(parts[1].split(",")), threshold)


def _time_signer(text: str, purpose: str = "time") -> PurposeSigner:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]) or (len(parts) == 3
                                                         and not parts[2].isdigit()):
        raise UsageError(f"--{purpose}-signer {text!r} must be "
                         "NAME:KEY.pub[,KEY.pub][:THRESHOLD]")
    keys = tuple(load_public_key(Path(k)) for k in parts[1].split(","))
    return PurposeSigner(parts[0], keys, purpose, int(parts[2]) if len(parts) == 3 else 1)


def _write_root(a: argparse.Namespace, data: bytes) -> None:
    # The key files this command read are what a mistyped -o would destroy.
    reads = key_files([*a.root_key, *getattr(a, "new_root_key", []), *(a.release_key or [])])
    reads += [Path(k) for t in a.ring_signer or [] for k in _ring_parts(t)[2].split(",")]
    reads += [Path(k) for t in [*(a.time_signer or []), *(a.director_signer or [])]
              for k in t.split(":")[1].split(",") if ":" in t]
    if getattr(a, "trust", None) is not None:
        reads.append(a.trust)
    check_output(a.output, reads, force=a.force, kind="a trust root", is_ours=is_trust_root)
    if a.keys_cmd == "init" and not a.force and a.output.is_file() and is_trust_root(a.output):
        # Devices may already trust it: a new root in its place would orphan them.
        raise UsageError(f"refusing to replace {a.output}: it is a trust root already; "
                         "'airlock keys rotate' makes its successor (or --force replaces it)")
    replace_file(a.output, data)


def _make_root(a: argparse.Namespace) -> RootWritten:
    """``keys init`` and ``keys rotate``: a new trust root, signed now or (--unsigned) later."""
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
    clocks = None
    if a.time_signer is not None or a.director_signer is not None:
        clocks = ([_time_signer(t) for t in a.time_signer or []]
                  + [_time_signer(t, "director") for t in a.director_signer or []])
    md: Metadata[Root]
    if a.keys_cmd == "init":
        md = create_root(root_signers, release_keys, root_threshold=a.root_threshold,
                         release_threshold=a.release_threshold,
                         expires=parse_duration(a.expires), ring_signers=rings or (),
                         root_keys=root_keys, purpose_signers=clocks or ())
    else:
        old = TrustRoot.given(read_input(a.trust, "trust root"), f"--trust {a.trust}")
        if not a.root_key and not a.unsigned:
            raise UsageError("give --root-key (a key of the current root), or --unsigned to "
                             "collect the signatures one by one with 'airlock keys sign-root'")
        if clocks is not None:  # keep the signers of the purpose not given
            from keys.purpose_signers import named

            given = {s.purpose for s in clocks}
            given |= {p for p, opt in (("time", a.time_signer), ("director", a.director_signer))
                      if opt is not None}
            clocks += [s for s in named(old.md.signed) if s.purpose not in given]
        md = rotate_root(old, root_signers, new_signers, root_threshold=a.root_threshold,
                         release_keys=release_keys or None,
                         release_threshold=a.release_threshold, ring_signers=rings,
                         expires=parse_duration(a.expires), new_root_keys=new_keys,
                         complete=not a.unsigned, purpose_signers=clocks)
    _write_root(a, md.to_bytes())
    return RootWritten(
        root=str(a.output), version=md.signed.version, expires=md.signed.expires.isoformat(),
        signatures=len(md.signatures), signed_sha256=hashlib.sha256(md.signed_bytes).hexdigest(),
        next=(f"each root key holder: airlock keys sign-root {a.output} --key KEY"
              + (f" --trust {a.trust}" if a.keys_cmd == "rotate" else "")) if a.unsigned else None)


# -- the root ceremony ----------------------------------------------------------------------


def _root_text(doc: Signable) -> str:
    root: Root = doc.md.signed
    trust = TrustRoot(doc.md)
    rr, rel = root.roles["root"], root.roles[RELEASE_ROLE]
    lines = [
        f"About to sign trust root version {root.version}, expires "
        f"{root.expires.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"  root keys ({rr.threshold} of {len(rr.keyids)} must sign): {signed_by(rr.keyids)}",
        f"  release keys ({rel.threshold} of {len(rel.keyids)} must sign): "
        f"{signed_by(rel.keyids)}",
    ]
    for name, rings in trust.ring_signers().items():
        lines.append(f"  ring signer {inert(name)}: rings {inert(', '.join(rings))}")
    for name, purpose in purpose_signers(root).items():
        lines.append(f"  {purpose} signer {inert(name)}")
    lines.append(f"  signed sha256 {doc.signed_sha256}")
    lines.append(f"  signed already by: {signed_by(doc.signers)}")
    return "\n".join(lines)


def _root_tallies(data: bytes, old: TrustRoot | None) -> list[dict[str, Any]]:
    return [{"keys": t.role, "valid": len(t.valid), "threshold": t.threshold,
             "complete": t.complete} for t in root_tallies(data, old)]


def _sign_root(a: argparse.Namespace) -> RootSigned | DetachedWritten:
    path, sig_files = sign_files(a)
    old = read_trust(a.trust)
    data = read_input(path, "trust root")
    TrustRoot.from_bytes(data, check_self_signed=False)  # the whole root is well formed
    doc = Signable.from_bytes(data, "root")
    reads = [path, *key_files(a.key), *sig_files, *([a.trust] if a.trust else [])]
    if a.output is not None:
        check_output(a.output, reads, force=a.force,
                     kind="a detached signature" if a.detached else "a trust root",
                     is_ours=is_detached if a.detached else is_trust_root)
    made = new_signatures(a, doc, _root_text(doc), sig_files,
                          lambda key: check_root_signer(data, key, old))
    if a.detached:
        replace_file(a.output, doc.detach(*made[0]))
        return DetachedWritten(str(a.output), made[0][0].keyid, doc.signed_sha256, doc.subject)
    new = doc.with_signatures([sig for sig, _ in made])
    output = a.output or path
    replace_file(output, new)
    return RootSigned(str(output), doc.md.signed.version, [sig.keyid for sig, _ in made],
                      doc.signed_sha256, _root_tallies(new, old))


def _verify_root(a: argparse.Namespace) -> RootChecked:
    data = read_input(a.root, "trust root")
    old = read_trust(a.trust)
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
    return RootChecked(str(a.root), candidate.version, candidate.expires.isoformat(),
                       _root_tallies(data, old))


def _import_public(a: argparse.Namespace) -> PublicImported:
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
    return PublicImported(str(path), key.keyid, key.scheme, a.uri)
