"""The shape ROOT must have: checked by every command, restored by ``fsck --repair``.

Each path under ROOT has one kind, and the agent's records must read as
records. The state directories (``trust/``, ``blobs/``, ``blobs/sha256/``,
``releases/``, ``staging/``, ``images/``) are real directories, never
symbolic links; ``agent.yaml``, ``trust/root.json``, ``trust/sequences.json``,
``transaction.json``, ``journal.jsonl`` and ``lock`` are regular files;
``current`` and ``previous`` are symbolic links; each ``releases/NAME-SEQ``
is a directory and each ``blobs/sha256/<hex>`` a regular file. A site can
break any of that (a ``cp -r`` that followed a link, a file copied to the
wrong name, a disk fault), and then::

    flaws = find_flaws(layout)        # [] on a sound ROOT; status lists them
    require_sound(layout)             # DamagedRootError (exit 5) naming the first one
    done, left = repair_shape(layout) # fsck --repair: what it fixed, what a person must do

Nothing here follows a link or touches anything outside ROOT. A symbolic
link where a directory belongs may lead to real data (a store moved to
another disk), so it is left alone and its flaw says what to do. Debris is
replaced: a file or directory standing where a link, a lock or the
transaction record belongs is removed, a missing or wrong-typed state
directory is made anew, the journal is renamed aside (kept as evidence),
and ``sequences.json`` is rebuilt from what survives of it, the installed
releases and the journal. ``agent.yaml`` and the trust root are the
operator's: fsck says how to restore them and never invents them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from agent.journal import Journal
from agent.layout import RESTORE_TRUST, Layout
from airlock.errors import AirlockError, DamagedRootError
from airlock.files import fsync_dir, kind_of, read_json, write_json
from airlock.limits import MAX_SEQUENCE

__all__ = ["Flaw", "find_flaws", "is_read_only", "lock_is_debris", "repair_shape",
           "require_sound"]

_FIX = "run 'airlock-agent fsck --repair'"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Flaw:
    """One path of ROOT that is not what it must be."""

    path: Path
    detail: str  # "a file where a directory belongs"
    #: What ``repair_shape`` does: "mkdir" (replace with an empty directory), "remove"
    #: (debris, unlinked or removed without following links), "set-aside" (renamed to
    #: NAME.damaged), "rebuild" (sequences.json) or "manual" (``manual`` says what to do).
    fix: str
    manual: str = ""
    #: Commands that change ROOT refuse to run while a blocking flaw remains; the others
    #: (config, trust root, sequences) are refused by the code that reads them, when it does.
    blocking: bool = True
    kind: str = "wrong-type"  # or "bad-record": the right kind of file, but not a record

    def describe(self) -> str:
        return f"{self.detail}; {self.manual}" if self.fix == "manual" else self.detail


def _kind(path: Path) -> str | None:
    try:
        return kind_of(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a parent is not a directory; that parent is the flaw


def _dir_flaw(layout: Layout, path: Path) -> Flaw | None:
    kind = _kind(path)
    if kind == "directory":
        return None
    if kind is None:
        return Flaw(path, "missing", "mkdir")
    if kind == "symbolic link":
        return Flaw(path, f"a symbolic link to {os.readlink(path)} where a directory belongs",
                    "manual", f"Airlock keeps its state inside ROOT and never follows it: move "
                    f"what it leads to into a real directory at ROOT/{layout.rel(path)} (or mount "
                    f"that disk there), then {_FIX}")
    return Flaw(path, f"a {kind} where a directory belongs", "mkdir")


def _record_flaw(path: Path, fix: str, *, manual: str = "", blocking: bool = True,
                 links_ok: bool = False) -> Flaw | None:
    """A flaw when ``path`` exists and is not a regular file (None when absent or a file)."""
    kind = _kind(path)
    if kind in (None, "file") or (links_ok and kind == "symbolic link" and path.is_file()):
        return None
    return Flaw(path, f"a {kind} where a file belongs", fix, manual, blocking)


def find_flaws(layout: Layout) -> list[Flaw]:
    """Every flaw of ROOT's shape and records, parents before what is under them."""
    flaws: list[Flaw] = []

    def add(flaw: Flaw | None) -> bool:
        if flaw is not None:
            flaws.append(flaw)
        return flaw is None

    config_fix = ("write the device's settings there as YAML: device_id, ring, sink "
                  "(see docs/AGENT.md)")
    if os.path.lexists(layout.config) and not layout.config.is_file():
        config_fix += _initialised_as(layout)
    if add(_record_flaw(layout.config, "manual", manual=f"remove it and {config_fix}",
                        blocking=False, links_ok=True)) and os.path.lexists(layout.config):
        try:
            layout.load_config()
        except AirlockError as e:
            detail = str(e).replace(str(layout.config), "", 1).lstrip(": ").removeprefix("is ")
            config_fix += _initialised_as(layout)
            add(Flaw(layout.config, detail, "manual", f"fix it: {config_fix}", blocking=False,
                     kind="bad-record"))

    sound = {d: add(_dir_flaw(layout, d)) for d in (
        layout.trust_dir, layout.blobs.parent, layout.releases, layout.staging, layout.images)}
    if sound[layout.blobs.parent]:
        sound[layout.blobs] = add(_dir_flaw(layout, layout.blobs))

    if sound[layout.trust_dir]:
        if _kind(layout.trust_root) is None:
            add(Flaw(layout.trust_root, "missing", "manual", RESTORE_TRUST, blocking=False))
        elif add(_record_flaw(layout.trust_root, "manual", blocking=False,
                              manual=f"remove it and {RESTORE_TRUST}")):
            problem = layout.trust_problem()
            if problem:
                add(Flaw(layout.trust_root, problem, "manual", RESTORE_TRUST, blocking=False,
                         kind="bad-record"))
        if add(_record_flaw(layout.sequences, "rebuild", blocking=False)):
            problem = layout.sequences_problem()
            if problem:
                add(Flaw(layout.sequences, problem, "rebuild", blocking=False,
                         kind="bad-record"))

    add(_record_flaw(layout.transaction, "remove"))
    add(_record_flaw(layout.lock, "remove"))
    add(_record_flaw(layout.journal, "set-aside"))
    for link in (layout.current, layout.previous):
        kind = _kind(link)
        if kind not in (None, "symbolic link"):
            add(Flaw(link, f"a {kind} where a symbolic link belongs", "remove"))

    if sound[layout.releases]:
        for path, kind in _odd_entries(layout.releases, "directory", Layout.is_release_id):
            add(Flaw(path, f"a {kind} where a release directory belongs", "remove"))
    if sound.get(layout.blobs):
        for path, kind in _odd_entries(layout.blobs, "file", _is_blob_name):
            add(Flaw(path, f"a {kind} where a blob belongs", "remove"))
    return flaws


