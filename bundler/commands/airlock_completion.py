"""``airlock completion``: print a shell completion script, made from the whole parser (shtab).

    airlock completion bash > /etc/bash_completion.d/airlock
"""

from __future__ import annotations

import argparse

from airlock.command import completion_arguments, print_completion

__all__ = ["DESCRIPTION", "EXAMPLES", "add_arguments", "run"]

EXAMPLES = ("airlock completion bash > /etc/bash_completion.d/airlock",
            "airlock completion zsh > ~/.zfunc/_airlock")
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    completion_arguments(p)


def run(a: argparse.Namespace) -> None:
    from bundler.commands import parser

    print_completion(parser, a.shell, "bundler")
