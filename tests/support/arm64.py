"""A Debian 12 arm64 device under emulation: binfmt_misc + qemu-user-static, a chroot per test.

    base = arm64_rootfs()                       # cached at $AIRLOCK_ARM64_ROOTFS, built once
    with Arm64Device.copy_of(base, tmp_path / "rootfs") as dev:
        dev.put(kit, "media/kit.tar")           # a file of this host, into the device
        r = dev.run("python3", "-c", "import platform; print(platform.machine())")  # aarch64

The root filesystem is made by ``debootstrap --arch=arm64 --variant=minbase
--include=python3,python3-venv bookworm`` (Debian's own packages, about 300 MB,
2–4 minutes) into a temporary name next to the cache and renamed when whole, so
an interrupted build is never taken for a cache. The cache is never written
afterwards: each device is a ``cp -a`` of it (about 5 s) with ``proc`` mounted
while it is used, removed afterwards. Programs in it run through the kernel's ``binfmt_misc``
handler for aarch64 (``qemu-aarch64-static``, registered with the F flag so the
chroot needs no emulator of its own); ``binfmt_misc`` is mounted and the handler
registered when absent. All of this needs root and Debian's ``qemu-user-static``,
``binfmt-support`` and ``debootstrap``: without them the test skips with the
reason, and fails under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DEFAULT_CACHE = Path("/var/tmp/airlock-arm64/rootfs")
MIRROR = os.environ.get("AIRLOCK_ARM64_MIRROR", "http://deb.debian.org/debian")
BUILD_TIMEOUT_S = float(os.environ.get("AIRLOCK_ARM64_BUILD_TIMEOUT", "900"))
_BINFMT = Path("/proc/sys/fs/binfmt_misc")
_HANDLER = _BINFMT / "qemu-aarch64"
_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
#: The whole environment of a program on the device: nothing of the host leaks in.
DEVICE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "HOME": "/root", "LANG": "C.UTF-8", "PIP_NO_INDEX": "1",
              "PIP_INDEX_URL": "http://127.0.0.1:9/nowhere", "AIRLOCK_KIT_NO_COMPILE": "1"}


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {why}")
    pytest.skip(why)


def ensure_emulation() -> None:
    """binfmt_misc mounted and aarch64 registered; skip (fail under CI) when that cannot be."""
    if os.geteuid() != 0:
        _unavailable("the arm64 test needs root (chroot, mount, binfmt_misc)")
    missing = [p for p in ("qemu-aarch64-static", "debootstrap", "chroot")
               if not shutil.which(p) and not Path("/usr/sbin", p).exists()]
    if missing or not _CONF.exists():
        _unavailable(f"{', '.join(missing) or _CONF} missing "
                     "(apt-get install qemu-user-static binfmt-support debootstrap)")
    if not (_BINFMT / "register").exists():
        r = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(_BINFMT)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            _unavailable(f"cannot mount binfmt_misc: {r.stderr.strip()}")
    if not _HANDLER.exists():
        # The line systemd-binfmt would write, without needing systemd.
        line = _CONF.read_text().strip().splitlines()[-1]
        (_BINFMT / "register").write_text(line)
    if "enabled" not in _HANDLER.read_text():
        _unavailable(f"{_HANDLER} is registered but disabled")


def _discard(partial: Path) -> None:
    """Remove a half-made rootfs, unmounting first what debootstrap mounted in it (proc, sys)."""
    inside = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if line.split()[1].startswith(f"{partial}/")]
    for mountpoint in sorted(inside, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], check=False)
    shutil.rmtree(partial, ignore_errors=True)


def arm64_rootfs(progress: Any = print) -> Path:
    """The cached Debian 12 arm64 root filesystem, made with debootstrap when absent."""
    ensure_emulation()
    cache = Path(os.environ.get("AIRLOCK_ARM64_ROOTFS", DEFAULT_CACHE))
    if (cache / "usr" / "bin" / "python3").exists():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.parent / f".{cache.name}.partial-{os.getpid()}"
    _discard(partial)
    started = time.monotonic()
    # Its own process group: on a timeout the chroot'd dpkg runs under it go too.
    proc = subprocess.Popen(
        ["debootstrap", "--arch=arm64", "--variant=minbase",
         "--include=python3,python3-venv", "bookworm", str(partial), MIRROR],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        _discard(partial)
        pytest.fail(f"debootstrap of the arm64 rootfs took over {BUILD_TIMEOUT_S:.0f} s "
                    "(AIRLOCK_ARM64_BUILD_TIMEOUT to allow more)")
    if proc.returncode != 0:
        _discard(partial)
        _unavailable(f"debootstrap failed: {' / '.join(output.strip().splitlines()[-3:])}")
    try:
        partial.rename(cache)  # whole or absent: a half-made tree is never the cache
    except OSError:  # another run made it meanwhile: theirs is as good
        _discard(partial)
    progress(f"arm64 rootfs made in {time.monotonic() - started:.0f} s at {cache}")
    return cache


@dataclass
class Arm64Device:
    """A copy of the rootfs with proc mounted: programs run in it with ``chroot``."""

    dir: Path

    @classmethod
    @contextmanager
    def copy_of(cls, base: Path, dest: Path) -> Iterator[Arm64Device]:
        subprocess.run(["cp", "-a", str(base), str(dest)], check=True)
        proc = dest / "proc"
        subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
        try:
            yield cls(dest)
        finally:
            # 300 MB a run: gone with the test, but never while proc is still mounted in it.
            if subprocess.run(["umount", str(proc)], check=False).returncode == 0:
                shutil.rmtree(dest, ignore_errors=True)

    def path(self, inside: str) -> Path:
        """A path of the device, as this host sees it."""
        return self.dir / inside.lstrip("/")

    def put(self, src: Path, inside: str) -> str:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        return "/" + inside.lstrip("/")

    def run(self, *argv: Any, env: Mapping[str, str] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """``chroot DIR env -i DEVICE_ENV ARGV``: the device's own programs, nothing of ours."""
        environ = [f"{k}={v}" for k, v in {**DEVICE_ENV, **(env or {})}.items()]
        return subprocess.run(["chroot", str(self.dir), "/usr/bin/env", "-i", *environ,
                               *map(str, argv)], capture_output=True, text=True,
                              timeout=timeout, cwd="/")
