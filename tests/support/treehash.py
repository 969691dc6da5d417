"""What is under a directory: names, kinds, modes, sizes, content hashes, link targets.

    before = tree_hash(root)            # a device root; the journal and lock file aside
    ...                                 # run something that must change nothing
    assert tree_hash(root) == before

``listing`` gives the same facts as a list, for a readable assertion diff:

    before = listing(site, skip={"root/journal.jsonl", "root/staging"})
    assert listing(site, skip={"root/journal.jsonl", "root/staging"}) == before

A ``skip`` entry leaves out that relative path and, when it is a directory,
everything under it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Collection
from pathlib import Path

# What every agent command may write even when it changes nothing else: the
# journal records the attempt, and the lock file is created on first use.
AGENT_BOOKKEEPING = ("journal.jsonl", "lock")


def listing(root: Path, skip: Collection[str] = ()) -> list[str]:
    """One line per entry under ``root`` (relative path, kind, mode, size, content hash)."""
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
                out.append(f"{rel} file {mode:o} {st.st_size} {h.hexdigest()}")
            else:
                out.append(f"{rel} special {st.st_mode:o}")
    return out


def tree_hash(root: Path, skip: Collection[str] = AGENT_BOOKKEEPING) -> str:
    """One sha256 over :func:`listing`; by default the agent's journal and lock file are left out."""
    return hashlib.sha256("\n".join(listing(root, skip)).encode()).hexdigest()
