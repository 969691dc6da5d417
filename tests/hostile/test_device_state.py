"""Device state with the wrong file types: reported, found, repaired, never exit 1 (issue 13, class 9).

A healthy device (vision-4 previous, vision-5 current) is damaged one way per
case: a file where a directory belongs, a directory where a link belongs, a
link out of ROOT or at a non-release, a malformed record. Then, as a person
at the site would run them:

* ``fsck`` names the damaged path (exit 3) and changes nothing;
* ``status`` answers (exit 0) and lists the damage, or says recovery fixed it;
* ``install`` of a good bundle refuses with the documented code (5 for a
  damaged ROOT, 2 for a bad ``agent.yaml``) and changes nothing;
* ``fsck --repair`` fixes it (exit 0), or says what a person must do
  (exit 3); once the person did that, ``fsck --repair`` finishes the job;
* ``fsck`` is then clean, the expected release is active and passes
  ``check``, and a good bundle installs.

Links point into a sandbox beside ROOT holding files of its own; nothing in
it may change (an earlier fsck --repair emptied what a linked ``blobs/sha256``
led to). Also here: a read-only ROOT still answers ``status`` and ``fsck``,
and a bundle path that is a FIFO, a device or a directory is refused before
the lock is taken.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import REPO, run_agent, run_airlock, tool_env
from tests.support.device import copy_device
from tests.support.kit import Kit
from tests.support.tarsurgery import bundle
from tests.support.treehash import AGENT_BOOKKEEPING, listing

# -- the device ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def healthy(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("state")
    root = d / "root"
    assert run_agent("--root", root, "init", "--trust", kit.trust_path,
                     "--device-id", "cam").returncode == 0
    for n, data in enumerate([kit.active, kit.good]):
        (d / f"{n}.airlock").write_bytes(data)
        r = run_agent("--root", root, "install", d / f"{n}.airlock")
        assert r.returncode == 0, r.stderr
    return root


@pytest.fixture(scope="module")
def newer(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good bundle of a higher sequence (vision-6)."""
    path = tmp_path_factory.mktemp("newer") / "vision-6.airlock"
    path.write_bytes(bundle(kit.other_release_json, kit.other_files))
    return path


@pytest.fixture
def root(healthy: Path, tmp_path: Path) -> Path:
    return copy_device(healthy, tmp_path / "root")


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """What a link out of ROOT leads to: files that are not the agent's to touch."""
    box = tmp_path / "outside"
    (box / "notes").mkdir(parents=True)
    (box / "notes" / "keep.txt").write_text("not the agent's")
    (box / ("c" * 64)).write_text("named like a blob")
    (box / "vision-7").mkdir()
    return box


def _agent(root: Path, *args: object) -> subprocess.CompletedProcess[str]:
    r = run_agent("--root", root, *args, timeout=120)
    assert r.returncode != 1 and "Traceback" not in r.stderr, (args, r.stderr)
    assert len(r.stderr.strip().splitlines()) <= 1 or r.returncode == 0, (args, r.stderr)
    return r


def _tree(root: Path) -> list[str]:
    return listing(root, skip=AGENT_BOOKKEEPING)


# -- the damage ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """What a damage and a person's fix work on."""

    root: Path
    sandbox: Path
    kit: Kit
    newer: Path



def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _file(rel: str, data: bytes = b"junk\n") -> Callable[[Site], None]:
    def damage(site: Site) -> None:
        root = site.root
        _clear(root / rel)
        (root / rel).write_bytes(data)
    return damage


def _dir(rel: str, copy_of: str | None = None) -> Callable[[Site], None]:
    def damage(site: Site) -> None:
        root = site.root
        _clear(root / rel)
        if copy_of:  # what "cp -rL" makes of a link
            shutil.copytree(root / copy_of, root / rel)
        else:
            (root / rel).mkdir()
            (root / rel / "stray").write_text("x")
    return damage


def _fifo(rel: str) -> Callable[[Site], None]:
    def damage(site: Site) -> None:
        root = site.root
        _clear(root / rel)
        os.mkfifo(root / rel)
    return damage


