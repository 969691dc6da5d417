"""Cut a bundle into parts that fit the media, and join parts back into one file.

::

    parts = split_bundle(Path("vision-1.2.0.airlock"), parse_size("4000MiB"))
    # vision-1.2.0.airlock.part001, .part002, … and vision-1.2.0.airlock.parts.json
    join_parts(Path("vision-1.2.0.airlock.part001"), Path("/tmp/vision-1.2.0.airlock"))

FAT32, still the file system of most USB sticks, cannot hold a file of 4 GiB
or more; the default part size, 4000 MiB, stays below that. The part format,
and the reader the agent installs from without joining, are
``airlock.format.parts``. ``join`` checks every part's sha256 and the whole
bundle's against ``parts.json`` while it copies, and leaves nothing behind
when a check fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from airlock.console import open_bundle
from airlock.errors import FormatError, UsageError
from airlock.files import PartialFile
from airlock.format.bundle import BundleReader
from airlock.format.parts import PartSet, PartsReader, PartsWriter, resolve_media
from airlock.limits import CHUNK

__all__ = ["DEFAULT_MAX_SIZE", "join_parts", "split_bundle"]

#: Below FAT32's 4 GiB - 1 byte file size limit, with room to spare.
DEFAULT_MAX_SIZE = "4000MiB"


def split_bundle(bundle: Path, max_size: int,
                 progress: Callable[[int], None] | None = None,
                 directory: Path | None = None) -> PartSet:
    """Write ``BUNDLE.partNNN`` and ``BUNDLE.parts.json`` beside ``bundle`` (or in
    ``directory``, straight onto the stick); the bundle stays."""
    if directory is not None and not directory.is_dir():
        raise UsageError(f"-o {directory}: not a directory (the parts go into an existing one)")
    stream, _ = open_bundle(str(bundle))
    with stream:
        BundleReader(stream).head()  # refuse to cut up something that is not a bundle
        stream.seek(0)
        target = bundle if directory is None else directory / bundle.name
        writer = PartsWriter(target, max_size, progress)
        try:
            while chunk := stream.read(CHUNK):
                writer.write(chunk)
            return writer.publish()
        except BaseException:
            writer.discard()
            raise


def join_parts(source: Path, output: Path | None,
               progress: Callable[[int], None] | None = None) -> tuple[PartSet, Path]:
    """Reassemble the parts ``source`` names into ``output`` (default: the bundle's own
    name in the current directory), checked; returns the parts read and the file written."""
    found = resolve_media(source)
    if not isinstance(found, PartSet):
        raise UsageError(f"{source} is not a part of a split bundle (BUNDLE.part001 or "
                         "BUNDLE.parts.json)")
    if output is None:
        output = Path(Path(found.bundle_name).name)  # a name, never a path from the stick
    if output.exists() and any(output.samefile(p.path) for p in found.parts if p.path.exists()):
        raise UsageError(f"{output} is one of the parts; choose another -o")
    whole = hashlib.sha256()
    # A fixed name, so a crash's leftover is replaced next time (unlinked, never followed).
    with PartsReader(found) as reader, \
            PartialFile(output, name=f".{output.name}.partial") as partial:
        while chunk := reader.read(CHUNK):
            partial.file.write(chunk)
            whole.update(chunk)
            if progress:
                progress(len(chunk))
        if found.sha256 is not None and whole.hexdigest() != found.sha256:
            raise FormatError(f"the joined bundle's sha256 is {whole.hexdigest()[:16]}…, "
                              f"{found.label} says {found.sha256[:16]}…")
        partial.publish()
    return found, output
