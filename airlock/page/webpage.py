"""One self-contained HTML page: inline CSS, inline SVG, no request to anywhere else.

The device's status page (``agent.observe.statuspage``) and the fleet report
(``bundler.hq.fleet_page``) are built with this skeleton::

    html = page("cam-7", [section("Releases", table(["slot", "release"], rows))],
                refresh_s=30)
    html = page("Fleet", body, script=SORT_SCRIPT)   # the one script, allowed by its hash

Everything shown is escaped here (``esc``, ``table``) because it comes from
reports, journals and signed metadata that may be hostile. A
Content-Security-Policy in the page allows nothing to load from elsewhere
and only the page's own script (by its sha256), so even text that slipped
through escaping could neither run nor call home. The style sheet reads
without colour (every state is also a word), prints on A4 and narrows to a
phone's width (tables scroll sideways, charts shrink).
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence
from html import escape
from typing import Any

from airlock.console import inert

__all__ = [
    "SORT_SCRIPT", "Cell", "esc", "finite", "obj_field", "page", "section", "state_word", "table",
]

def obj_field(d: object, key: str) -> dict[str, Any]:
    """``d[key]`` when it is an object, else an empty one: the documents a page draws
    (status, the journal, device reports) are read, never trusted to have a shape."""
    value = d.get(key) if isinstance(d, dict) else None
    return value if isinstance(value, dict) else {}


def finite(v: object) -> float | None:
    """A number a chart may draw: not a bool, not NaN or infinite; else None."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


#: A value longer than this is cut in its middle on a page (it says so): pages show
#: names, versions and reasons, and a hostile one must not make the page huge.
_PAGE_VALUE_CHARS = 4000

_CSS = """
:root{--fg:#1a1a1a;--muted:#5a5a5a;--line:#c8c8c8;--ok:#1e6b2a;--bad:#b00020;--warn:#8a5a00}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:var(--fg);background:#fff;margin:0 auto;padding:12px 16px;max-width:1100px}
h1{font-size:1.45em;margin:.2em 0}h2{font-size:1.15em;margin:1.2em 0 .4em;
 border-bottom:2px solid var(--line);padding-bottom:.15em}h3{font-size:1em;margin:.8em 0 .3em}
.sub{color:var(--muted);margin:.1em 0 .6em}.notice{border:1px solid var(--line);
 padding:.4em .6em;background:#f6f6f6;margin:.5em 0}
.wrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.3em 0;min-width:50%}
th,td{border-bottom:1px solid var(--line);padding:.25em .6em .25em 0;text-align:left;
 vertical-align:top}th{font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}
.warn{color:var(--warn);font-weight:600}.muted,.none{color:var(--muted)}
code,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.92em;
 overflow-wrap:anywhere}
.reason{overflow-wrap:anywhere;max-width:60em}
svg{max-width:100%;height:auto;vertical-align:middle}
svg text{font:11px "DejaVu Sans",sans-serif;fill:var(--fg)}svg .title{font-weight:600;font-size:12px}
svg .tick{fill:var(--muted);font-size:10px}svg .track{fill:#eee}
svg rect.good,svg .series0{fill:#4a7fb5}svg rect.bad{fill:var(--bad)}
svg .limit{stroke:var(--fg);stroke-width:1.5;stroke-dasharray:4 2}
svg .grid{stroke:#e4e4e4}svg .line{fill:none;stroke-width:1.8}
svg .cross{stroke:var(--bad);stroke-width:2.2}
.series0{stroke:#1f5fa8}.series1{stroke:#b35900}.series2{stroke:#2e7d32}.series3{stroke:#6a3d9a}
.series4{stroke:#555}.series5{stroke:#a8326e}svg .mark{stroke-width:1.2;fill:#fff}
.meter-row{display:inline-flex;flex-wrap:wrap;align-items:center;gap:.4em}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:.8em}
.card{border:1px solid var(--line);padding:.5em .7em;break-inside:avoid}
th button{font:inherit;font-weight:600;background:none;border:0;padding:0;cursor:pointer;
 text-align:left;color:inherit}
@media (max-width:600px){body{padding:8px;font-size:14px}.cards{grid-template-columns:1fr}}
@media print{@page{size:A4;margin:12mm}body{max-width:none;padding:0;font-size:10.5pt}
 .noprint{display:none}h2{break-after:avoid}section,.card,tr,svg{break-inside:avoid}
 .wrap{overflow:visible}a{color:inherit;text-decoration:none}}
"""

