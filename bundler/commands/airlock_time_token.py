"""``airlock time-token``: a short-lived signed "it is now T" for devices without a trusted clock.

    airlock time-token --key keys/time.key -o time.json
    airlock-agent time apply time.json        # on the device, from the stick

Signed by a time signer the trust root names (``airlock keys init|rotate
--time-signer NAME:KEY.pub``), never by a release key (``keys.timetoken``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from airlock.command import Reported
from airlock.console import json_option
from airlock.durations import parse_duration
from airlock.files import write_atomic
from bundler.build.output import check_output
from bundler.commands.options import add_key_args, secrets_from, signer_for
from keys.signers import key_files

__all__ = ["DESCRIPTION", "EXAMPLES", "TokenWritten", "add_arguments", "run"]

EXAMPLES = ("airlock time-token --key keys/time.key -o time.json",
            "airlock time-token --key keys/time.key --valid-for 3d -o /media/usb/time.json")
DESCRIPTION = """\
Write a signed time token: the current time of this host, valid for a short
while. A device whose clock reset (1970) or runs far ahead takes it with
'airlock-agent time apply FILE' and judges expiry by it. The key must belong
to a time signer of the device's trust root (airlock keys init|rotate
--time-signer NAME:KEY.pub).
"""


@dataclass(frozen=True)
class TokenWritten(Reported):
    """The token written, the time it says and until when it is valid."""

    def text(self) -> str:
        d = self.data
        return (f"wrote {d['token']}: the time is {d['time']}, valid until {d['expires']}; "
                f"on the device: airlock-agent time apply {Path(d['token']).name}")


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--key", action="append", required=True, metavar="KEY",
                    help="a time signer's key: a key file, a recorded .pub or a URI; repeat "
                    "for a threshold")
    sp.add_argument("--valid-for", default="1d", metavar="DURATION",
                    help="how long a device with a sound clock takes it (default 1d)")
    add_key_args(sp)
    sp.add_argument("-o", "--output", type=Path, required=True, metavar="TIME.json",
                    help="where the token is written")
    json_option(sp)


def run(a: argparse.Namespace) -> TokenWritten:
    from keys.release import format_time
    from keys.timetoken import make_token

    secrets = secrets_from(a)
    signers = [signer_for(k, secrets, a) for k in a.key]
    check_output(a.output, key_files(a.key), force=False, kind="a time token",
                 is_ours=_is_token)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    valid_for = parse_duration(a.valid_for)
    write_atomic(a.output, make_token(signers, now=now, valid_for=valid_for))
    return TokenWritten({"token": str(a.output), "time": format_time(now),
                         "expires": format_time(now + valid_for)})


def _is_token(path: Path) -> bool:
    from keys.timetoken import is_time_token

    try:
        return is_time_token(path.read_bytes())
    except OSError:
        return False