def _link_out(rel: str, move: bool = False) -> Callable[[Site], None]:
    """``rel`` becomes a link into the sandbox; with ``move``, what it held goes there first
    (a store moved to another disk and linked back)."""
    def damage(site: Site) -> None:
        root, sandbox = site.root, site.sandbox
        target = sandbox / "moved"
        if move:
            shutil.move(str(root / rel), str(target))
        else:
            _clear(root / rel)
            target = sandbox
        os.symlink(target, root / rel)
    return damage


def _link(rel: str, target: str) -> Callable[[Site], None]:
    def damage(site: Site) -> None:
        root = site.root
        _clear(root / rel)
        os.symlink(target, root / rel)
    return damage


def _move_back(rel: str) -> Callable[[Site], None]:
    def person(site: Site) -> None:
        root, sandbox = site.root, site.sandbox
        (root / rel).unlink()
        shutil.move(str(sandbox / "moved"), str(root / rel))
    return person


def _unlink_and_mkdir(rel: str) -> Callable[[Site], None]:
    def person(site: Site) -> None:
        root = site.root
        (root / rel).unlink()
        (root / rel).mkdir()
    return person


def _restore_trust(site: Site) -> None:
    _clear(site.root / "trust" / "root.json")
    shutil.copyfile(site.kit.trust_path, site.root / "trust" / "root.json")


def _rewrite_config(site: Site) -> None:
    _clear(site.root / "agent.yaml")
    (site.root / "agent.yaml").write_text("device_id: cam\nsink: {type: oci-dir}\n")


def _install_newer(site: Site) -> None:
    assert _agent(site.root, "install", site.newer).returncode == 0


@dataclass(frozen=True)
class Damage:
    id: str
    apply: Callable[[Site], None]
    path: str  # what fsck must name
    refuse: int | None = 5  # exit of installing a good bundle before repair; None: recovered
    manual: str | None = None  # what fsck --repair says a person must do (then exit 3)
    person: Callable[[Site], None] | None = None
    active: str | None = "vision-5"  # after repair
    sequences: bool = False  # sequences.json was rebuilt: check anti-rollback survived


