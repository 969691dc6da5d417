"""Agent kits for tests: this checkout at a chosen version, built into a real kit, installed offline.

    project = project_copy(tmp / "proj-b", "1.1.0", patches=[("agent/observe/status.py", old, new)])
    kit = build_kit(project, keys, tmp / "kit-b.tar")       # `airlock agent-kit`, real wheels
    device = KitDevice(tmp / "site")
    r = device.install_sh(kit, "--trust", keys.trust)       # `sh install.sh`, pip with no index
    device.agent("--version", "--json")                     # the installed agent, not this checkout
    image = DeviceImage.save(device, tmp / "base")          # set aside; image.restore() per test

Kits are built with the wheel cache in ``$XDG_CACHE_HOME/airlock/wheels``, which
tests/conftest.py points at the suite's own persistent cache (``$AIRLOCK_TEST_CACHE``,
default ``/var/tmp/airlock-test-cache``), so only a cold cache needs the package index. Everything a device runs is run with
``PYTHONPATH`` removed and pip pointed at no index (``PIP_NO_INDEX``,
``PIP_INDEX_URL`` at a closed port): the installed agent must stand alone.
pip installs without byte-compiling (``AIRLOCK_KIT_NO_COMPILE=1``, most of an
install's time) unless a test asks for the default.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cli import REPO, run_airlock
from tests.support.device import copy_device
from tests.support.keyset import Keys

_SOURCES = ("pyproject.toml", "README.md", "airlock", "keys", "bundler", "agent", "packaging")

#: The environment of everything that runs on the "device": no checkout on the
#: path, no index for pip, no crash point unless a test sets one.
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/nowhere",
           "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "", "AIRLOCK_KIT_NO_COMPILE": "1"}


A, B = "1.0.0", "1.1.0"
#: B's own failures, armed by a file in its PREFIX (so one kit of B serves every test):
#: ``break-status``: its ``status`` fails (its self-check must fail);
#: ``break-first-start``: it fails when started through the entry point (its first start).
_TRAPS = ("agent/cli.py", "    if _version_only(argv):\n",
          "    import sys\n"
          "    home = Path(sys.prefix).resolve().parent.parent\n"
          "    if (home / 'break-status').exists() and 'status' in argv:\n"
          "        raise RuntimeError('this build cannot read ROOT')\n"
          "    if (home / 'break-first-start').exists() and '/agents/' not in sys.argv[0]:\n"
          "        raise RuntimeError('broken when started as the entry point')\n"
          "    if _version_only(argv):\n")
_FORMAT_2 = [
    ("agent/rootformat.py", "ROOT_FORMAT: Final = 1", "ROOT_FORMAT: Final = 2"),
    ("agent/rootformat.py", "MIGRATIONS: dict[int, Callable[[Layout], None]] = {}",
     "MIGRATIONS: dict[int, Callable[[Layout], None]] = {\n"
     "    1: lambda layout: (layout.root / 'format-2-marker').touch()}"),
]
VARIANTS: dict[str, tuple[str, list[tuple[str, str, str]], tuple[str, ...]]] = {
    "a": (A, [], ()),
    "b": (B, [*_FORMAT_2, _TRAPS], ()),
    "arm64": (A, [], ("--platform", "linux/arm64")),
    "arm64-b": (B, [], ("--platform", "linux/arm64")),
}


@dataclass(frozen=True)
class BuiltKit:
    """A kit built by the ``kits`` fixture (tests/kit/conftest.py) and the sources it came from."""

    project: Path
    kit: Path
    version: str


def device_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "AIRLOCK_ROOT", "AIRLOCK_CRASH_AT")}
    return {**env, **OFFLINE, **(extra or {})}


def project_copy(dest: Path, version: str,
                 patches: Sequence[tuple[str, str, str]] = ()) -> Path:
    """The sources of this checkout at ``version``, with text ``patches`` (path, old, new)."""
    dest.mkdir(parents=True)
    for name in _SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            shutil.copy2(src, dest / name)
    pyproject = dest / "pyproject.toml"
    text = pyproject.read_text()
    assert 'version = "' in text
    lines = [f'version = "{version}"' if ln.startswith("version = ") else ln
             for ln in text.splitlines()]
    pyproject.write_text("\n".join(lines) + "\n")
    for rel, old, new in patches:
        path = dest / rel
        source = path.read_text()
        assert old in source, (rel, old)
        path.write_text(source.replace(old, new, 1))
    return dest


def build_kit(project: Path, keys: Keys, out: Path, *extra: Any) -> Path:
    """``airlock agent-kit`` of ``project`` for this machine, signed with the release key."""
    r = run_airlock("agent-kit", "--project", project, "--key", keys.release_key, "-o", out,
                    *extra, timeout=900)
    assert r.returncode == 0, r.stderr
    return out


def unpack(kit: Path, dest: Path) -> Path:
    """``tar xf`` a kit as a site does; the kit's directory."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(kit) as tar:
        tar.extractall(dest, filter="data")
        top = tar.getnames()[0].split("/")[0]
    return dest / top


