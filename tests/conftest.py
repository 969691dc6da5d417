"""Session-wide fixtures: real keys, a real trust root, real bundles; a hermetic run.

Before anything runs, HOME, AIRLOCK_ROOT, AIRLOCK_FLEET and the download cache
(``XDG_CACHE_HOME``: ``$AIRLOCK_TEST_CACHE``, default ``/var/tmp/airlock-test-cache``,
kept across runs so agent kits do not download their ~100 MB of wheels every time)
point at the suite's own places, and the run fails if ``/var/lib/airlock``,
``/etc/systemd/system``, ``~/.cache/airlock``, ``./airlock-fleet`` or the checkout's
``demo/`` changed during it (tests/support/hermetic.py).

The plumbing they use lives in tests/support/ (one module per concern);
test modules import it from there, never from a conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import hermetic
from tests.support.keyset import Keys, make_keyset
from tests.support.spec import build, write_spec

_GLOBAL = pytest.StashKey[dict[str, Any]]()


def pytest_configure(config: pytest.Config) -> None:
    places = hermetic.watched_places()
    before = hermetic.snapshot(places)  # taken before the sandbox moves HOME
    sandbox = hermetic.enter_sandbox()
    if not hasattr(config, "workerinput"):  # the controller (or the only process) checks
        config.stash[_GLOBAL] = {"places": places, "before": before, "sandbox": sandbox}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_GLOBAL, None)
    if state is None:
        return
    changed = hermetic.compare(state["before"], hermetic.snapshot(state["places"]))
    hermetic.leave_sandbox(state["sandbox"])
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            for line in ["the run changed global state it must not touch:", *changed]:
                reporter.write_line(f"HERMETIC: {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """A root key, a release key and a trust root trusting the release key."""
    return make_keyset(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def make_bundle(keyset: Keys, tmp_path: Path) -> Callable[..., Path]:
    """Build a real bundle in-process: make_bundle(sequence=2, wrong=True) -> NAME-SEQUENCE.airlock.

    Keyword arguments go to write_spec; ``keys`` (key files) sign instead of the release key.
    """

    def make(*, keys: list[Path] | None = None, **kw: Any) -> Path:
        spec = write_spec(tmp_path, **kw)
        return build(spec, spec.with_suffix(".airlock"), keys or [keyset.release_key])

    return make
