"""`airlock fleet rollout` against a site of real sshd devices, each a separate host with its agent.

Each device is its own network namespace with its own address and sshd on port 22
(tests/support/site.py; loopback ports outside CI where namespaces are not permitted).

A clean three-wave rollout moves every device; a canary whose health check fails halts it
before wave 2; a device that cannot be reached halts it and the devices already moved are put
back; unknown and changed host keys are refused; a ring-limited signer's release goes to its
ring and is refused elsewhere. Every device's release is asked of its own agent afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_airlock
from tests.support.device import agent_json
from tests.support.keyset import Keys
from tests.support.netns import netns_unavailable
from tests.support.site import TestSite, site_template
from tests.support.spec import build, write_spec
from tests.support.sshd import keygen, need_sshd

pytestmark = pytest.mark.integration


@dataclass
class Releases:
    trust: Path  # release key for every ring, and a 'canary' ring signer
    v1: Path  # what every device runs before
    v2: Path  # the good new release
    bad: Path  # a new release whose health check fails
    canary_only: Path  # signed only by the canary ring signer, for ring canary


@pytest.fixture(scope="module")
def releases(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> Releases:
    need_sshd()
    from keys.keyfile import generate_keypair, load_public_key, load_signer
    from keys.trust import RingSigner, create_root

    work = tmp_path_factory.mktemp("rollout")
    ring_key, ring_pub = generate_keypair("canary-signer", work)
    md = create_root([load_signer(keyset.root_key)], [load_public_key(keyset.release_pub)],
                     ring_signers=[RingSigner("canary", (load_public_key(ring_pub),),
                                              ("canary",))])
    trust = work / "root.json"
    trust.write_bytes(md.to_bytes())

    def make(sequence: int, keys: list[Path], **kw: Any) -> Path:
        spec = write_spec(work, sequence=sequence, version=f"1.{sequence}", runs=2, **kw)
        return build(spec, work / f"vision-{sequence}.airlock", keys)

    return Releases(trust, make(1, [keyset.release_key]), make(2, [keyset.release_key]),
                    make(3, [keyset.release_key], wrong=True),
                    make(4, [ring_key], extra={"rings": ["canary"]}))


@pytest.fixture(scope="module")
def template(releases: Releases, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A device on vision-1 that every site of this module copies."""
    return site_template(tmp_path_factory.mktemp("template") / "root", releases.trust,
                         releases.v1)


@pytest.fixture
def site(releases: Releases, template: Path, tmp_path: Path) -> Iterator[TestSite]:
    """Five devices: cam-1 in ring canary, the others in prod; all on vision-1."""
    with TestSite.start(tmp_path / "site", releases.trust,
                        ["canary", "prod", "prod", "prod", "prod"], template=template) as s:
        yield s


@pytest.fixture
def small_site(releases: Releases, template: Path, tmp_path: Path) -> Iterator[TestSite]:
    """Three devices, as ``site``: enough where waves of five add only time."""
    with TestSite.start(tmp_path / "site", releases.trust, ["canary", "prod", "prod"],
                        template=template) as s:
        yield s


def _rollout(site: TestSite, bundle: Path, *extra: Any) -> tuple[int, dict[str, Any], str]:
    p = run_airlock("fleet", "rollout", bundle, "--inventory", site.inventory, "--known-hosts",
                    site.known_hosts, "--json", *extra)
    return p.returncode, json.loads(p.stdout) if p.stdout.strip() else {}, p.stderr


def _by_device(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["device"]: d for d in report["devices"]}


