"""Fixtures of the agent-kit tests: real kits of this checkout, built and installed once per session.

``kits(name)`` builds ``VARIANTS[name]`` (tests/support/agentkit.py): ``a``
is this checkout at version 1.0.0 for this machine; ``b`` is 1.1.0, whose ROOT
format is 2 (with a migration that leaves ``ROOT/format-2-marker``) and which
fails its self-check or its first start when a test arms it with a file in
PREFIX; ``arm64`` is 1.0.0 for linux/arm64 and ``arm64-b`` 1.1.0 for linux/arm64 (as
released, no traps; tests/kit/test_arm64.py). All are signed by the session's
release key with one ``SOURCE_DATE_EPOCH``, so building one again gives the
same bytes, and carry the project's systemd unit.

``installed`` is kit ``a`` installed once with ``install.sh`` (pip compiling, as
on a real device, and with hostile modules on ``PYTHONPATH`` and in its working
directory), set aside as a ``DeviceImage``: tests restore a copy of it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from tests.support.agentkit import (
    VARIANTS,
    BuiltKit,
    DeviceImage,
    Installed,
    KitDevice,
    build_kit,
    project_copy,
)
from tests.support.keyset import Keys


@pytest.fixture(scope="session")
def source_date_epoch() -> str:
    return os.environ.get("SOURCE_DATE_EPOCH") or str(int(time.time()))


@pytest.fixture(scope="session")
def kits(tmp_path_factory: pytest.TempPathFactory, keyset: Keys,
         source_date_epoch: str) -> Callable[[str], BuiltKit]:
    """kits(name) -> the kit of VARIANTS[name], built on first use."""
    built: dict[str, BuiltKit] = {}
    work = tmp_path_factory.mktemp("kits")

    def get(name: str) -> BuiltKit:
        if name not in built:
            version, patches, extra = VARIANTS[name]
            project = project_copy(work / f"project-{name}", version, patches)
            out = work / f"airlock-agent-kit-{name}.tar"
            old = os.environ.get("SOURCE_DATE_EPOCH")
            os.environ["SOURCE_DATE_EPOCH"] = source_date_epoch
            try:
                build_kit(project, keyset, out, *extra)
            finally:
                if old is None:
                    del os.environ["SOURCE_DATE_EPOCH"]
                else:
                    os.environ["SOURCE_DATE_EPOCH"] = old
            built[name] = BuiltKit(project, out, version)
        return built[name]

    return get


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory, kits: Callable[[str], BuiltKit],
              keyset: Keys) -> Installed:
    work = tmp_path_factory.mktemp("installed")
    evil = work / "stick"
    evil.mkdir()
    ran = work / "hostile-code-ran"
    for name in ("json.py", "sitecustomize.py", "hashlib.py", "pip.py"):
        (evil / name).write_text(f"open({str(ran)!r}, 'a').write('{name}\\n')\n")
    device = KitDevice(work / "run")
    started = time.monotonic()
    r = device.install_sh(kits("a").kit, "--trust", keyset.trust, "--device-id", "cam-7",
                          env={"PYTHONPATH": str(evil), "PYTHONSTARTUP": str(evil / "json.py"),
                               "AIRLOCK_KIT_NO_COMPILE": "0"},
                          cwd=evil)
    seconds = time.monotonic() - started
    image = DeviceImage.save(device, work / "base") if r.returncode == 0 else None
    return Installed(image, r, seconds, ran)


@pytest.fixture
def fresh(installed: Installed) -> KitDevice:
    """A copy of the device ``installed`` made, at the path its venv was made for."""
    assert installed.image is not None, installed.result.stderr
    return installed.image.restore()