DAMAGES = [
    Damage("releases-is-a-file", _file("releases"), "releases", active=None),
    Damage("blob-store-is-a-file", _file("blobs/sha256"), "blobs/sha256",
           manual="install the same bundle again", person=_install_newer,
           active="vision-6"),
    Damage("blobs-is-a-fifo", _fifo("blobs"), "blobs",
           manual="install the same bundle again", person=_install_newer,
           active="vision-6"),
    Damage("staging-is-a-file", _file("staging"), "staging"),
    Damage("images-is-a-fifo", _fifo("images"), "images"),
    Damage("trust-is-a-file", _file("trust"), "trust", manual="copy the root.json",
           person=_restore_trust, sequences=True),
    Damage("trust-root-is-a-directory", _dir("trust/root.json"), "trust/root.json",
           manual="remove it and copy the root.json", person=_restore_trust),
    Damage("previous-release-is-a-file", _file("releases/vision-4"), "releases/vision-4"),
    Damage("active-release-is-a-link-out", _link_out("releases/vision-5", move=True),
           "releases/vision-5", active="vision-4"),
    Damage("current-is-a-directory", _dir("current", copy_of="releases/vision-5"), "current"),
    Damage("previous-is-a-file", _file("previous"), "previous"),
    Damage("current-points-out-of-root", _link_out("current"), "current", refuse=None),
    Damage("current-points-at-a-non-release", _link("current", "releases/vision-5/models"),
           "current", refuse=None),
    Damage("transaction-is-garbage", _file("transaction.json", b"\0{garbage"),
           "transaction.json", refuse=None),
    Damage("transaction-has-wrong-types", _file("transaction.json", json.dumps(
        {"op": 1, "release": ["x"], "restore_current": "../../etc", "restore_previous": None,
         "created": "yes", "phase": {}}).encode()), "transaction.json", refuse=None),
    Damage("transaction-misses-a-field", _file("transaction.json", b'{"op": "install"}'),
           "transaction.json", refuse=None),
    Damage("transaction-is-a-directory", _dir("transaction.json"), "transaction.json"),
    Damage("sequences-is-garbage", _file("trust/sequences.json", b"{not json"),
           "trust/sequences.json", sequences=True),
    Damage("sequences-has-wrong-types", _file("trust/sequences.json", b'{"vision": "5"}'),
           "trust/sequences.json", sequences=True),
    Damage("agent-yaml-is-garbage", _file("agent.yaml", b"device_id: [\n"), "agent.yaml",
           refuse=2, manual="device_id 'cam'", person=_rewrite_config),
    Damage("agent-yaml-is-a-directory", _dir("agent.yaml"), "agent.yaml", refuse=2,
           manual="remove it and write the device's settings", person=_rewrite_config),
    Damage("journal-is-a-directory", _dir("journal.jsonl"), "journal.jsonl"),
    Damage("lock-is-a-directory", _dir("lock"), "lock"),
    Damage("blob-is-a-directory", _dir("blobs/sha256/" + "a" * 64), "blobs/sha256/" + "a" * 64),
    Damage("blob-store-is-a-link-out", _link_out("blobs/sha256", move=True), "blobs/sha256",
           manual="move what it leads to into a real directory",
           person=_move_back("blobs/sha256")),
    Damage("staging-is-a-link-out", _link_out("staging"), "staging",
           manual="move what it leads to into a real directory",
           person=_unlink_and_mkdir("staging")),
]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.id for d in DAMAGES])
def test_damaged_device_is_reported_found_and_repaired(
        damage: Damage, root: Path, sandbox: Path, newer: Path, kit: Kit) -> None:
    site = Site(root, sandbox, kit, newer)
    damage.apply(site)
    outside = listing(sandbox)
    damaged = _tree(root)

    fsck = _agent(root, "fsck", "--json")
    assert fsck.returncode == 3, fsck.stderr
    assert damage.path in {p["path"] for p in json.loads(fsck.stdout)["problems"]}, fsck.stdout
    assert _tree(root) == damaged, "fsck without --repair changed ROOT"

    status = _agent(root, "status", "--json")
    assert status.returncode == 0, status.stderr
    if damage.refuse is None:  # what recovery exists for: it fixed it, and said so
        assert "recovered:" in status.stderr, status.stderr
    else:
        listed = json.loads(status.stdout)["damage"]
        assert any(line.startswith(f"{damage.path}: ") for line in listed), listed
        assert _tree(root) == damaged, "status changed a damaged ROOT"
        human = _agent(root, "status")
        assert human.returncode == 0 and f"damaged   {damage.path}: " in human.stdout
        refused = _agent(root, "install", newer)
        assert refused.returncode == damage.refuse, refused.stderr
        assert _tree(root) == damaged, "a refused install changed ROOT"

    repair = _agent(root, "fsck", "--repair")
    if damage.manual is None:
        assert repair.returncode == 0, repair.stdout + repair.stderr
    else:
        assert repair.returncode == 3, repair.stdout + repair.stderr
        assert damage.manual in repair.stderr, repair.stderr
        assert damage.person is not None
        assert listing(sandbox) == outside, "fsck --repair changed what a link leads to"
        damage.person(site)
        again = _agent(root, "fsck", "--repair")
        assert again.returncode == 0, again.stdout + again.stderr
    if damage.person is None:
        assert listing(sandbox) == outside, "something outside ROOT changed"

    clean = _agent(root, "fsck", "--json")
    assert clean.returncode == 0, clean.stdout
    check = _agent(root, "check", "--json")  # the health check of the active release
    if damage.active is None:
        assert check.returncode == 5 and "no release is active" in check.stderr
    else:
        assert check.returncode == 0, check.stderr
        assert json.loads(check.stdout)["release"] == damage.active
    if damage.sequences:
        # Rebuilt from the installed releases and the journal: rollback protection holds.
        assert json.loads((root / "trust" / "sequences.json").read_text()) == {"vision": 5}
        older = root.parent / "vision-4.airlock"
        older.write_bytes(kit.active)
        assert _agent(root, "install", older).returncode == 3
    if damage.active != "vision-6":
        installed = _agent(root, "install", newer)
        assert installed.returncode == 0, installed.stderr