def _is_blob_name(name: str) -> bool:
    return len(name) == 64 and _HEX.issuperset(name)


def _odd_entries(directory: Path, want: str, named: Callable[[str], bool]
                 ) -> list[tuple[Path, str]]:
    """Entries of ``directory`` named as ``named`` says whose kind is not ``want``."""
    odd = []
    for entry in os.scandir(directory):
        if not named(entry.name):
            continue
        try:  # status reads unlocked: gc may remove an entry between readdir and stat
            right = (entry.is_dir if want == "directory" else entry.is_file)(
                follow_symlinks=False)  # from readdir's d_type: no stat per blob
            if not right:
                odd.append((Path(entry.path), kind_of(entry.stat(follow_symlinks=False).st_mode)))
        except FileNotFoundError:
            continue
    return sorted(odd)


def _initialised_as(layout: Layout) -> str:
    """What ``init`` recorded in the journal, to help a person rewrite a lost config."""
    with contextlib.suppress(AirlockError, OSError):
        for e in Journal(layout.journal).entries():
            if isinstance(e, dict) and e.get("event") == "initialised":
                return (f"; the journal records init with device_id {e.get('device_id')!r} "
                        f"and ring {e.get('ring')!r}")
    return ""


def require_sound(layout: Layout) -> None:
    """Refuse (exit 5, nothing changed) to work on a ROOT with a blocking flaw."""
    flaws = [f for f in find_flaws(layout) if f.blocking]
    if not flaws:
        return
    first = flaws[0]
    more = f" (and {len(flaws) - 1} more)" if len(flaws) > 1 else ""
    what = first.manual if first.fix == "manual" else _FIX
    raise DamagedRootError(f"ROOT is damaged: {layout.rel(first.path)} is {first.detail}{more}; "
                           f"nothing was changed; {what}")


