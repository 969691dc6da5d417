"""An agent root (a device) for tests: set up, asked, and checked for consistency.

    root = init_device(tmp_path / "device", keyset)
    assert agent_json(root, "install", bundle)["active"] == "vision-1"
    assert_consistent(root)   # what any agent start after any crash must find
    spare = copy_device(root, tmp_path / "spare")   # hard links kept: a device to damage
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.support.cli import run_agent
from tests.support.keyset import Keys


def init_device(root: Path, keyset: Keys) -> Path:
    """An initialised, empty agent root."""
    p = run_agent("--root", root, "init", "--trust", keyset.trust, "--device-id", "test-dev")
    assert p.returncode == 0, p.stderr
    return root


def agent_json(root: Path, *args: Any, **kw: Any) -> dict[str, Any]:
    """``airlock-agent --root ROOT ARGS --json``, which must succeed; its parsed output."""
    p = run_agent("--root", root, *args, "--json", **kw)
    assert p.returncode == 0, (args, p.returncode, p.stderr)
    result: dict[str, Any] = json.loads(p.stdout)
    return result


def active_id(root: Path) -> str | None:
    """The id of the active release (``vision-2``), or None."""
    status = agent_json(root, "status")
    return status["active"]["id"] if status["active"] else None


def assert_consistent(root: Path) -> dict[str, Any]:
    """What any agent start after any crash must find: see DESIGN.md, "The agent"."""
    from agent.journal import Journal
    from agent.layout import Layout

    status = agent_json(root, "status")
    assert status["state"] == "idle", status
    assert status["operation"] is None
    layout = Layout(root)
    assert not layout.transaction.exists()
    assert list(layout.staging.iterdir()) == []
    for which in ("active", "previous"):
        info = status[which]
        if info is None:
            continue
        assert "error" not in info, info
        release = layout.load_release(info["id"])
        # Every blob the release needs is in the store, whole and correct.
        for digest in release.all_digests():
            blob = layout.blob(digest)
            assert blob.is_file(), (which, digest)
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest[7:]
        for m in release.models:
            model = layout.release_dir(release.id) / "models" / m.name / m.file_name
            assert model.stat().st_ino == layout.blob(m.blob).stat().st_ino
    assert Journal(layout.journal).verify() > 0
    return status


def copy_device(root: Path, to: Path, *, link: bool = False) -> Path:
    """A copy of a device root with its hard links kept (``cp -a``), to change at will.

    ``link``: hard links to the files of ``root`` instead of copies (``cp -al``), for
    trees whose files are only ever replaced by rename, never written in place (a
    kit-installed agent's PREFIX).
    """
    import subprocess

    subprocess.run(["cp", "-al" if link else "-a", str(root), str(to)], check=True)
    return to


def kit_device(kit: Any, site: Path) -> Path:
    """A device in ring canary (``site/root``) running the corpus kit's active release."""
    root = site / "root"
    r = run_agent("--root", root, "init", "--trust", kit.trust_path, "--device-id", "cam-1",
                  "--ring", "canary")
    assert r.returncode == 0, r.stderr
    active = site / "active.airlock"
    active.write_bytes(kit.active)
    r = run_agent("--root", root, "install", active)
    assert r.returncode == 0, r.stderr
    active.unlink()
    return root
