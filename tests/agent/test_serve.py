"""``airlock-agent serve``: a real process on 127.0.0.1, a real drop folder, real bundles.

The metrics are linted by the real ``promtool check metrics`` (Debian's
``prometheus``); under ``CI=true`` a missing promtool fails instead of skipping.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.journal import Journal
from tests.support.cli import REPO, run_agent
from tests.support.device import active_id, agent_json, assert_consistent, init_device
from tests.support.keyset import Keys
from tests.support.serve import Serve, metric, promtool_check
from tests.support.spec import build, write_spec
from tests.support.treehash import AGENT_BOOKKEEPING, tree_hash


@pytest.fixture(scope="module")
def bundles(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v1, v2 (another model), rogue (signed by a key the device does not trust), slow."""
    from keys.keyfile import generate_keypair

    d = tmp_path_factory.mktemp("serve-bundles")
    rogue_key, _ = generate_keypair("rogue", d)
    out = {}
    for name, kw, keys in (("v1", {"sequence": 1}, [keyset.release_key]),
                           ("v2", {"sequence": 2, "scale": 3.0}, [keyset.release_key]),
                           ("rogue", {"sequence": 3, "scale": 4.0}, [rogue_key]),
                           ("v5", {"sequence": 5, "scale": 6.0}, [keyset.release_key]),
                           # 100k timed runs (the bound): a health check of several seconds to signal
                           # into, long enough for a second agent to start on a loaded runner.
                           ("slow", {"sequence": 4, "scale": 5.0, "runs": 100_000},
                            [keyset.release_key])):
        spec = write_spec(d, **kw)  # type: ignore[arg-type]
        out[name] = build(spec, d / f"{name}.airlock", keys)
    return out


def _result(stick: Path, name: str) -> dict[str, object]:
    doc = json.loads((stick / f"{name}.result.json").read_text())
    text = (stick / f"{name}.result.txt").read_text()
    assert text.count("\n") == 1 and doc["outcome"].upper().replace("_", " ") in text  # type: ignore[union-attr]
    return doc  # type: ignore[no-any-return]


def _journal_events(root: Path) -> list[str]:
    return [str(e.get("event")) for e in Journal(root / "journal.jsonl").entries()]


