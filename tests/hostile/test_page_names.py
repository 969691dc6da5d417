"""File names that are not UTF-8 or carry escape sequences, on the device page (issue 24 class 7).

A drop whose name has an undecodable byte made ``GET /`` answer 500 and
``status --html`` exit 1 (a lone surrogate cannot be encoded), and raw escape
sequences from names reached the page's bytes. Every value is made inert
(``airlock.console.inert``) before it is HTML-escaped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from agent.layout import Layout
from agent.observe.statuspage import status_page
from tests.support.cli import run_agent
from tests.support.device import init_device
from tests.support.keyset import Keys


def test_undecodable_and_escape_names_make_a_valid_inert_page(tmp_path: Path,
                                                               keyset: Keys) -> None:
    root = init_device(tmp_path / "dev", keyset)
    stick = tmp_path / "stick"
    stick.mkdir()
    bad = os.fsdecode(b"cam-\xff\xfe-\x1b]0;owned\x07\x1b[2J.airlock")
    (stick / bad).write_bytes(b"not a bundle")
    # What serve remembers of that drop, as it writes it (json keeps the surrogates).
    (root / "drops.json").write_text(json.dumps({"files": {"k": {
        "time": "2026-01-01T00:00:00+00:00", "outcome": "rejected",
        "release": "\x1b[31mred", "drop": str(stick / bad)}}}))
    page = status_page(Layout(root), watch=[stick])
    data = page.encode()  # raised UnicodeEncodeError: GET / answered 500
    assert b"\x1b" not in data and b"\x07" not in data
    assert "cam-\\xff\\xfe-\\x1b]0;owned\\x07" in page
    out = tmp_path / "page.html"
    p = run_agent("--root", root, "status", "--html", out)
    assert p.returncode == 0, p.stderr
    assert b"\x1b" not in out.read_bytes()
