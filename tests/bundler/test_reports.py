"""Signed device reports: written on three real devices, enrolled and ingested at headquarters.

A report counts only when it verifies against the key enrolled for the device
it names; forged, altered and unenrolled reports are refused with one line
each (exit 3) and change nothing in the fleet directory.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keys.device import INVENTORY_TYPE, REPORT_TYPE, verify_document
from keys.keyfile import load_public_key
from tests.support.cli import run_agent, run_airlock, tool_env
from tests.support.device import agent_json
from tests.support.keyset import Keys
from tests.support.registry import need_tools
from tests.support.serve import metric
from tests.support.spec import build, write_spec
from tests.support.treehash import listing


def _device(root: Path, keys: Keys, device_id: str, *extra: str) -> Path:
    p = run_agent("--root", root, "init", "--trust", keys.trust, "--device-id", device_id, *extra)
    assert p.returncode == 0, p.stderr
    assert '"keytype":"ed25519"' in p.stdout  # the public key, to enroll, on one line
    return root


@pytest.fixture(scope="module")
def site(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three devices and their reports on a stick: cam-a rolled back once, cam-b drifts,
    cam-c (ring canary) runs nothing yet."""
    d = tmp_path_factory.mktemp("site")
    ref = np.random.default_rng(3).standard_normal((500, 16)).astype(np.float32)
    np.savez(d / "ref.npz", x=ref)
    v1 = build(write_spec(d, sequence=1, health={"reference": "ref.npz"}), d / "v1.airlock",
               [keyset.release_key])
    v2 = build(write_spec(d, sequence=2, scale=3.0), d / "v2.airlock", [keyset.release_key])
    a = _device(d / "cam-a", keyset, "cam-a")
    agent_json(a, "install", v1)
    agent_json(a, "install", v2)
    agent_json(a, "rollback")
    b = _device(d / "cam-b", keyset, "cam-b")
    agent_json(b, "install", v1)
    (b / "samples" / "detector").mkdir(parents=True)
    np.savez(b / "samples" / "detector" / "today.npz", x=ref[:200] * 2 + 1)
    c = _device(d / "cam-c", keyset, "cam-c", "--ring", "canary")
    stick = d / "stick" / "airlock-reports"
    for root in (a, b, c):
        name = root.name
        out = agent_json(root, "report", "-o", stick / f"{name}.report.json")
        assert out["bytes"] < 256 * 1024 and out["device_id"] == name
    return {"a": a, "b": b, "c": c, "stick": stick, "dir": d}


def _enroll(fleet: Path, root: Path, device_id: str, site: str) -> None:
    p = run_airlock("report", "enroll", root / "device.pub", "--device-id", device_id,
                    "--site", site, "--fleet", fleet)
    assert p.returncode == 0, p.stderr


