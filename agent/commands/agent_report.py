"""``airlock-agent report``: a report signed with the device key, to carry home.

    airlock-agent report -o /media/usb/airlock-reports/cam-7.report.json
    airlock-agent report --since all > cam-7.report.json
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.commands.base import layout_of
from airlock.console import human_size, json_option
from airlock.errors import UsageError
from airlock.files import write_atomic

if TYPE_CHECKING:
    from keys.encryption_keys import Recipient

EXAMPLES = ("airlock-agent report -o /media/usb/airlock-reports/cam-7.report.json",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="report file (default: standard output)")
    p.add_argument("--since", default="last", metavar="LAST",
                   help="journal entries since: 'last' report (default), 'all', an ISO time, "
                        "or an earlier report file")
    p.add_argument("--encrypt-to", type=Path, action="append", default=[], metavar="PUB",
                   help="encrypt the signed report to this public key (PEM, EC or RSA: "
                        "headquarters'), as one JWE; repeatable")
    json_option(p)


@dataclass(frozen=True)
class ReportWritten:
    output: str
    bytes: int
    device_id: str
    entries: int
    since: str
    from_line: int
    to_line: int
    encrypted_to: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        return (f"wrote the signed report of {self.device_id} to {self.output}: "
                f"{self.entries} journal entr{'y' if self.entries == 1 else 'ies'} "
                f"(since {self.since}), {human_size(self.bytes)}"
                + (f", encrypted to {', '.join(self.encrypted_to)}" if self.encrypted_to
                   else ""))


def run(args: argparse.Namespace) -> ReportWritten | None:
    from agent.observe.report import signed_report
    from keys.device import REPORT_TYPE, verify_document

    layout = layout_of(args)
    layout.require_initialised()
    signed = data = signed_report(layout, args.since)
    recipients = [_recipient(p) for p in args.encrypt_to]
    if recipients:
        from airlock.format.ocicrypt import seal

        data = seal(signed, [r.public_pem for r in recipients])
    if args.output is None:
        sys.stdout.buffer.write(data)
        return None
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.output, data)
    except OSError as e:
        raise UsageError(f"cannot write report {args.output}: {e.strerror}") from None
    # What the report just signed here says, checked against its own key as the host will.
    body = verify_document(signed, REPORT_TYPE).body
    journal = body["journal"]
    return ReportWritten(str(args.output), len(data), body["device_id"],
                         len(journal["entries"]), journal["since"], journal["from_line"],
                         journal["to_line"], [r.name for r in recipients])


def _recipient(path: Path) -> Recipient:
    from keys.encryption_keys import Recipient

    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read --encrypt-to {path}: {e.strerror}") from None
    return Recipient.from_bytes(data, path.name)
