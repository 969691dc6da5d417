"""``airlock-agent``: the device-side command line.

    airlock-agent --root /var/lib/airlock init --trust root.json --device-id cam-7 --ring canary
    airlock-agent install /media/usb/vision-1.3.0.airlock
    airlock-agent status --json
    airlock-agent history --verify
    airlock-agent rollback
    airlock-agent check --rollback-on-failure
    airlock-agent config --providers OpenVINOExecutionProvider,CPUExecutionProvider
    airlock-agent gc --keep 2
    airlock-agent fsck --repair
    airlock-agent serve --listen 127.0.0.1:9400 --watch /media/usb --check-every 15m
    airlock-agent report -o /media/usb/airlock-reports/cam-7.report.json
    airlock-agent inventory -o /media/usb/cam-7.inventory.json
    airlock-agent --version --json

Each command is a module of ``agent/commands/`` (the registry is
``agent.commands.REGISTRY``); this module holds the common ``--root`` option,
the parser and the run: errors become exit codes in ``airlock.console.run``.

An agent installed from a kit (install.sh) updates itself when a release
carries a newer kit for its platform: see docs/BOOTSTRAP.md.

ROOT is --root, else $AIRLOCK_ROOT, else /var/lib/airlock. Every command that
changes ROOT takes its lock (a second one exits 5) and first repairs whatever
an earlier crash left behind (``agent.operations``). On a damaged ROOT (a file
where a directory belongs, a directory where a link belongs) those commands
change nothing and exit 5; status lists the damage and fsck --repair fixes it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

# Only the standard library above: main() checks the interpreter before it imports
# the rest, which an older Python may not even compile.

__all__ = ["PYTHON_FLOOR", "main", "parser"]

PYTHON_FLOOR = (3, 10)  # Ubuntu 22.04 and JetPack 6; install.sh and pyproject.toml say the same


_DESCRIPTION = """\
airlock-agent: the device's side of Airlock. It verifies a bundle's signatures
and every blob, installs it beside the running release, health-checks the
models with ONNX Runtime, switches atomically and rolls back by itself when a
check fails. State lives under ROOT: --root, else $AIRLOCK_ROOT, else
/var/lib/airlock. Commands that change ROOT take its lock (a second one exits 5)
and first repair what a crash left behind.
"""

_TOUR = (
    "airlock-agent --root /var/lib/airlock init --trust root.json --device-id cam-7 --ring canary",
    "airlock-agent install /media/usb/vision-1.3.0.airlock",
    "airlock-agent status",
    "airlock-agent history --verify",
    "airlock-agent rollback",
    "airlock-agent config --ring prod",
)

def _root_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, default=argparse.SUPPRESS, metavar="ROOT",
                   help="agent root (default: $AIRLOCK_ROOT or /var/lib/airlock)")


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    from agent.commands import REGISTRY
    from airlock.command import build_parser

    return build_parser("airlock-agent", _DESCRIPTION, _TOUR, REGISTRY, _root_arg, argv=argv)


def parser() -> argparse.ArgumentParser:
    """The whole ``airlock-agent`` command line (for completion scripts and man pages)."""
    return _parser()


def _version_only(argv: list[str]) -> bool:
    """``airlock-agent --version [--json]``, without a command."""
    from airlock.console import Parser

    pre = Parser(add_help=False)
    for flag in ("--version", "--json", "--debug"):
        pre.add_argument(flag, action="store_true")
    pre.add_argument("--root")
    known, rest = pre.parse_known_args(argv)
    return bool(known.version) and not rest


def _check_format(a: argparse.Namespace) -> None:
    """An agent older than ROOT's format refuses it, in one line, whatever the command
    (but ``init``, which makes ROOT, and ``completion``, which does not read it)."""
    from agent.commands.base import layout_of
    from agent.rootformat import check_format

    if a.cmd in ("init", "completion"):
        return
    layout = layout_of(a)
    if layout.is_initialised():
        check_format(layout)


def _main(argv: list[str]) -> int:
    from airlock.command import dispatch
    from airlock.console import emit_result

    if _version_only(argv):
        from agent.commands import agent_version as version

        emit_result(version.run(), "--json" in argv)
        return 0
    return dispatch(_parser(argv), argv, before=_check_format)


def _refuse_old_python(argv: list[str]) -> None:
    """Below the floor: one line naming the version found and the floor, exit 5 (precondition).

    Checked first, so a site sees this rather than a SyntaxError or an
    AttributeError from deep inside the first install.
    """
    if sys.version_info >= PYTHON_FLOOR:
        return
    floor = ".".join(map(str, PYTHON_FLOOR))
    message = (f"Python {platform.python_version()} ({sys.executable}) is too old: the agent "
               f"needs Python {floor} or newer")
    print(f"airlock-agent: error: {message}", file=sys.stderr)
    if "--json" in argv:
        print(json.dumps({"error": message, "exit": 5}, indent=2, sort_keys=True))
    sys.exit(5)


def main(argv: list[str] | None = None) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    _refuse_old_python(args)
    from airlock.console import run

    run(_main, args, prog="airlock-agent")
