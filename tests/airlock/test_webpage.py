"""The page skeleton (airlock/page/webpage.py): everything shown is inert, nothing loads from elsewhere."""

from __future__ import annotations

import base64
import hashlib
import math
import re

from airlock.page.webpage import (
    SORT_SCRIPT,
    esc,
    finite,
    obj_field,
    page,
    section,
    state_word,
    table,
)

HOSTILE = '<img src=x onerror=alert(1)>"\'&'


def _csp(html: str) -> str:
    m = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert m, html[:300]
    return m.group(1)


def test_esc_makes_any_value_inert_and_none_a_dash() -> None:
    assert esc(HOSTILE) == "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;"
    assert esc(None) == "-" and esc(3) == "3"


def test_titles_headers_and_captions_are_escaped_here() -> None:
    html = page(HOSTILE, [section(HOSTILE, table([HOSTILE], [[esc(HOSTILE)]],
                                                 caption=HOSTILE), ident=HOSTILE)])
    assert "<img" not in html and html.count("&lt;img") == 6  # title, heading, id, caption, header, cell


def test_without_a_script_the_page_may_run_none_and_load_nothing() -> None:
    csp = _csp(page("cam-7", ["<p>x</p>"]))
    assert "default-src 'none'" in csp and "script-src 'none'" in csp
    assert "base-uri 'none'" in csp and "form-action 'none'" in csp
    assert "<script" not in page("cam-7", ["<p>x</p>"])


def test_the_one_script_is_allowed_by_its_hash_only() -> None:
    html = page("Fleet", [], script=SORT_SCRIPT)
    digest = base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in _csp(html)
    assert "unsafe-inline" not in _csp(html).split("script-src")[1]
    assert f"<script>{SORT_SCRIPT}</script>" in html


def test_refresh_is_an_integer_number_of_seconds() -> None:
    assert '<meta http-equiv="refresh" content="30">' in page("x", [], refresh_s=30)
    assert "refresh" not in page("x", [])


def test_sortable_tables_carry_their_sort_keys_and_numeric_columns() -> None:
    html = table(["device", "age"], [["cam-1", ("2h", "7200")]], sortable=True, numeric=[1])
    assert '<table class="sortable">' in html and "<button" in html
    assert '<td class="num" data-sort="7200">2h</td>' in html


def test_state_reads_without_colour() -> None:
    assert "✓ OK" in state_word(True) and "✗ FAILED" in state_word(False)
    assert state_word(None) == '<span class="muted">-</span>'
    assert "&lt;" in state_word(False, no="<b>")


def test_documents_of_any_shape_are_read_not_trusted() -> None:
    assert obj_field({"a": {"b": 1}}, "a") == {"b": 1}
    assert obj_field({"a": [1]}, "a") == {} and obj_field("text", "a") == {}
    assert finite(2) == 2.0 and finite(True) is None and finite("3") is None
    assert finite(math.nan) is None and finite(math.inf) is None
