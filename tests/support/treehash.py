"""A hash of everything under a directory: names, types, modes, sizes, bytes, link targets.

    before = tree_hash(root, skip={"journal.jsonl"})
    ...                                   # run something that must write nothing
    assert tree_hash(root, skip={"journal.jsonl"}) == before

``listing`` gives the same facts as a list, for a readable assertion diff.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Collection
from pathlib import Path


def listing(root: Path, skip: Collection[str] = ()) -> list[str]:
    """One line per entry under ``root`` (relative path, kind, mode, content hash)."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in skip or rel.split(os.sep)[0] in skip:
                continue
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out.append(f"{rel} link {os.readlink(p)}")
            elif stat.S_ISDIR(st.st_mode):
                out.append(f"{rel} dir {mode:o}")
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                out.append(f"{rel} file {mode:o} {st.st_size} {h.hexdigest()[:16]}")
            else:
                out.append(f"{rel} special {st.st_mode:o}")
    return out


def tree_hash(root: Path, skip: Collection[str] = ()) -> str:
    return hashlib.sha256("\n".join(listing(root, skip)).encode()).hexdigest()