def _remove(path: Path) -> None:
    """Remove debris at ``path``; a link is unlinked, never followed (rmtree does not follow)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _set_aside(path: Path) -> Path:
    n, aside = 1, path.with_name(f"{path.name}.damaged")
    while os.path.lexists(aside):
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{n}")
    os.rename(path, aside)
    return aside


def _rebuild_sequences(layout: Layout) -> str:
    """The highest sequence per name that the device can still prove it accepted."""
    found: dict[str, int] = {}

    def see(name: object, seq: object) -> None:
        if isinstance(name, str) and type(seq) is int and 1 <= seq <= MAX_SEQUENCE:
            found[name] = max(found.get(name, 0), seq)

    with contextlib.suppress(OSError, ValueError):
        old = read_json(layout.sequences)
        if isinstance(old, dict):
            for name, seq in old.items():
                see(name, seq)
    for rid in layout.release_ids():
        with contextlib.suppress(AirlockError):
            release = layout.load_release(rid)
            see(release.name, release.sequence)
    with contextlib.suppress(AirlockError, OSError):
        for entry in Journal(layout.journal).entries():
            if not isinstance(entry, dict) or entry.get("event") != "installed":
                continue
            installed = entry.get("release")
            if isinstance(installed, str) and Layout.is_release_id(installed):
                see(installed.rpartition("-")[0], entry.get("sequence"))
    _remove(layout.sequences)
    write_json(layout.sequences, found)
    return (f"rebuilt it from what survived of it, the installed releases and the journal "
            f"({len(found)} release name(s))")


def repair_shape(layout: Layout, only: Collection[Path] | None = None
                 ) -> tuple[list[str], list[Flaw]]:
    """Fix every flaw that needs no person (under the lock); return what was done, and the
    flaws left (each with ``manual`` instructions). ``only`` limits it to those paths."""
    done: list[str] = []
    # A directory made anew can reveal flaws below it (blobs/ then blobs/sha256/).
    for _ in range(3):
        todo = [f for f in find_flaws(layout) if f.fix != "manual"
                and (only is None or f.path in only)]
        if not todo:
            break
        todo.sort(key=lambda f: f.fix == "rebuild")  # from the journal, once it is readable
        for flaw in todo:
            where = layout.rel(flaw.path)
            if flaw.fix == "mkdir":
                _remove(flaw.path)
                flaw.path.mkdir(mode=0o755)
                what = "made it an empty directory"
            elif flaw.fix == "remove":
                _remove(flaw.path)
                what = "removed it"
            elif flaw.fix == "set-aside":
                what = f"renamed it to {_set_aside(flaw.path).name}; a new journal starts here"
            else:
                what = _rebuild_sequences(layout)
            fsync_dir(flaw.path.parent)
            done.append(f"{where} was {flaw.detail}: {what}")
    left = [f for f in find_flaws(layout) if only is None or f.path in only]
    return done, left


def is_read_only(layout: Layout) -> bool:
    """ROOT sits on a filesystem mounted read-only (nothing can be recovered or installed)."""
    try:
        return bool(os.statvfs(layout.root).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def lock_is_debris(layout: Layout) -> bool:
    """Something other than a regular file stands where the lock file belongs."""
    return _kind(layout.lock) not in (None, "file")