def test_three_waves_move_every_device_and_a_second_run_sends_nothing(
        site: TestSite, releases: Releases, tmp_path: Path) -> None:
    hosts = run_airlock("fleet", "hosts", "--inventory", site.inventory, "--json")
    assert hosts.returncode == 0, hosts.stderr
    assert [h["name"] for h in json.loads(hosts.stdout)["hosts"]] == list(site.servers)
    if netns_unavailable() is None:  # each device a host of its own: own address, port 22
        assert len({s.host for s in site.servers.values()}) == len(site.servers)
        assert all(s.port == 22 and not s.host.startswith("127.") for s in site.servers.values())

    report_file = tmp_path / "rollout.json"
    code, out, err = _rollout(site, releases.v2, "--waves", "1,40%,100%", "--parallel", "2",
                              "--report", report_file)
    assert code == 0, err
    assert out["waves"] == [["cam-1"], ["cam-2"], ["cam-3", "cam-4", "cam-5"]]
    assert json.loads(report_file.read_text()) == out
    for name, d in _by_device(out).items():
        assert (d["before"], d["after"], d["result"]) == ("vision-1", "vision-2", "installed")
        assert d["bytes_sent"] == releases.v2.stat().st_size
        assert site.active(name) == "vision-2"

    # Again, as text (the report file has the JSON): every copy is already there (hashed,
    # not sent) and nothing changes; the table names each device's move. Two devices
    # suffice: all five would add only time.
    p = run_airlock("fleet", "rollout", releases.v2, "--inventory", site.inventory,
                    "--known-hosts", site.known_hosts, "--limit", "cam-1,cam-2",
                    "--waves", "100%", "--parallel", "2", "--report", report_file)
    assert p.returncode == 0, p.stderr
    again = json.loads(report_file.read_text())
    assert [d["device"] for d in again["devices"]] == ["cam-1", "cam-2"]
    assert {(d["result"], d["bytes_sent"]) for d in again["devices"]} == {("unchanged", 0)}
    assert "cam-1" in p.stdout and "vision-2 -> vision-2" in p.stdout and "cam-3" not in p.stdout

    # --report never replaces what the rollout reads, nor a file that is not a report.
    p = run_airlock("fleet", "rollout", releases.v2, "--inventory", site.inventory,
                    "--known-hosts", site.known_hosts, "--report", site.inventory)
    assert p.returncode == 2 and "refusing to write" in p.stderr
    assert "cams" in site.inventory.read_text()


def test_a_canary_failing_its_health_check_halts_before_wave_two(
        small_site: TestSite, releases: Releases) -> None:
    code, out, err = _rollout(small_site, releases.bad, "--waves", "1,100%")
    assert code == 4, err
    assert out["halted"] and out["halted_after_wave"] == 1
    [canary] = out["devices"]  # wave 2 never started
    assert canary["device"] == "cam-1" and canary["result"] == "health-failed"
    assert canary["exit_code"] == 4 and "health" in canary["reason"]
    assert "halted after wave 1" in err
    assert all(small_site.active(n) == "vision-1" for n in small_site.servers)


def test_an_unreachable_device_halts_and_moved_devices_go_back(
        small_site: TestSite, releases: Releases) -> None:
    small_site.servers["cam-3"].proc.kill()
    small_site.servers["cam-3"].proc.wait()
    code, out, err = _rollout(small_site, releases.v2, "--waves", "3,100%", "--parallel", "3")
    assert code == 4, err
    devices = _by_device(out)
    assert set(devices) == {"cam-1", "cam-2", "cam-3"}
    assert devices["cam-3"]["exit_code"] == 5 and "cannot reach" in devices["cam-3"]["reason"]
    assert sorted(out["reverted"]) == ["cam-1", "cam-2"]
    for name in ("cam-1", "cam-2"):
        assert devices[name]["result"] == "reverted" and devices[name]["after"] == "vision-1"
    assert all(small_site.active(n) == "vision-1" for n in small_site.servers if n != "cam-3")
    assert "cam-3: cannot reach" in err

    # With --no-revert-on-halt the moved devices keep the new release.
    code, out, _ = _rollout(small_site, releases.v2, "--waves", "3,100%", "--parallel", "3",
                            "--no-revert-on-halt")
    assert code == 4 and out["reverted"] == []
    assert small_site.active("cam-1") == "vision-2"


