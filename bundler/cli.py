"""``airlock``: the host-side command line (keys, check, build, verify, inspect, completion).

    airlock keys generate release --dir keys --passphrase-env AIRLOCK_PASS
    airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json
    airlock check airlock.yaml
    airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock
    airlock sign vision-1.2.0.airlock --key 'hsm:2?label=airlock' --trust root.json
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
    airlock agent-kit --platform linux/arm64 --python 3.11 --key keys/release.key
    airlock completion bash > /etc/bash_completion.d/airlock

The only module on this side that prints. Every command's ``--help`` ends with
an example and the exit codes; ``parser()`` is also what the completion
scripts (shtab) and the man pages in docs/man/ (scripts/manpages.py) are made
from, so they cannot drift from the options. Signing with keys held anywhere
and the root ceremony: ``bundler/signing_cli.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from airlock.console import (
    Parser,
    add_command,
    apply_output_options,
    emit,
    fail_with,
    human_size,
    json_option,
    phase_bars,
    progress,
    read_input,
    run,
    say,
    tool_parser,
)
from airlock.errors import AirlockError, PreconditionError, UsageError
from airlock.format.oci import BLOB_PREFIX
from airlock.format.parts import open_media, parse_size
from bundler.build.output import check_output, is_bundle_file, replace_file
from bundler.fleet_cli import (
    add_fleet_commands,
    hosts_text,
    rollout_text,
    run_hosts,
    run_rollout,
)
from bundler.report_cli import add_report_command, run_report
from bundler.signing_cli import (
    add_key_args,
    add_sign_commands,
    human,
    is_trust_root,
    secrets_from,
    signer_for,
)
from keys.keyfile import generate_keypair, load_public_key, passphrase_from_env
from keys.signers import key_files, open_public_key
from keys.trust import (
    RingSigner,
    TrustRoot,
    create_root,
    parse_duration,
    role_label,
    rotate_root,
)

__all__ = ["main", "parser"]


_DESCRIPTION = """\
airlock: the connected host's side of Airlock. It checks ONNX models with the
devices' own health check, signs them and container images into one offline
bundle (NAME-VERSION.airlock), and verifies and inspects bundles.
airlock-agent on each device installs them.
"""

_TOUR = (
    "airlock keys generate root --dir keys --passphrase-env AIRLOCK_PASS",
    "airlock keys generate release --dir keys --passphrase-env AIRLOCK_PASS",
    "airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json",
    "airlock check airlock.yaml",
    "airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock",
    "airlock verify vision-1.2.0.airlock --trust root.json",
    "airlock inspect vision-1.2.0.airlock",
)



def _registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry-auth", type=Path, metavar="CONFIG.json",
                   help="docker config.json with registry credentials (default: "
                   "~/.docker/config.json)")
    p.add_argument("--insecure", action="append", default=[], metavar="HOST:PORT",
                   help="talk plain HTTP to this registry (repeatable)")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="pull cache directory (default: ~/.cache/airlock)")


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", type=Path, metavar="SPEC",
                   help="the release spec, airlock.yaml (fields in docs/spec.md)")
    p.add_argument("--min-validity", default="1d", metavar="DURATION",
                   help="refuse a spec whose 'expires' is closer than this to the build time, "
                   "like 12h, 1d or 2w: the release must outlive its trip to the site")
    _registry_args(p)
    p.add_argument("--enforce-budgets", action="store_true",
                   help="fail on the models' latency and memory budgets and on execution "
                   "providers this host lacks too (default: report them; this host is not the "
                   "device)")


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The whole command line, and the parsers of the commands that have subcommands."""
    p, common = tool_parser("airlock", _DESCRIPTION, _TOUR)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)

    def cmd(name: str, help: str, example: str | tuple[str, ...],
            description: str | None = None) -> argparse.ArgumentParser:
        return add_command(sub, name, help, example, [common], description)

    keys = cmd("keys", "make signing keys and trust roots (generate, init, rotate)",
               ("airlock keys generate release --dir keys --passphrase-env AIRLOCK_PASS",
                "airlock keys init --root-key keys/root.key --release-key keys/release.pub "
                "-o root.json"))
    ksub = keys.add_subparsers(dest="keys_cmd", metavar="KEYS-COMMAND", parser_class=Parser)

    def kcmd(name: str, help: str, example: str,
             description: str | None = None) -> argparse.ArgumentParser:
        return add_command(ksub, name, help, example, [common], description)

    g = kcmd(
        "generate",
        "make an Ed25519 key pair NAME.key (mode 0600) and NAME.pub",
        "AIRLOCK_PASS=secret airlock keys generate release --dir keys --passphrase-env AIRLOCK_PASS",
        "Make an Ed25519 key pair NAME.key (mode 0600) and NAME.pub. Say how the private key\n"
        "is protected: --passphrase-env VAR (encrypted) or --no-passphrase (not).",
    )
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

    i = kcmd(
        "init",
        "create a trust root (root.json) for devices; never over an existing one without --force",
        "airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json",
    )
    _root_args(i, first=True)

    r = kcmd(
        "rotate",
        "make the next trust root, signed by the old and the new root keys",
        "airlock keys rotate --trust root.json --root-key keys/root.key "
        "--new-root-key keys/root2.key -o root-v2.json",
    )
    r.add_argument("--trust", type=Path, required=True, metavar="ROOT.json",
                   help="the current trust root")
    _root_args(r, first=False)
    handlers = add_sign_commands(cmd, kcmd)
    p.set_defaults(signing=handlers)

    c = cmd(
        "check",
        "run the devices' health check on a spec's models, here; sign and write nothing",
        "airlock check airlock.yaml --enforce-budgets",
        "Run the devices' health check on every model of a spec, on this host: the same\n"
        "isolated child, time and memory limits, golden comparison and evaluation on the\n"
        "labelled set (absolute thresholds; min_delta needs the device's running release)\n"
        "as airlock-agent. Latency and memory budgets and execution providers this host\n"
        "lacks are reported, and enforced with --enforce-budgets. Nothing is signed or\n"
        "written; 'airlock build' runs the same check before it signs.",
    )
    _spec_args(c)
    json_option(c)

    b = cmd(
        "build",
        "check a spec's models, then sign them and its images into one bundle",
        "airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock",
        "Build a signed bundle from a release spec. Every model first runs the devices'\n"
        "health check on this host (see 'airlock check'); a model that fails to load or\n"
        "misses its golden outputs is refused (exit 4) and nothing is signed or written.",
    )
    _spec_args(b)
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
    b.add_argument("--delta-from", type=Path, action="append", default=[], metavar="INVENTORY",
                   help="a device's signed inventory (airlock-agent inventory -o); leave out "
                        "every blob present on all the devices given (repeatable)")
    b.add_argument("--device-key", type=Path, action="append", default=[], metavar="PUB",
                   help="inventories must be signed by one of these device keys (repeatable)")
    b.add_argument("--max-size", metavar="SIZE",
                   help="write the bundle as parts of at most SIZE (e.g. 4000MiB) and a "
                        "parts.json, never whole")
    b.add_argument("--agent-kit", type=Path, action="append", default=[], metavar="KIT",
                   help="an agent kit (airlock agent-kit) for devices to update themselves "
                        "with; repeat for more platforms")
    json_option(b)

    v = cmd(
        "verify",
        "check a bundle's signatures, expiry and every blob, as a device would",
        "airlock verify vision-1.2.0.airlock --trust root.json",
    )
    v.add_argument("bundle", type=Path, metavar="BUNDLE",
                   help="the bundle, or its parts (BUNDLE.part001, BUNDLE.parts.json or their "
                   "directory)")
    v.add_argument("--trust", type=Path, required=True, metavar="ROOT.json",
                   help="the trust root devices have")
    v.add_argument("--ring", metavar="RING",
                   help="check it as a device in this ring would (default: for the rings the "
                   "release names)")
    json_option(v)

    n = cmd(
        "inspect",
        "show what a bundle holds and will run: models, images, hooks, signers, expiry, sizes",
        "airlock inspect vision-1.2.0.airlock --trust root.json",
        "Show what a bundle holds and what it will run on a device: models and their\n"
        "budgets, images, flags, hooks and probe commands, rings, a carried trust root,\n"
        "signers and expiry (warned when near or past), full and shipped sizes. The whole\n"
        "archive is read: its structure and length always, every blob's hash unless\n"
        "--fast, so a truncated or damaged copy is exit 3.",
    )
    n.add_argument("bundle", type=Path, metavar="BUNDLE",
                   help="the bundle, or its parts (BUNDLE.part001, BUNDLE.parts.json or their "
                   "directory)")
    n.add_argument("--trust", type=Path, metavar="ROOT.json",
                   help="also verify the signatures, and name the signing roles")
    n.add_argument("--fast", action="store_true",
                   help="skip hashing the blobs (the archive's structure and length are still "
                   "checked)")
    json_option(n)

    add_report_command(cmd, common)
    df = cmd(
        "diff",
        "what changed between two bundles, or between a device inventory and a bundle",
        "airlock diff cam-7.inventory.json vision-1.3.0.airlock --json",
    )
    df.add_argument("old", type=Path, help="bundle (or its parts) or device inventory")
    df.add_argument("new", type=Path, help="bundle (or its parts)")
    json_option(df)

    inv = cmd("inventory", "read device inventories", "airlock inventory show cam-7.inventory.json")
    isub = inv.add_subparsers(dest="inventory_cmd", required=True, parser_class=Parser)
    ish = add_command(
        isub,
        "show",
        "check a device inventory's signature and show what the device holds",
        "airlock inventory show cam-7.inventory.json --device-key keys/cam-7.pub",
        [common],
    )
    ish.add_argument("file", type=Path, metavar="INVENTORY",
                     help="a device's signed inventory (airlock-agent inventory -o)")
    ish.add_argument("--device-key", type=Path, action="append", default=[], metavar="PUB",
                     help="it must be signed by this device key (repeatable: one of these)")
    json_option(ish)

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
    fset.add_argument("--key", action="append", required=True, metavar="KEY",
                      help="key to sign with: a key file, a recorded .pub or a URI (hsm:, "
                      "envvar:, KMS); repeat for a threshold")
    add_key_args(fset)
    fset.add_argument("-o", "--output", type=Path, required=True, metavar="FLAGS.airlock",
                      help="where the flags bundle is written")
    json_option(fset)

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
    fp.add_argument("hosts", nargs="+", metavar="HOST[:PORT]",
                    help="the devices to copy to (port 22 unless given)")
    fp.add_argument("--user", required=True, help="SSH login name on the devices")
    fp.add_argument("--identity", type=Path, required=True, help="SSH private key")
    fp.add_argument("--known-hosts", type=Path, required=True,
                    help="OpenSSH known_hosts file the device keys are checked against")
    fp.add_argument("--accept-new-hosts", action="store_true",
                    help="record the key of a host not yet in known_hosts (a changed key is "
                         "always refused)")
    fp.add_argument("--dest", default=".", help="directory on the devices (default: the "
                    "login's home)")
    json_option(fp)
    add_fleet_commands(fsub, common, add_command)

    sp = cmd(
        "split",
        "cut a bundle into parts for FAT32 media (BUNDLE.part001… and BUNDLE.parts.json)",
        "airlock split vision-1.2.0.airlock --max-size 4000MiB",
    )
    sp.add_argument("bundle", type=Path, metavar="BUNDLE", help="the bundle file to cut")
    sp.add_argument("--max-size", default=None, metavar="SIZE",
                    help="largest part: bytes or K/M/G (1000s) or KiB/MiB/GiB (1024s); "
                         "default 4000MiB")
    json_option(sp)

    j = cmd(
        "join",
        "reassemble a split bundle into one file, checking every part",
        "airlock join vision-1.2.0.airlock.part001 -o vision-1.2.0.airlock",
    )
    j.add_argument("part", type=Path, help="BUNDLE.part001, BUNDLE.parts.json or their directory")
    j.add_argument("-o", "--output", type=Path, required=True, metavar="BUNDLE",
                   help="where the joined bundle is written")
    json_option(j)

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
    k.add_argument("--key", action="append", required=True, metavar="KEY",
                   help="release key to sign kit.json with: a key file, a recorded .pub or a "
                   "URI (hsm:, envvar:, KMS); repeat to meet a threshold")
    add_key_args(k)
    k.add_argument("-o", "--output", type=Path, metavar="KIT",
                   help="kit path (default airlock-agent-kit-VERSION-PLATFORM-pyX.Y.tar)")
    k.add_argument("--force", action="store_true",
                   help="replace an existing -o file that is not an agent kit")
    k.add_argument("--expires", default="365d", metavar="DURATION",
                   help="kit lifetime (default 365d)")
    k.add_argument("--project", type=Path, metavar="DIR", help="airlock-edge source checkout (default: this one)")
    k.add_argument("--lock", type=Path, metavar="LOCK.json",
                   help="the lock of exact wheels (default PROJECT/packaging/agent-kit-lock.json)")
    k.add_argument("--update-lock", action="store_true",
                   help="resolve this target again against the index and record it in the lock")
    k.add_argument("--cache", type=Path, metavar="DIR", help="download cache (default ~/.cache/airlock)")
    k.add_argument("--index-url", metavar="URL", help="package index for pip (a mirror)")
    k.add_argument("--find-links", action="append", default=[], metavar="DIR|URL",
                   help="more places pip may take wheels from (repeatable)")
    json_option(k)
    comp = cmd("completion", "print a shell completion script for airlock",
               ("airlock completion bash > /etc/bash_completion.d/airlock",
                "airlock completion zsh > ~/.zfunc/_airlock"))
    comp.add_argument("shell", choices=("bash", "zsh", "tcsh"),
                      help="the shell to complete for")
    return p, {"keys": keys}


