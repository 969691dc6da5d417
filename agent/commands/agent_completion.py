"""``airlock-agent completion``: print a shell completion script for airlock-agent.

    airlock-agent completion bash > /etc/bash_completion.d/airlock-agent
"""

from __future__ import annotations

import argparse

from airlock.command import completion_arguments, print_completion

EXAMPLES = ("airlock-agent completion bash > /etc/bash_completion.d/airlock-agent",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    completion_arguments(p)


def run(args: argparse.Namespace) -> None:
    from agent.cli import parser  # the whole parser: every command's options

    print_completion(parser, args.shell, "agent")
