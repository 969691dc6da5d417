"""``airlock``: the host-side command line; each command is a module of ``bundler/commands/``.

    airlock keys generate release --dir keys --passphrase-env AIRLOCK_PASS
    airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json
    airlock check airlock.yaml
    airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock
    airlock sign vision-1.2.0.airlock --key 'hsm:2?label=airlock' --trust root.json
    airlock verify vision-1.2.0.airlock --trust root.json
    airlock inspect vision-1.2.0.airlock --json
    airlock report ingest /media/usb/airlock-reports/ --textfile fleet.prom
    airlock fleet push vision-1.3.0.airlock cam-7 --user airlock --identity site.key --known-hosts kh
    airlock split vision-1.2.0.airlock --max-size 4000MiB
    airlock completion bash > /etc/bash_completion.d/airlock

This module parses (building only the chosen command's options), runs the
command, prints its result (``--json`` or text) and maps it to the exit
code; ``airlock.console.run`` maps errors to theirs. Every command's
``--help`` ends with an example and the exit codes; ``parser()`` is also what
the completion scripts (shtab) and the man pages in docs/man/
(scripts/manpages.py) are made from, so they cannot drift from the options.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from airlock.command import dispatch
from airlock.console import run
from bundler.commands import parser as command_parser

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The whole ``airlock`` command line (for completion scripts and man pages)."""
    return command_parser()


def _main(argv: list[str]) -> int:
    return dispatch(command_parser(argv), argv)


def main(argv: list[str] | None = None) -> NoReturn:
    run(_main, argv, prog="airlock")
