"""Copy a bundle (or its parts) to devices over SFTP, resuming what an earlier copy left.

``airlock fleet push BUNDLE HOST[:PORT]… --user U --identity KEY --known-hosts FILE``::

    login = Login("airlock", Path("id_ed25519"), Path("site/known_hosts"))
    for result in push_all(Path("vision-1.3.0.airlock"), [Target.parse("cam-7")], login,
                           dest="/var/lib/airlock/incoming"):
        print(result.target, result.ok, result.bytes_sent)

Each file goes to ``DEST/.NAME.partial`` and is renamed to ``DEST/NAME`` only
after its sha256 on the device matches the local one, so a drop folder never
sees half a bundle. A copy that broke off resumes from the bytes already
there, but only after the device has hashed that prefix and it matched the
local file's (``head -c N | sha256sum`` on the device; over SFTP, reading it
back, when the device has no shell): bytes on the device are checked, never
trusted. A file already complete is hashed and skipped. For a split bundle the
parts go first and ``parts.json`` last, so its arrival means the set is whole.

Each host is pushed in turn; a failure on one is reported and the next one
is tried. The SSH connection, with its strict host-key checks, is
``bundler.fleet.ssh``.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
import stat
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from airlock.console import human_size
from airlock.errors import AirlockError, FormatError, UnreachableError, UsageError
from airlock.format.parts import PartSet, resolve_media
from airlock.limits import CHUNK
from bundler.fleet.ssh import Login, Target, connect, run

__all__ = ["FileSent", "HostResult", "files_of", "push_all", "push_files", "push_text",
           "send_files"]

#: ``progress(host, bytes)``: more bytes of the current file reached ``host``.
PushProgress = Callable[[str, int], None]


@dataclass
class FileSent:
    name: str
    size: int
    sent: int = 0  # bytes that travelled this time
    resumed_from: int = 0  # bytes already on the device, checked
    already_there: bool = False


@dataclass
class HostResult:
    target: str
    ok: bool = False
    files: list[FileSent] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0
    recorded_host_keys: list[str] = field(default_factory=list)

    @property
    def bytes_sent(self) -> int:
        return sum(f.sent for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_sent": self.bytes_sent}


def files_of(bundle: Path) -> list[Path]:
    """What to copy for ``bundle``: the file, or a split bundle's parts then ``parts.json``."""
    found = resolve_media(bundle)
    if isinstance(found, PartSet):
        if found.manifest is None:
            raise UsageError(f"{bundle}: parts without their parts.json; run 'airlock split' "
                             "again or push the whole bundle")
        return [p.path for p in found.parts] + [found.manifest]
    path = found if isinstance(found, Path) else bundle
    if not path.is_file():
        raise UsageError(f"{bundle} is not a bundle file")
    return [path]


def _local_sha256(path: Path, length: int | None = None) -> str:
    h, left = hashlib.sha256(), length
    with path.open("rb") as f:
        while left is None or left > 0:
            chunk = f.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


class _Device:
    """One connection's SFTP session, with the device-side hashing that checks a prefix."""

    def __init__(self, client: paramiko.SSHClient) -> None:
        self.client = client
        self.sftp = client.open_sftp()
        self._shell_hash = True

    def size(self, path: str) -> int | None:
        try:
            st = self.sftp.stat(path)
        except OSError:
            return None
        return st.st_size if st.st_mode is not None and stat.S_ISREG(st.st_mode) else None

    def sha256(self, path: str, length: int) -> str:
        """sha256 of the first ``length`` bytes of ``path`` on the device."""
        if self._shell_hash:
            # Absolute path (the shell may start elsewhere than SFTP); `test -f` because a
            # pipeline's status is sha256sum's, even when head could not open the file.
            quoted = shlex.quote(self.sftp.normalize(path))
            status, out, _ = run(self.client,
                              f"test -f {quoted} && head -c {length} -- {quoted} | sha256sum")
            text = out.decode(errors="replace").split()
            if status == 0 and text and len(text[0]) == 64:
                return text[0]
            self._shell_hash = False  # no shell or no coreutils: read it back instead
        h, done = hashlib.sha256(), 0
        with self.sftp.open(path, "rb") as f:
            f.prefetch(length)
            while done < length:
                chunk = f.read(min(CHUNK, length - done))
                if not chunk:
                    break
                h.update(chunk)
                done += len(chunk)
        return h.hexdigest()

    def makedirs(self, path: str) -> None:
        parts, at = [p for p in path.split("/") if p], "/" if path.startswith("/") else ""
        for p in parts:
            at = posixpath.join(at, p) if at else p
            if self.size(at) is None:
                try:
                    self.sftp.mkdir(at)
                except OSError:
                    if not self._is_dir(at):
                        raise

    def _is_dir(self, path: str) -> bool:
        try:
            mode = self.sftp.stat(path).st_mode
        except OSError:
            return False
        return mode is not None and stat.S_ISDIR(mode)


