"""What ``airlock sign`` and ``airlock keys sign-root`` share: the files, the prompt, the merge.

    doc_file, sig_files = sign_files(a)            # FILE, or --merge SIG.json... FILE
    made = new_signatures(a, doc, shown, sig_files, allowed)

Every signing command shows what it is about to sign (on stderr) and asks on
a terminal; ``--yes`` answers for CI, and without a terminal or ``--yes``
nothing is signed (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key, Signature, Signer

from airlock.console import inert, json_option, read_input
from airlock.errors import AirlockError, UsageError
from airlock.limits import MAX_DETACHED_SIGNATURE_BYTES
from bundler.commands.options import add_key_args, secrets_from, signer_for, warn
from keys.signatures import DetachedSignature, Signable
from keys.trust import TrustRoot

__all__ = ["DetachedWritten", "is_detached", "new_signatures", "read_trust", "sign_files",
           "signed_by", "signing_flags"]


@dataclass(frozen=True)
class DetachedWritten:
    """A signature written to its own file (``--detached``); the signed file is untouched."""

    signature: str
    keyid: str
    signed_sha256: str
    subject: dict[str, Any]  # what was signed, for people: name, version, sequence
    detached: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "detached": self.detached, "keyid": self.keyid,
                "signed_sha256": self.signed_sha256, "subject": self.subject}

    def text(self) -> str:
        return (f"wrote detached signature {self.signature}: key {self.keyid[:16]}… over "
                f"signed sha256 {self.signed_sha256[:16]}…")


def signing_flags(p: argparse.ArgumentParser, what: str) -> None:
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


def is_detached(path: Path) -> bool:
    """Whether ``path`` holds a detached signature (what ``--detached`` may replace)."""
    with path.open("rb") as f:
        data = f.read(MAX_DETACHED_SIGNATURE_BYTES + 1)
    try:
        DetachedSignature.from_bytes(data)
    except AirlockError:
        return False
    return True


def signed_by(signers: list[str]) -> str:
    return ", ".join(k[:16] + "…" for k in signers) or "nobody yet"


def read_trust(path: Path | None) -> TrustRoot | None:
    return TrustRoot.from_bytes(read_input(path, "trust root")) if path is not None else None


def sign_files(a: argparse.Namespace) -> tuple[Path, list[Path]]:
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


def _confirm(a: argparse.Namespace, shown: str, signers: list[Signer], specs: list[str]) -> None:
    """Show what is about to be signed and by which keys; ask on a terminal unless --yes."""
    who = "\n".join(f"  with key {s.public_key.keyid[:16]}… ({inert(spec)})"
                    for s, spec in zip(signers, specs, strict=True))
    # -q with --yes (a script) prints nothing; a question always shows what it asks about.
    if a.yes:
        if not getattr(a, "quiet", False):
            print(f"{shown}\n{who}", file=sys.stderr)
        return
    print(f"{shown}\n{who}", file=sys.stderr)
    if not sys.stdin.isatty():
        raise UsageError("nothing signed: signing asks for confirmation on a terminal; "
                         "pass --yes to sign without asking (CI)")
    print("Sign? [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise UsageError("nothing signed: not confirmed")


def _merged(doc: Signable, sig_files: list[Path], quiet: bool = False
            ) -> list[tuple[Signature, Key]]:
    found = []
    for f in sig_files:
        what = f"detached signature {inert(f)}"
        detached = DetachedSignature.from_bytes(read_input(f, "detached signature"), what)
        found.append((doc.check(detached, what), detached.key))
        if not quiet:
            print(f"merging {inert(f)}: key {detached.key.keyid[:16]}…", file=sys.stderr)
    return found


def new_signatures(a: argparse.Namespace, doc: Signable, shown: str, sig_files: list[Path],
                   allowed: Callable[[Key], None]) -> list[tuple[Signature, Key]]:
    """Signatures from --merge files, or made now by each --key once confirmed."""
    if sig_files:
        merged = _merged(doc, sig_files, getattr(a, "quiet", False))
        for _, key in merged:
            allowed(key)
        return merged
    secrets = secrets_from(a)
    signers = [signer_for(k, secrets, a) for k in a.key]
    for s in signers:
        allowed(s.public_key)
        if s.public_key.keyid in doc.signers:
            warn(f"key {s.public_key.keyid[:16]}… signed this already; its signature is replaced")
    _confirm(a, shown, signers, list(a.key))
    return [(doc.sign(s), s.public_key) for s in signers]