@dataclass
class KitDevice:
    """A device installed from a kit: PREFIX, ROOT and the bin dir under one directory."""

    dir: Path

    @property
    def prefix(self) -> Path:
        return self.dir / "opt"

    @property
    def root(self) -> Path:
        return self.dir / "var"

    @property
    def bin(self) -> Path:
        return self.dir / "bin" / "airlock-agent"

    def install_sh(self, kit: Path, *args: Any, env: Mapping[str, str] | None = None,
                   kit_dir: Path | None = None, cwd: Path | None = None
                   ) -> subprocess.CompletedProcess[str]:
        """Unpack ``kit`` (unless ``kit_dir`` is given) and run its install.sh for this device."""
        (self.dir / "systemd").mkdir(parents=True, exist_ok=True)
        if kit_dir is None:
            media = self.dir / "media" / kit.stem
            # Unpacked once: a copy of the device (DeviceImage) shares these files.
            known = [d for d in media.iterdir() if d.is_dir()] if media.is_dir() else []
            kit_dir = known[0] if known else unpack(kit, media)
        return subprocess.run(
            ["sh", str(kit_dir / "install.sh"), "--prefix", str(self.prefix), "--root",
             str(self.root), "--bin-dir", str(self.dir / "bin"), "--systemd-dir",
             str(self.dir / "systemd"), *map(str, args)],
            capture_output=True, text=True, env=device_env(env), cwd=cwd or self.dir,
            timeout=900)

    def agent(self, *args: Any, env: Mapping[str, str] | None = None,
              exe: Path | None = None) -> subprocess.CompletedProcess[str]:
        """The installed ``airlock-agent --root ROOT ARGS`` (through the bin-dir link)."""
        return subprocess.run([str(exe or self.bin), "--root", str(self.root), *map(str, args)],
                              capture_output=True, text=True, env=device_env(env),
                              cwd=self.dir, timeout=900)

    def json(self, *args: Any) -> dict[str, Any]:
        r = self.agent(*args, "--json")
        assert r.returncode == 0, (args, r.returncode, r.stderr)
        result: dict[str, Any] = json.loads(r.stdout)
        return result

    def version(self) -> str:
        return str(self.json("--version")["version"])

    def agents(self) -> list[str]:
        return sorted(p.name for p in (self.prefix / "agents").iterdir())

    def link(self, which: str) -> str | None:
        try:
            return os.readlink(self.prefix / which).split("/")[-1]
        except OSError:
            return None


@dataclass(frozen=True)
class DeviceImage:
    """A kit-installed device set aside at ``base``, copied back to ``run`` for each test.

    A venv names its own path, so the copy lives where the device was installed.
    PREFIX (``opt``) and the unpacked kit (``media``) are hard-linked: their files are
    only ever replaced by rename, never written in place; ROOT is copied.
    """

    base: Path
    run: Path

    @classmethod
    def save(cls, device: KitDevice, base: Path) -> DeviceImage:
        device.dir.rename(base)
        return cls(base, device.dir)

    def restore(self) -> KitDevice:
        shutil.rmtree(self.run, ignore_errors=True)
        self.run.mkdir(parents=True)
        for entry in self.base.iterdir():
            copy_device(entry, self.run / entry.name, link=entry.name in ("opt", "media"))
        return KitDevice(self.run)


@dataclass(frozen=True)
class Installed:
    """A kit installed by ``install.sh`` on a fresh device, and how that went."""

    image: DeviceImage | None  # None when install.sh failed (tests then say why)
    result: subprocess.CompletedProcess[str]
    seconds: float
    hostile_ran: Path  # written by a hostile module if one ever ran
