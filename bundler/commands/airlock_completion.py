"""``airlock completion``: print a shell completion script, made from the whole parser (shtab).

    airlock completion bash > /etc/bash_completion.d/airlock
"""

from __future__ import annotations

import argparse

from airlock.errors import PreconditionError

__all__ = ["DESCRIPTION", "EXAMPLES", "add_arguments", "run"]

EXAMPLES = ("airlock completion bash > /etc/bash_completion.d/airlock",
            "airlock completion zsh > ~/.zfunc/_airlock")
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete for")


def run(a: argparse.Namespace) -> None:
    try:
        import shtab
    except ImportError:
        raise PreconditionError("shell completion needs the shtab package: "
                                "pip install 'airlock-edge[bundler]'") from None
    from bundler.commands import parser

    print(shtab.complete(parser(), shell=a.shell), end="")