def test_report_enroll_ingest_round_trip_for_three_devices(site: dict[str, Path],
                                                          tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    for key, where in (("a", "north"), ("b", "north"), ("c", "south")):
        _enroll(fleet, site[key], f"cam-{key}", where)
    prom = tmp_path / "textfile" / "airlock.prom"
    p = run_airlock("report", "ingest", site["stick"], "--fleet", fleet, "--json",
                    "--textfile", prom)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert len(out["accepted"]) == 3 and out["refused"] == []
    rows = {r["device"]: r for r in out["devices"]}
    a, b, c = rows["cam-a"], rows["cam-b"], rows["cam-c"]
    assert (a["site"], a["release"], a["health"], a["rollbacks"]) == ("north", "vision-1", "ok", 1)
    assert a["last_check"] and a["report_age_s"] < 600
    assert b["drift"] > 0.2 and b["drift_warn"] is True and b["rollbacks"] == 0
    assert (c["ring"], c["release"], c["health"], c["site"]) == ("canary", None, "no release",
                                                                 "south")

    # The inventories are the device-signed documents build --delta-from takes.
    for key in ("a", "b", "c"):
        data = (fleet / "inventories" / f"cam-{key}.inventory.json").read_bytes()
        doc = verify_document(data, INVENTORY_TYPE, key=load_public_key(site[key] / "device.pub"))
        assert doc.body["device_id"] == f"cam-{key}"
    assert {b["digest"] for b in verify_document(
        (fleet / "inventories" / "cam-a.inventory.json").read_bytes(), INVENTORY_TYPE
    ).body["blobs"]} == {f"sha256:{p.name}" for p in (site["a"] / "blobs" / "sha256").iterdir()}

    # The human table has one line per device and the textfile passes promtool.
    p = run_airlock("report", "ingest", site["stick"] / "cam-a.report.json", "--fleet", fleet)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["device", "site", "ring"]
    assert [ln.split()[0] for ln in lines[1:4]] == ["cam-a", "cam-b", "cam-c"]
    need_tools("promtool")
    text = prom.read_text()
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert metric(text, "airlock_fleet_device_health_ok", device="cam-a", site="north") == 1
    assert metric(text, "airlock_fleet_rollbacks_total", device="cam-a") == 1
    assert metric(text, "airlock_fleet_drift_psi", device="cam-b", model="detector") > 0.2


def _payload_edit(data: bytes, edit: dict[str, object]) -> bytes:
    env = json.loads(data)
    body = json.loads(base64.b64decode(env["payload"]))
    body.update(edit)
    env["payload"] = base64.b64encode(json.dumps(body).encode()).decode()
    return json.dumps(env).encode()


def test_forged_altered_and_unenrolled_reports_are_refused(site: dict[str, Path],
                                                          tmp_path: Path, keyset: Keys) -> None:
    fleet = tmp_path / "fleet"
    _enroll(fleet, site["a"], "cam-a", "north")
    _enroll(fleet, site["b"], "cam-b", "north")
    good = site["stick"] / "cam-a.report.json"
    bad = tmp_path / "bad"
    bad.mkdir()
    # Altered: cam-a's report with its health turned around after signing.
    (bad / "altered.report.json").write_bytes(_payload_edit(good.read_bytes(),
                                                            {"ring": "stable"}))
    # Forged: a report that names cam-b, signed with cam-a's key (any key but cam-b's).
    from keys.device import sign_document
    from keys.keyfile import load_signer

    body = verify_document(good.read_bytes(), REPORT_TYPE).body
    forged = sign_document({**body, "device_id": "cam-b"}, REPORT_TYPE,
                           load_signer(site["a"] / "device.key"))
    (bad / "forged.report.json").write_bytes(forged)
    # Unenrolled: cam-c never was.
    (bad / "unenrolled.report.json").write_bytes((site["stick"] / "cam-c.report.json")
                                                 .read_bytes())
    (bad / "junk.report.json").write_text("{\"payload\": 1}")
    before = listing(fleet)
    p = run_airlock("report", "ingest", bad, "--fleet", fleet)
    assert p.returncode == 3, p.stderr
    errors = dict(line.split(": ", 2)[1:] for line in p.stderr.splitlines()
                  if line.startswith("airlock: refused"))
    why = {Path(k.removeprefix("refused ")).name: v for k, v in errors.items()}
    assert "does not verify" in why["altered.report.json"]
    assert "forged" in why["forged.report.json"] and "cam-b" in why["forged.report.json"]
    assert "not enrolled" in why["unenrolled.report.json"]
    assert "not a signed" in why["junk.report.json"]
    assert "4 of 4 report(s) refused" in p.stderr and "Traceback" not in p.stderr
    assert listing(fleet) == before  # nothing counted, nothing stored
    # The table still shows the fleet, with no report from anyone.
    assert "no report" in p.stdout


def test_init_prints_the_real_key_path_and_the_enroll_command_that_works(
        keyset: Keys, tmp_path: Path) -> None:
    p = run_agent("--root", tmp_path / "cam 7", "init", "--trust", keyset.trust,
                  "--device-id", "cam-7")
    assert p.returncode == 0, p.stderr
    assert "\\n" not in p.stdout  # no escaped line breaks where the key is printed
    command = next(line.strip() for line in p.stdout.splitlines()
                   if line.strip().startswith("airlock report enroll"))
    argv = shlex.split(command)
    assert argv[3] == str(tmp_path / "cam 7" / "device.pub")
    assert Path(argv[3]).is_file() and argv[4:] == ["--device-id", "cam-7"]
    r = run_airlock(*argv[1:], "--fleet", tmp_path / "fleet")
    assert r.returncode == 0 and "enrolled cam-7" in r.stdout, r.stderr


def test_a_refused_report_is_one_json_object_and_fails_through_a_closed_pipe(
        site: dict[str, Path], tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    _enroll(fleet, site["a"], "cam-a", "north")
    forged = tmp_path / "forged.report.json"
    forged.write_bytes(_payload_edit((site["stick"] / "cam-a.report.json").read_bytes(),
                                     {"ring": "stable"}))
    p = run_airlock("report", "ingest", forged, "--fleet", fleet, "--json")
    assert p.returncode == 3
    out = json.loads(p.stdout)  # one object: the result and the error together
    assert out["exit"] == 3 and "refused" in out["error"]
    assert [Path(r["file"]).name for r in out["refused"]] == ["forged.report.json"]
    # `airlock report ingest forged.json | head -1` under `set -o pipefail`: a reader that
    # went away must not turn the refusal into success.
    for extra in ((), ("--json",)):
        read, write = os.pipe()
        os.close(read)
        with os.fdopen(write, "wb") as closed:
            r = subprocess.run([sys.executable, "-m", "bundler", "report", "ingest", forged,
                                "--fleet", fleet, *extra], stdout=closed,
                               stderr=subprocess.PIPE, env=tool_env(), timeout=120)
        assert r.returncode == 3, (extra, r.stderr)
        assert b"Traceback" not in r.stderr
    shell = subprocess.run(["bash", "-c", 'set -o pipefail; "$@" | head -1', "-",
                            sys.executable, "-m", "bundler", "report", "ingest", str(forged),
                            "--fleet", str(fleet)], capture_output=True, env=tool_env(),
                           timeout=120)
    assert shell.returncode == 3, shell.stderr


def test_a_bundle_or_a_key_handed_to_ingest_is_named_not_decoded(site: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    """No codec error: the refusal says what the file is instead of a report."""
    fleet = tmp_path / "fleet"
    _enroll(fleet, site["a"], "cam-a", "north")
    for given, words in ((site["dir"] / "v1.airlock", "an Airlock bundle, not a signed Airlock "
                          "report"),
                         (site["a"] / "device.pub", "an Airlock public key (key id "),
                         (site["a"] / "device.key", "not a signed Airlock report")):
        p = run_airlock("report", "ingest", given, "--fleet", fleet)
        assert p.returncode == 3, p.stderr
        assert words in p.stderr, p.stderr
        assert "codec" not in p.stderr and "Expecting value" not in p.stderr, p.stderr


def test_enroll_refuses_a_key_already_enrolled_for_another_device(site: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    _enroll(fleet, site["a"], "cam-a", "north")
    p = run_airlock("report", "enroll", site["a"] / "device.pub", "--device-id", "cam-z",
                    "--fleet", fleet)
    assert p.returncode == 2 and "already enrolled for cam-a" in p.stderr
    p = run_airlock("report", "enroll", site["b"] / "device.pub", "--device-id", "cam-a",
                    "--fleet", fleet)
    assert p.returncode == 2 and "--force" in p.stderr


def test_report_since_last_carries_only_new_journal_entries(tmp_path: Path, keyset: Keys,
                                                            make_bundle: object) -> None:
    root = _device(tmp_path / "dev", keyset, "cam-s")
    first = agent_json(root, "report", "-o", tmp_path / "r1.json")
    assert first["since"].startswith("all") and first["entries"] == first["to_line"] >= 1
    assert run_agent("--root", root, "install", tmp_path / "missing.airlock").returncode != 0
    agent_json(root, "gc")
    second = agent_json(root, "report", "-o", tmp_path / "r2.json")
    assert second["since"] == "the last report" and second["from_line"] == first["to_line"] + 1
    body = verify_document((tmp_path / "r2.json").read_bytes(), REPORT_TYPE).body
    assert [e["event"] for e in body["journal"]["entries"]] == ["gc"]
    again = agent_json(root, "report", "-o", tmp_path / "r3.json", "--since",
                       str(tmp_path / "r1.json"))
    assert again["from_line"] == second["from_line"]
    everything = agent_json(root, "report", "-o", tmp_path / "r4.json", "--since", "all")
    assert everything["from_line"] == 1
    p = run_agent("--root", root, "report", "--since", "yesterday-ish")
    assert p.returncode == 2 and "--since" in p.stderr