def test_unknown_host_refused_unless_accepted_and_changed_key_always_refused(
        small_site: TestSite, releases: Releases, tmp_path: Path) -> None:
    servers = list(small_site.servers.values())
    other = keygen(tmp_path / "impostor_host_key")
    # cam-1 is missing from known_hosts; cam-2's recorded key is another machine's.
    small_site.known_hosts.write_text(
        servers[1].known_hosts_line(other.with_suffix(".pub"))
        + "".join(s.known_hosts_line() for s in servers[2:]))
    code, out, err = _rollout(small_site, releases.v2, "--waves", "100%", "--max-failures", "100%",
                              "--limit", "cam-1,cam-2", "--parallel", "2")
    devices = _by_device(out)
    assert code == 3, err
    assert "is not in" in devices["cam-1"]["reason"] and devices["cam-1"]["exit_code"] == 3
    assert "changed" in devices["cam-2"]["reason"] and devices["cam-2"]["exit_code"] == 3
    assert "SHA256:" in devices["cam-2"]["reason"]
    assert small_site.active("cam-1") == small_site.active("cam-2") == "vision-1"

    code, out, err = _rollout(small_site, releases.v2, "--waves", "100%", "--max-failures", "100%",
                              "--limit", "cam-1,cam-2", "--accept-new-hosts")
    devices = _by_device(out)
    assert devices["cam-1"]["result"] == "installed" and devices["cam-1"]["recorded_host_keys"]
    assert "changed" in devices["cam-2"]["reason"]
    assert f"{servers[0].known_hosts_name} " in small_site.known_hosts.read_text()
    assert small_site.active("cam-2") == "vision-1"


def test_a_ring_signers_release_goes_to_its_ring_only(small_site: TestSite, releases: Releases) -> None:
    hosts = run_airlock("fleet", "hosts", "--inventory", small_site.inventory, "--ring", "canary",
                        "--json")
    assert [h["name"] for h in json.loads(hosts.stdout)["hosts"]] == ["cam-1"]
    code, out, err = _rollout(small_site, releases.canary_only, "--ring", "canary")
    assert code == 0, err
    assert [d["device"] for d in out["devices"]] == ["cam-1"]
    assert small_site.active("cam-1") == "vision-4"

    # Aimed at prod anyway: each agent refuses it (exit 3) and nothing changes there.
    code, out, err = _rollout(small_site, releases.canary_only, "--ring", "prod", "--waves", "100%",
                              "--max-failures", "100%", "--parallel", "2")
    assert code == 3, err
    assert {(d["exit_code"], d["after"]) for d in out["devices"]} == {(3, "vision-1")}
    assert all("ring" in d["reason"] for d in out["devices"])

    # The dry run says so without copying anything.
    code, out, err = _rollout(small_site, releases.canary_only, "--dry-run", "--parallel", "3")
    assert code == 3, err
    devices = _by_device(out)
    assert devices["cam-1"]["result"] == "already-active"
    assert devices["cam-2"]["result"] == "would-fail" and "ring" in devices["cam-2"]["reason"]
    assert all(d["bytes_sent"] == 0 for d in out["devices"])


def test_a_dry_run_shows_the_target_release_after(small_site: TestSite,
                                                 releases: Releases) -> None:
    p = run_airlock("fleet", "rollout", releases.v2, "--inventory", small_site.inventory,
                    "--known-hosts", small_site.known_hosts, "--dry-run")
    assert p.returncode == 0, p.stderr
    rows = [line.split() for line in p.stdout.splitlines() if line.startswith("cam-")]
    assert {(r[2], r[3], r[4], r[5]) for r in rows} == {("vision-1", "->", "vision-2",
                                                        "would-install")}, p.stdout
    code, out, err = _rollout(small_site, releases.v2, "--dry-run")
    assert code == 0, err
    assert {(d["before"], d["after"], d["moved"]) for d in out["devices"]} == {
        ("vision-1", "vision-2", False)}
    assert {small_site.active(d) for d in ("cam-1", "cam-2", "cam-3")} == {"vision-1"}


