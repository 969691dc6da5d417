"""Small charts as inline SVG text, for pages that must work with no network and no JavaScript.

The device's status page and the fleet report both draw with these, so the
agent needs no plotting library and both pages look alike::

    meter(42.0, 50.0, "p95 latency", unit="ms")        # a bar against its budget, labelled
    spark([0.01, 0.3, 0.05], threshold=0.2, label="x") # one bar per feature, the threshold drawn
    lines({"cam-a": [(t0, 1.2), (t1, 1.4)]}, title="p95 ms", threshold=None)

Every text that reaches the SVG goes through ``html.escape``: labels are
device ids, release versions and model names, which come from reports and
signed metadata that may be hostile. Series differ by dash pattern and marker
shape as well as colour, and every value is also written as text, so a chart
reads in grey print and to a screen reader (``role="img"`` with a label).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape

__all__ = ["bars", "lines", "meter", "number", "spark"]

# Colour, dash and marker per series, in order; the dash and marker carry the meaning in print.
_STYLES = [("#1f5fa8", "", "circle"), ("#b35900", "6 3", "square"), ("#2e7d32", "2 2", "diamond"),
           ("#6a3d9a", "8 3 2 3", "triangle"), ("#555555", "1 3", "circle"),
           ("#a8326e", "4 2", "square")]


def number(value: float) -> str:
    """A value written short: 3 significant digits, no exponent for everyday sizes."""
    if not math.isfinite(value):
        return "-"
    if float(value).is_integer() and abs(value) < 1000:
        return str(int(value))
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def meter(value: float | None, limit: float | None, label: str, *, unit: str = "",
          higher_is_better: bool = False, limit_word: str | None = None,
          width: int = 260) -> str:
    """A bar for ``value`` against ``limit`` (a budget or threshold), with both written out."""
    h = 18
    if value is not None and not math.isfinite(value):
        value = None
    if limit is not None and not (math.isfinite(limit) and limit >= 0):
        limit = None
    text = f"{label}: {'-' if value is None else number(value)}{unit}"
    if limit is not None:
        word = limit_word or ("min" if higher_is_better else "budget")
        text += f" ({word} {number(limit)}{unit})"
    if value is None:
        return f'<span class="meter-none">{escape(text)}</span>'
    top = max(value, limit or 0.0) * 1.15 or 1.0
    w = max(1.0, width * value / top)
    over = limit is not None and (value < limit if higher_is_better else value > limit)
    parts = [f'<svg class="meter" viewBox="0 0 {width} {h}" width="{width}" height="{h}" '
             f'role="img" aria-label="{escape(text)}"><title>{escape(text)}</title>',
             f'<rect x="0" y="2" width="{width}" height="{h - 4}" class="track"/>',
             f'<rect x="0" y="2" width="{w:.1f}" height="{h - 4}" '
             f'class="{"bad" if over else "good"}"/>']
    if limit is not None:
        x = width * limit / top
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{h}" class="limit"/>')
    parts.append("</svg>")
    verdict = "OVER" if over and not higher_is_better else "UNDER" if over else "within"
    # A budget or threshold is judged in words; a capacity ("of 252 GiB") is not.
    suffix = ("" if limit is None or limit_word else
              f' <b class="{"bad" if over else "ok"}">{verdict}</b>')
    return (f'<span class="meter-row">{"".join(parts)} '
            f'<span class="meter-text">{escape(text)}</span>{suffix}</span>')


def spark(values: Sequence[float], *, threshold: float | None = None, label: str = "",
          width: int = 160, height: int = 28) -> str:
    """One thin bar per value (e.g. the PSI of each feature), the threshold as a dashed line."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return ""
    top = max([*values, threshold or 0.0]) * 1.1 or 1.0
    step = width / len(values)
    desc = f"{label}: " + ", ".join(number(v) for v in values[:64])
    out = [f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(desc)}"><title>{escape(desc)}</title>']
    for i, v in enumerate(values):
        bh = max(1.0, height * v / top)
        over = threshold is not None and v > threshold
        out.append(f'<rect x="{i * step + 0.5:.1f}" y="{height - bh:.1f}" '
                   f'width="{max(1.0, step - 1):.1f}" height="{bh:.1f}" '
                   f'class="{"bad" if over else "good"}"/>')
    if threshold is not None:
        y = height - height * threshold / top
        out.append(f'<line x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" class="limit"/>')
    out.append("</svg>")
    return "".join(out)


def bars(counts: Mapping[str, float], *, title: str, unit: str = "", width: int = 480) -> str:
    """Horizontal bars, one per key, each with its name and value written beside it."""
    if not counts:
        return f'<p class="none">{escape(title)}: none</p>'
    row, label_w = 22, 150
    top = max(counts.values()) or 1.0
    height = row * len(counts) + 24
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" role="img" '
           f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
           f'<text x="0" y="14" class="title">{escape(title)}</text>']
    for i, (name, v) in enumerate(counts.items()):
        y = 24 + i * row
        w = max(1.0, (width - label_w - 60) * v / top)
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">'
                   f'{escape(name[:28])}</text>'
                   f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
                   f'class="series0"/>'
                   f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{number(v)}{escape(unit)}</text>')
    out.append("</svg>")
    return "".join(out)