#: Sorts a table with class ``sortable`` when its header button is pressed; the table is
#: already in a useful order without it.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (t) {
  t.querySelectorAll("th button").forEach(function (b, col) {
    b.addEventListener("click", function () {
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = b.getAttribute("data-dir") === "asc" ? -1 : 1;
      t.querySelectorAll("th button").forEach(function (o) { o.removeAttribute("data-dir");
        o.parentNode.removeAttribute("aria-sort"); });
      b.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
      b.parentNode.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      rows.sort(function (x, y) {
        var a = x.cells[col].getAttribute("data-sort") || x.cells[col].textContent;
        var c = y.cells[col].getAttribute("data-sort") || y.cells[col].textContent;
        var na = parseFloat(a), nc = parseFloat(c);
        if (!isNaN(na) && !isNaN(nc)) { return (na - nc) * dir; }
        return a.localeCompare(c) * dir;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def esc(value: object) -> str:
    """Any value as inert HTML text (``None`` as a dash): made inert first
    (``airlock.console.inert``: escape sequences and the lone surrogates of a
    file name that is not UTF-8 shown as ``\\x1b``, ``\\xff``, so the page always
    encodes and nothing reaches a terminal showing its source), then escaped."""
    return "-" if value is None else escape(inert(value, _PAGE_VALUE_CHARS), quote=True)


def state_word(ok: bool | None, yes: str = "OK", no: str = "FAILED", unknown: str = "-") -> str:
    """A state as a word with a sign, so it reads without colour: ``✓ OK`` / ``✗ FAILED``."""
    if ok is None:
        return f'<span class="muted">{esc(unknown)}</span>'
    return (f'<span class="ok">✓ {esc(yes)}</span>' if ok
            else f'<span class="bad">✗ {esc(no)}</span>')


Cell = str | tuple[str, str]


def _cell(c: Cell, numeric: bool) -> str:
    html, key = (c, None) if isinstance(c, str) else c
    attrs = (' class="num"' if numeric else "") + (f' data-sort="{esc(key)}"' if key else "")
    return f"<td{attrs}>{html}</td>"


def table(head: Sequence[str], rows: Sequence[Sequence[Cell]], *, sortable: bool = False,
          numeric: Sequence[int] = (), caption: str | None = None) -> str:
    """A table; cells are HTML already (escape with ``esc``), headers are escaped here.

    A cell may be ``(html, sort_key)``: the key ``SORT_SCRIPT`` sorts by (an age in
    seconds rather than its text "2h").
    """
    if sortable:
        ths = "".join(f'<th scope="col"><button type="button">{esc(h)}</button></th>'
                      for h in head)
    else:
        ths = "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(_cell(c, i in numeric) for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    cap = f"<caption class='sub'>{esc(caption)}</caption>" if caption else ""
    cls = ' class="sortable"' if sortable else ""
    return (f'<div class="wrap"><table{cls}>{cap}<thead><tr>{ths}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def section(title: str, body: str, *, ident: str | None = None) -> str:
    attr = f' id="{esc(ident)}"' if ident else ""
    return f"<section{attr}><h2>{esc(title)}</h2>{body}</section>"


def page(title: str, body: Sequence[str], *, refresh_s: int | None = None,
         script: str | None = None) -> str:
    """The whole document, with a policy that lets it load nothing from anywhere."""
    script_src = "'none'"
    script_tag = ""
    if script is not None:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        script_src = f"'sha256-{digest}'"
        script_tag = f"<script>{script}</script>"
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
           f"script-src {script_src}; base-uri 'none'; form-action 'none'")
    refresh = (f'<meta http-equiv="refresh" content="{int(refresh_s)}">'
               if refresh_s else "")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"{refresh}<title>{esc(title)}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}{script_tag}</body></html>\n")
