"""What every command of both tools is: one module, named in one registry, returning a typed result.

pip's ``_internal/commands/`` is the model. A tool's registry
(``bundler/commands/__init__.py``, ``agent/commands/__init__.py``) is a tuple
of :class:`CommandInfo` (name, module, one-line summary); the module of a
command is imported only when that command runs, or when the whole parser is
built (completion scripts, man pages), so a start pays for one command.

A command module holds its parser, its run function and its words::

    EXAMPLES = ("airlock verify vision-1.2.0.airlock --trust root.json",)
    DESCRIPTION = None          # a longer --help text, or None for the summary

    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("bundle")
        json_option(p)

    def run(args: argparse.Namespace) -> VerifyResult: ...

and its result is a small dataclass with ``to_dict()`` (what ``--json``
prints) and ``text()`` (what a person reads); one that hands on a library's
JSON object subclasses :class:`Reported`. ``text()`` is called on a copy
whose every string is inert (:func:`airlock.console.inert_data`), so a
command never prints a raw value read from a bundle, a stick or a device.

Example::

    REGISTRY = (CommandInfo("verify", "bundler.commands.airlock_verify", "check a bundle as a device would"),)
    parser = build_parser("airlock", DESCRIPTION, TOUR, REGISTRY, argv=["verify", "x.airlock"])
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from airlock.console import (
    Parser,
    add_command,
    apply_output_options,
    emit_result,
    fail_with,
    stdout_closed,
    tool_parser,
)
from airlock.errors import AirlockError, PreconditionError

__all__ = ["CommandInfo", "CommandModule", "Reported", "Result", "build_parser", "chosen",
           "completion_arguments", "dispatch", "print_completion"]


class Result(Protocol):
    """What a command returns: one JSON object for ``--json``, text for people."""

    def to_dict(self) -> dict[str, Any]: ...

    def text(self) -> str: ...


class CommandModule(Protocol):
    """The names a command module defines."""

    EXAMPLES: Sequence[str]
    DESCRIPTION: str | None

    def add_arguments(self, p: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> Result | None: ...


@dataclass(frozen=True)
class Reported:
    """A result that is a library's JSON object: ``--json`` prints it unchanged.

    Most commands of both tools hand on what their library returned
    (``BuildResult.to_dict()``, ``agent.install``'s result …); such a result
    subclasses this and words ``data`` in its own ``text()``.
    """

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def text(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.data.items())


@dataclass(frozen=True)
class CommandInfo:
    """One line of a tool's registry: ``airlock NAME`` lives in ``module``."""

    name: str
    module: str
    summary: str

    def load(self) -> CommandModule:
        return cast(CommandModule, importlib.import_module(self.module))


def chosen(registry: Sequence[CommandInfo], argv: Sequence[str]) -> CommandInfo | None:
    """The command ``argv`` names: its first word that is a command (options may come first)."""
    names = {info.name: info for info in registry}
    return next((names[word] for word in argv if word in names), None)


def build_parser(prog: str, description: str, tour: Sequence[str],
                 registry: Sequence[CommandInfo],
                 common_args: Callable[[argparse.ArgumentParser], None] | None = None,
                 argv: Sequence[str] | None = None) -> Parser:
    """The tool's parser; with ``argv``, only the command it names gets its arguments.

    Every command is listed (``--help``, "invalid choice"), but a command's
    module is imported only when it is the one chosen, or when ``argv`` is
    None (the whole parser: completion scripts and man pages). When ``argv``
    names no command (``--version``, ``--help``, a bare tool) no command
    module is imported: the listing needs only the registry's summaries, and
    importing every module cost ``airlock --version`` tens of milliseconds
    (tests/test_startup.py holds that).
    """
    parser, common = tool_parser(prog, description, tour, common_args)
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)
    only = chosen(registry, argv) if argv is not None else None
    for info in registry:
        if argv is None or info is only:
            module = info.load()
            p = add_command(sub, info.name, info.summary, module.EXAMPLES, [common],
                            module.DESCRIPTION)
            module.add_arguments(p)
            p.set_defaults(_command=module)
        else:
            sub.add_parser(info.name, help=info.summary)
    return parser


def dispatch(parser: argparse.ArgumentParser, argv: Sequence[str],
             before: Callable[[argparse.Namespace], None] | None = None) -> int:
    """Parse ``argv``, run the chosen command, print its result; the exit code.

    Both tools' ``main`` is this (errors are mapped around it by
    :func:`airlock.console.run`): a bare tool is asking what there is and gets
    its help (exit 0); ``before(args)`` runs ahead of the command (the agent's
    ROOT format check); a result that failed on some of its targets (a push, a
    rollout, refused reports) says so in ``finish()``, which gives the exit code.
    """
    a = parser.parse_args(argv)
    apply_output_options(a)
    if a.cmd is None:
        print(parser.format_help(), end="")
        return 0
    if before is not None:
        before(a)
    result = a._command.run(a)
    if result is None:
        return 0
    as_json = bool(getattr(a, "json", False))
    finish = getattr(result, "finish", None)
    if finish is None:
        emit_result(result, as_json)
        return 0
    if as_json:
        # A failed finish is ONE JSON object: the result merged with the error.
        try:
            code = int(finish())
        except AirlockError as e:
            fail_with(result, e)
        emit_result(result, True)
        return code
    try:
        emit_result(result, False)
    except BrokenPipeError:
        # ``| head -1`` closed the pipe: the command's own exit code must still come out.
        stdout_closed()
    return int(finish())


def completion_arguments(p: argparse.ArgumentParser) -> None:
    """The ``completion`` command's one argument, the same on both tools."""
    p.add_argument("shell", choices=("bash", "zsh", "tcsh", "fish"),
                   help="the shell to complete for")


def print_completion(whole_parser: Callable[[], argparse.ArgumentParser], shell: str,
                     extra: str) -> None:
    """A tool's shell completion script (shtab) from its whole parser; exit 5 without shtab."""
    try:
        import shtab
    except ImportError:
        raise PreconditionError("shell completion needs the shtab package: "
                                f"pip install 'airlock-edge[{extra}]'") from None
    print(shtab.complete(whole_parser(), shell=shell), end="")
