"""``airlock flags set``: sign NAME=VALUE feature flags into a flags bundle.

    airlock flags set night_mode=true threshold=0.4 --name site --sequence 3 --percent 10 \\
        --expires 30d --key keys/release.key -o site-flags-3.airlock

The work is ``bundler.fleet.flagset.build_flags``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from airlock.command import Reported
from airlock.console import json_option
from airlock.durations import parse_duration
from bundler.build.output import check_output, is_bundle_file
from bundler.commands.options import add_key_args, secrets_from, signer_for, subcommands
from keys.signers import key_files

__all__ = ["DESCRIPTION", "EXAMPLES", "FlagsWritten", "add_arguments", "run"]

EXAMPLES = ("airlock flags set night_mode=true --name site --sequence 3 --percent 10 "
            "--key keys/release.key -o site-flags-3.airlock",)
DESCRIPTION = None


@dataclass(frozen=True)
class FlagsWritten(Reported):
    """The flags bundle written (``build_flags``' summary)."""

    def text(self) -> str:
        d = self.data
        return (f"wrote {d['bundle']}: flags {d['name']} sequence {d['sequence']}, "
                f"{d['percent']:g}% of devices"
                + (f" in rings {', '.join(d['rings'])}" if d["rings"] else "")
                + f", expires {d['expires']}: "
                + ", ".join(f"{k}={json.dumps(v)}" for k, v in d["flags"].items()))


def add_arguments(p: argparse.ArgumentParser) -> None:
    add = subcommands(p, "flags_cmd")
    fset = add("set", "sign NAME=VALUE flags into a flags bundle",
               "airlock flags set night_mode=true threshold=0.4 --name site --sequence 3 "
               "--percent 10 --expires 30d --key keys/release.key -o site-flags-3.airlock")
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


def run(a: argparse.Namespace) -> FlagsWritten:
    from bundler.fleet.flagset import build_flags, parse_assignments

    secrets = secrets_from(a)
    signers = [signer_for(k, secrets, a) for k in a.key]
    check_output(a.output, key_files(a.key), force=False, kind="an Airlock bundle",
                 is_ours=is_bundle_file)
    return FlagsWritten(build_flags(
        parse_assignments(a.assignments), name=a.name, sequence=a.sequence,
        expires=parse_duration(a.expires), percent=a.percent, rings=a.ring, signers=signers,
        output=a.output))
