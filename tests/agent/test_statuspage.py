"""The device's status page: ``serve`` answers ``/`` with one self-contained, read-only page.

It is opened in a real headless Chromium (Debian's, driven by Playwright)
from a running ``serve`` on a device that has a healthy release with a
hostile version string, a release that failed its check, a drifting input
and a hostile file name dropped on its stick.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.observe.statuspage import render
from tests.support.browser import chromium, elements, load, parse_strict, tag_names
from tests.support.cli import run_agent
from tests.support.device import agent_json
from tests.support.keyset import Keys
from tests.support.serve import Serve
from tests.support.spec import build, write_spec

# Signed text may hold markup: the signature says who wrote it, not that it is harmless.
HOSTILE_VERSION = '1.0<img src=x onerror=alert(1)><script>alert(2)</script>'
HOSTILE_DROP = "evil<img src=x onerror=alert(3)>.airlock"
_ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "section", "h1",
                 "h2", "h3", "p", "b", "span", "code", "br", "div", "table", "thead", "tbody",
                 "tr", "th", "td", "caption", "ul", "li", "svg", "rect", "line", "path",
                 "circle", "text", "footer", "a"}


@pytest.fixture(scope="module")
def device(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("page")
    ref = np.random.default_rng(3).standard_normal((500, 16)).astype(np.float32)
    np.savez(d / "ref.npz", x=ref)
    v1 = build(write_spec(d, sequence=1, version=HOSTILE_VERSION,
                          health={"reference": "ref.npz", "max_p95_ms": 2000,
                                  "max_memory_mb": 2000}), d / "v1.airlock",
               [keyset.release_key])
    v2 = build(write_spec(d, sequence=2, wrong=True), d / "v2.airlock", [keyset.release_key])
    root = d / "cam-7"
    p = run_agent("--root", root, "init", "--trust", keyset.trust, "--device-id", "cam-7",
                  "--ring", "canary")
    assert p.returncode == 0, p.stderr
    agent_json(root, "install", v1)
    assert run_agent("--root", root, "install", v2).returncode == 4
    (root / "samples" / "detector").mkdir(parents=True)
    np.savez(root / "samples" / "detector" / "today.npz", x=ref[:200] * 2 + 1)
    stick = d / "stick"
    stick.mkdir()
    (stick / HOSTILE_DROP).write_bytes(b"not a bundle " * 100)
    return {"root": root, "stick": stick}


def test_status_page_in_chromium_shows_the_facts_and_runs_nothing_it_was_given(
        device: dict[str, Path], tmp_path: Path) -> None:
    with Serve.start(device["root"], watch=[device["stick"]]) as s:
        s.wait_event("drop-result", outcome="rejected")
        url = f"http://127.0.0.1:{s.port}/"
        with urllib.request.urlopen(url, timeout=30) as r:
            headers, body = r.headers, r.read().decode()
        with chromium() as browser:
            seen = load(browser, url, tmp_path / "device-page.png")
            phone = load(browser, url, tmp_path / "device-page-phone.png", width=390)
            printed = load(browser, url, tmp_path / "device-page-print.png", width=710,
                           media="print")
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src 'none'" in headers["Content-Security-Policy"]
    assert seen.console_errors == [] and seen.foreign_requests == [] and seen.dialogs == []
    assert seen.screenshot is not None and seen.screenshot.stat().st_size > 10_000
    text = seen.text
    # The key facts, as a technician reads them.
    assert "cam-7" in text and "canary" in text
    assert HOSTILE_VERSION in text  # the active version, shown as text
    assert "✗ INSTALL FAILED" in text and "output 'y' differs" in text  # the failed check's reason
    assert "DRIFT WARNING" in text
    assert "p95 latency" in text and "budget 2,000 ms" in text and "budget 2,000 MiB" in text
    assert HOSTILE_DROP in text and "REJECTED" in text  # what was found on the stick
    assert "Read-only page: nothing can be changed from here" in text
    # The hostile text is inert: no element, attribute or script of its making.
    tree = parse_strict(body)
    tags = tag_names(tree)
    assert tags <= _ALLOWED_TAGS, tags - _ALLOWED_TAGS
    assert not [a for e in elements(tree) for a in e.attrib if a.lower().startswith("on")]
    assert "<img" not in seen.html and "<script" not in seen.html
    # Read-only: nothing to press or submit, links only to what serve answers for machines;
    # it refreshes itself without script.
    assert not tags & {"form", "input", "button", "select", "textarea"}
    hrefs = {e.attrib.get("href") for e in elements(tree) if e.tag == "a"}
    assert hrefs == {"/status", "/metrics", "/healthz"}
    assert '<meta http-equiv="refresh"' in body
    # Narrow window and A4 print: nothing wider than the page.
    assert phone.overflow_px <= 0 and printed.overflow_px <= 0


def _status(**over: Any) -> dict[str, Any]:
    evil = "<script>alert(9)</script>"
    doc: dict[str, Any] = {
        "device_id": "cam-9", "ring": None, "state": "idle", "damage": [f"journal: {evil}"],
        "active": {"id": "vision-3", "name": "vision", "version": evil, "sequence": 3,
                   "installed_at": "2026-05-02T09:14:03+00:00",
                   "budgets": {"classifier": {"max_p95_ms": 5, "max_memory_mb": None}},
                   "health": {"ok": False, "reason": f"model {evil} failed",
                              "time": "2026-05-02T09:15:00+00:00", "report": {"models": [
                                  {"name": "classifier", "ok": False, "p95_ms": 7.5,
                                   "peak_rss_mb": 80.0, "reason": f"accuracy {evil}",
                                   "evaluation": {"samples": 1000, "checks": [
                                       {"metric": "accuracy", "rule": "min", "bound": 0.92,
                                        "value": 0.87, "ok": False},
                                       {"metric": evil, "rule": "min_delta", "bound": -0.01,
                                        "value": None, "ok": None}]}}]}}},
        "previous": None, "releases": ["vision-3"], "store": {"blobs": 3, "bytes": 4096},
        "disk": {"total": 10 * 2**30, "used": 2**30, "free": 9 * 2**30, "percent": 10.0},
        "drift": {"release": "vision-3", "models": {"classifier": {
            "psi": float("nan"), "warn": True, "threshold": 0.2, "rows": 80, "files": 1,
            "note": evil, "inputs": {evil: {"psi": 0.5, "feature": evil,
                                            "features": {"a": 0.5, "b": "x"}}}}}},
    }
    doc.update(over)
    return doc


def test_page_from_a_hostile_status_document_is_valid_and_inert() -> None:
    evil = "<script>alert(9)</script>"
    events = [{"time": "2026-05-02T09:15:00Z", "event": "rolled-back", "release": evil,
               "to": "vision-2", "reason": evil}]
    drops = [{"time": "2026-05-02T09:14:00Z", "drop": f"/media/{evil}.airlock",
              "outcome": "rejected", "release": None}]
    html = render(_status(), events, drops=drops, watch=[Path("/nonexistent/stick")])
    tree = parse_strict(html)
    assert "<script" not in html and "&lt;script&gt;" in html
    assert tag_names(tree) <= _ALLOWED_TAGS
    # The evaluation's thresholds are drawn, with the miss named in words, not only colour.
    assert "accuracy (min): 0.87 (min 0.92)" in html and "UNDER" in html
    assert "not applied" in html
    assert "✗ FAILED" in html and "fsck --repair" in html and "(not mounted)" in html
    # A document with nothing in it is a page too.
    empty = render({"state": "idle"}, [], drops=[], watch=[])
    parse_strict(empty)
    assert "No release is active" in empty and "unknown device" in empty


def test_status_html_writes_the_same_page_as_a_file(device: dict[str, Path],
                                                    tmp_path: Path) -> None:
    out = tmp_path / "stick" / "cam-7.html"
    p = run_agent("--root", device["root"], "status", "--html", out)
    assert p.returncode == 0, p.stderr
    assert f"page      {out}" in p.stdout
    page = out.read_text()
    parse_strict(page)
    assert "a snapshot" in page and 'http-equiv="refresh"' not in page
    assert "DRIFT WARNING" in page and "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    p = run_agent("--root", device["root"], "status", "--html", tmp_path / "cam-7.txt")
    assert p.returncode == 2 and "ending in .html" in p.stderr
