"""``airlock sign``: add a signature to a built bundle; only its metadata is rewritten, no blob.

    airlock sign vision-1.2.0.airlock --key keys/hsm-release.pub --pin-env HSM_PIN
    airlock sign --detached vision-1.2.0.airlock --key keys/bob.key -o bob.sig.json
    airlock sign --merge bob.sig.json carol.sig.json vision-1.2.0.airlock

The work is ``bundler.signing.sign.SigningSession``; the prompt and the
merge are ``bundler.commands.signing_steps``'.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key

from airlock.console import human_size, inert_data, phase_bars
from airlock.errors import UsageError
from bundler.build.output import check_output, is_bundle_file, replace_file
from bundler.commands.options import record_args, record_in_ledger
from bundler.commands.signing_steps import (
    DetachedWritten,
    is_detached,
    new_signatures,
    read_trust,
    sign_files,
    signed_by,
    signing_flags,
)
from keys.signers import key_files
from keys.trust import Tally, role_label

__all__ = ["DESCRIPTION", "EXAMPLES", "Signed", "add_arguments", "run"]

EXAMPLES = ("airlock sign vision-1.2.0.airlock --key keys/alice.key --trust root.json",)
DESCRIPTION = None


@dataclass(frozen=True)
class Signed:
    """Signatures added to a bundle, in place or in a new copy; with --trust, the tally."""

    bundle: str
    in_place: bool
    written: int
    added: list[str]
    signers: list[str]
    signed_sha256: str
    subject: dict[str, Any]  # what was signed, for people: name, version, sequence
    tally: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        out = {"bundle": self.bundle, "in_place": self.in_place, "written": self.written,
               "added": self.added, "signers": self.signers,
               "signed_sha256": self.signed_sha256, "subject": self.subject}
        return out if self.tally is None else {**out, "tally": self.tally}

    def text(self) -> str:
        how = ("metadata slot rewritten in place" if self.in_place
               else f"written as a new file ({human_size(self.written)})")
        lines = [f"signed {self.bundle}: {len(self.added)} signature(s) added, "
                 f"{len(self.signers)} in all; {how}"]
        if self.tally is not None:
            t = self.tally
            lines.append(f"{t['valid']} of {t['threshold']} signatures for role '{t['role']}'"
                         + ("" if t["complete"] else "; not installable yet"))
        return "\n".join(lines)


def add_arguments(s: argparse.ArgumentParser) -> None:
    signing_flags(s, "bundle")
    s.add_argument("--trust", type=Path,
                   help="trust root: refuse keys it does not trust, report N of M signatures")
    record_args(s)


def _release_text(d: dict[str, Any]) -> str:
    """What a signer is about to sign, shown before the prompt."""
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
    lines.append(f"  signed already by: {signed_by(d['signers'])}")
    return "\n".join(lines)


def run(a: argparse.Namespace) -> Signed | DetachedWritten:
    from bundler.signing.sign import SigningSession

    bundle, sig_files = sign_files(a)
    trust = read_trust(a.trust)
    reads = [*key_files(a.key), *sig_files, *([a.trust] if a.trust else [])]

    def allowed(key: Key) -> None:
        if trust is not None and not trust.signs_releases(key.keyid):
            raise UsageError(f"key {key.keyid[:16]}… signs no releases in {a.trust}; its "
                             "signature would count for nothing")

    if a.detached:  # before anyone is asked: a mistyped -o must not cost a key or a bundle
        check_output(a.output, [bundle, *reads], force=a.force, kind="a detached signature",
                     is_ours=is_detached)
    elif a.output is not None:
        check_output(a.output, [bundle, *reads], force=a.force, kind="an Airlock bundle",
                     is_ours=is_bundle_file)
    write = not a.detached and a.output is None
    with SigningSession.open(bundle, write=write, whole=not a.detached) as session:
        doc = session.doc
        made = new_signatures(a, doc, _release_text(session.describe()), sig_files, allowed)
        if a.detached:
            replace_file(a.output, doc.detach(*made[0]))
            return DetachedWritten(str(a.output), made[0][0].keyid, doc.signed_sha256,
                                   doc.subject)
        with phase_bars() as bars:
            result = session.save([sig for sig, _ in made], a.output, force=a.force,
                                  inputs=reads, progress=bars)
        release_json = doc.with_signatures([sig for sig, _ in made])
    if a.record:
        from bundler.hq.ledger_records import record_signature

        added = [sig.keyid for sig, _ in made]
        record_in_ledger(a, "sign", lambda ledger: record_signature(ledger, result.path, added))
    return Signed(bundle=str(result.path), in_place=result.in_place, written=result.written,
                  added=[sig.keyid for sig, _ in made], signers=result.signers,
                  signed_sha256=doc.signed_sha256, subject=doc.subject,
                  tally=None if trust is None else _tally_dict(trust.tally(release_json)))


def _tally_dict(t: Tally) -> dict[str, Any]:
    return {"role": role_label(t.role), "valid": len(t.valid), "threshold": t.threshold,
            "complete": t.complete}
