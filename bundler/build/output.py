"""Where the bundler may write: never over what it reads, never over a file of another kind.

A typo in ``-o`` must not cost a key or a model. ``airlock build`` refuses an
output that is one of its own inputs (the spec, a model or golden file, a
``--key``, the ``--root`` it carries), and replaces an existing file only when
it is a bundle, or empty, unless ``--force``::

    check_output(Path("vision-1.2.0.airlock"), [spec.path, model, key],
                 force=False, kind="an Airlock bundle", is_ours=is_bundle_file)
    with PartialFile(output, parents=True) as partial:   # airlock.files: a new file beside it
        partial.file.write(data)
        partial.publish()                                # fsync, rename, fsync the directory

Inputs are compared as files (``os.path.samefile``: a symlink or hard link to a
key is that key), so no spelling of a path gets past. The partial file is
created exclusively under a fresh name, so even it never truncates a file.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from airlock.errors import UsageError
from airlock.files import PartialFile
from airlock.format.writer import starts_like_bundle

__all__ = ["check_output", "exclusive_partial", "is_bundle_file", "replace_file"]


def is_bundle_file(path: Path) -> bool:
    """Whether the regular file ``path`` begins as the bundle writer begins a bundle."""
    with path.open("rb") as f:
        return starts_like_bundle(f.read(512))


def check_output(
    output: Path,
    inputs: Iterable[Path],
    *,
    force: bool,
    kind: str,
    is_ours: Callable[[Path], bool],
) -> None:
    """Refuse (UsageError, exit 2) to write ``output`` over an input or over a foreign file.

    ``force`` allows replacing an existing file that is not ``kind``
    (``is_ours`` says what is); it never allows replacing an input.
    """
    try:
        st = output.stat()
    except FileNotFoundError:
        return  # nothing there (a dangling symlink is replaced, not followed)
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{output} is a directory; give -o a file name")
    for path in inputs:
        with contextlib.suppress(OSError):
            if os.path.samefile(output, path):
                raise UsageError(
                    f"refusing to write {output}: it is {path}, which this command reads; "
                    "choose another -o"
                )
    if force or (stat.S_ISREG(st.st_mode) and st.st_size == 0):
        return
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"refusing to replace {output}: it is not a regular file "
                         "(use --force to replace it anyway)")
    try:
        ours = is_ours(output)
    except OSError as e:
        raise UsageError(f"cannot read {output}: {e.strerror}") from None
    if not ours:
        raise UsageError(f"refusing to replace {output}: it exists and is not {kind} "
                         "(use --force to replace it anyway, or choose another -o)")


@contextlib.contextmanager
def exclusive_partial(output: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A new file beside ``output`` (``.NAME.RANDOM.partial``), removed unless the caller
    renamed it over ``output``: :class:`airlock.files.PartialFile` seen as a path and a file.

    Kept for the command modules that still rename by path; new code uses
    ``PartialFile(output, parents=True)`` and its ``publish()``.
    """
    with PartialFile(output, parents=True) as partial:
        yield partial.path, partial.file


def replace_file(output: Path, data: bytes) -> None:
    """``data`` to ``output`` whole: a fresh partial file, fsynced, renamed into place."""
    with PartialFile(output, parents=True) as partial:
        partial.file.write(data)
        partial.publish()
