"""A terminal on standard input whose person has already typed the answers.

    with answering(b"y\n") as tty:
        r = run_airlock("sign", bundle, "--key", key, stdin=tty)   # isatty() is true; reads "y"

A pseudo-terminal with echo off: the command sees a terminal (so it asks
instead of refusing) and reads the typed lines in order.
"""

from __future__ import annotations

import contextlib
import os
import pty
import termios
from collections.abc import Iterator


@contextlib.contextmanager
def answering(typed: bytes) -> Iterator[int]:
    """The terminal's file descriptor, for a child's ``stdin``; ``typed`` waits in it."""
    person, terminal = pty.openpty()
    attrs = termios.tcgetattr(terminal)
    attrs[3] &= ~termios.ECHO  # the answers need not come back to us
    termios.tcsetattr(terminal, termios.TCSANOW, attrs)
    os.write(person, typed)
    try:
        yield terminal
    finally:
        os.close(person)
        os.close(terminal)