def _root_args(p: argparse.ArgumentParser, first: bool) -> None:
    p.add_argument(
        "--root-key",
        action="append",
        default=[],
        metavar="KEY",
        help="root key that signs: a key file, a recorded .pub or a URI (repeat for a "
        "threshold); with --unsigned, root public keys (.pub or URI) that sign later",
    )
    if not first:
        p.add_argument(
            "--new-root-key",
            action="append",
            default=[],
            metavar="KEY",
            help="key of the new root role (repeat), as --root-key; default: keep the keys",
        )
    p.add_argument(
        "--release-key",
        action="append",
        required=first,
        metavar="KEY.pub",
        help="public key allowed to sign releases for every ring: a .pub file or a URI (repeat)",
    )
    p.add_argument("--unsigned", action="store_true",
                   help="sign nothing here: write the root for 'airlock keys sign-root' to collect "
                   "its signatures one by one (a root ceremony)")
    p.add_argument("--root-threshold", type=int, default=None if not first else 1, metavar="N",
                   help="root signatures a rotation needs" + ("" if first else
                                                               " (default: unchanged)"))
    p.add_argument("--release-threshold", type=int, default=None if not first else 1,
                   metavar="N", help="release signatures a bundle needs"
                   + ("" if first else " (default: unchanged)"))
    p.add_argument(
        "--ring-signer",
        action="append",
        default=None,
        metavar="NAME:RINGS:KEYS[:N]",
        help="a signer limited to rings, e.g. canary:canary:keys/canary.pub or "
        "eu:eu-1,eu-2:a.pub,b.pub:2 (repeatable)",
    )
    p.add_argument("--expires", default="365d", metavar="DURATION",
                   help="root lifetime, like 365d or 2y")
    add_key_args(p)
    p.add_argument("-o", "--output", type=Path, required=True, metavar="ROOT.json",
                   help="where to write the trust root")
    p.add_argument(
        "--force", action="store_true",
        help="replace an existing -o file, even a trust root"
    )
    json_option(p)


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
    if a.keys_cmd == "init" and not a.force and a.output.is_file() and is_trust_root(a.output):
        # Devices may already trust it: a new root in its place would orphan them.
        raise UsageError(f"refusing to replace {a.output}: it is a trust root already; "
                         "'airlock keys rotate' makes its successor (or --force replaces it)")
    replace_file(a.output, data)


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
        old = TrustRoot.given(read_input(a.trust, "trust root"), f"--trust {a.trust}")
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
    from bundler.build.assemble import build_bundle
    from bundler.build.spec import load_spec
    from bundler.sneakernet.device_inventories import load_inventory

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
    options = {"auth": a.registry_auth, "insecure": a.insecure, "cache": a.cache}
    reads = [*key_files(a.key), *(p for p in (a.root, a.registry_auth) if p is not None),
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
            check=not a.no_check,
            enforce_budgets=a.enforce_budgets,
        )
    return result.to_dict()


