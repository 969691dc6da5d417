"""Fixtures of the agent-kit tests: real kits of this checkout, built once per session.

``kits(name)`` builds ``VARIANTS[name]`` (tests/support/agentkit.py): ``a``
is this checkout at version 1.0.0 for this machine; ``b`` is 1.1.0, whose ROOT format is 2 (with a migration that leaves
``ROOT/format-2-marker``); ``b-broken`` is 1.1.0 whose ``status`` fails (its
self-check must fail); ``b-first-start`` is 1.1.0 that fails only when started
through the entry point (its first start must fail); ``arm64`` is 1.0.0 for
linux/arm64. All are signed by the session's release key with one
``SOURCE_DATE_EPOCH``, so building one again gives the same bytes. Each
carries a systemd unit (the project's, or ``TEST_UNIT``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from tests.support.agentkit import TEST_UNIT, VARIANTS, BuiltKit, build_kit, project_copy
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
            unit = project / "packaging" / "airlock-agent.service"
            if not unit.exists():  # until the observe work brings the real one
                unit.write_text(TEST_UNIT)
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
