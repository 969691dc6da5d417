"""Directed visits (issue 31): a stick for several devices says which device takes what.

The devices run under Debian's ``faketime -f @TIME`` (1970: a clock reset;
2100: a clock far ahead), as in tests/agent/test_timefloor.py, whose docstring
says why not ``FAKETIME_DONT_FAKE_MONOTONIC=1`` (libfaketime 0.9.10 breaks
``time.sleep`` with it). The machine's clock is never changed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agent.test_timefloor import AHEAD, RESET, at, release
from tests.support.keyset import Keys

pytestmark = pytest.mark.skipif(shutil.which("faketime") is None,
                                reason="needs Debian's faketime (apt-get install faketime)")


@dataclass
class Site:
    director: Path  # the director signer's private key
    clock: Path  # the time signer's private key
    trust: Path  # a trust root naming both
    v1: Path  # vision-1.airlock
    v2: Path  # vision-2.airlock


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, keyset: Keys) -> Site:
    from keys.keyfile import generate_keypair

    tmp = tmp_path_factory.mktemp("site")
    director, director_pub = generate_keypair("director", tmp / "k")
    clock, clock_pub = generate_keypair("time", tmp / "k")
    trust = tmp / "root-2.json"
    r = at(None, "bundler", "keys", "rotate", "--trust", keyset.trust, "--root-key",
           keyset.root_key, "--director-signer", f"hq:{director_pub}",
           "--time-signer", f"clock:{clock_pub}", "-o", trust)
    assert r.returncode == 0, r.stderr
    return Site(director, clock, trust, release(tmp, keyset, 1), release(tmp, keyset, 2))


def device(tmp: Path, site: Site, name: str) -> Path:
    root = tmp / name
    r = at(None, "agent", "--root", root, "init", "--trust", site.trust, "--device-id", name,
           "--directed")
    assert r.returncode == 0, r.stderr
    return root


def inventory(root: Path, tmp: Path) -> Path:
    out = tmp / f"{root.name}.inventory.json"
    r = at(None, "agent", "--root", root, "inventory", "-o", out)
    assert r.returncode == 0, r.stderr
    return out


def direct(site: Site, out: Path, roots: list[Path], *what: object, clock: str | None = None,
           valid_for: str = "1d", sequence: int | None = None) -> Path:
    invs = [inventory(r, out.parent) for r in roots]
    seq = ("--sequence", sequence) if sequence is not None else ()
    r = at(clock, "bundler", "direct", "--key", site.director, "--inventories", *invs, *what,
           "--valid-for", valid_for, *seq, "-o", out)
    assert r.returncode == 0, r.stderr
    return out


def state(root: Path) -> dict[str, object]:
    """What a refused visit must leave as it was: links, trust records, releases."""
    trust = {p.name: p.read_bytes() for p in sorted((root / "trust").iterdir())}
    return {"trust": trust, "releases": sorted(p.name for p in (root / "releases").iterdir()),
            "current": (root / "current").resolve() if (root / "current").exists() else None}


def active(root: Path) -> str | None:
    a = json.loads(at(None, "agent", "--root", root, "status", "--json").stdout)["active"]
    return a["id"] if a else None


def test_a_directed_device_at_a_two_device_site_takes_only_its_own_release(
        tmp_path: Path, site: Site) -> None:
    cam1, cam2 = device(tmp_path, site, "cam-1"), device(tmp_path, site, "cam-2")
    stick = tmp_path / "stick"
    stick.mkdir()
    for b in (site.v1, site.v2):
        shutil.copy(b, stick / b.name)
    direct(site, stick / "cam-1.visit.json", [cam1], "--release", site.v1)
    direct(site, stick / "cam-2.visit.json", [cam2], "--release", site.v2)

    # cam-2 is offered cam-1's release first: refused, nothing changed, then its own installs.
    before = state(cam2)
    r = at(RESET, "agent", "--root", cam2, "install", stick / site.v1.name)
    assert r.returncode == 3, r.stderr
    assert "directs this device to vision-2, not vision-1" in r.stderr
    assert state(cam2) == before
    r = at(RESET, "agent", "--root", cam2, "install", stick / site.v2.name)
    assert r.returncode == 0, r.stderr
    assert active(cam2) == "vision-2"

    r = at(RESET, "agent", "--root", cam1, "install", stick / site.v2.name)
    assert r.returncode == 3 and "directs this device to vision-1" in r.stderr, r.stderr
    assert at(None, "agent", "--root", cam1, "install", stick / site.v1.name).returncode == 0
    assert active(cam1) == "vision-1"


def test_a_stick_for_another_device_is_refused_at_1970_and_2100(
        tmp_path: Path, site: Site) -> None:
    cam1, cam2 = device(tmp_path, site, "cam-1"), device(tmp_path, site, "cam-2")
    stick = tmp_path / "stick"
    stick.mkdir()
    shutil.copy(site.v1, stick / site.v1.name)
    direct(site, stick / "visit.json", [cam2], "--release", site.v1)
    before = state(cam1)
    for clock in (RESET, AHEAD):
        r = at(clock, "agent", "--root", cam1, "install", stick / site.v1.name)
        assert r.returncode == 3, r.stderr
        assert "is for cam-2, not this device (cam-1)" in r.stderr
        assert state(cam1) == before
    # Without any visit a directed device says what it needs.
    (stick / "visit.json").unlink()
    r = at(None, "agent", "--root", cam1, "install", stick / site.v1.name)
    assert r.returncode == 3 and "is directed" in r.stderr and "--visit" in r.stderr


def test_an_expired_visit_is_refused_even_on_a_reset_clock(tmp_path: Path, site: Site) -> None:
    cam1 = device(tmp_path, site, "cam-1")
    fresh = direct(site, tmp_path / "fresh.visit.json", [cam1], "--release", site.v1)
    assert at(None, "agent", "--root", cam1, "install", site.v1, "--visit",
              fresh).returncode == 0  # the floor is now vision-1's build time
    stale = direct(site, tmp_path / "stale.visit.json", [cam1], "--release", site.v2,
                   clock="-40d", valid_for="1d", sequence=2 ** 40)
    before = state(cam1)
    # A 1970 clock would find it valid: the time floor is what refuses it.
    r = at(RESET, "agent", "--root", cam1, "install", site.v2, "--visit", stale)
    assert r.returncode == 3, r.stderr
    assert "expired at" in r.stderr
    assert state(cam1) == before and active(cam1) == "vision-1"


def test_a_fresh_visit_on_a_clock_far_ahead_is_explained_and_cured_by_a_token_on_the_stick(
        tmp_path: Path, site: Site) -> None:
    cam1 = device(tmp_path, site, "cam-1")
    stick = tmp_path / "stick"
    stick.mkdir()
    v1 = direct(site, stick / "visit.json", [cam1], "--release", site.v1)
    assert at(None, "agent", "--root", cam1, "install", site.v1, "--visit", v1).returncode == 0
    shutil.copy(site.v2, stick / site.v2.name)
    direct(site, stick / "visit.json", [cam1], "--release", site.v2)
    r = at(AHEAD, "agent", "--root", cam1, "install", stick / site.v2.name)
    assert r.returncode == 3 and "clock reads 2100-01-01" in r.stderr, r.stderr

    token = stick / "time.json"
    assert at(None, "bundler", "time-token", "--key", site.clock, "-o", token).returncode == 0
    r = at(AHEAD, "agent", "--root", cam1, "install", stick / site.v2.name, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["time_tokens"][0]["applied"] is True
    assert active(cam1) == "vision-2"

    # The same token replayed from the stick changes nothing.
    floor = (cam1 / "trust" / "time.json").read_bytes()
    r = at(AHEAD, "agent", "--root", cam1, "install", stick / site.v2.name, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["time_tokens"][0]["applied"] is False
    assert (cam1 / "trust" / "time.json").read_bytes() == floor


def test_a_replayed_older_visit_is_refused_and_rollback_moves_the_record_only_by_a_visit(
        tmp_path: Path, site: Site) -> None:
    cam1 = device(tmp_path, site, "cam-1")
    old = direct(site, tmp_path / "old.visit.json", [cam1], "--release", site.v1, sequence=10)
    assert at(None, "agent", "--root", cam1, "install", site.v1, "--visit", old).returncode == 0
    new = direct(site, tmp_path / "new.visit.json", [cam1], "--release", site.v2, sequence=20)
    assert at(None, "agent", "--root", cam1, "install", site.v2, "--visit", new).returncode == 0

    before = state(cam1)
    for clock in (RESET, AHEAD):
        r = at(clock, "agent", "--root", cam1, "install", site.v1, "--visit", old)
        assert r.returncode == 3, r.stderr
        assert "older than visit 20 this device already followed" in r.stderr
        assert state(cam1) == before and active(cam1) == "vision-2"

    # Roll back to 1 by a signed visit: the device holds it; the anti-rollback record goes down.
    back = direct(site, tmp_path / "back.visit.json", [cam1], "--rollback-to", "1", sequence=30)
    r = at(RESET, "agent", "--root", cam1, "visit", "apply", back, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rollback"]["sequence_now"] == 1
    assert active(cam1) == "vision-1"
    assert json.loads((cam1 / "trust" / "sequences.json").read_text())["vision"] == 1

    # A freeze: nothing installs, not even the release the older visit named.
    stay = direct(site, tmp_path / "stay.visit.json", [cam1], "--stay", sequence=40)
    assert at(None, "agent", "--root", cam1, "visit", "apply", stay).returncode == 0
    before = state(cam1)
    r = at(None, "agent", "--root", cam1, "install", site.v2, "--visit", stay)
    assert r.returncode == 3 and "says stay" in r.stderr, r.stderr
    r = at(None, "agent", "--root", cam1, "install", site.v2, "--visit", new)
    assert r.returncode == 3 and "older than visit 40" in r.stderr, r.stderr
    assert state(cam1) == before and active(cam1) == "vision-1"


def test_the_drop_folder_of_a_directed_device_takes_its_own_release_and_the_token(
        tmp_path: Path, site: Site) -> None:
    from tests.support.serve import Serve

    cam1, cam2 = device(tmp_path, site, "cam-1"), device(tmp_path, site, "cam-2")
    stick = tmp_path / "stick"
    stick.mkdir()
    direct(site, stick / "cam-1.visit.json", [cam1], "--release", site.v1)
    direct(site, stick / "cam-2.visit.json", [cam2], "--release", site.v2)
    assert at(None, "bundler", "time-token", "--key", site.clock, "-o",
              stick / "time.json").returncode == 0
    shutil.copy(site.v1, stick / "v1.airlock")
    shutil.copy(site.v2, stick / "v2.airlock")
    with Serve.start(cam1, watch=[stick]) as s:
        e1 = s.wait_event("drop-result", drop=str(stick / "v1.airlock"))
        e2 = s.wait_event("drop-result", drop=str(stick / "v2.airlock"))
    assert e1["outcome"] == "installed", e1
    assert (e2["outcome"], e2["exit_code"]) == ("rejected", 3), e2
    assert "directs this device to vision-1, not vision-2" in str(e2["message"])
    assert active(cam1) == "vision-1"
    floor = json.loads((cam1 / "trust" / "time.json").read_text())
    assert floor["source"].startswith(("time token", "visit", "release"))
    assert "offset_s" in floor  # the token on the stick was applied


def test_status_says_a_device_is_directed_and_which_visit_it_followed(
        tmp_path: Path, site: Site) -> None:
    cam1 = device(tmp_path, site, "cam-1")
    visit = direct(site, tmp_path / "v.visit.json", [cam1], "--release", site.v1, sequence=7)
    assert at(None, "agent", "--root", cam1, "install", site.v1, "--visit", visit).returncode == 0
    r = at(None, "agent", "--root", cam1, "status")
    assert "directed  installs only what a signed visit names; last visit 7 (install " \
           "vision-1)" in r.stdout, r.stdout
    assert json.loads(at(None, "agent", "--root", cam1, "status", "--json").stdout)[
        "directed"]["sequence"] == 7


def test_a_rotation_naming_director_signers_keeps_the_time_signers(
        tmp_path: Path, site: Site, keyset: Keys) -> None:
    from keys.keyfile import generate_keypair
    from keys.purpose_signers import describe
    from keys.trust import TrustRoot

    _, other = generate_keypair("director2", tmp_path / "k")
    out = tmp_path / "root-3.json"
    r = at(None, "bundler", "keys", "rotate", "--trust", site.trust, "--root-key",
           keyset.root_key, "--director-signer", f"hq2:{other}", "-o", out)
    assert r.returncode == 0, r.stderr
    signers = describe(TrustRoot.from_bytes(out.read_bytes()).md.signed)
    assert sorted((s["name"], s["purpose"]) for s in signers) == [("clock", "time"),
                                                                  ("hq2", "director")]
