r"""What both command-line tools share: parsers, exit codes, one-line errors, output, progress.

    parser, common = tool_parser("airlock", "carry signed ML releases across an air gap")
    build = add_command(sub, "build", "build a signed bundle", ["airlock build airlock.yaml ..."],
                        [common])

    def main(argv: list[str] | None = None) -> NoReturn:
        run(_main, argv, prog="airlock")

Every command of both tools has ``--help`` ending with an example and the
exit codes (:data:`~airlock.errors.EXIT_CODES`), and the options of
:func:`tool_parser`: ``--version``, ``-q/--quiet`` (errors only),
``-v/--verbose`` (each step as it starts), ``--no-progress`` and
``--debug``. Progress bars go to stderr only when both stdout and stderr are
terminals.

``run`` turns an :class:`~airlock.errors.AirlockError` into its message on one
line of stderr and its documented exit code; any other exception becomes
exit 1 with one line, and a traceback only with ``--debug``. With ``--json``
a failure also prints one JSON object on stdout, ``{"error": ..., "exit":
N}`` (merged into the command's own result when it has one). A reader that
closes the pipe early (``airlock-agent status | head -1``) ends the command
quietly, exit 0.

Everything printed goes through here, and much of it was read from unsigned
media (member names, key ids, version strings, the bundle's own file name).
So text is made :func:`inert` on its way out: no terminal control sequence
(ESC, CSI, other C0/C1 controls, bidi overrides) reaches the terminal, each
piece is bounded (``MAX_MESSAGE_CHARS``), and an undecodable byte of a file
name prints as ``\xNN``::

    inert("blobs/\x1b[2J\udcff")   # the text  blobs/\x1b[2J\xff  (backslashes, no ESC byte)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import stat
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from airlock.errors import EXIT_CODES, AirlockError, UsageError
from airlock.limits import MAX_MESSAGE_CHARS

__all__ = [
    "Parser",
    "Progress",
    "add_command",
    "apply_output_options",
    "columns",
    "emit",
    "emit_result",
    "exit_codes_text",
    "fail_with",
    "human_size",
    "inert",
    "inert_data",
    "json_option",
    "no_progress",
    "open_bundle",
    "phase_bars",
    "progress",
    "read_input",
    "run",
    "say",
    "tool_parser",
    "tool_version",
]


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 2, one line) instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{_did_you_mean(message)} (see '{self.prog} --help')")


def _did_you_mean(message: str) -> str:
    """argparse's "invalid choice" with the nearest choice named instead of all of them.

    >>> _did_you_mean("argument COMMAND: invalid choice: 'verfy' (choose from 'new', 'verify')")
    "argument COMMAND: invalid choice: 'verfy'; did you mean 'verify'?"
    """
    import difflib
    import re

    # Quoted or not: Python 3.12.8+ and 3.13 print the choices without quotes.
    m = re.search(r"invalid choice: '?([^']*?)'? \(choose from (.*)\)$", message)
    if m is None:
        return message
    choices = [c.strip().strip("'") for c in m.group(2).split(",")]
    near = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
    if not near:
        return message
    return f"{message[:m.start()]}invalid choice: '{m.group(1)}'; did you mean '{near[0]}'?"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; every option's default shown where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("%(default)" not in text and action.default not in (None, False, [], argparse.SUPPRESS)
                and action.option_strings and action.nargs != 0 and "default" not in text):
            text += " (default: %(default)s)"
        return text


@dataclass
class _Output:
    """How this run prints: set once from the command line by :func:`apply_output_options`."""

    quiet: bool = False
    verbose: bool = False
    progress: bool = True
    as_json: bool = False


_OUT = _Output()


def tool_version(distribution: str = "airlock-edge") -> str:
    """The installed version of Airlock (the checkout's when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "0+unknown"


@functools.cache  # every command's epilog ends with it: wrapped once, not once per command
def exit_codes_text() -> str:
    """The exit-code table, as every ``--help`` ends."""
    return "exit codes:\n" + "\n".join(
        textwrap.fill(meaning, width=79, initial_indent=f"  {code}  ", subsequent_indent="     ")
        for code, meaning in EXIT_CODES)


def tool_parser(prog: str, description: str, examples: Sequence[str],
                common_args: Callable[[argparse.ArgumentParser], None] | None = None,
                ) -> tuple[Parser, Parser]:
    """The top-level parser of a tool and the parent every subcommand takes its common options from.

    ``common_args`` adds the tool's own options that every command takes (``--root``).
    """
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="show a traceback for unexpected errors (exit 1)")
    common.add_argument("-q", "--quiet", action="store_true",
                        help="print only errors (and --json output)")
    common.add_argument("-v", "--verbose", action="store_true",
                        help="say each step as it starts, on stderr")
    common.add_argument("--no-progress", action="store_true",
                        help="no progress bars (never shown when stdout or stderr is not a "
                        "terminal)")
    if common_args is not None:
        common_args(common)
    parser = Parser(prog=prog, description=description, parents=[common],
                    epilog=_epilog(examples), formatter_class=_Formatter)
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        default=argparse.SUPPRESS, help="print the version and exit")
    return parser, common


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked: importlib.metadata costs every start ~15 ms."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{parser.prog} {tool_version()}")
        parser.exit()