def _marker(kind: str, x: float, y: float, cls: str) -> str:
    if kind == "square":
        return f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" class="{cls}"/>'
    if kind == "diamond":
        return (f'<path d="M{x:.1f} {y - 4:.1f}l4 4l-4 4l-4 -4z" class="{cls}"/>')
    if kind == "triangle":
        return f'<path d="M{x:.1f} {y - 4:.1f}l4 7h-8z" class="{cls}"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.2" class="{cls}"/>'


def lines(series: Mapping[str, Sequence[tuple[datetime, float]]], *, title: str,
          unit: str = "", threshold: float | None = None, step: bool = False,
          failed: Sequence[tuple[datetime, float]] = (), width: int = 640,
          height: int = 220) -> str:
    """Values over time, one line per series, with a legend; ``failed`` points get a cross.

    ``step`` draws a staircase (a count that holds until it changes, like the
    devices running a release); ``threshold`` a dashed horizontal line.
    """
    series = {k: [(t, v) for t, v in s if math.isfinite(v)] for k, s in series.items()}
    points = [p for s in series.values() for p in s]
    if not points:
        return f'<p class="none">{escape(title)}: no data</p>'
    left, right, top_pad, legend_h = 52, 16, 26, 18 * ((len(series) + 2) // 3)
    plot_h = height - top_pad - 34
    t0 = min(t for t, _ in points).timestamp()
    t1 = max(t for t, _ in points).timestamp()
    span = (t1 - t0) or 1.0
    counts = all(float(v).is_integer() for _, v in points)
    vmax = max([v for _, v in points] + [threshold or 0.0]) * 1.1 or 1.0
    if counts:  # devices, rollbacks: whole-number ticks
        vmax = float(math.ceil(vmax / 4) * 4) or 4.0

    def x(t: datetime) -> float:
        return left + (width - left - right) * ((t.timestamp() - t0) / span if t1 > t0 else 0.5)

    def y(v: float) -> float:
        return top_pad + plot_h * (1 - v / vmax)

    total_h = height + legend_h
    out = [f'<svg class="chart" viewBox="0 0 {width} {total_h}" width="{width}" role="img" '
           f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
           f'<text x="0" y="14" class="title">{escape(title)}</text>']
    for i in range(5):  # horizontal grid with values
        v = vmax * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'class="grid"/><text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" '
                   f'class="tick">{number(v)}{escape(unit)}</text>')
    base = top_pad + plot_h
    stamps = sorted({t for t, _ in points})
    # Minutes apart or more: dates; a burst within the hour (a test, a site visit): seconds.
    fmt = "%Y-%m-%d %H:%M" if t1 - t0 >= 3600 else "%Y-%m-%d %H:%M:%S"
    for t in (stamps[0], stamps[-1]) if len(stamps) > 1 else stamps[:1]:
        anchor = "start" if t == stamps[0] and len(stamps) > 1 else "end"
        out.append(f'<text x="{x(t):.1f}" y="{base + 16:.1f}" text-anchor="{anchor}" '
                   f'class="tick">{escape(t.strftime(fmt))} UTC</text>')
    if threshold is not None:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(threshold):.1f}" '
                   f'y2="{y(threshold):.1f}" class="limit"/><text x="{width - right}" '
                   f'y="{y(threshold) - 3:.1f}" text-anchor="end" class="tick">threshold '
                   f'{number(threshold)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        _, dash, mark = _STYLES[i % len(_STYLES)]
        pts = sorted(pts)
        coords: list[tuple[float, float]] = []
        for j, (t, v) in enumerate(pts):
            if step and j:
                coords.append((x(t), y(pts[j - 1][1])))
            coords.append((x(t), y(v)))
        d = " ".join(f"{'M' if j == 0 else 'L'}{a:.1f} {b:.1f}" for j, (a, b) in enumerate(coords))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<path d="{d}" class="line series{i % len(_STYLES)}"{dash_attr}/>')
        out.extend(_marker(mark, x(t), y(v), f"mark series{i % len(_STYLES)}") for t, v in pts)
        lx, ly = 8 + (i % 3) * (width // 3), height + 4 + 18 * (i // 3)
        out.append(f'<line x1="{lx}" x2="{lx + 22}" y1="{ly:.1f}" y2="{ly:.1f}" '
                   f'class="line series{i % len(_STYLES)}"{dash_attr}/>'
                   + _marker(mark, lx + 11, ly, f"mark series{i % len(_STYLES)}")
                   + f'<text x="{lx + 28}" y="{ly + 4:.1f}">{escape(name[:40])}</text>')
    for t, v in failed:
        out.append(f'<path d="M{x(t) - 5:.1f} {y(v) - 5:.1f}l10 10m0 -10l-10 10" '
                   f'class="cross"><title>FAILED {escape(t.isoformat())}</title></path>')
    out.append("</svg>")
    return "".join(out)