def _send(device: _Device, local: Path, dest: str, sent: FileSent,
          progress: Callable[[int], None]) -> None:
    """Copy one file; ``sent`` counts what travelled, even when the copy breaks off."""
    size = sent.size
    final = posixpath.join(dest, local.name)
    partial = posixpath.join(dest, f".{local.name}.partial")
    whole = _local_sha256(local)
    if device.size(final) == size and device.sha256(final, size) == whole:
        sent.already_there = True
        return
    there = device.size(partial) or 0
    if 0 < there <= size and device.sha256(partial, there) == _local_sha256(local, there):
        sent.resumed_from = there
    with local.open("rb") as src, device.sftp.open(
            partial, "r+b" if sent.resumed_from else "wb") as out:
        out.set_pipelined(True)
        src.seek(sent.resumed_from)
        out.seek(sent.resumed_from)
        while chunk := src.read(CHUNK):
            out.write(chunk)
            sent.sent += len(chunk)
            progress(len(chunk))
        out.truncate(size)  # a longer stale partial must not keep its tail
    arrived = device.sha256(partial, size)
    if device.size(partial) != size or arrived != whole:
        device.sftp.remove(partial)
        raise FormatError(f"{local.name} arrived with sha256 {arrived[:16]}…, not "
                          f"{whole[:16]}…; removed it, push again")
    device.sftp.posix_rename(partial, final)


def send_files(client: paramiko.SSHClient, files: Sequence[Path], dest: str,
               sent: list[FileSent], progress: Callable[[int], None]) -> str:
    """Copy ``files`` in order over an open connection; the absolute ``dest`` on the device.

    ``sent`` gets one entry per file as it starts, so it tells what travelled even when
    the copy breaks off. ``airlock fleet rollout`` calls this on the connection it then
    runs the agent over.
    """
    device = _Device(client)
    device.makedirs(dest)
    for local in files:
        one = FileSent(local.name, local.stat().st_size)
        sent.append(one)
        _send(device, local, dest, one, progress)
    return device.sftp.normalize(dest)


def push_files(target: Target, files: Sequence[Path], login: Login, dest: str = ".",
               progress: PushProgress | None = None) -> HostResult:
    """Copy ``files`` in order to ``dest`` on one device; never raises for that device's errors."""
    result = HostResult(str(target))
    try:
        with connect(target, login, result.recorded_host_keys) as client:
            send_files(client, files, dest, result.files,
                       lambda n: progress(str(target), n) if progress else None)
        result.ok = True
    except AirlockError as e:
        result.error, result.exit_code = str(e), e.exit_code
    except (OSError, EOFError, paramiko.SSHException) as e:
        lost = UnreachableError(f"copy to {target} broke off ({e or type(e).__name__}); "
                                "push again to resume from what arrived")
        result.error, result.exit_code = str(lost), lost.exit_code
    return result


def push_all(bundle: Path, targets: Sequence[Target], login: Login, dest: str = ".",
             progress: PushProgress | None = None) -> list[HostResult]:
    """:func:`push_files` of ``bundle`` (or its parts) to every target in turn."""
    files = files_of(bundle)
    return [push_files(t, files, login, dest, progress) for t in targets]


def push_text(d: dict[str, Any]) -> str:
    """The ``airlock fleet push`` result as text for people (the command line prints it)."""
    lines = []
    for h in d["hosts"]:
        if h["ok"]:
            sent = sum(f["sent"] for f in h["files"])
            resumed = sum(f["resumed_from"] for f in h["files"])
            there = sum(1 for f in h["files"] if f["already_there"])
            lines.append(
                f"{h['target']}: {len(h['files'])} file(s) in {d['dest']}, "
                f"{human_size(sent)} sent"
                + (f", resumed after {human_size(resumed)} already there" if resumed
                   else "")
                + (f", {there} already complete" if there else "")
                + ", sha256 checked on the device"
            )
        else:
            lines.append(f"{h['target']}: FAILED: {h['error']}")
        lines += [f"  recorded new host key {k}" for k in h["recorded_host_keys"]]
    return "\n".join(lines)
