"""A real headless Chromium (Debian's ``chromium``) driven by Playwright, for the HTML pages.

    with chromium() as browser:
        seen = load(browser, "http://127.0.0.1:9400/", tmp_path / "page.png")
        assert seen.console_errors == [] and seen.foreign_requests == []
        assert "vision-1" in seen.text
    parse_strict(html_text)          # html5lib, strict: a parse error fails

Playwright's own browser download is never used (``executable_path`` is the
Debian browser; ``scripts/test.sh`` installs it). Every request the page
makes is recorded; one to anywhere but the page's own URL is a foreign
request (the pages must be self-contained: the site is air-gapped).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.registry import need_tools

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@dataclass
class Seen:
    text: str  # document.body.innerText, as rendered
    html: str  # the DOM after load, serialised
    console_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)  # alert() and friends: must stay empty
    screenshot: Path | None = None
    overflow_px: int = 0  # how far the page is wider than the window (0: no sideways scroll)


@contextmanager
def chromium() -> Iterator[Any]:
    need_tools("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        import os

        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but the playwright package is missing (pip install playwright)")
        pytest.skip("the playwright package is missing (pip install playwright)")
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def load(browser: Any, url: str, shot: Path, *, width: int = 1100, height: int = 900,
         click: Sequence[str] = (), media: str = "screen", js: bool = True) -> Seen:
    """Open ``url`` in a fresh context, note console errors and requests, screenshot the page.

    ``media="print"`` lays the page out as for printing (a width of 710 px is
    A4 with 12 mm margins at 96 dpi).
    """
    context = browser.new_context(viewport={"width": width, "height": height},
                                  java_script_enabled=js)
    page = context.new_page()
    page.emulate_media(media=media)
    errors: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url, wait_until="load")
    for selector in click:
        page.click(selector)
    page.wait_for_timeout(200)
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    seen = Seen(text=page.inner_text("body"), html=page.content(), console_errors=errors,
                foreign_requests=[u for u in requests if u.split("#")[0] != url],
                dialogs=dialogs, screenshot=shot,
                overflow_px=int(page.evaluate(
                    "document.documentElement.scrollWidth - window.innerWidth")))
    context.close()
    return seen


def parse_strict(text: str) -> Any:
    """The document parsed by html5lib in strict mode: any HTML parse error raises."""
    import html5lib

    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text)


def elements(tree: Any) -> list[Any]:
    """Every element of a parsed document (``parse_strict``), in document order."""
    return [e for e in tree.iter() if isinstance(e.tag, str)]


def tag_names(tree: Any) -> set[str]:
    """The names of the elements in a parsed document, SVG's without their namespace."""
    return {e.tag.rsplit("}", 1)[-1] for e in elements(tree)}