def _check(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.build.assemble import assemble, refuse_unhealthy
    from bundler.build.host_check import check_models
    from bundler.build.spec import load_spec

    spec = load_spec(a.spec, min_validity=parse_duration(a.min_validity))
    options = {"auth": a.registry_auth, "insecure": a.insecure, "cache": a.cache}
    with phase_bars() as bars:
        assembled = assemble(spec, registry_options=options, progress=bars)
        report = check_models(assembled.contents, assembled.models,
                              enforce_budgets=a.enforce_budgets, progress=bars)
    result = {"spec": str(a.spec), "name": spec.name, "version": spec.version,
              "enforce_budgets": a.enforce_budgets, **report.to_dict()}
    try:
        refuse_unhealthy(report, "fix the model or its golden data before you build")
    except AirlockError as e:
        fail_with(result, e, _human("check"))
    return result


def _agent_kit(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.build.agentkit import DEFAULT_GLIBC, KitTarget, build_agent_kit
    from bundler.build.spec import build_time
    from keys.kitverify import host_platform

    target = KitTarget(a.platform or host_platform(),
                       a.python or f"{sys.version_info.major}.{sys.version_info.minor}",
                       a.glibc or DEFAULT_GLIBC, tuple(a.extra))
    secrets = secrets_from(a)
    signers = [signer_for(k, secrets, a) for k in a.key]
    index = (["--index-url", a.index_url] if a.index_url else []) + [
        arg for link in a.find_links for arg in ("--find-links", link)]
    with phase_bars() as bars:
        result = build_agent_kit(
            target, signers, a.output, expires=build_time() + parse_duration(a.expires),
            project=a.project, lock=a.lock, update_lock=a.update_lock, cache=a.cache,
            index=index, progress=bars, force=a.force, reads=key_files(a.key))
    return result.to_dict()


def _verify(a: argparse.Namespace) -> dict[str, Any]:
    trust = TrustRoot.given(read_input(a.trust, "trust root"), f"--trust {a.trust}")
    f, size = open_media(str(a.bundle))
    from bundler.examine.verify import verify_bundle

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
        "blobs": sum(1 for p in r.files if p.startswith(BLOB_PREFIX)),
    }


def _inspect(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.examine.inspection import inspect_bundle

    trust = None
    if a.trust is not None:
        trust = TrustRoot.given(read_input(a.trust, "trust root"), f"--trust {a.trust}")
    f, size = open_media(str(a.bundle))
    with f:
        info = inspect_bundle(f, trust=trust, fast=a.fast, size=size)
    info["bundle"] = str(a.bundle)
    if info["expires_warning"]:
        say("airlock", "warning", f"{a.bundle}: {info['expires_warning']}")
    return info


def _inventory(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.sneakernet.device_inventories import load_inventory

    inv = load_inventory(a.file, [load_public_key(p) for p in a.device_key])
    return {
        "file": str(a.file),
        "sha256": inv.sha256,
        "keyid": inv.keyid,
        "verified_with": [str(p) for p in a.device_key] if inv.pinned else "embedded key",
        "inventory": inv.body,
    }


def _diff(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.examine.diff import diff, load_side

    return diff(load_side(a.old), load_side(a.new))


def _flags(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.fleet.flagset import build_flags, parse_assignments

    secrets = secrets_from(a)
    signers = [signer_for(k, secrets, a) for k in a.key]
    check_output(a.output, key_files(a.key), force=False, kind="an Airlock bundle",
                 is_ours=is_bundle_file)
    return build_flags(parse_assignments(a.assignments), name=a.name, sequence=a.sequence,
                       expires=parse_duration(a.expires), percent=a.percent, rings=a.ring,
                       signers=signers, output=a.output)


def _fleet(a: argparse.Namespace) -> dict[str, Any]:
    if a.fleet_cmd == "hosts":
        return run_hosts(a)
    if a.fleet_cmd == "rollout":
        return run_rollout(a)
    from bundler.fleet.push import files_of, push_all
    from bundler.fleet.ssh import Login, Target

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
    from bundler.sneakernet.split import DEFAULT_MAX_SIZE, split_bundle

    max_size = parse_size(a.max_size or DEFAULT_MAX_SIZE)
    total = a.bundle.stat().st_size if a.bundle.is_file() else 0
    with progress(total, "splitting") as tick:
        parts = split_bundle(a.bundle, max_size, tick)
    return parts.to_dict()


def _join(a: argparse.Namespace) -> dict[str, Any]:
    from bundler.sneakernet.split import join_parts

    with progress(0, "joining") as tick:
        parts = join_parts(a.part, a.output, tick)
    return {**parts.to_dict(), "output": str(a.output)}


def _parts_lines(d: dict[str, Any]) -> list[str]:
    return [f"  {p['name']}  {human_size(p['size'])}  sha256 {p['sha256'][:16]}…"
            for p in d["parts"]]


def _human(cmd: str) -> Any:
    def fmt(d: dict[str, Any]) -> str:
        text = human(cmd, d)
        if text is not None:
            return text
        if cmd == "build":
            lines = [
                f"built {d['bundle']}: {d['name']} {d['version']} (sequence {d['sequence']}), "
                f"{human_size(d['size'])}, {d['blobs']} blobs, "
                + (f"signed by {len(d['signers'])} key(s)" if d["signers"] else
                   "unsigned (add signatures with 'airlock sign')"),
                f"metadata sha256 {d['metadata_sha256']}",
                f"signed sha256 {d['signed_sha256']} (what every signer signs)",
                *_health_lines(d["health"]),
            ]
            if d["delta"]:
                lines.append(f"delta against {', '.join(d['delta']['inventories'])}: ships "
                             f"{human_size(d['shipped_size'])} of {human_size(d['full_size'])}; "
                             f"{d['delta']['expects']} blob(s) left out, expected on the device")
            if d["parts"]:
                lines.append(f"written as {len(d['parts']['parts'])} part(s) and "
                             f"{d['parts']['manifest']}:")
                lines += _parts_lines(d["parts"])
            return "\n".join(lines)
        if cmd == "check":
            return "\n".join(_health_lines(d))
        if cmd == "diff":
            from bundler.examine.diff import diff_text

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
            from bundler.fleet.push import push_text

            return push_text(d)
        if cmd == "inventory":
            from bundler.sneakernet.device_inventories import inventory_text

            return inventory_text(d)
        if cmd in ("split", "join"):
            head = (f"split {d['bundle']} ({human_size(d['size'])}) into {len(d['parts'])} "
                    f"part(s), listed in {d['manifest']}:" if cmd == "split" else
                    f"joined {len(d['parts'])} part(s) into {d['output']} "
                    f"({human_size(d['size'])}), every sha256 checked")
            return "\n".join([head, *(_parts_lines(d) if cmd == "split" else [])])
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
                f"signed by role '{role_label(d['role'])}' ({len(d['signers'])} of "
                f"{d['threshold']} signatures), {d['blobs']} blobs in {d['files']} files checked"
            )
        if cmd == "inspect":
            return _inspect_text(d)
        return "\n".join(f"{k}: {v}" for k, v in d.items())

    return fmt


def _inspect_text(d: dict[str, Any]) -> str:
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
            f"memory <= {m['max_memory_mb']:g} MB" if m["max_memory_mb"] is not None else "",
            f"timeout {m['timeout_s']:g} s", f"{m['runs']} runs",
            f"rtol {m['rtol']:g} atol {m['atol']:g}" if m["golden"] else "no golden data",
            "providers " + ", ".join(m["providers"])) if x)
        lines.append(
            f"model     {m['name']}: {m['file']} {human_size(m['size'])}"
            + (f" + {len(m['data'])} external data file(s)" if m["data"] else "")
            + (" + golden data" if m["golden"] else ""))
        lines.append(f"          check: {budgets}")
        lines.extend(_quality_lines(m))
    for i in d["images"]:
        lines.append(f"image     {i['ref']} ({i['platform']}) {human_size(i['size'])}")
    for k in d["agent_kits"]:
        lines.append(f"agent kit {k['version']} for {k['platform']} Python {k['python']}: "
                     f"{k['file']} {human_size(k['size'])}")
    if d["flags"]:
        lines.append("flags     " + ", ".join(f"{k}={v}" for k, v in d["flags"].items()))
    hooks = d["hooks"]
    lines.append("runs      post-switch hook: " + (hooks["post_switch"] or "none"))
    lines.append("          probe: " + (f"{hooks['probe']} (within {hooks['probe_window_s']:g} s)"
                                        if hooks["probe"] else "none"))
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


def _quality_lines(m: dict[str, Any]) -> list[str]:
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
    if len(m.get("providers") or []) > 1 or m.get("session"):
        session = ", ".join(f"{k}={v}" for k, v in (m.get("session") or {}).items())
        lines.append("          runtime: "
                     + ("fallback allowed" if m["provider_fallback"] else "every provider required")
                     + (f"; session {session}" if session else ""))
    return lines


def _health_lines(report: dict[str, Any] | None) -> list[str]:
    """The host check in a few lines: one per model, budgets missed but not enforced flagged."""
    if report is None:
        return ["health check: SKIPPED (--no-check): the models were not run on this host"]
    lines = []
    for m in report["models"]:
        figures = ", ".join(x for x in (
            f"p95 {m['p95_ms']:.3g} ms" if m["p95_ms"] is not None else "",
            f"peak {m['peak_rss_mb']:.0f} MB" if m["peak_rss_mb"] is not None else "",
            f"{m['seconds']:.1f} s" if m.get("seconds") is not None else "") if x)
        verdict = "ok" if m["ok"] else f"FAILED: {m['reason']}"
        lines.append(f"health check of model {m['name']}: {verdict} ({figures})")
        ev = m.get("evaluation")
        if ev:
            checked = list(dict.fromkeys(c["metric"] for c in ev.get("checks") or []))
            values = ", ".join(f"{k} {ev['metrics'][k]:.4g}" for k in checked
                               if isinstance(ev["metrics"].get(k), int | float))
            lines.append(f"  evaluation: {values or 'no metric'} on {ev.get('samples')} "
                         f"samples ({ev.get('seconds', 0):.2f} s)")
        if m.get("over_budget"):
            lines.append(f"  over budget on this host (not enforced; --enforce-budgets): "
                         f"{m['over_budget']}")
        if m.get("note"):
            lines.append(f"  note: {m['note']}")
    return lines


def parser() -> argparse.ArgumentParser:
    """The whole ``airlock`` command line (for completion scripts and man pages)."""
    return _parser()[0]


def _completion(a: argparse.Namespace) -> None:
    try:
        import shtab
    except ImportError:
        raise PreconditionError("shell completion needs the shtab package: "
                                "pip install 'airlock-edge[bundler]'") from None
    print(shtab.complete(parser(), shell=a.shell), end="")


def _main(argv: list[str]) -> int:
    top, groups = _parser()
    a = top.parse_args(argv)
    apply_output_options(a)
    if a.cmd is None:  # a bare 'airlock' is asking what there is
        print(top.format_help(), end="")
        return 0
    if a.cmd == "keys" and a.keys_cmd is None:
        print(groups["keys"].format_help(), end="")
        return 0
    if a.cmd == "completion":
        _completion(a)
        return 0
    handlers = {"keys": _keys, "build": _build, "check": _check, "verify": _verify,
                "inspect": _inspect, "report": run_report, "split": _split, "join": _join,
                "inventory": _inventory, "diff": _diff, "fleet": _fleet, "flags": _flags,
                "agent-kit": _agent_kit,
                **a.signing}
    result = handlers[a.cmd](a)
    if result is None:
        return 0
    emit(result, a.json, _human(a.keys_cmd if a.cmd == "keys" else a.cmd))
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
