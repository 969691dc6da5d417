"""``airlock-agent completion``: print a shell completion script for airlock-agent.

    airlock-agent completion bash > /etc/bash_completion.d/airlock-agent
"""

from __future__ import annotations

import argparse

from airlock.errors import PreconditionError

EXAMPLES = ("airlock-agent completion bash > /etc/bash_completion.d/airlock-agent",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete for")


def run(args: argparse.Namespace) -> None:
    try:
        import shtab
    except ImportError:
        raise PreconditionError("shell completion needs the shtab package: "
                                "pip install 'airlock-edge[agent]'") from None
    from agent.cli import parser  # the whole parser: every command's options

    print(shtab.complete(parser(), shell=args.shell), end="")
