"""A PNG of a page as Debian's headless Chromium renders it (for docs/img and the demo).

    python scripts/screenshot.py http://127.0.0.1:9400/ docs/img/device-page.png
    python scripts/screenshot.py demo/fleet.html docs/img/fleet-report.png --width 1000 --height 1400

Playwright drives ``/usr/bin/chromium`` (``apt-get install chromium``); its
own browser download is never used. The page is cut at ``--height`` unless
``--full`` is given, which keeps the PNGs in the README small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("page", help="a URL or an HTML file")
    p.add_argument("png", type=Path)
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--height", type=int, default=1200)
    p.add_argument("--full", action="store_true", help="the whole page, not the first HEIGHT px")
    a = p.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"screenshot: {CHROMIUM} missing (apt-get install chromium)", file=sys.stderr)
        return 5
    from playwright.sync_api import sync_playwright

    url = a.page if "://" in a.page else Path(a.page).absolute().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": a.width, "height": a.height})
        page.goto(url, wait_until="load")
        a.png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(a.png), full_page=a.full)
        browser.close()
    print(a.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
