"""The fleet report: ``airlock report ingest --html`` from three real devices' signed reports,
opened in a real headless Chromium.

cam-a (north) went v1 → v2, was checked again and rolled back by hand, and
refused a junk file with a hostile name; cam-b (north) runs a release with a
hostile version string and its inputs drift; cam-c (south, ring canary) had
its golden outputs rot on disk, so its last check failed.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.browser import chromium, elements, load, parse_strict, tag_names
from tests.support.cli import run_agent, run_airlock
from tests.support.device import agent_json
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec

HOSTILE_VERSION = '2.0<img src=x onerror=alert(1)><script>alert(2)</script>'
HOSTILE_FILE = "evil<svg onload=alert(3)>.airlock"
SITES = {"cam-a": "north", "cam-b": "north", "cam-c": "south"}


def _init(root: Path, keys: Keys, device_id: str, *extra: str) -> Path:
    p = run_agent("--root", root, "init", "--trust", keys.trust, "--device-id", device_id, *extra)
    assert p.returncode == 0, p.stderr
    return root


def _report(root: Path, stick: Path) -> None:
    out = agent_json(root, "report", "-o", stick / f"{root.name}.{time.time_ns()}.report.json",
                     "--since", "all")
    assert out["device_id"] == root.name


@pytest.fixture(scope="module")
def fleet(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fleet-site")
    ref = np.random.default_rng(3).standard_normal((500, 16)).astype(np.float32)
    np.savez(d / "ref.npz", x=ref)
    v1 = build(write_spec(d, sequence=1), d / "v1.airlock", [keyset.release_key])
    v2 = build(write_spec(d, sequence=2, scale=3.0, version=HOSTILE_VERSION,
                          health={"reference": "ref.npz"}), d / "v2.airlock",
               [keyset.release_key])
    stick = d / "stick"
    stick.mkdir()
    a = _init(d / "cam-a", keyset, "cam-a")
    agent_json(a, "install", v1)
    agent_json(a, "install", v2)
    agent_json(a, "check")
    agent_json(a, "rollback")
    (d / HOSTILE_FILE).write_bytes(b"junk " * 200)
    assert run_agent("--root", a, "install", d / HOSTILE_FILE).returncode == 3
    b = _init(d / "cam-b", keyset, "cam-b")
    agent_json(b, "install", v2)
    samples = b / "samples" / "detector"
    samples.mkdir(parents=True)
    np.savez(samples / "1.npz", x=ref[:200] * 1.2)
    _report(b, stick)
    time.sleep(1.1)  # reports are stored by the second: a second point in time
    np.savez(samples / "2.npz", x=ref[:200] * 2 + 1)
    c = _init(d / "cam-c", keyset, "cam-c", "--ring", "canary")
    agent_json(c, "install", v1)
    # Bit rot: the golden outputs (a hard link into the store) change under the release.
    golden = c / "releases" / "vision-1" / "models" / "detector" / "outputs.npz"
    outputs = dict(np.load(golden))
    buf = io.BytesIO()
    np.savez(buf, **{k: v + 1 for k, v in outputs.items()})
    with golden.open("r+b") as f:
        f.truncate(0)
        f.write(buf.getvalue())
    assert run_agent("--root", c, "check").returncode == 4
    for root in (a, b, c):
        _report(root, stick)
    fleet_dir = d / "hq"
    for device, site in SITES.items():
        p = run_airlock("report", "enroll", d / device / "device.pub", "--device-id", device,
                        "--site", site, "--fleet", fleet_dir)
        assert p.returncode == 0, p.stderr
    return {"stick": stick, "fleet": fleet_dir, "dir": d}


def test_fleet_report_in_chromium_shows_the_fleet_and_runs_nothing_it_was_given(
        fleet: dict[str, Path], tmp_path: Path) -> None:
    html_path = tmp_path / "out" / "fleet.html"
    p = run_airlock("report", "ingest", fleet["stick"], "--fleet", fleet["fleet"],
                    "--html", html_path)
    assert p.returncode == 0, p.stderr
    assert f"fleet report: {html_path}" in p.stdout
    body = html_path.read_text()
    assert len(body) < 200_000  # one small file to mail home
    url = html_path.as_uri()
    with chromium() as browser:
        seen = load(browser, url, tmp_path / "fleet-report.png")
        # Sorting by device twice puts cam-c first; only the page's own script runs.
        by_device = load(browser, url, tmp_path / "fleet-sorted.png",
                         click=["#devices th:nth-child(1) button"] * 2)
        no_js = load(browser, url, tmp_path / "fleet-no-js.png", js=False)
        phone = load(browser, url, tmp_path / "fleet-phone.png", width=390)
        printed = load(browser, url, tmp_path / "fleet-print.png", width=710, media="print")
    for s in (seen, by_device, no_js, phone, printed):
        assert s.console_errors == [] and s.foreign_requests == [] and s.dialogs == []
    text = seen.text
    assert "3 device(s) at 2 site(s)" in text and "1 failed" in text and "1 drifting" in text
    assert HOSTILE_VERSION in text  # cam-b's active version, as text
    assert "output 'y' differs" in text  # cam-c's failed check, with its reason
    assert re.search(r"cam-b\tnorth.*\t! \d+\.\d\d\s+drift", text)  # the drift warning, in words
    assert HOSTILE_FILE in text and "REJECTED" in text and "ROLLED-BACK" in text
    for title in ("devices per release over time", "detector: p95 latency per check",
                  "detector: input drift", "rejected bundles by reason",
                  "rollbacks by trigger"):
        assert title in seen.html, title
    # The table sorts by a click, and reads without JavaScript in site and device order.
    assert by_device.text.index("cam-c") < by_device.text.index("cam-a")
    assert no_js.text.index("cam-a") < no_js.text.index("cam-b") < no_js.text.index("cam-c")
    assert "detector: p95 latency per check" in no_js.html
    assert phone.overflow_px <= 0 and printed.overflow_px <= 0
    # Valid HTML; the hostile text made no element, attribute or script.
    tree = parse_strict(body)
    assert not tag_names(tree) & {"img", "iframe", "object", "embed", "form", "a"}
    scripts = [e for e in elements(tree) if e.tag == "script"]
    assert len(scripts) == 1 and scripts[0].text.strip().startswith("document.querySelectorAll")
    assert not [a for e in elements(tree) for a in e.attrib if a.lower().startswith("on")]


def test_fleet_report_json_names_the_file_and_a_bad_name_is_a_usage_error(
        fleet: dict[str, Path], tmp_path: Path) -> None:
    p = run_airlock("report", "ingest", fleet["stick"], "--fleet", fleet["fleet"], "--json",
                    "--html", tmp_path / "r.html")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["html"] == str(tmp_path / "r.html")
    p = run_airlock("report", "ingest", fleet["stick"], "--fleet", fleet["fleet"],
                    "--html", tmp_path / "fleet.txt")
    assert p.returncode == 2 and "ending in .html" in p.stderr
    assert not (tmp_path / "fleet.txt").exists()