def test_repair_keeps_the_journal_that_was_in_the_way(root: Path) -> None:
    """The journal is evidence: a directory where it belongs is renamed aside, not deleted."""
    (root / "journal.jsonl").rename(root / "old.jsonl")
    (root / "journal.jsonl").mkdir()
    shutil.move(str(root / "old.jsonl"), str(root / "journal.jsonl" / "old.jsonl"))
    assert _agent(root, "fsck", "--repair").returncode == 0
    assert (root / "journal.jsonl.damaged" / "old.jsonl").is_file()
    history = _agent(root, "history", "--verify")
    assert history.returncode == 0 and "fsck-repair" in history.stdout


# -- a read-only ROOT ----------------------------------------------------------------------

_READ_ONLY = """
import json, subprocess, sys
root, commands = sys.argv[1], json.loads(sys.argv[2])
subprocess.run(["mount", "--bind", "-o", "ro", root, root], check=True)
out = []
for args in commands:
    p = subprocess.run([sys.executable, "-m", "agent", "--root", root, *args],
                       capture_output=True, text=True, timeout=120)
    out.append([p.returncode, p.stdout, p.stderr])
print(json.dumps(out))
"""


def _read_only_namespace(root: Path) -> None:
    """Skip (never under CI) where a private mount namespace cannot be made."""
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "--bind",
                            "-o", "ro", str(root), str(root)], capture_output=True, text=True)
    if probe.returncode != 0:
        why = f"cannot bind-mount read-only in a private namespace: {probe.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (CI must run the tests as root with CAP_SYS_ADMIN)")
        pytest.skip(why)


def test_read_only_root_still_answers(root: Path, newer: Path) -> None:
    # An unfinished operation: status would recover it on a writable ROOT.
    (root / "transaction.json").write_text('{"op": "install"}')
    _read_only_namespace(root)
    before = _tree(root)
    commands = [["status", "--json"], ["status"], ["fsck", "--json"], ["history", "--verify"],
                ["install", str(newer)], ["fsck", "--repair"]]
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                        _READ_ONLY, str(root), json.dumps(commands)],
                       capture_output=True, text=True, env=tool_env(), cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    (status, human, fsck, history, install, repair) = json.loads(r.stdout)
    assert status[0] == 0, status[2]
    info = json.loads(status[1])
    assert info["read_only"] and info["active"]["id"] == "vision-5" and info["state"] == "interrupted"
    assert human[0] == 0 and "read-only" in human[1]
    assert fsck[0] == 3 and "transaction.json" in fsck[1], fsck
    assert history[0] == 0, history[2]
    for code, _out, err in (install, repair):
        assert code == 5 and "read-only" in err and "Traceback" not in err, err
    assert _tree(root) == before


# -- a bundle path that is not a file -------------------------------------------------------


def _special(kind: str, tmp_path: Path) -> Path:
    if kind == "fifo":
        os.mkfifo(tmp_path / "bundle.airlock")  # nobody writes to it: opening it would hang
        return tmp_path / "bundle.airlock"
    if kind == "directory":
        return tmp_path
    return Path(kind)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom", "directory"])
def test_bundle_path_that_is_not_a_file_is_refused_before_the_lock(
        kind: str, root: Path, tmp_path: Path) -> None:
    from agent.lock import AgentLock

    path = _special(kind, tmp_path)
    before = _tree(root)
    # Held by this test: a command that took the lock first would exit 5, not 2.
    with AgentLock(root / "lock"):
        r = run_agent("--root", root, "install", path, timeout=30)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1
    if kind == "directory":  # a directory may hold a split bundle's parts (airlock.format.parts)
        assert "holds no bundle, no parts and no .parts.json" in r.stderr
    else:
        assert "not a file" in r.stderr and "'-'" in r.stderr
    assert _tree(root) == before


def test_host_and_trust_inputs_that_are_not_files_are_refused(kit: Kit, tmp_path: Path) -> None:
    fifo = _special("fifo", tmp_path)
    verify = run_airlock("verify", fifo, "--trust", kit.trust_path, timeout=30)
    assert verify.returncode == 2 and "FIFO" in verify.stderr, verify.stderr
    init = run_agent("--root", tmp_path / "dev", "init", "--trust", "/dev/zero", timeout=30)
    assert init.returncode == 2 and "character device" in init.stderr, init.stderr