def test_drop_folder_installs_each_bundle_once_and_the_metrics_follow(
        tmp_path: Path, keyset: Keys, bundles: dict[str, Path]) -> None:
    root = init_device(tmp_path / "dev", keyset)
    stick = tmp_path / "stick"
    stick.mkdir()
    with Serve.start(root, watch=[stick]) as s:
        text = s.get("/metrics")
        lint = promtool_check(text)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        assert metric(text, "airlock_installs_total", result="installed") == 0

        # A good bundle: installed, result beside it, a signed report on the stick.
        shutil.copy(bundles["v1"], stick / "v1.airlock")
        assert s.wait_event("drop-result", drop=str(stick / "v1.airlock"))["outcome"] == "installed"
        assert _result(stick, "v1")["exit_code"] == 0 and active_id(root) == "vision-1"
        report = stick / "airlock-reports" / "test-dev.report.json"
        from keys.device import REPORT_TYPE, verify_document
        from keys.keyfile import load_public_key

        body = verify_document(report.read_bytes(), REPORT_TYPE,
                               key=load_public_key(root / "device.pub")).body
        assert body["status"]["active"]["id"] == "vision-1"

        # A bundle signed by a key the device does not trust: refused, device unchanged.
        skip = (*AGENT_BOOKKEEPING, "drops.json")
        before = tree_hash(root, skip)
        shutil.copy(bundles["rogue"], stick / "rogue.airlock")
        e = s.wait_event("drop-result", drop=str(stick / "rogue.airlock"))
        assert (e["outcome"], e["exit_code"]) == ("rejected", 3)
        assert "signature" in str(_result(stick, "rogue")["message"])
        assert tree_hash(root, skip) == before

        # Half a bundle: it waits, says what is missing, and installs once the copy is whole.
        data = bundles["v2"].read_bytes()
        n = len(s.events())
        (stick / "v2.airlock").write_bytes(data[: len(data) // 2])
        e = s.wait_event("drop-result", after=n, drop=str(stick / "v2.airlock"))
        assert e["outcome"] == "incomplete" and active_id(root) == "vision-1"
        assert f"{len(data) // 2} bytes of at least" in str(_result(stick, "v2")["message"])
        n = len(s.events())
        (stick / "v2.airlock").write_bytes(data)
        e = s.wait_event("drop-result", after=n, drop=str(stick / "v2.airlock"))
        assert e["outcome"] == "installed" and active_id(root) == "vision-2"

        # The parts of a split bundle: waited for until every listed part is whole, then
        # installed straight from the parts.
        data = bundles["v5"].read_bytes()
        parts = [data[:20000], data[20000:]]
        listing = {"bundle": "v3.airlock", "size": len(data),
                   "sha256": hashlib.sha256(data).hexdigest(),
                   "parts": [{"name": f"v3.airlock.part{i:03d}", "size": len(p),
                              "sha256": hashlib.sha256(p).hexdigest()}
                             for i, p in enumerate(parts, 1)]}
        n = len(s.events())
        (stick / "v3.airlock.parts.json").write_text(json.dumps(listing))
        (stick / "v3.airlock.part001").write_bytes(parts[0])
        assert s.wait_event("drop-result", after=n)["outcome"] == "incomplete"
        n = len(s.events())
        (stick / "v3.airlock.part002").write_bytes(parts[1])
        e = s.wait_event("drop-result", after=n, drop=str(stick / "v3.airlock.parts.json"))
        assert e["outcome"] == "installed" and active_id(root) == "vision-5", e

        text = s.get("/metrics")
        lint = promtool_check(text)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        assert metric(text, "airlock_installs_total", result="installed") == 3
        assert metric(text, "airlock_installs_total", result="rejected") == 1
        assert metric(text, "airlock_bundles_rejected_total", reason="signature") == 1
        assert metric(text, "airlock_drop_bundles_total", outcome="installed") == 3
        assert metric(text, "airlock_drop_bundles_total", outcome="incomplete") == 2
        assert metric(text, "airlock_release_info", slot="active", release="vision-5",
                      version="1.0") == 1
        assert metric(text, "airlock_release_info", slot="previous", release="vision-2") == 1
        assert metric(text, "airlock_model_health_ok", release="vision-5", model="detector") == 1
        assert metric(text, "airlock_model_latency_p95_seconds", model="detector")
        assert metric(text, "airlock_agent_info", device_id="test-dev") == 1
        status = json.loads(s.get("/status"))
        assert status["active"]["id"] == "vision-5" and status["state"] == "idle"
        assert json.loads(s.get("/healthz"))["ok"] is True
        assert 'href="/metrics"' in s.get("/")
        assert s.stop() == 0

    # Across a restart nothing is installed twice, not even the same release renamed.
    installs = _journal_events(root).count("install-started")
    results = {p.name: p.read_bytes() for p in stick.glob("*.result.*")}
    with Serve.start(root, watch=[stick]) as s:
        shutil.copy(bundles["v1"], stick / "v1-again.airlock")
        e = s.wait_event("drop-result", drop=str(stick / "v1-again.airlock"))
        assert e["outcome"] == "skipped" and "not installed again" in str(e["message"])
        time.sleep(1.0)  # five more polls over the old drops
        assert not [e for e in s.events() if e["event"] == "drop-install"]
    assert _journal_events(root).count("install-started") == installs
    assert {p.name: p.read_bytes() for p in stick.glob("*.result.*")
            if not p.name.startswith("v1-again")} == results
    assert active_id(root) == "vision-5"
    assert_consistent(root)


def test_a_read_only_stick_still_installs(tmp_path: Path, keyset: Keys,
                                          bundles: dict[str, Path]) -> None:
    root = init_device(tmp_path / "dev", keyset)
    stick = tmp_path / "stick"
    stick.mkdir()
    shutil.copy(bundles["v1"], stick / "v1.airlock")
    # Root ignores file modes; a directory where each result file goes stands in for a
    # read-only filesystem: writing fails and the install must not mind.
    for name in ("v1.result.json", "v1.result.txt"):
        (stick / name).mkdir()
        (stick / name / "keep").write_text("")
    (stick / "airlock-reports").write_text("not a folder")
    with Serve.start(root, watch=[stick]) as s:
        e = s.wait_event("drop-result", drop=str(stick / "v1.airlock"))
        assert e["outcome"] == "installed" and e["results_written"] is False
    assert active_id(root) == "vision-1"
    assert not (stick / "v1.result.json").is_file()


def test_sigterm_during_a_drop_install_finishes_it(tmp_path: Path, keyset: Keys,
                                                   bundles: dict[str, Path]) -> None:
    root = init_device(tmp_path / "dev", keyset)
    agent_json(root, "install", bundles["v1"])
    stick = tmp_path / "stick"
    stick.mkdir()
    with Serve.start(root, watch=[stick]) as s:
        shutil.copy(bundles["slow"], stick / "slow.airlock")
        s.wait_event("drop-install")
        time.sleep(0.5)
        assert s.stop(signal.SIGTERM) == 0
        events = [e["event"] for e in s.events()]
    assert events.index("serve-stopping") < events.index("drop-result") < events.index(
        "serve-stopped")
    assert _result(stick, "slow")["outcome"] == "installed"
    assert assert_consistent(root)["active"]["id"] == "vision-4"


def test_a_second_sigterm_undoes_the_install_in_progress(tmp_path: Path, keyset: Keys,
                                                         bundles: dict[str, Path]) -> None:
    root = init_device(tmp_path / "dev", keyset)
    agent_json(root, "install", bundles["v1"])
    stick = tmp_path / "stick"
    stick.mkdir()
    with Serve.start(root, watch=[stick]) as s:
        shutil.copy(bundles["slow"], stick / "slow.airlock")
        s.wait_event("drop-install")
        s.wait_event("serve-started")
        time.sleep(0.2)  # inside the health check (seconds long), well before its end
        s.proc.send_signal(signal.SIGTERM)
        s.wait_event("serve-stopping")
        assert s.stop(signal.SIGTERM) == 0
        assert "drop-aborted" in [e["event"] for e in s.events()]
    status = assert_consistent(root)
    assert status["active"]["id"] == "vision-1" and "vision-4" not in status["releases"]
    assert _journal_events(root)[-1] == "install-failed"
    # Not remembered: the next serve installs it.
    assert not (stick / "slow.result.json").exists()


def test_a_failed_scheduled_check_reverts_when_asked(tmp_path: Path, keyset: Keys,
                                                     bundles: dict[str, Path]) -> None:
    root = init_device(tmp_path / "dev", keyset)
    agent_json(root, "install", bundles["v1"])
    agent_json(root, "install", bundles["v2"])
    (root / "releases" / "vision-2" / "models" / "detector" / "outputs.npz").unlink()
    with Serve.start(root, check_every="1s", extra=["--revert-on-failed-check"]) as s:
        e = s.wait_event("check-result")
        assert e["ok"] is False and "outputs" in e["reason"] and e["reverted"] is True
        text = s.get("/metrics")
        assert metric(text, "airlock_scheduled_checks_total", result="failed") == 1
        assert metric(text, "airlock_rollbacks_total", result="ok", trigger="check") == 1
        assert metric(text, "airlock_release_info", slot="active", release="vision-1") == 1
    assert active_id(root) == "vision-1"


def test_serve_and_a_manual_install_share_the_lock(tmp_path: Path, keyset: Keys,
                                                   bundles: dict[str, Path]) -> None:
    root = init_device(tmp_path / "dev", keyset)
    stick = tmp_path / "stick"
    stick.mkdir()
    with Serve.start(root, watch=[stick]) as s:
        shutil.copy(bundles["slow"], stick / "slow.airlock")
        s.wait_event("drop-install")
        p = run_agent("--root", root, "install", bundles["v1"])
        assert p.returncode == 5 and "holds the agent lock" in p.stderr
        s.wait_event("drop-result")
    assert_consistent(root)


def test_a_drop_onto_a_damaged_root_is_refused_as_the_cli_refuses_it(
        tmp_path: Path, keyset: Keys, bundles: dict[str, Path]) -> None:
    """The drop folder's door is install's (agent.operations): the shape check comes first."""
    root = init_device(tmp_path / "dev", keyset)
    agent_json(root, "install", bundles["v1"])
    shutil.rmtree(root / "blobs")
    (root / "blobs").write_text("junk\n")  # as tests/hostile/test_device_state.py damages it
    cli = run_agent("--root", root, "install", bundles["v2"])
    assert cli.returncode == 5, cli.stderr
    # What serve itself keeps aside (its lock, what it did with drops, the device's facts it
    # probes again at every start), nothing is changed.
    skip = (*AGENT_BOOKKEEPING, "serve.lock", "drops.json", "facts.json")
    before = tree_hash(root, skip)
    stick = tmp_path / "stick"
    stick.mkdir()
    with Serve.start(root, watch=[stick]) as s:
        shutil.copy(bundles["v2"], stick / "v2.airlock")
        e = s.wait_event("drop-result", drop=str(stick / "v2.airlock"))
        assert e["outcome"] == "refused" and e["exit_code"] == 5, e
        assert e["message"] in cli.stderr, (e["message"], cli.stderr)
        assert "drop-install" not in [x["event"] for x in s.events()]
        assert json.loads(s.get("/healthz"))["ok"] is True  # serve keeps running
        assert s.proc.poll() is None
    assert tree_hash(root, skip) == before
    assert _result(stick, "v2")["outcome"] == "refused"


def test_bad_arguments_exit_2_and_a_second_serve_exits_5(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "dev", keyset)
    for args, words in ((["--listen", "nowhere"], "HOST:PORT"),
                        (["--check-every", "often"], "duration"),
                        (["--watch", str(root / "agent.yaml")], "not a directory")):
        p = run_agent("--root", root, "serve", *args)
        assert p.returncode == 2 and words in p.stderr, p.stderr
    with Serve.start(root):
        p = run_agent("--root", root, "serve", "--listen", "127.0.0.1:0")
        assert p.returncode == 5 and "serve already runs" in p.stderr, p.stderr
    for cmd in ("serve", "report"):
        p = run_agent(cmd, "--help")
        assert p.returncode == 0 and "example:" in p.stdout


# -- what is shipped beside the code: dashboard, scrape example, units ----------------------


def _exposed_names(tmp_path: Path, keyset: Keys) -> set[str]:
    """Every sample name a device with a release, a health result and drift exposes."""
    from agent.layout import Layout
    from agent.observe.metrics import Observed, metrics_registry, sample_names
    from agent.observe.sample_drift import release_drift

    ref = np.random.default_rng(1).standard_normal((200, 16)).astype(np.float32)
    np.savez(tmp_path / "ref.npz", x=ref)
    spec = write_spec(tmp_path, health={"reference": "ref.npz"})
    root = init_device(tmp_path / "dev", keyset)
    agent_json(root, "install", build(spec, tmp_path / "d.airlock", [keyset.release_key]))
    (root / "samples" / "detector").mkdir(parents=True)
    np.savez(root / "samples" / "detector" / "s.npz", x=ref + 1)
    layout = Layout(root)
    registry = metrics_registry(layout, Observed(drift=release_drift(layout)))
    return set(sample_names(registry))


def test_grafana_dashboard_queries_only_metrics_that_serve_exposes(tmp_path: Path,
                                                                   keyset: Keys) -> None:
    dashboard = json.loads((REPO / "docs" / "grafana" / "airlock.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {m for e in exprs for m in re.findall(r"\b((?:airlock|process)_[a-z0-9_]+)\b", e)}
    assert len(used) >= 20
    exposed = _exposed_names(tmp_path, keyset)
    assert used <= exposed, sorted(used - exposed)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_examples_pass_promtool() -> None:
    from tests.support.registry import need_tools

    need_tools("promtool")
    import subprocess

    folder = REPO / "docs" / "prometheus"
    p = subprocess.run(["promtool", "check", "config", "airlock.yml"], cwd=folder,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "7 rules found" in p.stdout


def test_systemd_unit_starts_serve_with_flags_it_accepts() -> None:
    from agent.cli import parser

    unit = (REPO / "packaging" / "airlock-agent.service").read_text()
    exec_start = re.search(r"^ExecStart=\S+ (.*)$", unit, re.M)
    assert exec_start is not None
    a = parser().parse_args(exec_start.group(1).split())
    assert a.cmd == "serve" and a.revert_on_failed_check and a.watch == [Path("/media/airlock")]
    mount = (REPO / "packaging" / "media-airlock.mount").read_text()
    assert "Where=/media/airlock" in mount
    assert "media-airlock.mount" in (REPO / "packaging" / "99-airlock-stick.rules").read_text()


class _PulledStick(io.RawIOBase):
    """A bundle on a stick pulled out half way: reads fail with EIO, as the kernel's do."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        self.data, self.fail_at, self.pos = data, fail_at, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if self.pos >= self.fail_at:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        n = min(len(b), self.fail_at - self.pos)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def test_a_stick_pulled_mid_install_is_a_clean_rejection(tmp_path: Path, keyset: Keys,
                                                         bundles: dict[str, Path]) -> None:
    from agent.layout import Layout
    from agent.observe.dropfolder import Candidate, Drop
    from agent.observe.serve import EventLog, ServeOptions, _Server

    root = init_device(tmp_path / "dev", keyset)
    agent_json(root, "install", bundles["v1"])
    stick = tmp_path / "stick"
    stick.mkdir()
    data = bundles["v2"].read_bytes()
    (stick / "v2.airlock").write_bytes(data)

    class StickPulledOut(Drop):
        def open(self) -> tuple[Any, int]:
            return io.BufferedReader(_PulledStick(data, len(data) - 3000)), len(data)

    skip = (*AGENT_BOOKKEEPING, "drops.json")
    before = tree_hash(root, skip)
    server = _Server(Layout(root), ServeOptions(watch=[stick]), EventLog(tmp_path / "log"))
    drop = StickPulledOut(stick, "v2", "bundle", [stick / "v2.airlock"])
    outcome = server.install(Candidate(drop, True, "0" * 64))
    assert outcome is not None and (outcome.outcome, outcome.exit_code) == ("rejected", 3)
    assert "Input/output error" in outcome.message and outcome.remember is None
    assert tree_hash(root, skip) == before
    assert assert_consistent(root)["active"]["id"] == "vision-1"