def test_inventory_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    inv = tmp_path / "site.yml"
    inv.write_text("all:\n  hosts:\n    cam-1:\n      ansible_host: 10.0.0.1\n")
    p = run_airlock("fleet", "hosts", "--inventory", inv)
    assert p.returncode == 2 and "cam-1" in p.stderr and "ansible_user" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    inv.write_text("all:\n  vars: {ansible_user: ops}\n  hosts:\n    cam-1: {ansible_port: x}\n")
    p = run_airlock("fleet", "hosts", "--inventory", inv)
    assert p.returncode == 2 and "ansible_port" in p.stderr


def test_confirm_after_commits_good_waves_and_an_unconfirmed_device_comes_back_alone(
        small_site: TestSite, releases: Releases) -> None:
    code, out, err = _rollout(small_site, releases.v2, "--waves", "1,100%", "--parallel", "2",
                              "--confirm-after", "60")
    assert code == 0, err
    assert all(d["committed"] and d["held_until"] for d in out["devices"])
    assert not any((root / "hold.json").exists() for root in small_site.roots.values())

    # The gateway loses the site after cam-1 switched (cam-2 down halts the wave before any
    # commit) and puts nothing back: cam-1 reverts by itself once its hold runs out.
    small_site.servers["cam-2"].proc.kill()
    small_site.servers["cam-2"].proc.wait()
    code, out, err = _rollout(small_site, releases.v1,
                              "--waves", "100%", "--limit", "cam-3")
    assert code == 4 and out["halted"], err  # an older sequence: refused (3), halted
    assert _by_device(out)["cam-3"]["exit_code"] == 3 and "older" in err
    code, out, err = _rollout(small_site, releases.canary_only, "--waves", "2,100%",
                              "--confirm-after", "2", "--no-revert-on-halt")
    assert code == 4, err
    cam1 = _by_device(out)["cam-1"]
    assert cam1["after"] == "vision-4" and not cam1["committed"]
    time.sleep(2.5)
    assert agent_json(small_site.roots["cam-1"], "check")["release"] == "vision-2"
    assert small_site.active("cam-1") == "vision-2"


def test_a_flags_bundle_rolls_out_and_goes_back_on_halt(
        small_site: TestSite, keyset: Keys, tmp_path: Path) -> None:
    flags = tmp_path / "site-flags-2.airlock"
    p = run_airlock("flags", "set", "night_mode=true", "--name", "site", "--sequence", "2",
                    "--key", keyset.release_key, "-o", flags)
    assert p.returncode == 0, p.stderr
    code, out, err = _rollout(small_site, flags, "--waves", "1,100%", "--limit", "cam-1,cam-2")
    assert code == 0, err
    assert {d["result"] for d in out["devices"]} == {"flags-applied"}
    for name in ("cam-1", "cam-2"):
        values = json.loads((small_site.roots[name] / "current" / "flags.json").read_text())
        assert values["night_mode"] is True and small_site.active(name) == "vision-1"

    # Sequence 3 with cam-3 down: halted, and the devices that took it go back to 2.
    small_site.servers["cam-3"].proc.kill()
    small_site.servers["cam-3"].proc.wait()
    p = run_airlock("flags", "set", "night_mode=false", "--name", "site", "--sequence", "3",
                    "--key", keyset.release_key, "-o", tmp_path / "site-flags-3.airlock")
    assert p.returncode == 0, p.stderr
    code, out, err = _rollout(small_site, tmp_path / "site-flags-3.airlock", "--waves", "100%",
                              "--parallel", "3")
    assert code == 4 and sorted(out["reverted"]) == ["cam-1", "cam-2"], err
    shown = agent_json(small_site.roots["cam-1"], "flags")
    assert shown["applied"] == {"site": 2} and shown["flags"]["night_mode"]["value"] is True
