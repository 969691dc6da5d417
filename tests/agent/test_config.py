"""Device settings: checked at init, changed later with 'airlock-agent config', trust only forward."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.support.cli import run_agent, run_airlock
from tests.support.device import agent_json, init_device
from tests.support.keyset import Keys
from tests.support.treehash import tree_hash


def test_init_refuses_a_sink_it_could_not_use_and_writes_nothing(keyset: Keys,
                                                                 tmp_path: Path) -> None:
    root = tmp_path / "device"
    for args, words in (
        (("--sink", "docker"), "invalid choice: 'docker'"),
        (("--sink", "registry"), "needs 'registry': HOST[:PORT]"),
        (("--sink", "oci-dir", "--sink-option", "colour=red"), "unknown setting(s) colour"),
        (("--sink", "command", "--sink-option", "nocommand"), "must be KEY=VALUE"),
        (("--ring", "canary/../prod"), "--ring"),
    ):
        r = run_agent("--root", root, "init", "--trust", keyset.trust, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert words in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert not root.exists(), f"init wrote ROOT for {args}"


def test_init_with_a_registry_not_reachable_now_warns_and_still_initialises(
        keyset: Keys, tmp_path: Path) -> None:
    import socket

    with socket.socket() as listening:  # a registry that answers: no warning
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        up = f"127.0.0.1:{listening.getsockname()[1]}"
        r = run_agent("--root", tmp_path / "up", "init", "--trust", keyset.trust, "--sink",
                      "registry", "--sink-option", f"registry={up}")
        assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    with socket.socket() as closed:  # a port nobody listens on: refused now
        closed.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{closed.getsockname()[1]}"
    r = run_agent("--root", tmp_path / "down", "init", "--trust", keyset.trust, "--sink",
                  "registry", "--sink-option", f"registry={down}", "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr == (f"airlock-agent: warning: registry {down} is not reachable now "
                        "(connection refused); the sink is set, and each install pushes its "
                        "images there: it fails (exit 4, the previous release stays) until "
                        "the registry answers\n"), r.stderr
    assert json.loads(r.stdout)["warnings"] == [r.stderr.split("warning: ", 1)[1].strip()]
    assert (tmp_path / "down" / "agent.yaml").is_file()


def test_config_changes_ring_and_sink_and_journals_it(keyset: Keys, tmp_path: Path,
                                                      make_bundle: Callable[..., Path]) -> None:
    root = tmp_path / "device"
    assert run_agent("--root", root, "init", "--trust", keyset.trust, "--ring", "canary").returncode == 0
    shown = agent_json(root, "config")
    assert shown["ring"] == "canary" and shown["sink"] == {"type": "oci-dir"} and not shown["changed"]

    changed = agent_json(root, "config", "--ring", "prod", "--sink", "command",
                         "--sink-option", "command=true {archive}")
    assert changed["ring"] == "prod"
    assert changed["sink"] == {"type": "command", "command": "true {archive}"}
    assert changed["changed"] == ["ring: canary -> prod",
                                  "sink: oci-dir -> command (command=true {archive})"]
    assert agent_json(root, "status")["ring"] == "prod"
    events = [json.loads(line) for line in (root / "journal.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "configured" and events[-1]["ring"] == "prod"

    # The new ring decides what installs: a release for canary only is refused now.
    bundle = make_bundle(sequence=1, extra={"rings": ["canary"]})
    r = run_agent("--root", root, "install", bundle)
    assert r.returncode == 3 and "ring" in r.stderr

    before = tree_hash(root)
    r = run_agent("--root", root, "config", "--sink", "registry")
    assert r.returncode == 2 and "needs 'registry'" in r.stderr
    assert tree_hash(root) == before  # a refused setting changes nothing

    assert agent_json(root, "config", "--no-ring")["ring"] is None
    assert agent_json(root, "config", "--sink-option", "timeout_s=5")["sink"] == {
        "type": "command", "command": "true {archive}", "timeout_s": "5"}


def test_trust_root_moves_only_forward_by_a_signed_rotation(keyset: Keys, tmp_path: Path) -> None:
    root = init_device(tmp_path / "device", keyset)
    k = tmp_path / "k"
    for name in ("root2", "stranger"):
        assert run_airlock("keys", "generate", name, "--dir", k, "--no-passphrase").returncode == 0
    v2 = tmp_path / "root-v2.json"
    r = run_airlock("keys", "rotate", "--trust", keyset.trust, "--root-key", keyset.root_key,
                    "--new-root-key", k / "root2.key", "-o", v2)
    assert r.returncode == 0, r.stderr
    foreign = tmp_path / "foreign.json"
    r = run_airlock("keys", "init", "--root-key", k / "stranger.key", "--release-key",
                    keyset.release_pub, "-o", foreign)
    assert r.returncode == 0, r.stderr

    before = tree_hash(root)
    for path, code, words in ((foreign, 3, "trust root"), (keyset.release_pub, 2, "not a trust root")):
        r = run_agent("--root", root, "config", "--trust-root", path)
        assert r.returncode == code and words in r.stderr, r.stderr
        assert tree_hash(root) == before

    result = agent_json(root, "config", "--trust-root", v2)
    assert result["trust_version"] == 2 and result["changed"] == ["trust root: version 1 -> 2"]
    r = run_agent("--root", root, "config", "--trust-root", keyset.trust)  # back to version 1
    assert r.returncode == 3 and "older" in r.stderr
    assert agent_json(root, "config")["trust_version"] == 2
