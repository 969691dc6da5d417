"""airlock-agent end to end: real bundles, real ONNX health checks, the CLI as a subprocess."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cli import REPO, run_agent, tool_env
from tests.support.device import (
    active_id,
    agent_json,
    assert_consistent,
    init_device,
)
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec
from tests.support.treehash import tree_hash

Bundle = Callable[..., Path]


@pytest.fixture
def device(tmp_path: Path, keyset: Keys) -> Path:
    return init_device(tmp_path / "device", keyset)


def install(root: Path, bundle: Path, *extra: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return run_agent("--root", root, "install", bundle, *extra, **kw)  # type: ignore[arg-type]


# -- basics -------------------------------------------------------------------


def test_uninitialised_root_exits_5_saying_how_to_init(tmp_path: Path) -> None:
    for args in (["status"], ["install", "x.airlock"], ["history"], ["rollback"], ["check"],
                 ["gc"]):
        p = run_agent("--root", tmp_path / "nothing", *args)
        assert p.returncode == 5, (args, p.stderr)
        assert "init --trust" in p.stderr and "Traceback" not in p.stderr


def test_init_twice_is_refused(device: Path, keyset: Keys) -> None:
    p = run_agent("--root", device, "init", "--trust", keyset.trust)
    assert p.returncode == 2 and "already initialised" in p.stderr
    assert (device / "device.key").stat().st_mode & 0o777 == 0o600


def test_good_install(device: Path, make_bundle: Bundle) -> None:
    result = agent_json(device, "install", make_bundle(sequence=1, version="1.0"))
    assert result["installed"] and result["active"] == "vision-1"
    assert result["health"]["ok"] and result["blobs_skipped"] == 0
    status = assert_consistent(device)
    active = status["active"]
    assert (active["name"], active["version"], active["sequence"]) == ("vision", "1.0", 1)
    assert active["health"]["ok"] is True and active["installed_at"]
    assert status["previous"] is None
    events = [e["event"] for e in agent_json(device, "history", "--verify")["entries"]]
    assert events[-1] == "installed" and "health-result" in events and "switched" in events


def test_install_from_stdin(device: Path, make_bundle: Bundle) -> None:
    bundle = make_bundle(sequence=1)
    p = run_agent("--root", device, "install", "-", input=bundle.read_bytes())
    assert p.returncode == 0, p.stderr
    assert active_id(device) == "vision-1"


def test_second_install_dedupes_shared_blobs(device: Path, make_bundle: Bundle) -> None:
    first = agent_json(device, "install", make_bundle(sequence=1))
    second = agent_json(device, "install", make_bundle(sequence=2, scale=3.0))
    assert second["blobs_skipped"] >= 1  # golden inputs and the empty config are shared
    assert second["blobs_stored"] < first["blobs_stored"]
    releases = device / "releases"
    a = releases / "vision-1/models/detector/inputs.npz"
    b = releases / "vision-2/models/detector/inputs.npz"
    assert a.stat().st_ino == b.stat().st_ino  # one copy on disk
    status = assert_consistent(device)
    assert status["active"]["id"] == "vision-2" and status["previous"]["id"] == "vision-1"


def test_anti_rollback_refuses_older_sequence_and_reinstall_is_a_noop(
        device: Path, make_bundle: Bundle) -> None:
    old, new = make_bundle(sequence=1), make_bundle(sequence=2, scale=3.0)
    assert install(device, new).returncode == 0
    p = install(device, old)
    assert p.returncode == 3 and "older than sequence 2" in p.stderr
    again = agent_json(device, "install", new)
    assert again["installed"] is False and "already active" in again["message"]
    assert active_id(device) == "vision-2"


def test_ring_policy_refuses_a_release_for_other_rings(tmp_path: Path, keyset: Keys,
                                                        make_bundle: Bundle) -> None:
    root = tmp_path / "canary-device"
    p = run_agent("--root", root, "init", "--trust", keyset.trust, "--ring", "canary")
    assert p.returncode == 0, p.stderr
    p = install(root, make_bundle(sequence=1, extra={"rings": ["stable"]}))
    assert p.returncode == 3 and "ring 'canary'" in p.stderr
    assert install(root, make_bundle(sequence=2, extra={"rings": ["canary", "stable"]})).returncode == 0


def _other_key(tmp_path: Path) -> Path:
    from keys.keyfile import generate_keypair

    priv, _ = generate_keypair("intruder", tmp_path)
    return priv


@pytest.mark.parametrize("kind", ["expired", "wrong-key"])
def test_rejected_bundles_exit_3_and_leave_root_unchanged(
        kind: str, device: Path, make_bundle: Bundle, tmp_path: Path) -> None:
    assert install(device, make_bundle(sequence=1)).returncode == 0
    if kind == "expired":
        bad = make_bundle(sequence=2, scale=3.0, expires="1s")
        time.sleep(1.2)
    else:
        bad = make_bundle(sequence=2, scale=3.0, keys=[_other_key(tmp_path)])
    before = tree_hash(device)
    p = install(device, bad)
    assert p.returncode == 3, p.stderr
    assert ("expired" in p.stderr) if kind == "expired" else ("signature" in p.stderr)
    assert tree_hash(device) == before
    last = agent_json(device, "history", "--verify")["entries"][-1]
    assert last["event"] == "rejected"


@pytest.mark.parametrize("damage", ["truncated", "flipped-byte"])
def test_damaged_bundle_exits_3_and_leaves_root_unchanged(
        damage: str, device: Path, make_bundle: Bundle, tmp_path: Path) -> None:
    assert install(device, make_bundle(sequence=1)).returncode == 0
    data = bytearray(make_bundle(sequence=2, scale=3.0, pad_mb=1).read_bytes())
    # The 1 MiB model comes last; earlier blobs are new too, so they get staged first.
    if damage == "truncated":
        data = data[: len(data) - 600_000]
    else:
        data[len(data) - 600_000] ^= 0xFF
    bad = tmp_path / "damaged.airlock"
    bad.write_bytes(bytes(data))
    before = tree_hash(device)
    p = install(device, bad)
    assert p.returncode == 3, p.stderr
    assert ("truncated" in p.stderr) if damage == "truncated" else ("sha256" in p.stderr)
    assert tree_hash(device) == before
    status = assert_consistent(device)
    assert status["active"]["id"] == "vision-1"
    assert status["last_notable_event"]["event"] == "rejected"


# -- health failures ---------------------------------------------------------------

HEALTH_FAILURES = {
    "wrong-outputs": ({"wrong": True}, {}, "differs"),
    "too-slow": ({"health": {"max_p95_ms": 0.000001}}, {}, "p95"),
    "too-much-memory": ({"health": {"max_memory_mb": 5}}, {}, "memory"),
    "child-crash": ({}, {"AIRLOCK_TEST_FAULT": "health-crash"}, "SIGSEGV"),
    "hang": ({"hang": True}, {}, "timed out"),
}


@pytest.mark.parametrize("case", sorted(HEALTH_FAILURES))
def test_health_failure_exits_4_with_previous_release_active(
        case: str, device: Path, make_bundle: Bundle) -> None:
    spec_kw, env, words = HEALTH_FAILURES[case]
    assert install(device, make_bundle(sequence=1)).returncode == 0
    if case == "hang":  # a 3 s budget instead of write_spec's 30 s keeps the suite fast
        bad = make_bundle(sequence=2, timeout_s=3, **spec_kw)
    else:
        bad = make_bundle(sequence=2, scale=3.0, **spec_kw)
    started = time.monotonic()
    p = install(device, bad, env=env)
    assert p.returncode == 4, p.stderr
    assert words.lower() in p.stderr.lower(), p.stderr
    assert "vision-1 stays active" in p.stderr
    assert time.monotonic() - started < 25
    status = assert_consistent(device)
    assert status["active"]["id"] == "vision-1" and status["releases"] == ["vision-1"]
    assert status["last_notable_event"]["event"] == "install-failed"
    # The failed sequence was not accepted: a fixed rebuild with the same number installs.
    assert install(device, make_bundle(sequence=2, scale=3.0)).returncode == 0


# -- hooks and probes --------------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_probe() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    server.shutdown()


def _hooks(log: Path, probe: str, window: float = 2) -> dict[str, object]:
    return {"hooks": {"post_switch": f"echo $AIRLOCK_RELEASE >> {log}", "probe": probe,
                      "probe_window_s": window}}


def test_http_probe_success_and_failure_rolls_back(
        device: Path, make_bundle: Bundle, tmp_path: Path, http_probe: str) -> None:
    log = tmp_path / "hook.log"
    ok = make_bundle(sequence=1, extra=_hooks(log, http_probe))
    result = agent_json(device, "install", ok)
    assert result["activation"]["probe"]["ok"]
    dead = "http://127.0.0.1:9/never"
    p = install(device, make_bundle(sequence=2, scale=3.0, extra=_hooks(log, dead, 1)))
    assert p.returncode == 4 and "vision-1 is active again" in p.stderr, p.stderr
    # The hook ran for the new release, then again for the old one it went back to.
    assert log.read_text().split() == ["vision-1", "vision-2", "vision-1"]
    status = assert_consistent(device)
    assert status["active"]["id"] == "vision-1" and status["last_notable_event"]["event"] == (
        "install-failed")
    events = [e["event"] for e in agent_json(device, "history")["entries"]]
    assert events[-4:] == ["probe-failed", "hook-rerun", "rolled-back", "install-failed"]


def test_command_probe_failure_rolls_back(device: Path, make_bundle: Bundle,
                                          tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    assert install(device, make_bundle(sequence=1)).returncode == 0
    bad = make_bundle(sequence=2, scale=3.0, extra=_hooks(log, "test -f no-such-file", 1))
    p = install(device, bad)
    assert p.returncode == 4 and "probe failed" in p.stderr
    assert active_id(device) == "vision-1"


# -- rollback, check, gc -----------------------------------------------------------


def test_manual_rollback_and_back_again(device: Path, make_bundle: Bundle) -> None:
    p = run_agent("--root", device, "rollback")
    assert p.returncode == 5 and "no other installed release" in p.stderr
    assert install(device, make_bundle(sequence=1)).returncode == 0
    assert install(device, make_bundle(sequence=2, scale=3.0)).returncode == 0
    done = agent_json(device, "rollback")
    assert (done["active"], done["previous"], done["from"]) == ("vision-1", "vision-2", "vision-2")
    status = assert_consistent(device)
    assert status["active"]["id"] == "vision-1" and status["previous"]["id"] == "vision-2"
    assert agent_json(device, "rollback")["active"] == "vision-2"
    assert agent_json(device, "check")["ok"] is True


def _events_since_rollback(root: Path) -> list[str]:
    entries = [json.loads(line) for line in (root / "journal.jsonl").read_text().splitlines()]
    last = max(i for i, e in enumerate(entries) if e["event"] == "rollback-started")
    return [e["event"] for e in entries[last:]]


def test_rollback_switches_without_rerunning_a_check_that_still_holds(
        device: Path, make_bundle: Bundle) -> None:
    assert install(device, make_bundle(sequence=1)).returncode == 0
    assert install(device, make_bundle(sequence=2, scale=3.0)).returncode == 0
    installed = json.loads((device / "releases/vision-1/health.json").read_text())
    # A health check that would crash is never started: vision-1 passed when installed.
    crash = {"AIRLOCK_TEST_FAULT": "health-crash"}
    done = agent_json(device, "rollback", env=crash)
    assert (done["active"], done["checked"]) == ("vision-1", False)
    assert done["health_time"] == installed["time"] and done["health"] == installed["report"]
    assert _events_since_rollback(device) == ["rollback-started", "switched", "rolled-back",
                                              "operator-rollback"]  # the mark serve honours
    assert assert_consistent(device)["active"]["health"]["ok"] is True
    # --check runs it before the switch: under the fault both fail, nothing changes.
    p = run_agent("--root", device, "rollback", "--check", env=crash)
    assert p.returncode == 4 and "stays active" in p.stderr
    assert active_id(device) == "vision-1"
    again = agent_json(device, "rollback", "--check")
    assert (again["active"], again["checked"], again["check_reason"]) == (
        "vision-2", True, "asked to")
    assert "health-started" in _events_since_rollback(device)


@pytest.mark.parametrize("damage", ["failed-check", "no-record", "copied-model"])
def test_rollback_checks_first_when_the_recorded_pass_does_not_hold(
        device: Path, make_bundle: Bundle, damage: str) -> None:
    assert install(device, make_bundle(sequence=1)).returncode == 0
    assert install(device, make_bundle(sequence=2, scale=3.0)).returncode == 0
    rdir = device / "releases/vision-1"
    if damage == "failed-check":
        record = json.loads((rdir / "health.json").read_text())
        (rdir / "health.json").write_text(json.dumps({**record, "ok": False}))
    elif damage == "no-record":
        (rdir / "health.json").unlink()
    else:  # same bytes, but no longer the store's blob: nothing says they are what passed
        model = next((rdir / "models/detector").glob("*.onnx"))
        data = model.read_bytes()
        model.unlink()
        model.write_bytes(data)
    p = run_agent("--root", device, "rollback", env={"AIRLOCK_TEST_FAULT": "health-crash"})
    assert p.returncode == 4 and active_id(device) == "vision-2"
    done = agent_json(device, "rollback")
    assert (done["active"], done["checked"]) == ("vision-1", True)
    assert "health-started" in _events_since_rollback(device)


def test_check_failure_rolls_back_when_asked(device: Path, make_bundle: Bundle) -> None:
    assert install(device, make_bundle(sequence=1)).returncode == 0
    assert install(device, make_bundle(sequence=2, scale=3.0)).returncode == 0
    p = run_agent("--root", device, "check", env={"AIRLOCK_TEST_FAULT": "health-crash"})
    assert p.returncode == 4 and active_id(device) == "vision-2"
    # Both releases "crash" under the fault, so rollback finds nothing better: exit 4, unchanged.
    p = run_agent("--root", device, "check", "--rollback-on-failure",
                  env={"AIRLOCK_TEST_FAULT": "health-crash"})
    assert p.returncode == 4 and "stays active" in p.stderr
    assert active_id(device) == "vision-2"


def test_gc_keeps_what_is_in_use(device: Path, make_bundle: Bundle) -> None:
    for seq in (1, 2, 3):
        assert install(device, make_bundle(sequence=seq, scale=float(seq + 1))).returncode == 0
    assert agent_json(device, "rollback")["active"] == "vision-2"  # current 2, previous 3
    blobs_before = len(list((device / "blobs/sha256").iterdir()))
    result = agent_json(device, "gc", "--keep", "0")
    assert result["releases_removed"] == ["vision-1"]
    assert result["blobs_removed"] >= 1  # vision-1's own model and manifest
    assert len(list((device / "blobs/sha256").iterdir())) == blobs_before - result["blobs_removed"]
    status = assert_consistent(device)  # every blob of current and previous still there
    assert status["releases"] == ["vision-2", "vision-3"]
    assert agent_json(device, "check")["ok"]
    assert agent_json(device, "rollback")["active"] == "vision-3"


def test_no_switch_installs_beside_the_active_release(device: Path, make_bundle: Bundle) -> None:
    assert install(device, make_bundle(sequence=1)).returncode == 0
    result = agent_json(device, "install", make_bundle(sequence=2, scale=3.0), "--no-switch")
    assert result["switched"] is False and result["active"] == "vision-1"
    status = assert_consistent(device)
    assert status["releases"] == ["vision-1", "vision-2"]


# -- locking, space, journal, trust ------------------------------------------------


def test_a_held_lock_gives_exit_5(device: Path, make_bundle: Bundle) -> None:
    from agent.lock import AgentLock

    bundle = make_bundle(sequence=1)
    with AgentLock(device / "lock"):
        p = install(device, bundle)
        assert p.returncode == 5 and "holds the agent lock" in p.stderr
        busy = agent_json(device, "status")  # read-only commands still work
        assert busy["state"] == "busy" and busy["lock_holder"] == os.getpid()
    assert install(device, bundle).returncode == 0


def test_concurrent_installs_never_corrupt(device: Path, make_bundle: Bundle) -> None:
    bundles = [make_bundle(sequence=1), make_bundle(sequence=2, scale=3.0)]
    procs = [subprocess.Popen([sys.executable, "-m", "agent", "--root", str(device), "install",
                               str(b)], env=tool_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO) for b in bundles]
    codes = [p.wait(timeout=120) for p in procs]
    errors = [p.stderr.read() for p in procs if p.stderr]
    assert set(codes) <= {0, 3, 5} and 0 in codes, (codes, errors)
    # exit 3 happens when vision-2 won the race and vision-1 became too old.
    status = assert_consistent(device)
    assert status["active"]["id"] in ("vision-1", "vision-2")
    # And with --wait the second simply queues.
    procs = [subprocess.Popen([sys.executable, "-m", "agent", "--root", str(device), "install",
                               str(make_bundle(sequence=s, scale=float(s))), "--wait", "60"],
                              env=tool_env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE)
             for s in (3, 4)]
    codes = [p.wait(timeout=120) for p in procs]
    assert set(codes) <= {0, 3} and codes.count(0) >= 1
    assert_consistent(device)


def test_not_enough_space_exits_5_before_writing(tmp_path: Path, keyset: Keys,
                                                 make_bundle: Bundle) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        root = init_device(mnt / "device", keyset)
        bundle = make_bundle(sequence=1, pad_mb=4)
        before = tree_hash(root)
        p = install(root, bundle)
        assert p.returncode == 5 and "free" in p.stderr and "gc" in p.stderr, p.stderr
        assert tree_hash(root) == before
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_running_out_of_space_mid_install_exits_5_and_changes_nothing(
        tmp_path: Path, keyset: Keys, make_bundle: Bundle) -> None:
    mnt = tmp_path / "tight"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        root = init_device(mnt / "device", keyset)
        config = root / "agent.yaml"
        config.write_text(config.read_text().replace("reserve_bytes: 16777216",
                                                     "reserve_bytes: 0"))
        bundle = make_bundle(sequence=1, pad_mb=2)
        with tarfile.open(bundle) as tar:
            need = sum(m.size for m in tar if m.name.startswith("blobs/"))
        # Leave a little more than the blobs' bytes free: the check passes, but small
        # files take whole pages, so the disk fills up while the blobs are written.
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        (mnt / "filler").write_bytes(b"\0" * ((free - need - 6000) // 4096 * 4096))
        before = tree_hash(root)
        p = install(root, bundle)
        assert p.returncode == 5 and "ran out of space" in p.stderr, p.stderr
        assert tree_hash(root) == before
        (mnt / "filler").unlink()
        assert install(root, bundle).returncode == 0
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_history_verify_detects_an_edited_journal(device: Path, make_bundle: Bundle) -> None:
    assert install(device, make_bundle(sequence=1)).returncode == 0
    assert agent_json(device, "history", "--verify")["verified"]
    journal = device / "journal.jsonl"
    lines = journal.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["bundle"] = "someone-else.airlock"
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    journal.write_text("\n".join(lines) + "\n")
    p = run_agent("--root", device, "history", "--verify")
    assert p.returncode == 3 and "line 3 does not chain" in p.stderr


def test_a_torn_journal_line_is_cut_by_the_next_start(device: Path, make_bundle: Bundle) -> None:
    assert install(device, make_bundle(sequence=1)).returncode == 0
    journal = device / "journal.jsonl"
    good = journal.read_bytes()
    with journal.open("ab") as f:
        f.write(b'{"event":"switched","time":"2026-')  # what a power cut mid-append leaves
    p = run_agent("--root", device, "status")
    assert p.returncode == 0 and "recovered: cut a torn last line" in p.stderr, p.stderr
    assert journal.read_bytes() == good
    assert agent_json(device, "history", "--verify")["lines"] == good.count(b"\n")


def _rotated_bundle(keyset: Keys, tmp_path: Path, make_bundle: Bundle, **kw: object) -> Path:
    """A bundle carrying trust root version 2 (same keys, signed by the old root key)."""
    from keys.keyfile import load_signer
    from keys.trust import TrustRoot, rotate_root

    new_root = rotate_root(TrustRoot.from_bytes(keyset.trust.read_bytes()), [load_signer(keyset.root_key)])
    spec = write_spec(tmp_path, **kw)  # type: ignore[arg-type]
    return build(spec, tmp_path / f"rotated-{spec.stem}.airlock", [keyset.release_key],
                 root_json=new_root.to_bytes())


def test_rotated_root_is_kept_only_after_a_successful_install(
        device: Path, keyset: Keys, tmp_path: Path, make_bundle: Bundle) -> None:
    from keys.trust import TrustRoot

    trust = device / "trust/root.json"
    assert install(device, _rotated_bundle(keyset, tmp_path, make_bundle, sequence=1,
                                           wrong=True)).returncode == 4
    assert TrustRoot.from_bytes(trust.read_bytes()).version == 1
    p = install(device, _rotated_bundle(keyset, tmp_path, make_bundle, sequence=2, scale=3.0))
    assert p.returncode == 0, p.stderr
    assert TrustRoot.from_bytes(trust.read_bytes()).version == 2
    # Announced where it happened, not only in the journal.
    assert "trust root rotated: version 1 -> 2, expires " in p.stdout, p.stdout
    assert "(same keys)" in p.stdout


def test_a_rotated_root_is_in_the_install_json(device: Path, keyset: Keys, tmp_path: Path,
                                               make_bundle: Bundle) -> None:
    out = agent_json(device, "install", _rotated_bundle(keyset, tmp_path, make_bundle,
                                                        sequence=1))
    rotated = out["trust_rotated"]
    assert (rotated["from_version"], rotated["to_version"]) == (1, 2)
    assert rotated["root_keys"] == rotated["release_keys"] == {"added": 0, "removed": 0}
    again = agent_json(device, "install", make_bundle(sequence=2, scale=3.0))
    assert "trust_rotated" not in again  # only the install that brought it says so


def test_help_has_examples() -> None:
    for cmd in ("init", "install", "status", "history", "rollback", "check", "gc"):
        p = run_agent(cmd, "--help")
        assert p.returncode == 0 and re.search(r"examples?:", p.stdout)
        assert "airlock-agent" in p.stdout



def test_inventory_lists_every_stored_blob_and_verifies(device: Path, make_bundle: Bundle) -> None:
    """The signed inventory names the device and every stored blob with its size."""
    from agent.layout import Layout
    from agent.observe.inventory import inventory, signed_inventory
    from keys.device import INVENTORY_TYPE, verify_document
    from keys.keyfile import load_public_key

    assert install(device, make_bundle(sequence=1)).returncode == 0
    layout = Layout(device)
    body = inventory(layout)
    stored = {p.name: p.stat().st_size for p in layout.blobs.iterdir()}
    assert stored and {b["digest"][7:]: b["size"] for b in body["blobs"]} == stored
    assert body["active"] == "vision-1" and body["sequences"] == {"vision": 1}
    doc = verify_document(signed_inventory(layout), INVENTORY_TYPE,
                          key=load_public_key(layout.device_pub))
    assert doc.body["blobs"] == body["blobs"]