def _epilog(examples: str | Sequence[str]) -> str:
    lines = [examples] if isinstance(examples, str) else list(examples)
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(
        f"  {line}" for line in lines) + "\n\n" + exit_codes_text()


def add_command(
    sub: Any, name: str, help: str, example: str | Sequence[str],
    parents: list[argparse.ArgumentParser], description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with an example and the exit codes, as every command's does."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        parents=parents,
        description=description or help[:1].upper() + help[1:] + ".",
        epilog=_epilog(example),
        formatter_class=_Formatter,
    )
    return parser


def json_option(p: argparse.ArgumentParser) -> None:
    """``--json`` as every command of both tools spells and explains it."""
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object (a failure too: {error, exit})")


def apply_output_options(a: argparse.Namespace) -> None:
    """Take ``-q``, ``-v``, ``--no-progress`` and ``--json`` from parsed arguments."""
    _OUT.quiet = bool(getattr(a, "quiet", False))
    _OUT.verbose = bool(getattr(a, "verbose", False)) and not _OUT.quiet
    _OUT.progress = not getattr(a, "no_progress", False) and not _OUT.quiet
    _OUT.as_json = bool(getattr(a, "json", False))


def fail_with(result: Any, error: AirlockError,
              human: Callable[[Any], str] | None = None) -> NoReturn:
    """Fail with ``error`` after showing ``result``: printed for people, merged into the JSON object.

    ``result`` is a command's typed result (``to_dict``/``text``), or a dict with ``human``.
    """
    typed = hasattr(result, "to_dict")
    if _OUT.as_json:
        error.result = result.to_dict() if typed else result  # type: ignore[attr-defined]
    elif typed:
        emit_result(result, False)
    else:
        emit(result, False, human)
    raise error


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _open_regular(path: str, what: str, hint: str) -> IO[bytes]:
    """``path`` opened for reading if it is a regular file; else a one-line UsageError.

    The type is checked before opening (opening a tape or serial device can act on it)
    and again on the open descriptor, which is opened without blocking so that a FIFO
    swapped in between cannot hang the command.
    """
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                os.close(fd)
    except OSError as e:
        raise UsageError(f"cannot open {what} {path}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = next((word for test, word in _KINDS if test(mode)), "not a regular file")
        raise UsageError(f"{what} {path} is {kind}, not a file{hint}")
    return os.fdopen(fd, "rb")


def open_bundle(path: str) -> tuple[IO[bytes], int]:
    """A bundle file (or standard input for ``-``) and its size when known (else 0).

    Only a regular file is opened: a FIFO, a device (``/dev/zero``) or a directory is
    refused at once (exit 2), before any lock is taken. Streams come through ``-``.
    """
    if path == "-":
        if sys.stdin is None:
            raise UsageError("there is no standard input to read a bundle from")
        if sys.stdin.isatty():
            raise UsageError("standard input is a terminal; pipe a bundle in "
                             "('cat bundle.airlock | ... -') or name the file")
        return sys.stdin.buffer, 0
    f = _open_regular(path, "bundle", "; to stream a bundle, pipe it to standard input "
                      "and give '-' as the bundle")
    return f, os.fstat(f.fileno()).st_size


def read_input(path: Path, what: str) -> bytes:
    """The bytes of a regular file named on the command line, or a one-line UsageError."""
    with _open_regular(str(path), what, "") as f:
        try:
            return f.read()
        except OSError as e:
            raise UsageError(f"cannot read {what} {path}: {e.strerror}") from None


def inert(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` safe to print and to store: every non-printable character escaped, bounded.

    Escaped as Python's ``repr`` would (``\\x1b``, ``\\u202e``): C0 and C1
    controls (ESC starts every terminal control sequence), DEL, line breaks,
    bidi overrides and other format characters, and lone surrogates, which
    cannot be encoded as UTF-8 (one from an undecodable byte of a file name
    shows as that byte, ``\\xff``). Printable text, non-ASCII included, is
    kept. Past ``limit`` characters the middle is cut out, and says so.
    """
    s = text if isinstance(text, str) else str(text)
    if not s.isprintable():
        s = "".join(c if c.isprintable() else _escape(c) for c in s)
    if len(s) > limit:
        # The middle goes: an error's start says what failed and its end what to do.
        head = limit // 2
        s = f"{s[:head]} …({len(s) - limit} characters left out)… {s[len(s) - (limit - head):]}"
    return s


#: What a name from a medium may look like to be quoted in a refusal (see :func:`shown`).
PLAIN_NAME = re.compile(r"[A-Za-z0-9._+-]{1,120}")


def shown(value: str, plain: re.Pattern[str] = PLAIN_NAME) -> str:
    """``value`` (a name read from a medium) quoted when it has the ``plain`` shape, else
    only its length and sha256: a refusal names a file, never shows bytes that may be
    another file's content (a tar long name or a parts list read through a link)::

        shown("x.airlock.part001")   # "'x.airlock.part001'"
        shown("-----BEGIN PRIVATE KEY-----\n…")   # "(a name of 119 bytes, sha256 3f2a…)"
    """
    if plain.fullmatch(value):
        return repr(value)
    data = value.encode("utf-8", "surrogateescape")
    return f"(a name of {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}…)"


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    if c in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[c]
    n = ord(c)
    if 0xDC80 <= n <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{n - 0xDC00:02x}"
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def inert_data(value: Any, limit: int = MAX_MESSAGE_CHARS) -> Any:
    """A copy of JSON-like ``value`` whose every string (keys too) is :func:`inert`.

    Numbers, booleans and None stay as they are; tuples become lists; a
    dataclass (a command's result) becomes a copy of itself, field by field;
    any other object becomes its inert ``str``.
    """
    if isinstance(value, str):
        return inert(value, limit)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {inert(k, limit): inert_data(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [inert_data(v, limit) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A command's typed result: the same copy, field by field (its text() reads this one).
        return dataclasses.replace(value, **{  # type: ignore[type-var]
            f.name: inert_data(getattr(value, f.name), limit)
            for f in dataclasses.fields(value) if f.init})
    return inert(value, limit)


def say(prog: str, kind: str, message: object) -> None:
    """One inert line on stderr: ``PROG: KIND: MESSAGE`` (an error, a warning, a note).

    ``-q`` keeps everything but errors off stderr; ``kind="step"`` lines show only with ``-v``.
    """
    if kind != "error" and (_OUT.quiet or (kind == "step" and not _OUT.verbose)):
        return
    print(f"{prog}: {kind}: {inert(message)}", file=sys.stderr)


def _never_fail_to_print() -> None:
    """Output a terminal cannot encode is escaped rather than crashing the command (exit 1)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]


def run(main: Callable[[list[str]], int], argv: list[str] | None, prog: str) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    # Known before parsing, so that a usage error is a JSON object too.
    _OUT.as_json = "--json" in args
    _never_fail_to_print()
    code = 0
    try:
        try:
            code = main(args)
        except AirlockError as e:
            if debug:
                raise
            say(prog, "error", e)
            code = e.exit_code
            _json_failure(str(e), code, getattr(e, "result", None))
        except KeyboardInterrupt:
            # Words, not a Python exception name: what stopped it, and the shell's 130.
            print(f"{prog}: interrupted by SIGINT", file=sys.stderr)
            code = 130
        except BrokenPipeError:
            raise
        except Exception as e:
            if debug:
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            message = f"{type(e).__name__}: {first} (rerun with --debug for details)"
            say(prog, "unexpected error", message)
            code = 1
            _json_failure(message, code, None)
        sys.stdout.flush()  # here, so that a closed pipe is met while it can be handled
    except BrokenPipeError:
        # The reader has what it wanted (``| head -1``): stop quietly, as cat and ls do.
        # The exit code stays the command's: under ``set -o pipefail`` a refusal still fails.
        stdout_closed()
    sys.exit(code)


def stdout_closed() -> None:
    """The reader of stdout went away: further output goes to /dev/null.

    So the rest of the command (its exit code, its errors on stderr) and the
    interpreter's own last flush cannot fail on the closed pipe.
    """
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _json_failure(message: str, code: int, result: Any) -> None:
    """With ``--json``, a failure is one JSON object on stdout too (the result's, if it has one)."""
    if not _OUT.as_json:
        return
    failure = {**(result if isinstance(result, dict) else {}), "error": inert(message),
               "exit": code}
    print(json.dumps(failure, indent=2, sort_keys=True, default=str, ensure_ascii=True))


def emit_result(result: Any, as_json: bool) -> None:
    """Print a command's typed result: ``to_dict()`` as JSON, or ``text()`` of an inert copy."""
    if as_json:
        emit(result.to_dict(), True)
    elif not _OUT.quiet:
        text = inert_data(result).text()
        if text:
            print(text)


def emit(result: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print ``result`` as JSON, or through ``human`` for people.

    JSON is ASCII (``ensure_ascii``: controls arrive as ``\\u001b``, never as
    bytes); ``human`` formats a copy whose every string is :func:`inert`.
    """
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str, ensure_ascii=True))
    elif human is not None and not _OUT.quiet:
        text = human(inert_data(result))
        if text:
            print(text)


class _NoBar:
    """The bar nobody sees: what ``_bar`` gives off a terminal, without importing tqdm."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str) -> Any:
    """A byte bar on stderr, only when stdout and stderr are both terminals (and not -q)."""
    if not (_OUT.progress and _isatty(sys.stdout) and _isatty(sys.stderr)):
        return _NoBar()
    # Imported here, and only for a bar that shows: tqdm's import (about 50 ms with the
    # importlib.metadata it pulls in) is paid by no script, pipe or journal reader.
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
    )


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextmanager
def progress(total: int, desc: str) -> Iterator[Callable[[int], None]]:
    """A byte progress bar on stderr, shown only on a terminal."""
    if _OUT.verbose:
        print(f"{desc}" + (f" ({human_size(total)})" if total else ""), file=sys.stderr)
    bar = _bar(total, desc)

    def tick(n: int) -> None:
        bar.update(n)

    try:
        yield tick
    finally:
        bar.close()


#: How library code reports progress without printing: ``progress(phase,
#: nbytes, total)`` says ``nbytes`` more of ``total`` are done in ``phase``.
Progress = Callable[[str, int, int], None]


def no_progress(phase: str, nbytes: int, total: int) -> None:
    """The default :data:`Progress`: report nothing."""


@contextmanager
def phase_bars() -> Iterator[Progress]:
    """A :data:`Progress` for command lines: one bar per phase, the last one closed at exit."""
    bars: dict[str, Any] = {}

    def report(phase: str, nbytes: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            for old in bars.values():
                old.close()
            bars.clear()
            if _OUT.verbose:
                print(f"{phase} ({human_size(total)})", file=sys.stderr)
            bar = bars[phase] = _bar(total, phase)
        bar.update(nbytes)

    try:
        yield report
    finally:
        for bar in bars.values():
            bar.close()


def columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows as a plain table: each column as wide as its widest cell, two spaces between.

    ``columns([("HOST", "RING"), ("cam-7", "canary")])`` is ``HOST   RING\ncam-7  canary``.
    """
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def human_size(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
